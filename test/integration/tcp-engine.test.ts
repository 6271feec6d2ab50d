/**
 * The native TCP engine (src/tcp/engine.ts, native/src/engine_tcp.cc): the
 * addon accepts, connects and splices; TypeScript decides. What the shared
 * TCP suites (tcp.test.ts, edges.test.ts, run on both paths) do not cover:
 * fds back to baseline after many connections, client resets racing the
 * handoff, connect timeout and retries in the engine, refusals before any
 * backend socket exists, a backend that writes and resets at once, a
 * listener removed by a reload, running out of fds (the engine keeps the
 * reserve; an accept that fails waits in the backlog), and workers = 2 with
 * a worker killed.
 *
 * Skipped, with the reason, where the addon or its engine is not available.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { startServer, startEchoServer, connect, readBytes, readAll, endOf, waitFor, deadPort, withTimeout, type TestServer } from '../helpers/net';
import { L4lbProcess, type LogLine } from '../helpers/l4lb';
import { listenerToml, poolToml } from '../helpers/toml';
import { adminHttp, adminPortOf, sample } from '../helpers/admin';
import { startBlackhole, type Blackhole } from '../helpers/blackhole';
import { workerPids, ownerOf } from '../helpers/cluster';
import { tcpEngineInfo } from '../../src/tcp/engine';
import { wasReset } from '../../src/native/addon';

const engine = process.platform === 'linux' ? tcpEngineInfo() : { ok: false, reason: `platform ${process.platform}` };
const skip = engine.ok ? false : `native TCP engine not available: ${engine.reason}`;

/** Open sockets and all fds of a process. */
function fds(pid: number): { sockets: number; all: number } {
  let sockets = 0;
  let all = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    all++;
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:')) sockets++;
    } catch {
      // closed meanwhile
    }
  }
  return { sockets, all };
}

async function metrics(admin: number): Promise<string> {
  return (await adminHttp(admin, 'GET', '/metrics')).body;
}

function closedLines(lb: L4lbProcess, listener: string): LogLine[] {
  return lb.logs.filter((l) => l.msg === 'connection closed' && l.listener === listener);
}

/** `n` connections, `parallel` at a time, each: write a byte, read it back, end; within `budgetMs`. Returns how many ran. */
async function churn(port: number, n: number, parallel: number, budgetMs: number): Promise<number> {
  const deadline = Date.now() + budgetMs;
  let started = 0;
  let done = 0;
  const one = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const s = net.connect({ port, host: '127.0.0.1' });
      s.once('connect', () => s.write('x'));
      s.once('data', () => s.end());
      s.once('error', reject);
      s.once('close', () => resolve());
      s.resume();
    });
  const lane = async (): Promise<void> => {
    while (started < n && Date.now() < deadline) {
      started++;
      await withTimeout(one(), 10000, 'one connection');
      done++;
    }
  };
  await Promise.all(Array.from({ length: parallel }, lane));
  return done;
}

