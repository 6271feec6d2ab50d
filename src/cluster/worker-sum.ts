/**
 * The primary's view of its workers' counters: the sum of their snapshots
 * (pushed every 250 ms and after each apply/idle), plus the totals of
 * workers that exited so that counters never go down (SPEC §8.4). What is
 * summed and what is kept follows the counter tables (src/stats/stats.ts):
 * counters and histograms always, gauges over the live workers only.
 */
import type { ListenerConfig } from '../config/schema';
import type { BackendSnapshot, DataPlaneSnapshot, ListenerSnapshot, RetiredBackendSnapshot } from '../stats/stats';
import { addBackendCounters, addListenerCounters, backendTotals, cloneBackend, cloneListener, zeroBackendCounters } from '../stats/stats';
import type { KeptTotals } from '../stats/kept-totals';

/**
 * The sum over workers: listeners by name (current and retired apart),
 * backend counters by pool and address; states from `base` (the primary's
 * shadow, whose own counters are replaced). The totals of dead workers are
 * added (as retired entries, gauges 0). Current listeners come in
 * configuration order (`order`), then the others.
 */
export function sumWorkerSnapshots(live: readonly DataPlaneSnapshot[], dead: KeptTotals, base: DataPlaneSnapshot, order: readonly ListenerConfig[]): DataPlaneSnapshot {
  const listeners = new Map<string, ListenerSnapshot>();
  const counters = new Map<string, RetiredBackendSnapshot>();
  const addListener = (l: ListenerSnapshot): void => {
    const key = `${l.name}\u0000${l.current}\u0000${l.protocol}`;
    const cur = listeners.get(key);
    if (cur === undefined) {
      listeners.set(key, cloneListener(l));
      return;
    }
    addListenerCounters(cur, l, true);
  };
  const addBackend = (pool: string, b: BackendSnapshot): void => {
    const key = `${pool}\u0000${b.address}`;
    const c = counters.get(key);
    if (c === undefined) {
      counters.set(key, cloneBackend(pool, b));
      return;
    }
    addBackendCounters(c, b, true);
    // One worker still holds it as removed while another has it again: it is current.
    if (c.state === 'removed' && b.state !== 'removed') c.state = b.state;
  };
  for (const snap of live) {
    for (const l of snap.listeners) addListener(l);
    for (const p of snap.pools) for (const b of p.backends) addBackend(p.name, b);
    for (const b of snap.retired_backends ?? []) addBackend(b.pool, b);
  }
  for (const l of dead.listeners.values()) addListener(l);
  for (const b of dead.backends.values()) addBackend(b.pool, b);
  for (const p of base.pools) {
    for (const b of p.backends) {
      const key = `${p.name}\u0000${b.address}`;
      const c = counters.get(key);
      counters.delete(key);
      zeroBackendCounters(b);
      if (c !== undefined) addBackendCounters(b, c, true);
    }
  }
  // Backends only workers know: removed ones still carrying connections
  // are shown (state `removed`); the others keep their totals as retired.
  const retired: RetiredBackendSnapshot[] = [];
  for (const c of counters.values()) {
    if (c.state !== 'removed' || c.active_connections === 0) {
      retired.push(backendTotals(c.pool, c));
      continue;
    }
    let p = base.pools.find((x) => x.name === c.pool);
    if (p === undefined) {
      p = { name: c.pool, algorithm: 'removed', backends: [] };
      base.pools.push(p);
    }
    const { pool: _pool, ...b } = c;
    p.backends.push(b);
  }
  const ordered = new Set<ListenerSnapshot>();
  for (const lc of order) {
    const l = listeners.get(`${lc.name}\u0000true\u0000${lc.protocol}`);
    if (l !== undefined) ordered.add(l);
  }
  for (const l of listeners.values()) ordered.add(l);
  return { listeners: [...ordered], pools: base.pools, retired_backends: retired };
}
