/**
 * Summing worker snapshots (workers > 1, src/cluster/primary.ts): the
 * per-backend figures beyond the connection counters (bytes, connect-time
 * histogram) and the `removed` backends only workers know of.
 */
import type { BackendSnapshot, ListenerSnapshot, PoolSnapshot } from './stats';
import { addHistogram } from './histogram';

/** Contract: a copy of `b` that summing may change without touching `b`. */
function cloneBackend(b: BackendSnapshot): BackendSnapshot {
  return { ...b, connect_time: { ...b.connect_time, counts: [...b.connect_time.counts] } };
}

/** Contract: adds one worker's backend `b` of pool `pool` into `totals` (keyed by pool and address). */
export function addBackendTotals(totals: Map<string, { pool: string; b: BackendSnapshot }>, pool: string, b: BackendSnapshot): void {
  const key = `${pool}\u0000${b.address}`;
  const t = totals.get(key);
  if (t === undefined) {
    totals.set(key, { pool, b: cloneBackend(b) });
    return;
  }
  const s = t.b;
  s.active_connections += b.active_connections;
  s.total_connections += b.total_connections;
  s.connect_failures += b.connect_failures;
  s.bytes_in += b.bytes_in;
  s.bytes_out += b.bytes_out;
  addHistogram(s.connect_time, b.connect_time);
  // A backend one worker still holds as removed while another has it again is current.
  if (s.state === 'removed' && b.state !== 'removed') s.state = b.state;
}

/**
 * Contract: copies bytes and connect times from `totals` onto the primary's
 * backends (`pools`, states from the shadow), and appends the backends the
 * workers report as `removed` that the primary no longer has.
 */
export function applyBackendTotals(pools: PoolSnapshot[], totals: Map<string, { pool: string; b: BackendSnapshot }>): void {
  const seen = new Set<string>();
  for (const p of pools) {
    for (const b of p.backends) {
      const key = `${p.name}\u0000${b.address}`;
      seen.add(key);
      const t = totals.get(key);
      if (t === undefined) continue;
      b.bytes_in = t.b.bytes_in;
      b.bytes_out = t.b.bytes_out;
      b.connect_time = t.b.connect_time;
    }
  }
  for (const [key, t] of totals) {
    if (seen.has(key) || t.b.state !== 'removed' || t.b.active_connections === 0) continue;
    let p = pools.find((x) => x.name === t.pool);
    if (p === undefined) {
      p = { name: t.pool, algorithm: 'removed', backends: [] };
      pools.push(p);
    }
    p.backends.push(t.b);
  }
}

/** Contract: adds listener `l`'s duration histogram into `into` (cloned on first use by `cloneListener`). */
export function addListenerExtras(into: ListenerSnapshot, l: ListenerSnapshot): void {
  addHistogram(into.duration, l.duration);
}

/** Contract: a copy of a worker's listener snapshot that summing may change. */
export function cloneListener(l: ListenerSnapshot): ListenerSnapshot {
  return { ...l, rejected: { ...l.rejected }, duration: { ...l.duration, counts: [...l.duration.counts] } };
}
