/**
 * workers = 2, the edges of the primary: a request to the workers while one
 * of them dies, and limits of pools that only UDP listeners use.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type net from 'node:net';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { startEchoServer, connect, readBytes, waitFor, withTimeout, deadPort } from '../helpers/net';
import { L4lbProcess } from '../helpers/l4lb';
import { poolToml } from '../helpers/toml';
import { workerPids, ownerOf } from '../helpers/cluster';

describe('workers = 2: a worker dying during a request', () => {
  test('a worker that already answered dies: the drain still waits for the other worker\'s connection', async () => {
    const echo = await startEchoServer();
    // A fixed port: a worker started during the drain would listen on it again.
    const fixed = await deadPort();
    const lb = new L4lbProcess(
      `[global]\nworkers = 2\ndrain_timeout = "20s"\n[[listeners]]\nname = "e"\nbind = "127.0.0.1:${fixed}"\npool = "p"\n` + poolToml('p', 'round-robin', [`{ address = "127.0.0.1:${echo.port}" }`]),
    );
    const conns: net.Socket[] = [];
    try {
      const port = await lb.port('e');
      await waitFor(() => workerPids(lb.child.pid!).length === 2, 10000, 'two workers');
      const pids = workerPids(lb.child.pid!);
      // One connection held by one worker; the other worker holds none.
      const c = await connect(port);
      conns.push(c);
      c.write('a');
      await readBytes(c, 1);
      let holder: number | undefined;
      await waitFor(() => (holder = ownerOf(c, port, pids)) !== undefined, 5000, 'the worker holding the connection');
      const idle = pids.find((p) => p !== holder)!;

      lb.signal('SIGTERM');
      await lb.waitForLog((l) => l.msg === 'draining', 5000, 'draining');
      // The idle worker answers the primary's "idle?" at once; the holder
      // cannot. This is not observable from outside: give the answer time.
      await new Promise((r) => setTimeout(r, 500));
      process.kill(idle, 'SIGKILL');
      await lb.waitForLog((l) => l.msg === 'worker exited', 5000, 'worker exited');

      // The drain must go on waiting for the holder's connection: l4lb does
      // not stop within a second (it would in a few ms if it counted the
      // dead worker's earlier answer twice), and the connection still works.
      const exited = await lb.waitExit(1000).then(
        () => true,
        () => false,
      );
      assert.equal(exited, false, `l4lb stopped while a connection was open: ${JSON.stringify(lb.logs.slice(-3))}`);
      c.write('b');
      assert.equal((await readBytes(c, 1, 3000)).toString(), 'b', 'the open connection still echoes');
      assert.equal(lb.exitCode, null, 'l4lb is still draining');
      // Draining: the dead worker is not replaced by one that accepts again.
      const late = await connect(port).then(
        (s) => (s.destroy(), 'accepted'),
        () => 'refused',
      );
      assert.equal(late, 'refused', 'no new connection accepted while draining');
      c.end();
      assert.equal(await lb.waitExit(10000), 0);
      assert.ok(!lb.logs.some((l) => l.msg === 'drain timeout: closing open connections'), 'drained without a timeout');
    } finally {
      for (const c of conns) c.destroy();
      await lb.stop();
      await echo.close();
    }
  });
});

describe('workers = 2: backend max_connections of UDP-only pools', () => {
  test('a pool only UDP listeners use keeps its full limit (UDP runs on one worker)', async () => {
    const be = dgram.createSocket('udp4');
    be.on('message', (m, r) => be.send(m, r.port, r.address));
    be.bind(0, '127.0.0.1');
    await once(be, 'listening');
    const lb = new L4lbProcess(
      `[global]\nworkers = 2\ndrain_timeout = "1s"\n[admin]\nbind = "127.0.0.1:0"\n[[listeners]]\nname = "u"\nprotocol = "udp"\nbind = "127.0.0.1:0"\npool = "p"\n` +
        poolToml('p', 'round-robin', [`{ address = "127.0.0.1:${be.address().port}", max_connections = 2 }`]),
    );
    const clients: dgram.Socket[] = [];
    try {
      const port = await lb.port('u');
      // A reply within `ms`, or null (the refusal is then confirmed by the metric below).
      const ask = async (c: dgram.Socket, text: string, ms = 3000): Promise<string | null> => {
        c.send(text, port, '127.0.0.1');
        try {
          const [msg] = (await withTimeout(once(c, 'message'), ms, 'udp reply')) as [Buffer];
          return msg.toString();
        } catch {
          return null;
        }
      };
      for (let i = 0; i < 3; i++) {
        const c = dgram.createSocket('udp4');
        c.bind(0, '127.0.0.1');
        await once(c, 'listening');
        clients.push(c);
      }
      // Two sessions fit the limit of 2; the third is refused (no backend with room).
      assert.equal(await ask(clients[0]!, 'one'), 'one');
      assert.equal(await ask(clients[1]!, 'two'), 'two', 'the second session fits max_connections = 2');
      assert.equal(await ask(clients[2]!, 'three', 700), null, 'a third session is over the limit');
      const admin = (await lb.waitForLog((l) => l.msg === 'admin listening', 5000, 'admin')).port as number;
      await waitFor(
        async () => {
          const text = await (await fetch(`http://127.0.0.1:${admin}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
          return text.includes('l4lb_connections_rejected_total{listener="u",reason="no_backend"} 1');
        },
        5000,
        'the third session counted as no_backend',
      );
    } finally {
      for (const c of clients) c.close();
      be.close();
      await lb.stop();
    }
  });
});
