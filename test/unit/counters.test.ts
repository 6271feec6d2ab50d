/**
 * Counters declared once (src/stats/stats.ts, src/stats/counters.ts):
 * a declaration added to a table yields its stats field, its snapshot key,
 * its sum over workers, its kept totals, its status field and its metric;
 * the real tables give exactly the metrics of SPEC §6 and §8.4.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { addCounters, cloneCounters, readCounters, statsClass, statusCounters, totalsOf, zeroCounters, type CounterDecl, type SnapshotOf } from '../../src/stats/counters';
import { BACKEND_COUNTERS, LISTENER_COUNTERS, ListenerStats, REJECT_REASONS, type BackendSnapshot, type DataPlaneSnapshot, type ListenerSnapshot } from '../../src/stats/stats';
import { METRICS, counterMetrics, createRegistry } from '../../src/metrics/metrics';
import { Backend } from '../../src/backend/backend';
import { sumWorkerSnapshots } from '../../src/cluster/worker-sum';
import { KeptTotals } from '../../src/stats/kept-totals';
import { DataPlane, type BackendSpec } from '../../src/dataplane/dataplane';
import { parseConfig } from '../../src/config/load';
import { createLogger } from '../../src/log';

/** The listener table plus two new declarations: a counter shown in the status, and a gauge with a fixed label. */
const EXTENDED = [
  ...LISTENER_COUNTERS,
  { field: 'handshakesFailed', key: 'handshakes_failed', kind: 'counter', status: 'handshakes_failed', metric: 'l4lb_test_handshakes_failed_total', help: 'Test counter' },
  { field: 'pending', key: 'pending', kind: 'gauge', labels: { stage: 'header' }, metric: 'l4lb_test_pending', help: 'Test gauge' },
] as const satisfies readonly CounterDecl[];

/** The backend table plus a new counter. */
const EXTENDED_BACKEND = [
  ...BACKEND_COUNTERS,
  { field: 'resets', key: 'resets', kind: 'counter', metric: 'l4lb_test_backend_resets_total', help: 'Test backend counter' },
] as const satisfies readonly CounterDecl[];

const ExtendedStats = statsClass(EXTENDED);
const ExtendedBackendStats = statsClass(EXTENDED_BACKEND);

function listener(name: string, current: boolean, counters: SnapshotOf<typeof EXTENDED>): ListenerSnapshot & SnapshotOf<typeof EXTENDED> {
  return { name, protocol: 'tcp', bind: '127.0.0.1:1', address: '127.0.0.1', port: 1, pool: 'p', current, ...counters };
}

function backend(address: string, counters: SnapshotOf<typeof EXTENDED_BACKEND>): BackendSnapshot & SnapshotOf<typeof EXTENDED_BACKEND> {
  return { address, name: null, state: 'up', weight: 1, effective_weight: 1, backup: false, ...counters };
}

/** "name{labels} value" lines of one metric in a Prometheus text. */
function samples(text: string, metric: string): string[] {
  return text.split('\n').filter((l) => l.startsWith(`${metric}{`) || l.startsWith(`${metric} `));
}

