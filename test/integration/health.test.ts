/**
 * Health checking end to end: real backends on 127.0.0.1 that we stop and
 * restart on the same port, the real CLI as a child process, and one
 * in-process Server for the admin drain/enable method. Waits are on log
 * lines (`backend state changed`) with bounds, never bare sleeps.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Writable } from 'node:stream';
import { startServer, startTaggedServer, connect, readLine, endOf, waitFor, type TestServer, deadPort } from '../helpers/net';
import { L4lbProcess, type LogLine } from '../helpers/l4lb';
import { poolToml as basePoolToml, listenerToml } from '../helpers/toml';
import { startBlackhole, type Blackhole } from '../helpers/blackhole';
import { Server } from '../../src/server';
import { parseConfig } from '../../src/config/load';
import { createLogger } from '../../src/log';

const INTERVAL = 100;
const TIMEOUT = 100;
const RISE = 2;
const FALL = 3;
/** Scheduling, log pipe and loaded-CI slack on top of the SPEC bound. */
const SLACK = 400;
const DOWN_BOUND = FALL * INTERVAL * 1.05 + TIMEOUT + SLACK;
const UP_BOUND = (RISE + 1) * INTERVAL * 1.05 + SLACK;

function hc(extra = ''): string {
  return `interval = "${INTERVAL}ms"\ntimeout = "${TIMEOUT}ms"\nrise = ${RISE}\nfall = ${FALL}\n${extra}`;
}

/** Pools here have health checks on with the short timings above. */
const poolToml = (name: string, algorithm: string, backends: string[], extra = '', health = hc()): string => basePoolToml(name, algorithm, backends, extra, health);



const be = (port: number, extra = ''): string => `{ address = "127.0.0.1:${port}"${extra} }`;

/** Stops a test backend: no more accepts, open sockets destroyed. */
async function stopBackend(s: TestServer): Promise<void> {
  await s.close();
}

/** Restarts a stopped test backend on the same port. */
async function restartBackend(s: TestServer): Promise<void> {
  s.server.listen(s.port, '127.0.0.1');
  await once(s.server, 'listening');
}


/** The next (not yet seen) `backend state changed` line for this backend and target state. */
function nextChange(lb: L4lbProcess, port: number, to: string, timeoutMs = 5000): Promise<LogLine> {
  const seen = new Set(lb.logs);
  return lb.waitForLog(
    (l) => !seen.has(l) && l.msg === 'backend state changed' && l.backend === `127.0.0.1:${port}` && l.to === to,
    timeoutMs,
    `127.0.0.1:${port} -> ${to}`,
  );
}

function changesOf(lb: L4lbProcess, port: number): LogLine[] {
  return lb.logs.filter((l) => l.msg === 'backend state changed' && l.backend === `127.0.0.1:${port}`);
}

/** Opens a connection and returns the backend's tag line. */
async function tagOf(port: number): Promise<string> {
  const c = await connect(port);
  try {
    return await readLine(c, 5000);
  } finally {
    c.destroy();
  }
}

