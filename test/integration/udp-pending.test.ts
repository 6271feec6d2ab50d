/**
 * UDP datagrams that arrive before a new session's upstream socket is
 * connected wait (up to 64); the ones beyond are dropped and must not be
 * counted as forwarded (datagrams and bytes). A burst read in one turn of
 * the event loop is what fills the queue; here the burst is delivered to a
 * real listener socket in one turn, the forwarding goes over real sockets.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { parseConfig } from '../../src/config/load';
import { createLogger } from '../../src/log';
import { DataPlane, type BackendSpec } from '../../src/dataplane/dataplane';
import { waitFor } from '../helpers/net';

test('a burst before the upstream socket is connected: 64 forwarded and counted, the rest neither', async () => {
  const be = dgram.createSocket('udp4');
  let received = 0;
  let receivedBytes = 0;
  be.on('message', (m) => {
    received++;
    receivedBytes += m.length;
  });
  be.bind(0, '127.0.0.1');
  await once(be, 'listening');
  const port = be.address().port;
  const config = parseConfig(
    `[[listeners]]\nname = "u"\nprotocol = "udp"\nbind = "127.0.0.1:0"\npool = "p"\n[pools.p]\nbackends = [{ address = "127.0.0.1:${port}" }]\n[pools.p.health_check]\nenabled = false\n`,
    'lb.toml',
  );
  const dp = new DataPlane({ log: createLogger('error'), splice: null });
  const specs: BackendSpec[] = [{ host: '127.0.0.1', port, family: 4, name: null, weight: 1, maxConnections: 0, backup: false }];
  try {
    await dp.apply(config, new Map([['p', specs]]));
    const listener = dp.listeners.get('u');
    assert.ok(listener !== undefined);
    const socket = (listener as unknown as { socket: dgram.Socket }).socket;
    const rinfo = { address: '127.0.0.1', port: 40001, family: 'IPv4' as const, size: 10 };
    // 100 datagrams of 10 bytes from one client within one turn.
    for (let i = 0; i < 100; i++) socket.emit('message', Buffer.alloc(10, i), rinfo);
    await waitFor(() => received >= 64, 5000, '64 datagrams at the backend');
    // Then one more once connected: forwarded at once.
    socket.emit('message', Buffer.alloc(7, 1), rinfo);
    await waitFor(() => received >= 65, 5000, 'the next datagram at the backend');
    assert.equal(received, 65, 'the 36 beyond the queue were dropped');
    const snap = listener.snapshot();
    assert.equal(snap.datagrams_in, received, 'datagrams counted = datagrams forwarded');
    assert.equal(snap.bytes_in, receivedBytes, 'bytes counted = bytes forwarded');
  } finally {
    dp.abortAll('shutdown');
    dp.dispose();
    be.close();
  }
});
