/**
 * The send-expect and HTTP probes against real sockets on 127.0.0.1:
 * each outcome and reason, what is sent, bounded reads, cancel, and no
 * socket left behind.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { sendExpectProbe, makeMatcher } from '../../src/health/checks/send-expect';
import { httpProbe } from '../../src/health/checks/http';
import { createProbe } from '../../src/health/checks';
import type { ProbeFn, ProbeResult } from '../../src/health/probe';
import { startServer, waitFor, withTimeout, deadPort, type TestServer } from '../helpers/net';
import { parseConfig } from '../../src/config/load';

const servers: TestServer[] = [];
after(async () => {
  for (const s of servers) await s.close();
});

async function server(onSocket: (s: net.Socket) => void): Promise<TestServer> {
  const s = await startServer(onSocket);
  servers.push(s);
  return s;
}

function run(probe: ProbeFn, port: number, timeoutMs = 300): Promise<ProbeResult> {
  return withTimeout(new Promise((resolve) => probe({ host: '127.0.0.1', port, family: 4 }, timeoutMs, resolve)), 5000, 'probe');
}

const tcp = (send: string, expect: string | null, re: string | null = null): ProbeFn =>
  sendExpectProbe({ protocol: 'tcp', send: Buffer.from(send, 'latin1'), match: makeMatcher(expect, re) });

/** Open client-side sockets of this process connected to `port`. */
function clientSockets(port: number): number {
  const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();
  return handles.filter((h) => h instanceof net.Socket && h.remotePort === port && h.localPort !== port).length;
}

test('tcp send-expect: sends the bytes, passes on a match split over several writes, then closes with FIN', async () => {
  const got: string[] = [];
  let fin = false;
  const srv = await server((s) => {
    s.on('data', (d: Buffer) => {
      got.push(d.toString('latin1'));
      s.write('$20\r\n# Replication\r\nrole:ma');
      setTimeout(() => s.write('ster\r\n'), 20);
    });
    s.on('end', () => {
      fin = true;
      s.end();
    });
  });
  assert.deepEqual(await run(tcp('INFO replication\r\n', 'role:master'), srv.port), { ok: true });
  assert.equal(got.join(''), 'INFO replication\r\n');
  await waitFor(() => fin && clientSockets(srv.port) === 0, 3000, 'FIN and no socket left');
});

test('tcp send-expect: a greeting service with nothing to send; no expect = any byte', async () => {
  const srv = await server((s) => s.write('220 mail ESMTP\r\n'));
  assert.deepEqual(await run(tcp('', '220 '), srv.port), { ok: true });
  assert.deepEqual(await run(tcp('', null), srv.port), { ok: true });
  assert.deepEqual(await run(tcp('', null, '^220 [a-z]+ ESMTP'), srv.port), { ok: true });
});

test('tcp send-expect: a wrong reply held open is expect_mismatch at the timeout, with the bytes in detail', async () => {
  const srv = await server((s) => s.on('data', () => s.write('role:slave\r\n')));
  const t0 = Date.now();
  const r = await run(tcp('INFO\r\n', 'role:master'), srv.port, 200);
  assert.ok(Date.now() - t0 >= 190, 'waited for the timeout');
  assert.deepEqual(r, { ok: false, reason: 'expect_mismatch', detail: 'no match within the timeout; got 12 bytes: "role:slave\\r\\n"' });
});

test('tcp send-expect: closed without a match, closed without a reply, silent, refused, reset', async () => {
  const closesWrong = await server((s) => s.on('data', () => s.end('-ERR\r\n')));
  assert.deepEqual(await run(tcp('X\r\n', '+OK'), closesWrong.port), { ok: false, reason: 'expect_mismatch', detail: 'closed without a match; got 6 bytes: "-ERR\\r\\n"' });
  const closes = await server((s) => s.end());
  assert.deepEqual(await run(tcp('X\r\n', null), closes.port), { ok: false, reason: 'expect_mismatch', detail: 'closed without a reply' });
  const silent = await server(() => {});
  assert.deepEqual(await run(tcp('X\r\n', '+OK', null), silent.port, 100), { ok: false, reason: 'timeout' });
  assert.deepEqual(await run(tcp('X\r\n', '+OK'), await deadPort()), { ok: false, reason: 'refused', error: 'ECONNREFUSED' });
  const resets = await server((s) => s.on('data', () => s.resetAndDestroy()));
  const r = await run(tcp('X\r\n', '+OK'), resets.port);
  assert.equal(r.ok, false);
  assert.equal(!r.ok && r.reason, 'reset');
});

