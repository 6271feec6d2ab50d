/**
 * The health monitor with an injected probe: states pushed to the data
 * plane, passive failures, drain/enable, reload sync, slow-start weights.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { HealthMonitor, sameProbe } from '../../src/health/monitor';
import type { ProbeFn, ProbeResult } from '../../src/health/tcp-probe';
import type { Config, PoolConfig, ListenerConfig } from '../../src/config/schema';
import type { BackendState } from '../../src/backend/backend';
import { createLogger } from '../../src/log';
import { mulberry32, waitFor } from '../helpers/net';

interface Harness {
  mon: HealthMonitor;
  states: { pool: string; address: string; state: BackendState }[];
  weights: Map<string, number[]>;
  logs: Record<string, unknown>[];
  /** address → result the next probes give */
  result: Map<string, ProbeResult>;
  probes: Map<string, number>;
}

function harness(): Harness {
  const h: Harness = { states: [], weights: new Map(), logs: [], result: new Map(), probes: new Map(), mon: null as unknown as HealthMonitor };
  const dest = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line) h.logs.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  const probe: ProbeFn = (t, _timeout, cb) => {
    const a = `${t.host}:${t.port}`;
    h.probes.set(a, (h.probes.get(a) ?? 0) + 1);
    const r = h.result.get(a) ?? { ok: true };
    const timer = setImmediate(() => cb(r));
    return { cancel: () => clearImmediate(timer) };
  };
  h.mon = new HealthMonitor({
    log: createLogger('debug', dest),
    setState: (pool, address, state) => h.states.push({ pool, address, state }),
    setWeight: (_pool, address, w) => h.weights.set(address, [...(h.weights.get(address) ?? []), w]),
    probe,
    random: mulberry32(1),
  });
  return h;
}

function pool(name: string, over: Partial<PoolConfig> = {}, hc: Partial<PoolConfig['healthCheck']> = {}): PoolConfig {
  return {
    name,
    algorithm: 'round-robin',
    hashKey: '5-tuple',
    hashBalanceFactor: 0,
    tableSize: 65537,
    retries: 2,
    slowStartMs: 0,
    backends: [],
    resolveIntervalMs: 30000,
    healthCheck: {
      enabled: true, intervalMs: 20, timeoutMs: 10, rise: 2, fall: 3, port: null,
      type: 'connect', protocol: 'tcp', sendHex: '', expect: null, expectRegex: null, path: '/', expectStatus: null, ...hc,
    },
    ...over,
  };
}

function config(pools: PoolConfig[], listeners: Partial<ListenerConfig>[] = []): Config {
  return {
    file: 'test',
    global: { logLevel: 'debug', connectionLog: false, workers: 1, splice: 'off', drainTimeoutMs: 1000, shutdownDelayMs: 0, stateFile: null, connectionLogIntervalMs: 0 },
    admin: null,
    listeners: listeners as ListenerConfig[],
    pools,
  };
}

const spec = (port: number, weight = 1) => ({ host: '127.0.0.1', port, family: 4 as const, weight });
const addr = (port: number): string => `127.0.0.1:${port}`;
const changes = (h: Harness, a: string) => h.logs.filter((l) => l.msg === 'backend state changed' && l.backend === a);

test('probe failures mark a backend down after fall, successes up after rise; logged and pushed', async () => {
  const h = harness();
  h.mon.sync(config([pool('p')]), new Map([['p', [spec(1), spec(2)]]]), true);
  h.result.set(addr(1), { ok: false, reason: 'refused', error: 'ECONNREFUSED' });
  await waitFor(() => h.mon.health('p', addr(1)) === 'down', 3000, 'down');
  assert.deepEqual(h.states, [{ pool: 'p', address: addr(1), state: 'down' }]);
  const [c] = changes(h, addr(1));
  assert.equal(c?.from, 'up');
  assert.equal(c?.to, 'down');
  assert.equal(c?.reason, 'refused');
  assert.equal(c?.error, 'ECONNREFUSED');
  assert.ok((h.probes.get(addr(1)) ?? 0) >= 3);
  h.result.delete(addr(1));
  await waitFor(() => h.mon.health('p', addr(1)) === 'up', 3000, 'up');
  assert.equal(h.states.at(-1)?.state, 'up');
  assert.equal(changes(h, addr(1))[1]?.reason, 'probe_ok');
  assert.equal(changes(h, addr(2)).length, 0);
  h.mon.stop();
});