describe('a declaration added to a table', () => {
  test('yields a plain field on the stats object, 0 at first, and its snapshot key', () => {
    const s = new ExtendedStats();
    assert.equal(s.handshakesFailed, 0);
    assert.equal(s.pending, 0);
    // The existing fields are there too, with their shapes.
    assert.equal(s.connectionsTotal, 0);
    assert.deepEqual(Object.keys(s.rejected), [...REJECT_REASONS]);
    assert.equal(s.duration.count, 0);
    s.handshakesFailed += 3;
    s.pending++;
    s.rejected.acl++;
    s.duration.observe(0.2);
    const snap = readCounters(EXTENDED, s);
    assert.equal(snap.handshakes_failed, 3);
    assert.equal(snap.pending, 1);
    assert.equal(snap.rejected.acl, 1);
    assert.equal(snap.duration.count, 1);
    // A copy: later increments do not show in it.
    s.handshakesFailed++;
    s.rejected.acl++;
    assert.equal(snap.handshakes_failed, 3);
    assert.equal(snap.rejected.acl, 1);
  });

  test('every instance has the fields in table order (one shape for the hot path)', () => {
    const a = new ExtendedStats();
    const b = new ExtendedStats();
    assert.deepEqual(Object.keys(a), EXTENDED.map((d) => d.field));
    assert.deepEqual(Object.keys(a), Object.keys(b));
    assert.notEqual(a.rejected, b.rejected);
    assert.notEqual(a.duration, b.duration);
  });

  test('is summed over workers (gauges too) and kept in totals (gauges 0)', () => {
    const one = new ExtendedStats();
    const two = new ExtendedStats();
    one.handshakesFailed = 2;
    one.pending = 4;
    one.rejected.limit = 1;
    one.duration.observe(1);
    two.handshakesFailed = 5;
    two.pending = 1;
    two.rejected.limit = 2;
    two.duration.observe(10);
    const a = readCounters(EXTENDED, one);
    const b = readCounters(EXTENDED, two);
    const live = cloneCounters(EXTENDED, a);
    addCounters(EXTENDED, live, b, true);
    assert.equal(live.handshakes_failed, 7);
    assert.equal(live.pending, 5);
    assert.equal(live.rejected.limit, 3);
    assert.equal(live.duration.count, 2);
    assert.equal(a.handshakes_failed, 2, 'the clone was summed, not the original');
    assert.equal(a.rejected.limit, 1);
    assert.equal(a.duration.count, 1);
    const kept = totalsOf(EXTENDED, a);
    assert.equal(kept.handshakes_failed, 2);
    assert.equal(kept.pending, 0, 'a gauge is not kept');
    addCounters(EXTENDED, kept, b);
    assert.equal(kept.handshakes_failed, 7);
    assert.equal(kept.pending, 0, 'summing totals leaves gauges alone');
    assert.equal(a.duration.count, 1, 'totals are deep copies');
    zeroCounters(EXTENDED, kept);
    assert.equal(kept.handshakes_failed, 0);
    assert.equal(kept.duration.count, 0);
    assert.equal(kept.rejected.limit, 0);
  });

  test('appears in the status document when it has a status name', () => {
    const s = new ExtendedStats();
    s.handshakesFailed = 9;
    s.connectionsTotal = 4;
    const status = statusCounters(EXTENDED, readCounters(EXTENDED, s));
    assert.equal(status.handshakes_failed, 9);
    assert.equal(status.total_connections, 4);
    assert.equal(status.active_connections, 0);
    assert.ok(!('pending' in status), 'no status name: not in the status document');
    assert.ok(!('duration' in status));
  });

  test('becomes a metric: listeners summed by name, backend counters with retired ones, gauges without', async () => {
    const s1 = new ExtendedStats();
    s1.handshakesFailed = 2;
    s1.pending = 1;
    const s2 = new ExtendedStats();
    s2.handshakesFailed = 3; // a listener of the same name a reload retired
    s2.pending = 2;
    const b1 = new ExtendedBackendStats();
    b1.resets = 4;
    b1.active = 1;
    const b2 = new ExtendedBackendStats();
    b2.resets = 6;
    b2.active = 3;
    const snap = {
      listeners: [listener('a', true, readCounters(EXTENDED, s1)), listener('a', false, readCounters(EXTENDED, s2))],
      pools: [{ name: 'p', algorithm: 'round-robin', backends: [backend('10.0.0.1:80', readCounters(EXTENDED_BACKEND, b1))] }],
      retired_backends: [{ ...backend('10.0.0.2:80', readCounters(EXTENDED_BACKEND, b2)), pool: 'p' }],
    } satisfies DataPlaneSnapshot;
    const defs = counterMetrics(EXTENDED, EXTENDED_BACKEND);
    const text = await createRegistry({ snapshot: () => snap, reloads: { success: 0, failure: 0 } }, defs).metrics();
    assert.match(text, /^# TYPE l4lb_test_handshakes_failed_total counter$/m);
    assert.match(text, /^# HELP l4lb_test_handshakes_failed_total Test counter$/m);
    assert.deepEqual(samples(text, 'l4lb_test_handshakes_failed_total'), ['l4lb_test_handshakes_failed_total{listener="a"} 5']);
    assert.match(text, /^# TYPE l4lb_test_pending gauge$/m);
    assert.deepEqual(samples(text, 'l4lb_test_pending'), ['l4lb_test_pending{listener="a",stage="header"} 3']);
    assert.deepEqual(samples(text, 'l4lb_test_backend_resets_total').sort(), [
      'l4lb_test_backend_resets_total{pool="p",backend="10.0.0.1:80"} 4',
      'l4lb_test_backend_resets_total{pool="p",backend="10.0.0.2:80"} 6',
    ]);
    // A gauge of a retired backend is not shown (it has no open connection).
    assert.deepEqual(samples(text, 'l4lb_backend_connections_active'), ['l4lb_backend_connections_active{pool="p",backend="10.0.0.1:80"} 1']);
    // Declarations sharing a metric make one metric told apart by their fixed labels.
    assert.equal(text.match(/^# TYPE l4lb_bytes_total counter$/gm)?.length, 1);
    assert.equal(samples(text, 'l4lb_bytes_total').length, 2);
  });
});

describe('the real tables', () => {
  /** SPEC §6 and §8.4: every metric with its type and labels. */
  const SPEC: Record<string, [string, string[]]> = {
    l4lb_connections_total: ['counter', ['listener']],
    l4lb_connections_active: ['gauge', ['listener']],
    l4lb_connections_rejected_total: ['counter', ['listener', 'reason']],
    l4lb_bytes_total: ['counter', ['listener', 'direction']],
    l4lb_backend_connections_total: ['counter', ['pool', 'backend']],
    l4lb_backend_connections_active: ['gauge', ['pool', 'backend']],
    l4lb_backend_connect_failures_total: ['counter', ['pool', 'backend']],
    l4lb_backend_up: ['gauge', ['pool', 'backend']],
    l4lb_udp_sessions_active: ['gauge', ['listener']],
    l4lb_udp_datagrams_total: ['counter', ['listener', 'direction']],
    l4lb_config_reloads_total: ['counter', ['result']],
    l4lb_backend_state: ['gauge', ['pool', 'backend', 'state']],
    l4lb_backend_bytes_total: ['counter', ['pool', 'backend', 'direction']],
    l4lb_backend_connect_duration_seconds: ['histogram', ['pool', 'backend']],
    l4lb_connection_duration_seconds: ['histogram', ['listener']],
    l4lb_health_checks_total: ['counter', ['pool', 'backend', 'result']],
  };

  test('give exactly the metrics of SPEC §6 and §8.4, with their types and labels', () => {
    const got = Object.fromEntries(METRICS.map((m) => [m.name, [m.type, m.labels]]));
    assert.deepEqual(got, SPEC);
  });

  test('declarations sharing a metric agree on kind, help and label names; fields and keys are unique', () => {
    for (const table of [LISTENER_COUNTERS, BACKEND_COUNTERS] as readonly (readonly CounterDecl[])[]) {
      assert.equal(new Set(table.map((d) => d.field)).size, table.length);
      assert.equal(new Set(table.map((d) => d.key)).size, table.length);
      for (const d of table) {
        for (const e of table.filter((x) => x.metric === d.metric)) {
          assert.equal(e.kind, d.kind, d.metric);
          assert.equal(e.help, d.help, d.metric);
          assert.deepEqual(Object.keys(e.labels ?? {}), Object.keys(d.labels ?? {}), d.metric);
          assert.equal(e.by?.label, d.by?.label, d.metric);
        }
        assert.equal(d.kind === 'histogram', d.buckets !== undefined, `${d.field}: buckets for histograms only`);
      }
    }
  });

  test('ListenerStats and Backend carry one field per declaration', () => {
    const s = new ListenerStats();
    assert.deepEqual(Object.keys(s), LISTENER_COUNTERS.map((d) => d.field));
    const b = new Backend({ host: '10.0.0.1', port: 80, family: 4 });
    for (const d of BACKEND_COUNTERS) assert.ok(d.field in b, d.field);
    b.total++;
    b.connectTime.observe(0.001);
    const snap = readCounters(BACKEND_COUNTERS, b);
    assert.equal(snap.total_connections, 1);
    assert.equal(snap.connect_time.count, 1);
    assert.equal(b.address, '10.0.0.1:80');
  });
});

describe('the worker sum (src/cluster/worker-sum.ts)', () => {
  function workerSnapshot(connections: number, active: number, backendTotal: number): DataPlaneSnapshot {
    const s = new ListenerStats();
    s.connectionsTotal = connections;
    s.active = active;
    s.rejected.acl = 1;
    const b = new Backend({ host: '10.0.0.1', port: 80, family: 4 });
    b.total = backendTotal;
    b.active = active;
    return {
      listeners: [{ name: 'a', protocol: 'tcp', bind: '127.0.0.1:1', address: '127.0.0.1', port: 1, pool: 'p', current: true, ...readCounters(LISTENER_COUNTERS, s) }],
      pools: [{ name: 'p', algorithm: 'round-robin', backends: [{ address: b.address, name: null, state: 'up', weight: 1, effective_weight: 1, backup: false, ...readCounters(BACKEND_COUNTERS, b) }] }],
      retired_backends: [],
    };
  }
  const shadow = (): DataPlaneSnapshot => {
    const s = workerSnapshot(0, 0, 0);
    return { listeners: [], pools: s.pools, retired_backends: [] };
  };

  test('sums live workers (gauges too) and adds the counters of exited ones (gauges not)', () => {
    const dead = new KeptTotals();
    dead.keep(workerSnapshot(100, 7, 50));
    const sum = sumWorkerSnapshots([workerSnapshot(10, 1, 5), workerSnapshot(20, 2, 6)], dead, shadow(), []);
    const listeners = sum.listeners.filter((l) => l.current);
    assert.equal(listeners.length, 1);
    const l = listeners[0] as ListenerSnapshot;
    assert.equal(l.active_connections, 3, 'gauges: live workers only');
    // The dead worker's listener is kept apart as not current; summed by name in /metrics.
    const all = sum.listeners.reduce((n, x) => n + x.connections_total, 0);
    assert.equal(all, 130);
    assert.equal(sum.listeners.reduce((n, x) => n + x.rejected.acl, 0), 3);
    const b = sum.pools[0]?.backends[0] as BackendSnapshot;
    assert.equal(b.total_connections, 61);
    assert.equal(b.active_connections, 3);
  });
});

describe("the primary's shadow data plane", () => {
  const config = parseConfig(
    '[[listeners]]\nname = "a"\nbind = "127.0.0.1:0"\npool = "p"\n[pools.p]\nalgorithm = "consistent-hash"\ntable_size = 65537\nbackends = [{ address = "10.0.0.1:80" }, { address = "10.0.0.2:80" }]\n',
    'test.toml',
  );
  const specs: BackendSpec[] = [1, 2].map((i) => ({ host: `10.0.0.${i}`, port: 80, family: 4, name: null, weight: 1, maxConnections: 0, backup: false }));
  const log = createLogger('error');

  test('pickers: false builds no picker (no consistent-hash table) yet keeps states and weights', async () => {
    const shadowPlane = new DataPlane({ log, splice: null, pickers: false });
    const normal = new DataPlane({ log, splice: null });
    try {
      await shadowPlane.apply({ ...config, listeners: [] }, new Map([['p', specs]]));
      await normal.apply({ ...config, listeners: [] }, new Map([['p', specs]]));
      const p = shadowPlane.pools.get('p');
      assert.ok(p !== undefined);
      assert.equal(p.builds, 0);
      assert.ok((normal.pools.get('p')?.builds ?? 0) > 0, 'a data plane that carries traffic builds its picker');
      assert.equal(shadowPlane.setBackendState('p', '10.0.0.2:80', 'down'), 'up');
      assert.ok(shadowPlane.setBackendWeight('p', '10.0.0.1:80', 3));
      assert.equal(p.builds, 0);
      assert.equal(p.find('10.0.0.2:80')?.state, 'down');
      assert.equal(p.find('10.0.0.1:80')?.effectiveWeight, 3);
      assert.equal(p.pick({ protocol: 6, srcAddr: '192.0.2.1', srcPort: 1, dstAddr: '127.0.0.1', dstPort: 1 }, null), null);
    } finally {
      shadowPlane.dispose();
      normal.dispose();
    }
  });
});