describe('health: down and up', () => {
  let a: TestServer;
  let b: TestServer;
  let c: TestServer;
  let d: TestServer;
  let lb: L4lbProcess;

  before(async () => {
    a = await startTaggedServer('A');
    b = await startTaggedServer('B');
    c = await startTaggedServer('C');
    d = await startTaggedServer('D');
    lb = new L4lbProcess(
      listenerToml('web', 'web', 'connect_timeout = "500ms"') +
        poolToml('web', 'round-robin', [be(a.port), be(b.port)], 'retries = 2') +
        listenerToml('quiet', 'quiet') +
        poolToml('quiet', 'round-robin', [be(c.port), be(d.port)]),
    );
    await lb.port('web');
    await lb.port('quiet');
  });
  after(async () => {
    await lb.stop();
    for (const s of [a, b, c, d]) await s.close();
  });

  test('a stopped backend is down within fall x interval + timeout; a burst right after all succeeds elsewhere', async () => {
    const port = await lb.port('web');
    const down = nextChange(lb, a.port, 'down');
    const t0 = Date.now();
    await stopBackend(a);
    const acceptedBefore = a.accepted;
    const tags = await Promise.all(Array.from({ length: 20 }, () => tagOf(port)));
    assert.deepEqual(new Set(tags), new Set(['B']));
    const line = await down;
    const took = Date.now() - t0;
    assert.equal(line.from, 'up');
    assert.equal(line.pool, 'web');
    assert.ok(line.reason === 'connect_failed' || line.reason === 'refused', String(line.reason));
    assert.ok(took <= DOWN_BOUND, `down after ${took} ms (bound ${DOWN_BOUND})`);
    assert.equal(a.accepted, acceptedBefore, 'nothing reached the stopped backend');
    process.stdout.write(`# measured: stopped backend down after ${took} ms with client traffic (reason ${String(line.reason)})\n`);
  });

  test('without client traffic the probes alone mark it down within the bound', async () => {
    const down = nextChange(lb, c.port, 'down');
    const t0 = Date.now();
    await stopBackend(c);
    const line = await down;
    const took = Date.now() - t0;
    assert.equal(line.reason, 'refused');
    assert.equal(line.error, 'ECONNREFUSED');
    assert.ok(took <= DOWN_BOUND, `down after ${took} ms (bound ${DOWN_BOUND})`);
    process.stdout.write(`# measured: stopped backend down after ${took} ms by probes only\n`);
  });

  test('a restarted backend is up after rise successes and takes traffic again', async () => {
    const port = await lb.port('web');
    const up = nextChange(lb, a.port, 'up');
    const t0 = Date.now();
    await restartBackend(a);
    const line = await up;
    const took = Date.now() - t0;
    assert.equal(line.from, 'down');
    assert.equal(line.reason, 'probe_ok');
    assert.ok(took <= UP_BOUND, `up after ${took} ms (bound ${UP_BOUND})`);
    process.stdout.write(`# measured: restarted backend up after ${took} ms\n`);
    const tags = await Promise.all(Array.from({ length: 10 }, () => tagOf(port)));
    assert.ok(tags.includes('A'), `tags ${tags.join('')}`);
    // the quiet pool recovers too
    const up2 = nextChange(lb, c.port, 'up');
    await restartBackend(c);
    await up2;
  });
});

describe('health: probe outcomes', () => {
  let closer: TestServer;
  let ok: TestServer;
  let hole: Blackhole;
  let lb: L4lbProcess;
  let t0: number;

  before(async () => {
    closer = await startServer((s) => s.destroy());
    ok = await startTaggedServer('OK');
    hole = await startBlackhole();
    t0 = Date.now();
    lb = new L4lbProcess(
      listenerToml('closer', 'closer') +
        poolToml('closer', 'round-robin', [be(closer.port), be(ok.port)]) +
        listenerToml('hole', 'hole') +
        poolToml('hole', 'round-robin', [be(hole.port), be(ok.port)]),
    );
    await lb.port('hole');
  });
  after(async () => {
    await lb.stop();
    await closer.close();
    await ok.close();
    await hole.close();
  });

  test('a backend that accepts and closes at once counts as up', async () => {
    await waitFor(() => closer.accepted >= 2 * FALL, 5000, 'probes on the closer');
    assert.equal(changesOf(lb, closer.port).length, 0);
  });

  test('a blackholed backend times out and goes down', async () => {
    const line = await lb.waitForLog((l) => l.msg === 'backend state changed' && l.backend === `127.0.0.1:${hole.port}`, 5000, 'blackhole down');
    const took = Date.now() - t0;
    assert.equal(line.to, 'down');
    assert.equal(line.reason, 'timeout');
    // From process spawn: start-up (~node boot) + first probe phase (< 1 interval) + the bound.
    assert.ok(took <= DOWN_BOUND + INTERVAL + 2000, `down after ${took} ms`);
    assert.equal(await tagOf(await lb.port('hole')), 'OK');
  });
});

