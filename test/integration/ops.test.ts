/**
 * Operator control and visibility end to end, through the real CLI and real
 * backends: the runtime API (weight, shutdown-connections, connections),
 * log events (starting, start failed, connection closed with termination,
 * connections rejected, connection progress, pool up/down, state changes),
 * and the metrics of docs/reference.md.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startEchoServer, startTaggedServer, startServer, connect, readLine, readBytes, readAll, endOf, waitFor, type TestServer } from '../helpers/net';
import { L4lbProcess, runCli, tempConfig } from '../helpers/l4lb';
import { listenerToml, poolToml } from '../helpers/toml';
import { adminHttp, adminJson, adminPortOf, backendOf, sample, type Status } from '../helpers/admin';

const TOKEN = 'ops-token';

interface Conn {
  listener: string;
  protocol: string;
  pool: string;
  client: string;
  backend: string;
  age_ms: number;
  bytes_in: number;
  bytes_out: number;
}

/** Opens `n` connections one after another and returns the tag each got. */
async function tags(port: number, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const c = await connect(port);
    out.push(await readLine(c));
    c.destroy();
  }
  return out;
}

describe('runtime API and connection logs', () => {
  let a: TestServer;
  let b: TestServer;
  let echo: TestServer;
  let bye: TestServer;
  let lb: L4lbProcess;
  let admin: number;
  const A = (): string => `127.0.0.1:${a.port}`;
  const E = (): string => `127.0.0.1:${echo.port}`;

  before(async () => {
    a = await startTaggedServer('A');
    b = await startTaggedServer('B');
    echo = await startEchoServer();
    // Says "bye" and closes first: the backend's FIN comes first.
    bye = await startServer((s) => s.end('bye\n'));
    lb = new L4lbProcess(
      `[global]\nconnection_log = true\n[admin]\nbind = "127.0.0.1:0"\ntoken = "${TOKEN}"\n` +
        listenerToml('ab', 'ab') +
        listenerToml('one', 'one') +
        listenerToml('bye', 'bye') +
        listenerToml('acl', 'one', 'deny = ["127.0.0.0/8"]') +
        poolToml('ab', 'round-robin', [`{ address = "127.0.0.1:${a.port}" }`, `{ address = "127.0.0.1:${b.port}" }`]) +
        poolToml('one', 'round-robin', [`{ address = "127.0.0.1:${echo.port}" }`]) +
        poolToml('bye', 'round-robin', [`{ address = "127.0.0.1:${bye.port}" }`]),
    );
    admin = await adminPortOf(lb);
  });
  after(async () => {
    await lb.stop();
    for (const s of [a, b, echo, bye]) await s.close();
  });

  test('`starting` is the first log line, with version, config path, pid and node version', () => {
    const first = lb.logs[0]!;
    assert.equal(first.msg, 'starting');
    assert.equal(first.level, 'info');
    assert.equal(typeof first.version, 'string');
    assert.equal(first.config, lb.configPath);
    assert.equal(first.pid, lb.child.pid);
    assert.equal(first.node, process.version);
  });

  test('weight: 401 without the token, 400 for a bad body, 404 for an unknown backend', async () => {
    const path = `/api/v1/pools/ab/backends/${encodeURIComponent(A())}/weight`;
    assert.equal((await adminHttp(admin, 'POST', path, { body: { weight: 1 } })).status, 401);
    for (const body of [{ weight: -1 }, { weight: 1001 }, { weight: 1.5 }, { weight: '2' }, {}, 'not json']) {
      const r = await adminHttp(admin, 'POST', path, { token: TOKEN, body });
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(typeof (JSON.parse(r.body) as { error: string }).error, 'string');
    }
    assert.equal((await adminHttp(admin, 'POST', `/api/v1/pools/ab/backends/${encodeURIComponent('10.9.9.9:1')}/weight`, { token: TOKEN, body: { weight: 1 } })).status, 404);
    assert.equal((await adminHttp(admin, 'POST', '/api/v1/pools/nope/backends/1.2.3.4%3A5/weight', { token: TOKEN, body: { weight: 1 } })).status, 404);
  });

  test('weight 0 takes A out of new connections; weight 3 gives it three in four', async () => {
    const port = await lb.port('ab');
    const path = `/api/v1/pools/ab/backends/${encodeURIComponent(A())}/weight`;
    const r0 = await adminJson<{ address: string; weight: number; state: string }>(admin, 'POST', path, { token: TOKEN, body: { weight: 0 } });
    assert.equal(r0.address, A());
    assert.equal(r0.weight, 0);
    assert.equal(r0.state, 'up');
    const t0 = await tags(port, 12);
    assert.deepEqual([...new Set(t0)], ['B'], t0.join(''));
    const r3 = await adminJson<{ weight: number }>(admin, 'POST', path, { token: TOKEN, body: { weight: 3 } });
    assert.equal(r3.weight, 3);
    const t3 = await tags(port, 40);
    // Smooth weighted round robin: exactly 3 A for each B.
    assert.equal(t3.filter((t) => t === 'A').length, 30, t3.join(''));
    assert.equal(t3.filter((t) => t === 'B').length, 10, t3.join(''));
    await adminJson(admin, 'POST', path, { token: TOKEN, body: { weight: 1 } });
    const s = await backendOf(admin, 'ab', A());
    assert.equal(s?.weight, 1);
  });

  test('GET /api/v1/connections lists open connections with filters and limit; shutdown-connections resets them', async () => {
    const port = await lb.port('one');
    const open: net.Socket[] = [];
    for (let i = 0; i < 3; i++) {
      const c = await connect(port);
      c.write('x'.repeat(10 + i));
      await readBytes(c, 10 + i);
      open.push(c);
    }
    const all = await adminJson<{ connections: Conn[] }>(admin, 'GET', '/api/v1/connections?pool=one');
    assert.equal(all.connections.length, 3);
    for (const c of all.connections) {
      assert.equal(c.listener, 'one');
      assert.equal(c.protocol, 'tcp');
      assert.equal(c.pool, 'one');
      assert.equal(c.backend, E());
      assert.match(c.client, /^127\.0\.0\.1:\d+$/);
      assert.ok(c.age_ms >= 0);
    }
    const clientPorts = open.map((c) => `127.0.0.1:${c.localPort}`).sort();
    assert.deepEqual(all.connections.map((c) => c.client).sort(), clientPorts);
    await waitFor(async () => {
      const l = await adminJson<{ connections: Conn[] }>(admin, 'GET', '/api/v1/connections?pool=one');
      return l.connections.map((c) => c.bytes_in).sort().join() === '10,11,12' && l.connections.map((c) => c.bytes_out).sort().join() === '10,11,12';
    }, 5000, 'bytes of open connections');
    // Oldest first.
    const ages = all.connections.map((c) => c.age_ms);
    assert.deepEqual(ages, [...ages].sort((x, y) => y - x));
    assert.equal((await adminJson<{ connections: Conn[] }>(admin, 'GET', '/api/v1/connections?pool=one&limit=2')).connections.length, 2);
    assert.equal((await adminJson<{ connections: Conn[] }>(admin, 'GET', `/api/v1/connections?backend=${encodeURIComponent(E())}`)).connections.length, 3);
    assert.equal((await adminJson<{ connections: Conn[] }>(admin, 'GET', '/api/v1/connections?listener=ab')).connections.length, 0);
    assert.equal((await adminHttp(admin, 'GET', '/api/v1/connections?limit=0')).status, 400);

    const path = `/api/v1/pools/one/backends/${encodeURIComponent(E())}/shutdown-connections`;
    assert.equal((await adminHttp(admin, 'POST', path)).status, 401);
    assert.equal((await adminHttp(admin, 'POST', '/api/v1/pools/one/backends/10.9.9.9%3A1/shutdown-connections', { token: TOKEN })).status, 404);
    const ends = open.map((c) => endOf(c));
    const r = await adminJson<{ closed: number }>(admin, 'POST', path, { token: TOKEN });
    assert.equal(r.closed, 3);
    for (const e of await Promise.all(ends)) assert.ok(e === 'reset' || e === 'close', e);
    await waitFor(() => lb.logs.filter((l) => l.msg === 'connection closed' && l.listener === 'one' && l.termination === 'admin_shutdown').length === 3, 5000, 'three admin_shutdown lines');
    await waitFor(async () => (await backendOf(admin, 'one', E()))?.active_connections === 0, 5000, 'no connection left');
    assert.equal((await adminJson<{ closed: number }>(admin, 'POST', path, { token: TOKEN })).closed, 0);
  });

  test('`connection closed` carries connect_ms, retries and who closed first', async () => {
    const c = await connect(await lb.port('one'));
    c.end('hi');
    assert.equal((await readAll(c)).toString(), 'hi');
    const line = await lb.waitForLog((l) => l.msg === 'connection closed' && l.listener === 'one' && l.termination === 'client_fin', 5000, 'client_fin line');
    assert.equal(typeof line.connect_ms, 'number');
    assert.ok((line.connect_ms as number) >= 0 && (line.connect_ms as number) < 5000);
    assert.equal(line.retries, 0);
    assert.equal(line.backend, E());
    assert.equal(line.bytes_in, 2);
    assert.equal(line.bytes_out, 2);
    assert.equal(typeof line.duration_ms, 'number');

    const d = await connect(await lb.port('bye'));
    const ended = readAll(d);
    assert.equal((await ended).toString(), 'bye\n'); // the backend's FIN has arrived
    d.end();
    const l2 = await lb.waitForLog((l) => l.msg === 'connection closed' && l.listener === 'bye', 5000, 'bye line');
    assert.equal(l2.termination, 'backend_fin');
  });

  test('refused connections are logged without connection_log noise: `connections rejected` with a count, at most once a second', async () => {
    const port = await lb.port('acl');
    for (let i = 0; i < 5; i++) {
      const c = net.connect({ port, host: '127.0.0.1' });
      await endOf(c);
    }
    const line = await lb.waitForLog((l) => l.msg === 'connections rejected' && l.listener === 'acl', 5000, 'connections rejected');
    assert.equal(line.level, 'warn');
    assert.equal(line.reason, 'acl');
    const lines = (): number => lb.logs.filter((l) => l.msg === 'connections rejected' && l.listener === 'acl').length;
    // All five fall into one or two one-second windows; the counts add up.
    await waitFor(() => lb.logs.filter((l) => l.msg === 'connections rejected' && l.listener === 'acl').reduce((n, l) => n + (l.count as number), 0) === 5, 5000, 'counts add up to 5');
    assert.ok(lines() <= 2, `${lines()} lines`);
  });

  test('draining the only backend: `pool has no backend up` (error) then `pool has backends up` on enable', async () => {
    const path = (what: string): string => `/api/v1/pools/bye/backends/${encodeURIComponent(`127.0.0.1:${bye.port}`)}/${what}`;
    await adminJson(admin, 'POST', path('drain'), { token: TOKEN });
    const down = await lb.waitForLog((l) => l.msg === 'pool has no backend up' && l.pool === 'bye', 5000, 'pool has no backend up');
    assert.equal(down.level, 'error');
    await adminJson(admin, 'POST', path('drain'), { token: TOKEN }); // no second line for the same state
    await adminJson(admin, 'POST', path('enable'), { token: TOKEN });
    const up = await lb.waitForLog((l) => l.msg === 'pool has backends up' && l.pool === 'bye', 5000, 'pool has backends up');
    assert.equal(up.level, 'info');
    assert.equal(lb.logs.filter((l) => l.msg === 'pool has no backend up' && l.pool === 'bye').length, 1);
  });

  test('metrics: backend state, per-backend bytes, connect-time and duration histograms', async () => {
    const c = await connect(await lb.port('one'));
    c.end('12345');
    await readAll(c);
    let m = '';
    const be = { pool: 'one', backend: E() };
    await waitFor(async () => {
      m = (await adminHttp(admin, 'GET', '/metrics')).body;
      const count = sample(m, 'l4lb_connection_duration_seconds_count', { listener: 'one' }) ?? 0;
      return count >= 5;
    }, 5000, 'five finished connections on "one"');
    assert.match(m, /# TYPE l4lb_backend_state gauge/);
    assert.equal(sample(m, 'l4lb_backend_state', { ...be, state: 'up' }), 1);
    for (const st of ['down', 'draining', 'removed']) assert.equal(sample(m, 'l4lb_backend_state', { ...be, state: st }), 0);
    assert.match(m, /# TYPE l4lb_backend_bytes_total counter/);
    // 33 bytes in the listing test, 2 + 5 here, each echoed.
    assert.equal(sample(m, 'l4lb_backend_bytes_total', { ...be, direction: 'client_to_backend' }), 40);
    assert.equal(sample(m, 'l4lb_backend_bytes_total', { ...be, direction: 'backend_to_client' }), 40);
    assert.match(m, /# TYPE l4lb_backend_connect_duration_seconds histogram/);
    const connects = sample(m, 'l4lb_backend_connect_duration_seconds_count', be);
    assert.equal(connects, 5);
    assert.equal(sample(m, 'l4lb_backend_connect_duration_seconds_bucket', { ...be, le: '+Inf' }), 5);
    // Loopback connects take well under a second.
    assert.equal(sample(m, 'l4lb_backend_connect_duration_seconds_bucket', { ...be, le: '1' }), 5);
    assert.ok((sample(m, 'l4lb_backend_connect_duration_seconds_sum', be) ?? -1) >= 0);
    assert.match(m, /# TYPE l4lb_connection_duration_seconds histogram/);
    assert.equal(sample(m, 'l4lb_connection_duration_seconds_bucket', { listener: 'one', le: '+Inf' }), sample(m, 'l4lb_connection_duration_seconds_count', { listener: 'one' }));
    // Buckets are cumulative.
    const b1 = sample(m, 'l4lb_connection_duration_seconds_bucket', { listener: 'one', le: '0.1' }) ?? 0;
    const b2 = sample(m, 'l4lb_connection_duration_seconds_bucket', { listener: 'one', le: '1' }) ?? 0;
    assert.ok(b1 <= b2);
    // The status document has the per-backend bytes too.
    const s = await backendOf(admin, 'one', E());
    assert.equal(s?.bytes_in, 40);
  });
});

describe('connection progress, reload changes, removed backends', () => {
  let echo: TestServer;
  let other: TestServer;
  before(async () => {
    echo = await startEchoServer();
    other = await startEchoServer();
  });
  after(async () => {
    await echo.close();
    await other.close();
  });

  test('`connection progress` every connection_log_interval for a long-lived connection', async () => {
    const lb = new L4lbProcess(`[global]\nconnection_log_interval = "200ms"\n` + listenerToml('p', 'p') + poolToml('p', 'round-robin', [`{ address = "127.0.0.1:${echo.port}" }`]));
    try {
      const c = await connect(await lb.port('p'));
      c.write('abc');
      await readBytes(c, 3);
      const first = await lb.waitForLog((l) => l.msg === 'connection progress', 5000, 'connection progress');
      assert.equal(first.listener, 'p');
      assert.equal(first.backend, `127.0.0.1:${echo.port}`);
      assert.equal(first.bytes_in, 3);
      assert.equal(first.bytes_out, 3);
      assert.ok((first.duration_ms as number) >= 200);
      await waitFor(() => lb.logs.filter((l) => l.msg === 'connection progress').length >= 2, 5000, 'a second progress line');
      c.destroy();
    } finally {
      await lb.stop();
    }
  });

  test('`config reloaded` lists the changes and what needs a restart; a removed backend with a connection is `removed` until it ends', async () => {
    const cfg = (workers: number, backends: string[], extraListener = ''): string =>
      `[global]\nworkers = ${workers}\n[admin]\nbind = "127.0.0.1:0"\n` + listenerToml('p', 'p') + extraListener + poolToml('p', 'round-robin', backends);
    const E = `127.0.0.1:${echo.port}`;
    const O = `127.0.0.1:${other.port}`;
    const lb = new L4lbProcess(cfg(1, [`{ address = "${E}" }`, `{ address = "${O}" }`]));
    try {
      const admin = await adminPortOf(lb);
      const port = await lb.port('p');
      // One connection on each backend (round robin).
      const held: net.Socket[] = [await connect(port), await connect(port)];
      for (const c of held) {
        c.write('1');
        await readBytes(c, 1);
      }
      await waitFor(async () => (await backendOf(admin, 'p', O))?.active_connections === 1, 5000, 'a connection on O');
      lb.writeConfig(cfg(2, [`{ address = "${E}", weight = 2 }`], listenerToml('q', 'p')));
      const r = await adminJson<{ config_generation: number }>(admin, 'POST', '/api/v1/reload');
      assert.equal(r.config_generation, 2);
      const line = await lb.waitForLog((l) => l.msg === 'config reloaded', 5000, 'config reloaded');
      assert.deepEqual(line.changes, {
        listeners: { added: ['q'], removed: [], changed: [] },
        pools: { added: [], removed: [], changed: ['p'] },
        backends: { added: [], removed: [`p/${O}`], changed: [`p/${E}`] },
      });
      assert.deepEqual(line.restart_required, ['workers']);
      const warn = await lb.waitForLog((l) => l.msg === 'restart required', 5000, 'restart required');
      assert.equal(warn.level, 'warn');
      assert.deepEqual(warn.restart_required, ['workers']);
      const gone = await lb.waitForLog((l) => l.msg === 'backend state changed' && l.to === 'removed', 5000, 'state changed to removed');
      assert.equal(gone.level, 'warn');
      assert.equal(gone.backend, O);
      assert.equal(gone.from, 'up');
      assert.equal(gone.active_connections, 1);

      const removed = await backendOf(admin, 'p', O);
      assert.equal(removed?.state, 'removed');
      assert.equal(removed?.active_connections, 1);
      let m = (await adminHttp(admin, 'GET', '/metrics')).body;
      assert.equal(sample(m, 'l4lb_backend_state', { pool: 'p', backend: O, state: 'removed' }), 1);
      assert.equal(sample(m, 'l4lb_backend_connections_active', { pool: 'p', backend: O }), 1);
      // The listener's gauge and the backends' sum agree.
      const st = await adminJson<Status>(admin, 'GET', '/api/v1/status');
      const sum = st.pools.find((p) => p.name === 'p')!.backends.reduce((n, x) => n + x.active_connections, 0);
      assert.equal(sum, st.listeners.find((l) => l.name === 'p')!.active_connections);
      // The held connection to O still works; when it ends, O is gone.
      const toO = (await adminJson<{ connections: Conn[] }>(admin, 'GET', `/api/v1/connections?backend=${encodeURIComponent(O)}`)).connections;
      assert.equal(toO.length, 1);
      const c = held.find((h) => `127.0.0.1:${h.localPort}` === toO[0]!.client)!;
      c.write('2');
      assert.equal((await readBytes(c, 1)).toString(), '2');
      c.destroy();
      await waitFor(async () => (await backendOf(admin, 'p', O)) === undefined, 5000, 'removed backend gone after its last connection');
      m = (await adminHttp(admin, 'GET', '/metrics')).body;
      assert.equal(sample(m, 'l4lb_backend_state', { pool: 'p', backend: O, state: 'removed' }), undefined);
      for (const h of held) h.destroy();
    } finally {
      await lb.stop();
    }
  });
});

describe('start failed', () => {
  test('an address in use: a JSON `start failed` line naming the listener, the one-line reason on stderr, exit 1', async () => {
    const holder = net.createServer();
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', () => r()));
    const port = (holder.address() as net.AddressInfo).port;
    const lb = new L4lbProcess(listenerToml('free', 'p') + listenerToml('busy', 'p').replace('127.0.0.1:0', `127.0.0.1:${port}`) + poolToml('p', 'random', ['{ address = "127.0.0.1:9" }']));
    try {
      assert.equal(await lb.waitExit(), 1);
      const line = lb.logs.find((l) => l.msg === 'start failed');
      assert.ok(line, JSON.stringify(lb.logs));
      assert.equal(line.level, 'error');
      assert.equal(line.listener, 'busy');
      assert.equal(line.port, port);
      assert.equal(lb.logs[0]!.msg, 'starting');
      assert.match(lb.stderr.trim(), /listener busy: cannot bind 127\.0\.0\.1:\d+: address already in use/);
      assert.equal(lb.stderr.trim().split('\n').length, 1);
    } finally {
      await lb.stop();
      holder.close();
    }
  });
});

describe('--reload', () => {
  let echo: TestServer;
  before(async () => {
    echo = await startEchoServer();
  });
  after(async () => {
    await echo.close();
  });

  test('exits 0 when the instance reloads, 78 with the errors for an invalid file, 1 when no instance answers', async () => {
    // A fixed admin port is needed for --reload to find the instance: take a free one.
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
    const adminPort = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const good = `[admin]\nbind = "127.0.0.1:${adminPort}"\ntoken = "${TOKEN}"\n` + listenerToml('p', 'p') + poolToml('p', 'random', [`{ address = "127.0.0.1:${echo.port}" }`]);
    const lb = new L4lbProcess(good);
    try {
      await adminPortOf(lb);
      const ok = await runCli(['-c', lb.configPath, '--reload']);
      assert.equal(ok.code, 0, ok.stderr);
      assert.match(ok.stdout, /reloaded: configuration generation 2/);
      await lb.waitForLog((l) => l.msg === 'config reloaded' && l.config_generation === 2, 5000, 'reloaded by --reload');

      lb.writeConfig(good.replace('[[listeners]]', '[[listeners]]\nbogus = 1'));
      const bad = await runCli(['-c', lb.configPath, '--reload']);
      assert.equal(bad.code, 78);
      assert.match(bad.stderr, /listeners\[0\]\.bogus/);

      // The instance refuses a file that only it finds wrong (its bind is taken): 78 with its errors.
      const holder = net.createServer();
      await new Promise<void>((r) => holder.listen(0, '127.0.0.1', () => r()));
      const busy = (holder.address() as net.AddressInfo).port;
      try {
        lb.writeConfig(good + listenerToml('q', 'p').replace('127.0.0.1:0', `127.0.0.1:${busy}`));
        const refused = await runCli(['-c', lb.configPath, '--reload']);
        assert.equal(refused.code, 78, refused.stderr);
        assert.match(refused.stderr, /address already in use/);
      } finally {
        holder.close();
      }
    } finally {
      await lb.stop();
    }
    // Nobody listens on the admin port any more.
    const cfg = tempConfig(good);
    try {
      const none = await runCli(['-c', cfg.path, '--reload']);
      assert.equal(none.code, 1);
      assert.match(none.stderr, /no l4lb answers/);
      const noAdmin = tempConfig(listenerToml('p', 'p') + poolToml('p', 'random', [`{ address = "127.0.0.1:${echo.port}" }`]));
      try {
        const r = await runCli(['-c', noAdmin.path, '--reload']);
        assert.equal(r.code, 1);
        assert.match(r.stderr, /no \[admin\]/);
      } finally {
        noAdmin.cleanup();
      }
    } finally {
      cfg.cleanup();
    }
  });
});

describe('termination with the JS pump (splice = "off")', () => {
  let echo: TestServer;
  let bye: TestServer;
  let lb: L4lbProcess;
  before(async () => {
    echo = await startEchoServer();
    bye = await startServer((s) => s.end('bye\n'));
    lb = new L4lbProcess(
      `[global]\nsplice = "off"\nconnection_log = true\n` +
        listenerToml('one', 'one') +
        listenerToml('bye', 'bye') +
        poolToml('one', 'round-robin', [`{ address = "127.0.0.1:${echo.port}" }`]) +
        poolToml('bye', 'round-robin', [`{ address = "127.0.0.1:${bye.port}" }`]),
    );
  });
  after(async () => {
    await lb.stop();
    await echo.close();
    await bye.close();
  });

  test('client_fin, backend_fin and client_reset', async () => {
    const c = await connect(await lb.port('one'));
    c.end('hi');
    await readAll(c);
    const l1 = await lb.waitForLog((l) => l.msg === 'connection closed' && l.listener === 'one', 5000, 'one closed');
    assert.equal(l1.termination, 'client_fin');
    assert.equal(l1.pump, 'js');
    const d = await connect(await lb.port('bye'));
    assert.equal((await readAll(d)).toString(), 'bye\n');
    d.end();
    const l2 = await lb.waitForLog((l) => l.msg === 'connection closed' && l.listener === 'bye', 5000, 'bye closed');
    assert.equal(l2.termination, 'backend_fin');
    const r = await connect(await lb.port('one'));
    r.write('x');
    await readBytes(r, 1);
    r.resetAndDestroy();
    const l3 = await lb.waitForLog((l) => l.msg === 'connection closed' && l.listener === 'one' && l !== l1, 5000, 'reset closed');
    assert.equal(l3.termination, 'client_reset');
  });
});