test('tcp send-expect: a flood is judged after 4096 bytes and the socket destroyed', async () => {
  const big = Buffer.alloc(1 << 20, 0x7a);
  const srv = await server((s) => s.on('data', () => s.write(big)));
  const r = await run(tcp('GO', 'never'), srv.port, 2000);
  assert.deepEqual(r, { ok: false, reason: 'expect_mismatch', detail: `no match in the first 4096 bytes; got 4096 bytes: "${'z'.repeat(64)}..."` });
  await waitFor(() => clientSockets(srv.port) === 0, 3000, 'probe socket gone');
});

test('cancel: no callback and no socket left', async () => {
  const srv = await server(() => {});
  for (const probe of [tcp('x', 'y'), httpProbe({ path: '/', expectStatus: null })]) {
    let called = false;
    const h = probe({ host: '127.0.0.1', port: srv.port, family: 4 }, 500, () => (called = true));
    h.cancel();
    h.cancel();
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(called, false);
  }
  await waitFor(() => clientSockets(srv.port) === 0, 3000, 'sockets gone');
});

/** An HTTP-ish server answering every request with `reply`; records requests. */
async function httpServer(reply: string | null, requests: string[] = []): Promise<TestServer> {
  return server((s) => {
    let req = '';
    s.on('data', (d: Buffer) => {
      req += d.toString('latin1');
      if (!req.includes('\r\n\r\n')) return;
      requests.push(req);
      if (reply !== null) s.end(reply);
    });
  });
}

test('http: the request; statuses in and out of expect_status', async () => {
  const requests: string[] = [];
  const ok = await httpServer('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok', requests);
  assert.deepEqual(await run(httpProbe({ path: '/primary', expectStatus: null }), ok.port), { ok: true });
  assert.equal(
    requests[0],
    `GET /primary HTTP/1.1\r\nHost: 127.0.0.1:${ok.port}\r\nUser-Agent: l4lb-health-check/${requests[0]!.match(/l4lb-health-check\/(\S+)/)![1]}\r\nAccept: */*\r\nConnection: close\r\n\r\n`,
  );
  assert.deepEqual(await run(httpProbe({ path: '/', expectStatus: [204] }), ok.port), { ok: false, reason: 'http_status_200' });
  const unavailable = await httpServer('HTTP/1.1 503 Service Unavailable\r\n\r\n');
  assert.deepEqual(await run(httpProbe({ path: '/', expectStatus: null }), unavailable.port), { ok: false, reason: 'http_status_503' });
  assert.deepEqual(await run(httpProbe({ path: '/', expectStatus: [200, 503] }), unavailable.port), { ok: true });
  const redirect = await httpServer('HTTP/1.0 302 Found\nLocation: /\n\n');
  assert.deepEqual(await run(httpProbe({ path: '/', expectStatus: null }), redirect.port), { ok: true });
  await waitFor(() => clientSockets(ok.port) === 0 && clientSockets(unavailable.port) === 0, 3000, 'probe sockets closed');
});

test('http: a server that ignores Connection: close; the probe still closes its socket (FIN, then at most timeout)', async () => {
  let fin = 0;
  const srv = await server((s) => {
    s.on('data', () => s.write('HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\npartial body'));
    s.on('end', () => fin++);
  });
  assert.deepEqual(await run(httpProbe({ path: '/', expectStatus: null }), srv.port, 200), { ok: true });
  await waitFor(() => fin === 1, 2000, 'the probe sent FIN');
  await waitFor(() => clientSockets(srv.port) === 0, 3000, 'probe socket destroyed after the linger');
});