test('passive failures alone take a backend down after fall; ignored when health checks are disabled', () => {
  const h = harness();
  h.mon.sync(config([pool('p', {}, { intervalMs: 60_000 }), pool('q', {}, { enabled: false })]), new Map([['p', [spec(1)]], ['q', [spec(1)]]]), true);
  h.mon.onConnectFailure('p', addr(1), 'refused');
  h.mon.onConnectFailure('p', addr(1), 'timeout');
  assert.equal(h.mon.health('p', addr(1)), 'up');
  h.mon.onConnectFailure('p', addr(1), 'refused');
  assert.equal(h.mon.health('p', addr(1)), 'down');
  assert.equal(changes(h, addr(1))[0]?.reason, 'connect_failed');
  for (let i = 0; i < 10; i++) h.mon.onConnectFailure('q', addr(1), 'refused');
  assert.equal(h.mon.health('q', addr(1)), 'up');
  assert.equal(h.probes.size, 0, 'disabled pool and long interval: no probe yet');
  h.mon.onConnectFailure('nope', addr(1), 'refused'); // unknown: ignored
  h.mon.stop();
});

test('drain keeps probing and remembers health; enable returns to what the checks say', async () => {
  const h = harness();
  h.mon.sync(config([pool('p')]), new Map([['p', [spec(1)]]]), true);
  assert.equal(h.mon.setDrain('p', addr(1), true), true);
  assert.deepEqual(h.states.at(-1), { pool: 'p', address: addr(1), state: 'draining' });
  assert.equal(changes(h, addr(1))[0]?.reason, 'admin_drain');
  h.result.set(addr(1), { ok: false, reason: 'refused', error: 'ECONNREFUSED' });
  await waitFor(() => h.mon.health('p', addr(1)) === 'down', 3000, 'down while draining');
  assert.equal(h.states.length, 1, 'state stays draining');
  h.mon.setDrain('p', addr(1), false);
  assert.deepEqual(h.states.at(-1), { pool: 'p', address: addr(1), state: 'down' });
  assert.equal(changes(h, addr(1)).at(-1)?.reason, 'admin_enable');
  assert.equal(h.mon.setDrain('p', addr(9), true), false);
  assert.equal(h.mon.setDrain('nope', addr(1), true), false);
  h.mon.stop();
});

test('reload sync: kept backends keep state, new ones are probed, removed ones are not', async () => {
  const h = harness();
  const cfg = config([pool('p')]);
  h.mon.sync(cfg, new Map([['p', [spec(1), spec(2)]]]), true);
  h.result.set(addr(1), { ok: false, reason: 'refused', error: 'ECONNREFUSED' });
  await waitFor(() => h.mon.health('p', addr(1)) === 'down', 3000, 'down');
  h.mon.sync(cfg, new Map([['p', [spec(1), spec(3)]]]), false);
  assert.equal(h.mon.health('p', addr(1)), 'down');
  assert.equal(h.mon.health('p', addr(2)), null);
  assert.equal(h.mon.health('p', addr(3)), 'up');
  const removedProbes = h.probes.get(addr(2)) ?? 0;
  await waitFor(() => (h.probes.get(addr(3)) ?? 0) >= 3, 3000, 'new backend probed');
  assert.equal(h.probes.get(addr(2)) ?? 0, removedProbes, 'removed backend no longer probed');
  // disabling health checks brings a down backend back up
  h.mon.sync(config([pool('p', {}, { enabled: false })]), new Map([['p', [spec(1)]]]), false);
  assert.equal(h.mon.health('p', addr(1)), 'up');
  assert.equal(changes(h, addr(1)).at(-1)?.reason, 'health_check_disabled');
  h.mon.stop();
});