describe('native TCP engine', { skip }, () => {
  let echo: TestServer;
  let counted: TestServer;
  let resetter: TestServer;
  let lb: L4lbProcess;
  let admin: number;

  before(async () => {
    echo = await startEchoServer();
    counted = await startEchoServer();
    // Writes a greeting and resets at once, before the client sent anything.
    resetter = await startServer((s) => {
      s.write('hello from a dying backend');
      s.resetAndDestroy();
    });
    lb = new L4lbProcess(
      `[global]\nsplice = "on"\nconnection_log = true\n[admin]\nbind = "127.0.0.1:0"\n` +
        listenerToml('e', 'echo') +
        listenerToml('deny', 'counted', 'deny = ["127.0.0.0/8"]') +
        listenerToml('one', 'counted', 'max_connections = 1') +
        listenerToml('rst', 'rst') +
        poolToml('echo', 'round-robin', [`{ address = "127.0.0.1:${echo.port}" }`]) +
        poolToml('counted', 'round-robin', [`{ address = "127.0.0.1:${counted.port}" }`]) +
        poolToml('rst', 'round-robin', [`{ address = "127.0.0.1:${resetter.port}" }`]),
    );
    admin = await adminPortOf(lb);
    for (const name of ['e', 'deny', 'one', 'rst']) await lb.port(name);
  });
  after(async () => {
    await lb.stop();
    await echo.close();
    await counted.close();
    await resetter.close();
  });

  test('the byte pump line names the native engine', async () => {
    const line = await lb.waitForLog((l) => l.msg === 'byte pump');
    assert.equal(line.tcp_engine, 'native');
    assert.equal(line.pump, 'splice');
  });

  test('no fd leak: sockets back to their baseline after 100,000 connections', async (t) => {
    // Its own l4lb, without a log line per connection (100,000 lines would cost the test more than the engine).
    const quiet = new L4lbProcess(`[global]\nsplice = "on"\n[admin]\nbind = "127.0.0.1:0"\n` + listenerToml('e', 'echo') + poolToml('echo', 'round-robin', [`{ address = "127.0.0.1:${echo.port}" }`]));
    try {
      const qadmin = await adminPortOf(quiet);
      const port = await quiet.port('e');
      const pid = quiet.child.pid!;
      await churn(port, 500, 16, 20000); // warm-up: pipe pool, slab, JIT
      await waitFor(async () => sample(await metrics(qadmin), 'l4lb_connections_active', { listener: 'e' }) === 0, 5000, 'warm-up drained');
      const base = fds(pid);
      const t0 = Date.now();
      const N = 100_000;
      const n = await churn(port, N, 64, 300_000);
      t.diagnostic(`${n} connections in ${Date.now() - t0} ms`);
      assert.equal(n, N, `only ${n} of ${N} connections ran within 300 s`);
      await waitFor(() => fds(pid).sockets <= base.sockets, 10000, `sockets back to ${base.sockets}`);
      // Pipes are pooled (at most 256 pairs): the total may differ by those only.
      assert.ok(fds(pid).all <= base.all + 512, `fds ${fds(pid).all} against ${base.all}`);
      // The engine closes a connection's sockets before its end report reaches
      // JS (reports are batched per epoll turn): the counters follow shortly.
      await waitFor(async () => sample(await metrics(qadmin), 'l4lb_connections_active', { listener: 'e' }) === 0, 5000, 'no connection active');
      assert.equal(sample(await metrics(qadmin), 'l4lb_connections_total', { listener: 'e' }), N + 500, 'every connection counted once');
    } finally {
      await quiet.stop();
    }
  });

  test('small messages are copied, not spliced; a client that stops reading makes them wait in order (sha256 both ways)', async (t) => {
    // 80 MB in messages of 1 to 4,000 bytes (the engine copies what is
    // under 16 KiB a read), more than every socket and pipe buffer on the
    // way can hold. The client reads nothing until its own writes stall:
    // then every buffer is full, so the engine's sends to the client came
    // back short and what it had read waits in the pipe, to go on in order
    // with what is read after it.
    const port = await lb.port('e');
    const s = await connect(port);
    s.pause();
    const sent = createHash('sha256');
    const got = createHash('sha256');
    let total = 0;
    let seed = 7;
    const rnd = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
    for (let i = 0; i < 40_000; i++) {
      const m = Buffer.alloc(1 + (rnd() % 4000), i % 251);
      sent.update(m);
      total += m.length;
      s.write(m);
    }
    let last = -1;
    await waitFor(
      () => {
        const stalled = s.writableLength > 0 && s.writableLength === last;
        last = s.writableLength;
        return stalled;
      },
      20000,
      'the writes stall (nothing read)',
      100,
    );
    let received = 0;
    s.on('data', (d: Buffer) => {
      got.update(d);
      received += d.length;
    });
    s.resume();
    await waitFor(() => received >= total, 30000, `${total} bytes echoed (got ${received})`);
    s.destroy();
    assert.equal(received, total);
    assert.equal(got.digest('hex'), sent.digest('hex'), 'the echo is the bytes sent, in order');
    t.diagnostic(`${total} bytes in 40,000 messages; ${total - last} written before the writes stalled`);
  });

  test('thousands of client resets racing the handoff: all counted, nothing leaks, service goes on', async () => {
    const port = await lb.port('e');
    const pid = lb.child.pid!;
    const before = sample(await metrics(admin), 'l4lb_connections_total', { listener: 'e' }) ?? 0;
    const base = fds(pid);
    const N = 3000;
    let i = 0;
    const lane = async (): Promise<void> => {
      while (i < N) {
        i++;
        await withTimeout(
          new Promise<void>((resolve) => {
            const s = net.connect({ port, host: '127.0.0.1' });
            s.on('error', () => {});
            // Half of them send a byte first: the reset then races bytes in flight too.
            s.once('connect', () => {
              if (i % 2 === 0) s.write('x');
              s.resetAndDestroy();
            });
            s.once('close', () => resolve());
          }),
          10000,
          'connect + reset',
        );
      }
    };
    await Promise.all(Array.from({ length: 32 }, lane));
    await waitFor(async () => (sample(await metrics(admin), 'l4lb_connections_total', { listener: 'e' }) ?? 0) >= before + N, 10000, `connections_total + ${N}`);
    await waitFor(async () => sample(await metrics(admin), 'l4lb_connections_active', { listener: 'e' }) === 0, 10000, 'no connection left open');
    assert.equal(sample(await metrics(admin), 'l4lb_connections_total', { listener: 'e' }), before + N, 'each reset connection counted once');
    await waitFor(() => fds(pid).sockets <= base.sockets, 10000, `sockets back to ${base.sockets}`);
    const c = await connect(port);
    c.write('still here');
    assert.equal((await readBytes(c, 10)).toString(), 'still here');
    c.end();
  });

  test('refused by ACL and by max_connections before any backend socket exists', async () => {
    const acceptedBefore = counted.accepted;
    const m0 = await metrics(admin);
    const denyPort = await lb.port('deny');
    for (let k = 0; k < 5; k++) {
      const c = await connect(denyPort);
      await endOf(c); // closed by l4lb (a timeout here fails the test)
    }
    const onePort = await lb.port('one');
    const held = await connect(onePort);
    held.write('a');
    await readBytes(held, 1);
    const refused = await connect(onePort);
    await endOf(refused); // closed by l4lb
    await waitFor(async () => (sample(await metrics(admin), 'l4lb_connections_rejected_total', { listener: 'one', reason: 'limit' }) ?? 0) >= 1, 5000, 'limit refusal counted');
    const m1 = await metrics(admin);
    assert.equal((sample(m1, 'l4lb_connections_rejected_total', { listener: 'deny', reason: 'acl' }) ?? 0) - (sample(m0, 'l4lb_connections_rejected_total', { listener: 'deny', reason: 'acl' }) ?? 0), 5);
    // The backend saw the held connection only.
    assert.equal(counted.accepted - acceptedBefore, 1, 'the backend saw no refused connection');
    held.end();
    await readAll(held);
  });

  test('a backend that writes and resets at once: its bytes reach the client, then its reset', async () => {
    const port = await lb.port('rst');
    // The engine is quick: the backend's bytes and reset can reach this
    // Node client before libuv reports its own connect (which then fails
    // with ECONNRESET). Try until one client sees the connection open.
    let seen: { data: string; end: string } | null = null;
    let attempts = 0;
    for (; attempts < 20 && seen === null; attempts++) {
      seen = await withTimeout(
        new Promise<{ data: string; end: string } | null>((resolve) => {
          const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
          let opened = false;
          const chunks: Buffer[] = [];
          c.once('connect', () => (opened = true));
          c.on('data', (d: Buffer) => chunks.push(d));
          // A Node client may see a reset that arrives with the last bytes as EOF: the kernel tells.
          c.once('end', () => {
            const reset = wasReset((c as unknown as { _handle?: { fd?: number } | null })._handle?.fd ?? -1) === true;
            c.destroy();
            resolve({ data: Buffer.concat(chunks).toString(), end: reset ? 'reset' : 'eof' });
          });
          c.once('error', () => resolve(opened ? { data: Buffer.concat(chunks).toString(), end: 'reset' } : null));
        }),
        5000,
        'the end of the connection',
      );
    }
    assert.ok(seen !== null, 'a client connected');
    assert.equal(seen.data, 'hello from a dying backend');
    assert.equal(seen.end, 'reset');
    await waitFor(() => closedLines(lb, 'rst').length >= attempts, 5000, 'every connection logged');
    for (const line of closedLines(lb, 'rst')) {
      assert.equal(line.termination, 'backend_reset');
      assert.equal(line.bytes_out, 26, 'the greeting was delivered to the client socket');
    }
  });

  test('keepalive and TCP_NODELAY as node:net sets them: the client side at once (inherited), the backend side within ~1 s', async (t) => {
    if (spawnSync('ss', ['-V']).status !== 0) {
      t.skip('ss (iproute2) not installed');
      return;
    }
    const port = await lb.port('e');
    const c = await connect(port);
    c.write('k');
    await readBytes(c, 1);
    // The kernel shows a keepalive timer on a socket with SO_KEEPALIVE set.
    const timers = (filter: string): string => spawnSync('ss', ['-tnoH', 'state', 'established', filter], { encoding: 'utf8' }).stdout;
    assert.match(timers(`( sport = :${port} and dport = :${c.localPort} )`), /timer:\(keepalive/, 'client side: inherited from the listening socket');
    await waitFor(() => /timer:\(keepalive/.test(timers(`( dport = :${echo.port} )`)), 5000, 'backend side keepalive');
    c.destroy();
  });

  test('admin: listed while open, shut down by backend', async () => {
    const port = await lb.port('e');
    const c = await connect(port);
    const client = `127.0.0.1:${c.localPort}`;
    c.write('abc');
    await readBytes(c, 3);
    const rows = (JSON.parse((await adminHttp(admin, 'GET', '/api/v1/connections?listener=e')).body) as { connections: { bytes_in: number; client: string }[] }).connections;
    const mine = rows.find((r) => r.client === client);
    assert.ok(mine !== undefined, 'the open connection is listed');
    assert.equal(mine.bytes_in, 3);
    const ended = endOf(c);
    const r = await adminHttp(admin, 'POST', `/api/v1/pools/echo/backends/127.0.0.1:${echo.port}/shutdown-connections`);
    assert.equal(r.status, 200);
    assert.equal(await ended, 'reset');
    // (Earlier connections may have used the same client port: the line of this one is the admin_shutdown one.)
    const line = await lb.waitForLog((l) => l.msg === 'connection closed' && l.listener === 'e' && l.client === client && l.termination === 'admin_shutdown', 5000);
    assert.equal(line.bytes_in, 3);
    assert.equal(line.bytes_out, 3);
  });
});

describe('native TCP engine: connect timeout and retries', { skip }, () => {
  let echo: TestServer;
  let hole: Blackhole;
  let lb: L4lbProcess;
  let admin: number;

  before(async () => {
    echo = await startEchoServer();
    hole = await startBlackhole();
    const dead = await deadPort();
    lb = new L4lbProcess(
      `[global]\nsplice = "on"\nconnection_log = true\n[admin]\nbind = "127.0.0.1:0"\n` +
        listenerToml('hole', 'hole', 'connect_timeout = "300ms"') +
        listenerToml('retry', 'retry', 'connect_timeout = "300ms"') +
        poolToml('hole', 'round-robin', [`{ address = "127.0.0.1:${hole.port}" }`], 'retries = 0') +
        poolToml('retry', 'round-robin', [`{ address = "127.0.0.1:${hole.port}" }`, `{ address = "127.0.0.1:${dead}" }`, `{ address = "127.0.0.1:${echo.port}" }`], 'retries = 2'),
    );
    admin = await adminPortOf(lb);
    await lb.port('hole');
    await lb.port('retry');
  });
  after(async () => {
    await lb.stop();
    await echo.close();
    await hole.close();
  });

  test('connect_timeout is enforced in the engine', async () => {
    const c = await connect(await lb.port('hole'));
    const t0 = Date.now();
    await endOf(c);
    const took = Date.now() - t0;
    assert.ok(took >= 200 && took < 3000, `closed after ${took} ms`);
    const line = await lb.waitForLog((l) => l.msg === 'connection closed' && l.listener === 'hole', 5000);
    assert.equal(line.reason, 'connect_failed');
    assert.equal(line.termination, 'connect_failed');
    const m = await metrics(admin);
    assert.equal(sample(m, 'l4lb_backend_connect_failures_total', { pool: 'hole', backend: `127.0.0.1:${hole.port}` }), 1);
  });

  test('retries: a timed-out and a refused backend are passed over for the next one', async () => {
    const port = await lb.port('retry');
    for (let k = 0; k < 6; k++) {
      const c = await connect(port);
      c.write(`r${k}`);
      assert.equal((await readBytes(c, 2, 5000)).toString(), `r${k}`);
      c.end();
      await readAll(c);
    }
    await waitFor(() => closedLines(lb, 'retry').length >= 6, 5000, 'six connections logged');
    const retries = closedLines(lb, 'retry').map((l) => l.retries as number);
    assert.ok(retries.every((r) => r >= 0 && r <= 2));
    assert.ok(retries.some((r) => r > 0), `retries seen: ${retries.join(',')}`);
    const m = await metrics(admin);
    const failures = (sample(m, 'l4lb_backend_connect_failures_total', { pool: 'retry', backend: `127.0.0.1:${hole.port}` }) ?? 0) + (sample(m, 'l4lb_backend_connect_failures_total', { pool: 'retry', backend: `127.0.0.1:${await deadPortOf(lb)}` }) ?? 0);
    assert.ok(failures >= 1, `connect failures counted: ${failures}`);
  });
});

/** The dead backend's port of the retry pool, from the status API. */
async function deadPortOf(lb: L4lbProcess): Promise<number> {
  const admin = await adminPortOf(lb);
  const st = JSON.parse((await adminHttp(admin, 'GET', '/api/v1/status')).body) as { pools: { name: string; backends: { address: string; connect_failures: number }[] }[] };
  const pool = st.pools.find((p) => p.name === 'retry');
  const addrs = (pool?.backends ?? []).map((b) => Number(b.address.split(':')[1]));
  return addrs[1] ?? 0;
}

describe('native TCP engine: a listener removed by a reload', { skip }, () => {
  test('accepting stops at once; its open connections live on', async () => {
    const echo = await startEchoServer();
    const pool = poolToml('p', 'round-robin', [`{ address = "127.0.0.1:${echo.port}" }`]);
    const lb = new L4lbProcess(`[global]\nsplice = "on"\n` + listenerToml('keep', 'p') + listenerToml('gone', 'p') + pool);
    try {
      const port = await lb.port('gone');
      const open = await connect(port);
      open.write('1');
      await readBytes(open, 1);
      lb.writeConfig(`[global]\nsplice = "on"\n` + listenerToml('keep', 'p') + pool);
      lb.signal('SIGHUP');
      await lb.waitForLog((l) => l.msg === 'config reloaded', 10000);
      await waitFor(
        () =>
          new Promise<boolean>((resolve) => {
            const s = net.connect({ port, host: '127.0.0.1' });
            s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED'));
            s.once('connect', () => {
              s.destroy();
              resolve(false);
            });
          }),
        3000,
        'the removed listener refuses connections',
      );
      open.write('2');
      assert.equal((await readBytes(open, 1)).toString(), '2', 'the open connection still carries bytes');
      open.end();
      assert.equal(await endOf(open), 'end');
    } finally {
      await lb.stop();
      await echo.close();
    }
  });
});

describe('native TCP engine: a reload that needs node:net for a kept listener', { skip }, () => {
  test('accept_proxy_protocol turned on and off again: the socket moves between node:net and the engine, never closed', async () => {
    const echo = await startEchoServer();
    const pool = poolToml('p', 'round-robin', [`{ address = "127.0.0.1:${echo.port}" }`]);
    const plain = `[global]\nsplice = "on"\nconnection_log = true\n` + listenerToml('x', 'p') + pool;
    const withProxy = `[global]\nsplice = "on"\nconnection_log = true\n` + listenerToml('x', 'p', 'accept_proxy_protocol = true') + pool;
    const lb = new L4lbProcess(plain);
    const reload = async (text: string): Promise<void> => {
      const n = lb.logs.filter((l) => l.msg === 'config reloaded').length;
      lb.writeConfig(text);
      lb.signal('SIGHUP');
      await waitFor(() => lb.logs.filter((l) => l.msg === 'config reloaded').length > n, 10000, 'reloaded');
    };
    const roundTrip = async (port: number, first: string): Promise<string> => {
      const c = await connect(port);
      c.write(`${first}ping`);
      const got = (await readBytes(c, 4)).toString();
      c.destroy();
      return got;
    };
    try {
      const port = await lb.port('x');
      const held = await connect(port);
      held.write('1');
      await readBytes(held, 1);
      assert.equal(await roundTrip(port, ''), 'ping');
      await reload(withProxy);
      // node:net reads the header now (the PROXY reader is JS): with a header it passes.
      assert.equal(await roundTrip(port, 'PROXY TCP4 10.1.2.3 10.0.0.1 1234 80\r\n'), 'ping');
      await waitFor(() => lb.logs.some((l) => l.msg === 'connection closed' && l.client === '10.1.2.3:1234'), 5000, 'the claimed address in the log');
      await reload(plain);
      assert.equal(await roundTrip(port, ''), 'ping');
      // The connection opened before both reloads still carries bytes.
      held.write('2');
      assert.equal((await readBytes(held, 1)).toString(), '2');
      held.destroy();
    } finally {
      await lb.stop();
      await echo.close();
    }
  });
});

describe('native TCP engine: out of file descriptors', { skip }, () => {
  test('300 held connections against a 256-fd limit: refused as resources by the engine path, the admin answers, service resumes', async (t) => {
    if (spawnSync('prlimit', ['--version']).status !== 0) {
      t.skip('prlimit (util-linux) not installed');
      return;
    }
    const echo = await startEchoServer();
    const lb = new L4lbProcess(`[global]\nsplice = "on"\n[admin]\nbind = "127.0.0.1:0"\n` + listenerToml('e', 'p') + poolToml('p', 'round-robin', [`{ address = "127.0.0.1:${echo.port}" }`]));
    const held: net.Socket[] = [];
    try {
      const port = await lb.port('e');
      const admin = await adminPortOf(lb);
      const r = spawnSync('prlimit', ['--pid', String(lb.child.pid), '--nofile=256:256'], { encoding: 'utf8' });
      assert.equal(r.status, 0, `prlimit: ${r.stderr}`);
      for (let i = 0; i < 300; i += 50) {
        await Promise.all(
          Array.from({ length: 50 }, async () => {
            const s = net.connect({ port, host: '127.0.0.1' });
            s.on('error', () => {});
            held.push(s);
            await withTimeout(new Promise((resolve) => (s.once('connect', resolve), s.once('close', resolve))), 5000, 'connect or close');
          }),
        );
      }
      await waitFor(async () => (sample(await metrics(admin), 'l4lb_connections_rejected_total', { listener: 'e', reason: 'resources' }) ?? 0) >= 50, 10000, 'resources refusals', 100);
      const st = await adminHttp(admin, 'GET', '/api/v1/status');
      assert.equal(st.status, 200, 'the admin endpoint answers during the flood');
      // The engine keeps the fd reserve itself (it accepts ahead of the JS
      // budget): the process never runs out, so no accept ever failed.
      assert.deepEqual(lb.logs.filter((l) => l.msg === 'accept failed'), [], 'no accept failed for lack of fds');
      for (const s of held) s.destroy();
      held.length = 0;
      await waitFor(async () => sample(await metrics(admin), 'l4lb_connections_active', { listener: 'e' }) === 0, 10000, 'connections gone', 100);
      const c = await connect(port);
      held.push(c);
      c.write('after');
      assert.equal((await readBytes(c, 5)).toString(), 'after');
    } finally {
      for (const s of held) s.destroy();
      await lb.stop();
      await echo.close();
    }
  });
});

describe('native TCP engine: accept fails for lack of fds', { skip }, () => {
  test('EMFILE: logged, counted as resources; the client waits in the backlog and is served once fds are back', async (t) => {
    if (spawnSync('prlimit', ['--version']).status !== 0) {
      t.skip('prlimit (util-linux) not installed');
      return;
    }
    const echo = await startEchoServer();
    const lb = new L4lbProcess(`[global]\nsplice = "on"\n[admin]\nbind = "127.0.0.1:0"\n` + listenerToml('e', 'p') + poolToml('p', 'round-robin', [`{ address = "127.0.0.1:${echo.port}" }`]));
    let c: net.Socket | null = null;
    try {
      const port = await lb.port('e');
      const admin = await adminPortOf(lb);
      const pid = lb.child.pid!;
      // A soft limit far below the fds open now: no new fd can be had.
      const limits = /^Max open files\s+(\d+)\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'));
      assert.ok(limits !== null, 'the fd limits of l4lb');
      const [soft, hard] = [limits[1], limits[2]];
      const low = spawnSync('prlimit', ['--pid', String(pid), `--nofile=8:${hard}`], { encoding: 'utf8' });
      assert.equal(low.status, 0, `prlimit: ${low.stderr}`);
      c = await connect(port);
      c.write('later');
      await lb.waitForLog((l) => l.msg === 'accept failed' && l.err === 'EMFILE', 5000, 'accept failed EMFILE');
      const back = spawnSync('prlimit', ['--pid', String(pid), `--nofile=${soft}:${hard}`], { encoding: 'utf8' });
      assert.equal(back.status, 0, `prlimit: ${back.stderr}`);
      // The engine retries after its pause: the waiting client is served.
      assert.equal((await readBytes(c, 5)).toString(), 'later');
      const m = await metrics(admin);
      assert.ok((sample(m, 'l4lb_connections_rejected_total', { listener: 'e', reason: 'resources' }) ?? 0) >= 1, 'the failed accept counted as resources');
    } finally {
      c?.destroy();
      await lb.stop();
      await echo.close();
    }
  });
});

describe('native TCP engine: workers = 2', { skip }, () => {
  test('a worker killed: the other worker\'s connections are unaffected', async () => {
    const echo = await startEchoServer();
    const lb = new L4lbProcess(`[global]\nsplice = "on"\nworkers = 2\n` + listenerToml('e', 'p') + poolToml('p', 'round-robin', [`{ address = "127.0.0.1:${echo.port}" }`]));
    const conns: net.Socket[] = [];
    try {
      const port = await lb.port('e', 20000);
      await waitFor(() => workerPids(lb.child.pid!).length === 2, 10000, 'two workers');
      const pids = workerPids(lb.child.pid!);
      const owners = new Map<net.Socket, number | undefined>();
      // Open connections until each worker holds some (the kernel spreads them).
      for (let round = 0; round < 10; round++) {
        const batch = await Promise.all(Array.from({ length: 10 }, () => connect(port)));
        await Promise.all(batch.map(async (c) => (c.write('a'), readBytes(c, 1))));
        for (const c of batch) {
          conns.push(c);
          owners.set(c, ownerOf(c, port, pids));
        }
        if (pids.every((p) => [...owners.values()].includes(p))) break;
      }
      const [victim, survivor] = pids as [number, number];
      const mine = conns.filter((c) => owners.get(c) === survivor);
      const theirs = conns.filter((c) => owners.get(c) === victim);
      assert.ok(mine.length > 0 && theirs.length > 0, `connections per worker: ${mine.length}/${theirs.length}`);
      // The dead worker's connections end (a timeout here fails the test).
      const ended = Promise.all(theirs.map((c) => endOf(c, 8000)));
      process.kill(victim, 'SIGKILL');
      await lb.waitForLog((l) => l.msg === 'worker exited', 5000, 'worker exited');
      await ended;
      const replies = await Promise.all(mine.map(async (c, k) => (c.write(String.fromCharCode(97 + (k % 26))), (await readBytes(c, 1, 5000)).toString())));
      replies.forEach((r, k) => assert.equal(r, String.fromCharCode(97 + (k % 26))));
      // The replaced worker accepts on the same socket.
      await waitFor(() => workerPids(lb.child.pid!).length === 2 && !workerPids(lb.child.pid!).includes(victim), 10000, 'worker replaced');
      for (let k = 0; k < 10; k++) {
        const c = await connect(port);
        c.write('n');
        assert.equal((await readBytes(c, 1)).toString(), 'n');
        c.destroy();
      }
    } finally {
      for (const c of conns) c.destroy();
      await lb.stop();
      await echo.close();
    }
  });
});
