/**
 * The admin endpoint against browsers and slow clients (SPEC §8.6): DNS
 * rebinding (Host), cross-origin POSTs, a token with spaces around it, a
 * re-binding reload that a trickling client cannot hold up, and a reload
 * during a drain that says why it was refused.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { startEchoServer, waitFor, withTimeout, type TestServer } from '../helpers/net';
import { L4lbProcess } from '../helpers/l4lb';
import { listenerToml, poolToml } from '../helpers/toml';

interface Reply {
  status: number;
  body: string;
}

/** One request with exactly these headers (Host included), over a fresh connection. */
function request(port: number, method: string, path: string, headers: Record<string, string>, body?: string): Promise<Reply> {
  return withTimeout(
    new Promise<Reply>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, method, path, headers, agent: false }, (res) => {
        let b = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (b += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }));
      });
      req.on('error', reject);
      req.end(body);
    }),
    10000,
    `${method} ${path}`,
  );
}

async function adminPort(lb: L4lbProcess, after = 0): Promise<number> {
  const lines = (): number[] => lb.logs.filter((l) => l.msg === 'admin listening').map((l) => l.port as number);
  await waitFor(() => lines().length > after, 10000, 'admin listening');
  return lines()[after] as number;
}

describe('admin endpoint guards', () => {
  let echo: TestServer;
  let lb: L4lbProcess;
  let port: number;
  let backend: string;

  const config = (adminBind: string, token = ''): string =>
    `[admin]\nbind = "${adminBind}"\n${token}\n` +
    listenerToml('echo', 'echo') +
    poolToml('echo', 'round-robin', [`{ address = "127.0.0.1:${echo.port}" }`]);

  before(async () => {
    echo = await startEchoServer();
    backend = encodeURIComponent(`127.0.0.1:${echo.port}`);
    lb = new L4lbProcess(config('127.0.0.1:0'));
    port = await adminPort(lb);
  });
  after(async () => {
    await lb.stop();
    await echo.close();
  });

  test('Host: IP literals and localhost are served; any other name gets 421 (DNS rebinding)', async () => {
    assert.equal((await request(port, 'GET', '/api/v1/status', { host: `127.0.0.1:${port}` })).status, 200);
    assert.equal((await request(port, 'GET', '/metrics', { host: `localhost:${port}` })).status, 200);
    assert.equal((await request(port, 'GET', '/healthz', { host: `[::1]:${port}` })).status, 200);
    for (const path of ['/api/v1/status', '/metrics', '/']) {
      const r = await request(port, 'GET', path, { host: `rebind.attacker.example:${port}` });
      assert.equal(r.status, 421, `${path}: ${r.body}`);
    }
    const post = await request(port, 'POST', `/api/v1/pools/echo/backends/${backend}/drain`, { host: `rebind.attacker.example:${port}` });
    assert.equal(post.status, 421);
  });

  test('POSTs a page of another origin could send are refused with 403; tool-style POSTs work', async () => {
    const drain = `/api/v1/pools/echo/backends/${backend}/drain`;
    const enable = `/api/v1/pools/echo/backends/${backend}/enable`;
    const host = `127.0.0.1:${port}`;
    const forged: Record<string, string>[] = [
      { host, origin: 'http://evil.example' },
      { host, origin: 'null' },
      { host, 'sec-fetch-site': 'cross-site' },
      { host, 'content-type': 'application/x-www-form-urlencoded', 'content-length': '3' },
      { host, 'content-type': 'text/plain;charset=UTF-8', 'content-length': '3' },
      { host, 'content-type': 'multipart/form-data; boundary=x', 'content-length': '3' },
    ];
    for (const h of forged) {
      const r = await request(port, 'POST', drain, h, h['content-length'] !== undefined ? 'a=b' : undefined);
      assert.equal(r.status, 403, `${JSON.stringify(h)}: ${r.body}`);
    }
    // Nothing was drained by any of them.
    const st = JSON.parse((await request(port, 'GET', '/api/v1/status', { host })).body) as { pools: { backends: { state: string }[] }[] };
    assert.equal(st.pools[0]?.backends[0]?.state, 'up');
    // curl-style (no Origin, no body), and the endpoint's own origin (its page).
    assert.equal((await request(port, 'POST', drain, { host })).status, 200);
    assert.equal((await request(port, 'POST', enable, { host, origin: `http://${host}` })).status, 200);
    assert.equal((await request(port, 'POST', '/api/v1/reload', { host, 'content-type': 'application/json', 'content-length': '2' }, '{}')).status, 200);
  });

  test('a token with spaces around it in the file matches the bare token', async () => {
    lb.writeConfig(config('127.0.0.1:0', 'token = "  s3cret  "'));
    lb.signal('SIGHUP');
    await lb.waitForLog((l) => l.msg === 'config reloaded' && (l.config_generation as number) >= 3, 10000, 'reload');
    const host = `127.0.0.1:${port}`;
    const drain = `/api/v1/pools/echo/backends/${backend}/enable`;
    assert.equal((await request(port, 'POST', drain, { host })).status, 401);
    assert.equal((await request(port, 'POST', drain, { host, authorization: 'Bearer s3cret' })).status, 200);
    lb.writeConfig(config('127.0.0.1:0'));
    lb.signal('SIGHUP');
    await lb.waitForLog((l) => l.msg === 'config reloaded' && (l.config_generation as number) >= 4, 10000, 'reload');
  });

  test('a re-binding reload is not held up by a client trickling a request body', async () => {
    const before = lb.logs.filter((l) => l.msg === 'admin listening').length;
    // A POST whose body never completes, one byte at a time.
    const slow = net.connect({ port, host: '127.0.0.1' });
    slow.on('error', () => {});
    await once(slow, 'connect');
    slow.write(`POST /api/v1/reload HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n`);
    const trickle = setInterval(() => slow.write('x'), 100);
    try {
      const started = Date.now();
      lb.writeConfig(config('127.0.0.2:0'));
      lb.signal('SIGHUP');
      const newPort = await adminPort(lb, before);
      await lb.waitForLog((l) => l.msg === 'config reloaded' && (l.config_generation as number) >= 5, 10000, 'reload');
      // The old endpoint is gone within a second or so of the reload, trickler or not.
      await waitFor(
        () =>
          new Promise<boolean>((resolve) => {
            const s = net.connect({ port, host: '127.0.0.1' });
            s.on('connect', () => {
              s.destroy();
              resolve(false);
            });
            s.on('error', () => resolve(true));
          }),
        3000,
        'old admin port closed',
        50,
      );
      await waitFor(() => slow.destroyed || slow.readableEnded, 3000, 'trickling client cut');
      assert.ok(Date.now() - started < 4000, `took ${Date.now() - started} ms`);
      const r = await withTimeout(fetch(`http://127.0.0.2:${newPort}/healthz`), 5000, 'new admin');
      assert.equal(r.status, 200);
      port = newPort;
    } finally {
      clearInterval(trickle);
      slow.destroy();
    }
  });

  test('a reload asked for during a drain is refused with a log line saying why', async () => {
    const drainer = new L4lbProcess(
      `[global]\ndrain_timeout = "3s"\n` +
        listenerToml('echo', 'echo') +
        poolToml('echo', 'round-robin', [`{ address = "127.0.0.1:${echo.port}" }`]),
    );
    try {
      const p = await drainer.port('echo');
      const held = net.connect({ port: p, host: '127.0.0.1' });
      held.on('error', () => {});
      await once(held, 'connect');
      await waitFor(() => echo.sockets.size > 0, 5000, 'connection through');
      drainer.signal('SIGTERM');
      await drainer.waitForLog((l) => l.msg === 'draining', 5000, 'draining');
      drainer.signal('SIGHUP');
      const line = await drainer.waitForLog((l) => l.msg === 'config reload failed', 5000, 'reload refused');
      assert.match(JSON.stringify(line.errors), /draining/);
      held.destroy();
      assert.equal(await drainer.waitExit(10000), 0);
    } finally {
      await drainer.stop();
    }
  });
});