test('UDP-only pools probe only with a port; the port overrides the backend port', async () => {
  const h = harness();
  const udp = { name: 'u', protocol: 'udp' as const, pool: 'u' };
  const udp2 = { name: 'v', protocol: 'udp' as const, pool: 'v' };
  h.mon.sync(config([pool('u'), pool('v', {}, { port: 7 })], [udp, udp2]), new Map([['u', [spec(1)]], ['v', [spec(2)]]]), true);
  await waitFor(() => (h.probes.get(addr(7)) ?? 0) >= 2, 3000, 'probes on port 7');
  assert.equal(h.probes.get(addr(1)), undefined);
  assert.equal(h.probes.get(addr(2)), undefined);
  h.mon.stop();
});

test('slow start: a backend back up ramps its weight from ~1% to full; not at start-up', async () => {
  const h = harness();
  h.mon.sync(config([pool('p', { slowStartMs: 300 })]), new Map([['p', [spec(1, 10)]]]), true);
  assert.equal(h.weights.size, 0, 'full weight at start-up');
  for (let i = 0; i < 3; i++) h.mon.onConnectFailure('p', addr(1), 'refused');
  assert.equal(h.mon.health('p', addr(1)), 'down');
  await waitFor(() => h.mon.health('p', addr(1)) === 'up', 3000, 'up again');
  await waitFor(() => h.weights.get(addr(1))?.at(-1) === 10, 3000, 'full weight');
  const w = h.weights.get(addr(1)) ?? [];
  assert.equal(w[0], 0.1);
  assert.ok(w.length >= 3 && w.length <= 6, `steps: ${w.join(',')}`);
  for (let i = 1; i < w.length; i++) assert.ok(w[i]! > w[i - 1]!, 'increasing');
  assert.ok(h.logs.some((l) => l.msg === 'backend slow start done'));
  // a new backend added by a reload ramps too
  h.mon.sync(config([pool('p', { slowStartMs: 300 })]), new Map([['p', [spec(1, 10), spec(2, 4)]]]), false);
  assert.equal(h.weights.get(addr(2))?.[0], 0.04);
  h.mon.stop();
});

test('stop(): no probe, no push afterwards', async () => {
  const h = harness();
  h.mon.sync(config([pool('p')]), new Map([['p', [spec(1)]]]), true);
  h.mon.stop();
  const n = h.probes.get(addr(1)) ?? 0;
  await new Promise((r) => setTimeout(r, 80));
  assert.equal(h.probes.get(addr(1)) ?? 0, n);
  h.mon.onConnectFailure('p', addr(1), 'refused');
  h.mon.sync(config([pool('p')]), new Map([['p', [spec(1)]]]), false);
  assert.equal(h.states.length, 0);
});

test('a probe failure goes down with its specific reason, error and detail; status has the last check and state_since', async () => {
  const h = harness();
  const t0 = Date.now();
  h.mon.sync(config([pool('p')]), new Map([['p', [spec(1)]]]), true);
  const before = h.mon.checkStatus('p', addr(1));
  assert.equal(before?.check, null, 'no check before the first probe');
  assert.ok(Date.parse(before!.state_since) >= t0 - 5 && Date.parse(before!.state_since) <= Date.now(), 'state_since = start');
  await waitFor(() => h.mon.checkStatus('p', addr(1))?.check !== null, 3000, 'first probe');
  const ok = h.mon.checkStatus('p', addr(1))!.check!;
  assert.equal(ok.result, 'ok');
  assert.equal(ok.reason, null);
  assert.ok(ok.latency_ms >= 0 && ok.latency_ms < 1000);
  assert.match(ok.at, /^\d{4}-\d\d-\d\dT.*Z$/);
  h.result.set(addr(1), { ok: false, reason: 'expect_mismatch', detail: 'got 3 bytes: "abc"' });
  await waitFor(() => h.mon.health('p', addr(1)) === 'down', 3000, 'down');
  const [c] = changes(h, addr(1));
  assert.equal(c?.reason, 'expect_mismatch');
  assert.equal(c?.detail, 'got 3 bytes: "abc"');
  assert.equal(c?.error, undefined);
  const st = h.mon.checkStatus('p', addr(1))!;
  assert.deepEqual([st.check?.result, st.check?.reason], ['failed', 'expect_mismatch']);
  // The change's time (the log line stamps its own clock reading, a millisecond or so later).
  const lag = Date.parse(String(c?.time)) - Date.parse(st.state_since);
  assert.ok(lag >= 0 && lag <= 50, `state_since ${st.state_since}, logged ${String(c?.time)}`);
  assert.equal(h.mon.checkStatus('p', addr(9)), null);
  assert.equal(h.mon.checkStatus('nope', addr(1)), null);
  h.mon.stop();
});