describe('health: backup, all down, disabled', () => {
  let p: TestServer;
  let k: TestServer;
  let solo: TestServer;
  let a: TestServer;
  let dead: number;
  let lb: L4lbProcess;

  before(async () => {
    p = await startTaggedServer('P');
    k = await startTaggedServer('K');
    solo = await startTaggedServer('S');
    a = await startTaggedServer('A');
    dead = await deadPort();
    lb = new L4lbProcess(
      `[global]\nconnection_log = true\n` +
        listenerToml('bk', 'bk') +
        poolToml('bk', 'round-robin', [be(p.port), be(k.port, ', backup = true')]) +
        listenerToml('solo', 'solo') +
        poolToml('solo', 'round-robin', [be(solo.port)]) +
        listenerToml('off', 'off') +
        poolToml('off', 'round-robin', [be(dead), be(a.port)], 'retries = 2', 'enabled = false'),
    );
    await lb.port('off');
  });
  after(async () => {
    await lb.stop();
    for (const s of [p, k, solo, a]) await s.close();
  });

  test('backup serves only while every primary is down; the primary takes over again', async () => {
    const port = await lb.port('bk');
    for (let i = 0; i < 5; i++) assert.equal(await tagOf(port), 'P');
    const down = nextChange(lb, p.port, 'down');
    await stopBackend(p);
    await down;
    for (let i = 0; i < 5; i++) assert.equal(await tagOf(port), 'K');
    const up = nextChange(lb, p.port, 'up');
    await restartBackend(p);
    await up;
    for (let i = 0; i < 5; i++) assert.equal(await tagOf(port), 'P');
    assert.equal(changesOf(lb, k.port).length, 0);
  });

  test('every backend down: new connections are closed at once (no_backend); recovers by itself', async () => {
    const port = await lb.port('solo');
    const down = nextChange(lb, solo.port, 'down');
    await stopBackend(solo);
    await down;
    const c = await connect(port);
    const t0 = Date.now();
    await endOf(c, 2000);
    assert.ok(Date.now() - t0 < 500, 'closed at once');
    const line = await lb.waitForLog((l) => l.msg === 'connection closed' && l.listener === 'solo' && l.reason === 'no_backend', 3000, 'no_backend');
    assert.equal(line.backend, null);
    const up = nextChange(lb, solo.port, 'up');
    await restartBackend(solo);
    await up;
    assert.equal(await tagOf(port), 'S');
  });

  test('health_check.enabled = false: never marked down, retries route around the dead backend', async () => {
    const port = await lb.port('off');
    for (let i = 0; i < 2 * FALL; i++) assert.equal(await tagOf(port), 'A');
    assert.equal(changesOf(lb, dead).length, 0);
  });
});

describe('health: reload keeps, adds and removes probed backends', () => {
  let y: TestServer;
  let dead1: number;
  let dead2: number;
  let lb: L4lbProcess;
  const cfg = (backends: string[]): string => listenerToml('r', 'r') + poolToml('r', 'round-robin', backends);

  before(async () => {
    y = await startTaggedServer('Y');
    dead1 = await deadPort();
    dead2 = await deadPort();
    lb = new L4lbProcess(cfg([be(dead1), be(y.port)]));
    await lb.port('r');
  });
  after(async () => {
    await lb.stop();
    await y.close();
  });

  test('kept backend keeps its state, a new one is probed, a removed one is not', async () => {
    await lb.waitForLog((l) => l.msg === 'backend state changed' && l.backend === `127.0.0.1:${dead1}` && l.to === 'down', 5000, 'dead1 down');
    await waitFor(() => y.accepted >= 2, 5000, 'y probed');
    lb.writeConfig(cfg([be(dead1), be(dead2)]));
    const reloaded = lb.waitForLog((l) => l.msg === 'config reloaded', 5000, 'reloaded');
    const down2 = nextChange(lb, dead2, 'down');
    lb.signal('SIGHUP');
    await reloaded;
    const yAtReload = y.accepted;
    await down2;
    // one probe may have been in flight at the reload
    assert.ok(y.accepted <= yAtReload + 1, `removed backend probed after reload: ${y.accepted - yAtReload}`);
    assert.equal(changesOf(lb, dead1).length, 1, 'kept backend did not change state');
  });
});

