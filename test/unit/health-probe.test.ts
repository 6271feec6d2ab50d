import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { probeTcp, type ProbeResult } from '../../src/health/tcp-probe';
import { startServer, startEchoServer, waitFor, withTimeout, type TestServer, deadPort } from '../helpers/net';
import { startBlackhole, type Blackhole } from '../helpers/blackhole';

const servers: TestServer[] = [];
let hole: Blackhole | null = null;
after(async () => {
  for (const s of servers) await s.close();
  if (hole) await hole.close();
});

function probe(port: number, timeoutMs = 500): Promise<ProbeResult> {
  return withTimeout(new Promise((resolve) => probeTcp({ host: '127.0.0.1', port, family: 4 }, timeoutMs, resolve)), 5000, 'probe');
}


test('a listening backend passes; the probe closes its side cleanly (FIN) and leaves no socket', async () => {
  const ends: string[] = [];
  const srv = await startServer((s) => {
    s.on('end', () => {
      ends.push('fin');
      s.end();
    });
  });
  servers.push(srv);
  assert.deepEqual(await probe(srv.port), { ok: true });
  await waitFor(() => ends.length === 1 && srv.sockets.size === 0, 3000, 'backend sees FIN and closes');
});

test('a backend that accepts and closes at once still passes', async () => {
  const srv = await startServer((s) => s.destroy());
  servers.push(srv);
  assert.deepEqual(await probe(srv.port), { ok: true });
});

test('a backend that sends a greeting and never closes: the probe socket is destroyed after the linger', async () => {
  const srv = await startServer((s) => s.write('220 hello\r\n'));
  servers.push(srv);
  assert.deepEqual(await probe(srv.port, 100), { ok: true });
  await waitFor(() => probeSockets(srv.port) === 0, 3000, 'probe socket gone');
});

test('a closed port fails with ECONNREFUSED', async () => {
  const r = await probe(await deadPort());
  assert.deepEqual(r, { ok: false, reason: 'refused', error: 'ECONNREFUSED' });
});

test('a blackholed backend fails with timeout after timeoutMs', async () => {
  hole = await startBlackhole();
  const t0 = Date.now();
  const r = await probe(hole.port, 200);
  const took = Date.now() - t0;
  assert.deepEqual(r, { ok: false, reason: 'timeout' });
  assert.ok(took >= 190 && took < 1000, `took ${took} ms`);
});

test('cancel: no callback, socket destroyed', async () => {
  const echo = await startEchoServer();
  servers.push(echo);
  let called = false;
  const h = probeTcp({ host: '127.0.0.1', port: echo.port, family: 4 }, 500, () => (called = true));
  h.cancel();
  h.cancel();
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(called, false);
});

test('many probes leave no open handles (no fd leak)', async () => {
  const srv = await startServer(() => {});
  servers.push(srv);
  const dead = await deadPort();
  await Promise.all(Array.from({ length: 50 }, (_, i) => probe(i % 2 === 0 ? srv.port : dead, 200)));
  await waitFor(() => srv.accepted === 25, 3000, 'server saw 25 probes');
  // The server never closes (half-open allowed): the probe still destroys its own sockets.
  await waitFor(() => probeSockets(srv.port) === 0 && probeSockets(dead) === 0, 5000, 'probe sockets closed');
});

/** Open client-side sockets of this process connected to `port` (the probes' own). */
function probeSockets(port: number): number {
  const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();
  return handles.filter((h) => h instanceof net.Socket && h.remotePort === port && h.localPort !== port).length;
}