test('checkCounts: ok and failed probes per backend, kept after the backend is removed', async () => {
  const h = harness();
  h.mon.sync(config([pool('p')]), new Map([['p', [spec(1), spec(2)]]]), true);
  h.result.set(addr(2), { ok: false, reason: 'timeout' });
  await waitFor(() => (h.probes.get(addr(1)) ?? 0) >= 3 && (h.probes.get(addr(2)) ?? 0) >= 3, 3000, 'probes');
  const byAddr = (): Map<string, { ok: number; failed: number }> => new Map(h.mon.checkCounts().map((c) => [c.backend, { ok: c.ok, failed: c.failed }]));
  assert.equal(byAddr().get(addr(1))?.failed, 0);
  assert.ok((byAddr().get(addr(1))?.ok ?? 0) >= 2);
  assert.equal(byAddr().get(addr(2))?.ok, 0);
  assert.ok((byAddr().get(addr(2))?.failed ?? 0) >= 2);
  // passive failures are not probes
  const failed2 = byAddr().get(addr(1))!.failed;
  h.mon.onConnectFailure('p', addr(1), 'refused');
  assert.equal(byAddr().get(addr(1))!.failed, failed2);
  h.mon.sync(config([pool('p')]), new Map([['p', [spec(1)]]]), false);
  const kept = byAddr().get(addr(2));
  assert.ok(kept !== undefined && kept.failed >= 2, 'a removed backend keeps its count');
  h.mon.stop();
});

test('UDP-only pools: a udp send-expect probes without a port, a tcp one does not', async () => {
  const h = harness();
  const udpListeners = [{ name: 'u', protocol: 'udp' as const, pool: 'u' }, { name: 'w', protocol: 'udp' as const, pool: 'w' }];
  const udpCheck = { type: 'send-expect' as const, protocol: 'udp' as const, sendHex: '00' };
  const tcpCheck = { type: 'send-expect' as const, protocol: 'tcp' as const, sendHex: '00' };
  h.mon.sync(config([pool('u', {}, udpCheck), pool('w', {}, tcpCheck)], udpListeners), new Map([['u', [spec(1)]], ['w', [spec(2)]]]), true);
  await waitFor(() => (h.probes.get(addr(1)) ?? 0) >= 2, 3000, 'udp probes');
  assert.equal(h.probes.get(addr(2)), undefined);
  h.mon.stop();
});

test('sameProbe: rise/fall changes keep the probe running; any probe setting restarts it', () => {
  const base = pool('p').healthCheck;
  assert.equal(sameProbe(base, { ...base, rise: 9, fall: 9 }), true);
  for (const change of [
    { type: 'http' as const }, { path: '/x' }, { expectStatus: [200] }, { sendHex: '00' }, { expect: 'a' },
    { expectRegex: 'a' }, { protocol: 'udp' as const }, { port: 7 }, { intervalMs: 21 }, { timeoutMs: 11 }, { enabled: false },
  ]) {
    assert.equal(sameProbe(base, { ...base, ...change }), false, JSON.stringify(change));
  }
});