test('http: garbage, truncated, empty, oversized head are bad_http_response; silence is timeout', async () => {
  const p = httpProbe({ path: '/', expectStatus: null });
  const garbage = await httpServer('220 smtp ready\r\n');
  const r1 = await run(p, garbage.port);
  assert.equal(!r1.ok && r1.reason, 'bad_http_response');
  assert.match(!r1.ok ? r1.detail ?? '' : '', /^not an HTTP\/1\.x response; got 16 bytes: "220 smtp ready\\r\\n"$/);
  const truncated = await httpServer('HTTP/1.1 200 OK\r\nX-A: b\r\n');
  assert.deepEqual(await run(p, truncated.port), { ok: false, reason: 'bad_http_response', detail: 'truncated response; got 25 bytes: "HTTP/1.1 200 OK\\r\\nX-A: b\\r\\n"' });
  const empty = await httpServer('');
  assert.deepEqual(await run(p, empty.port), { ok: false, reason: 'bad_http_response', detail: 'closed without a reply' });
  const huge = await server((s) => s.on('data', () => s.write(`HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(8000)}\r\n\r\n`)));
  assert.deepEqual(await run(p, huge.port), { ok: false, reason: 'bad_http_response', detail: 'response head larger than 4096 bytes' });
  const silent = await httpServer(null);
  assert.deepEqual(await run(p, silent.port, 100), { ok: false, reason: 'timeout' });
  assert.deepEqual(await run(p, await deadPort()), { ok: false, reason: 'refused', error: 'ECONNREFUSED' });
});

test('udp send-expect: answer, wrong answer, no answer, nothing listening', async () => {
  const sock = dgram.createSocket('udp4');
  let reply = 'pong';
  const seen: string[] = [];
  sock.on('message', (m, r) => {
    seen.push(m.toString('latin1'));
    if (reply !== '') sock.send(reply, r.port, r.address);
  });
  sock.bind(0, '127.0.0.1');
  await once(sock, 'listening');
  const port = sock.address().port;
  try {
    const p = sendExpectProbe({ protocol: 'udp', send: Buffer.from('ping'), match: makeMatcher(null, '^pong') });
    assert.deepEqual(await run(p, port), { ok: true });
    assert.deepEqual(seen, ['ping']);
    reply = 'nope';
    assert.deepEqual(await run(p, port), { ok: false, reason: 'expect_mismatch', detail: 'got 4 bytes: "nope"' });
    reply = '';
    assert.deepEqual(await run(p, port, 100), { ok: false, reason: 'timeout' });
  } finally {
    sock.close();
  }
  const p = sendExpectProbe({ protocol: 'udp', send: Buffer.from('ping'), match: makeMatcher(null, null) });
  assert.deepEqual(await run(p, await deadPort()), { ok: false, reason: 'refused', error: 'ECONNREFUSED' });
});

test('createProbe picks the probe named by type', async () => {
  const hcOf = (body: string) => parseConfig(`[[listeners]]\nname = "a"\nbind = "127.0.0.1:0"\npool = "p"\n[pools.p]\nbackends = [{ address = "127.0.0.1:1" }]\n[pools.p.health_check]\n${body}\n`, 'lb.toml').pools[0]!.healthCheck;
  const srv = await httpServer('HTTP/1.1 503 No\r\n\r\n');
  assert.deepEqual(await run(createProbe(hcOf('type = "connect"')), srv.port), { ok: true });
  assert.deepEqual(await run(createProbe(hcOf('type = "http"')), srv.port), { ok: false, reason: 'http_status_503' });
  const r = await run(createProbe(hcOf('type = "send-expect"\nsend = "GET / HTTP/1.0\\r\\n\\r\\n"\nexpect = " 503 "')), srv.port);
  assert.deepEqual(r, { ok: true });
});