describe('health: slow start', () => {
  let s: TestServer;
  let t: TestServer;
  let lb: L4lbProcess;

  before(async () => {
    s = await startTaggedServer('S');
    t = await startTaggedServer('T');
    lb = new L4lbProcess(`[global]\nlog_level = "debug"\n` + listenerToml('ss', 'ss') + poolToml('ss', 'random', [be(s.port), be(t.port)], 'slow_start = "2s"'));
    await lb.port('ss');
  });
  after(async () => {
    await lb.stop();
    await s.close();
    await t.close();
  });

  test('a recovered backend ramps its weight from ~1% to full over slow_start', async () => {
    const down = nextChange(lb, s.port, 'down');
    await stopBackend(s);
    await down;
    const up = nextChange(lb, s.port, 'up');
    await restartBackend(s);
    const upLine = await up;
    const done = await lb.waitForLog((l) => l.msg === 'backend slow start done' && l.backend === `127.0.0.1:${s.port}`, 5000, 'slow start done');
    const steps = lb.logs.filter((l) => l.msg === 'backend slow start' && l.backend === `127.0.0.1:${s.port}`).map((l) => l.effective_weight as number);
    assert.equal(steps[0], 0.01);
    assert.ok(steps.length >= 5 && steps.length <= 11, `steps ${steps.join(',')}`);
    for (let i = 1; i < steps.length; i++) assert.ok(steps[i]! > steps[i - 1]!);
    const took = Date.parse(String(done.time)) - Date.parse(String(upLine.time));
    assert.ok(took >= 1900 && took <= 2600, `ramp took ${took} ms`);
  });

  test(
    'after recovery the first new connections mostly go to the other backend',
    async () => {
      const port = await lb.port('ss');
      const down = nextChange(lb, s.port, 'down');
      await stopBackend(s);
      await down;
      const up = nextChange(lb, s.port, 'up');
      await restartBackend(s);
      await up;
      const tags = await Promise.all(Array.from({ length: 40 }, () => tagOf(port)));
      const toS = tags.filter((x) => x === 'S').length;
      assert.ok(toS <= 10, `${toS} of 40 went to the ramping backend`);
    },
  );
});

describe('health: admin drain and enable (in-process Server)', () => {
  let a: TestServer;
  let b: TestServer;
  let server: Server;
  const logs: Record<string, unknown>[] = [];

  before(async () => {
    a = await startTaggedServer('A');
    b = await startTaggedServer('B');
    const text = listenerToml('web', 'web') + poolToml('web', 'round-robin', [be(a.port), be(b.port)]);
    const dest = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
        cb();
      },
    });
    server = await Server.start({ configPath: '/nonexistent/lb.toml', config: parseConfig(text, 'lb.toml'), log: createLogger('info', dest) });
  });
  after(async () => {
    await server.drain();
    await a.close();
    await b.close();
  });

  test('drain takes no new connections, keeps probing; enable returns to what the probes say', async () => {
    const port = server.bindings[0]!.port;
    const addrA = `127.0.0.1:${a.port}`;
    assert.equal(await tagOf(port), 'A');
    const snap = server.setDrain('web', addrA, true);
    assert.equal(snap?.state, 'draining');
    assert.equal(snap?.address, addrA);
    for (let i = 0; i < 3; i++) assert.equal(await tagOf(port), 'B');
    // probes go on while draining and remember the health
    await stopBackend(a);
    await waitFor(() => server.health.health('web', addrA) === 'down', 5000, 'health down while draining');
    assert.equal(server.setDrain('web', addrA, false)?.state, 'down');
    const enable = logs.find((l) => l.msg === 'backend state changed' && l.backend === addrA && l.reason === 'admin_enable');
    assert.equal(enable?.from, 'draining');
    assert.equal(enable?.to, 'down');
    await restartBackend(a);
    await waitFor(() => server.snapshot().pools[0]?.backends[0]?.state === 'up', 5000, 'up again');
    assert.equal(await tagOf(port), 'A');
    assert.equal(server.setDrain('web', '127.0.0.1:1', true), null);
    assert.equal(server.setDrain('nope', addrA, true), null);
  });
});
