/**
 * The data plane's snapshot (status document, /metrics, worker reports):
 * listeners with their live bytes, pools with their backends, backends that
 * left (`removed` while connections are open, then totals), and the totals
 * of listeners that are gone. Counters in it never go down (SPEC §8.4).
 */
import type { Backend } from '../backend/backend';
import type { Pool } from '../backend/pool';
import type { ListenerBase, OpenConnection } from '../listener/base';
import type { DepartedBackends } from './departed';
import type { BackendSnapshot, DataPlaneSnapshot, ListenerSnapshot, PoolSnapshot, RetiredBackendSnapshot } from '../stats/stats';
import { BACKEND_COUNTERS, addBackendCounters, backendTotals, listenerTotals } from '../stats/stats';
import { readCounters } from '../stats/counters';

export function dataPlaneSnapshot(
  pools: ReadonlyMap<string, Pool>,
  listeners: readonly ListenerBase<OpenConnection>[],
  departed: DepartedBackends,
  goneListeners: Iterable<ListenerSnapshot>,
): DataPlaneSnapshot {
  const live = new Map<Backend, [number, number]>();
  for (const l of listeners) l.addLiveBackendBytes(live);
  const backendSnapshot = (b: Backend, removed: boolean): BackendSnapshot => {
    const bytes = live.get(b);
    const counters = readCounters(BACKEND_COUNTERS, b);
    counters.bytes_in += bytes?.[0] ?? 0;
    counters.bytes_out += bytes?.[1] ?? 0;
    return {
      ...counters,
      address: b.address,
      name: b.name,
      state: removed ? 'removed' : b.state,
      weight: b.weight,
      effective_weight: b.effectiveWeight,
      backup: b.backup,
    };
  };
  const out: PoolSnapshot[] = [];
  const current = new Map<string, BackendSnapshot>();
  for (const p of pools.values()) {
    const backends = p.backends.map((b) => backendSnapshot(b, false));
    for (const b of backends) current.set(`${p.name}\u0000${b.address}`, b);
    for (const b of departed.removedOf(p.name)) {
      const s = backendSnapshot(b, true);
      current.set(`${p.name}\u0000${b.address}`, s);
      backends.push(s);
    }
    out.push({ name: p.name, algorithm: p.config.algorithm, backends });
  }
  // Pools a reload removed while connections to their backends are still open.
  for (const [name, list] of departed.ofGonePools(pools)) {
    const backends = list.map((b) => backendSnapshot(b, true));
    for (const s of backends) current.set(`${name}\u0000${s.address}`, s);
    out.push({ name, algorithm: 'removed', backends });
  }
  // Departed backends whose connections are all done: their totals are
  // added to the entry of the same pool and address, or listed as retired.
  const retired: RetiredBackendSnapshot[] = [];
  const settled = departed.settle(
    (pool, b) => backendTotals(pool, backendSnapshot(b, true)),
    (into, b) => addBackendCounters(into, backendSnapshot(b, true)),
  );
  for (const [key, done] of settled) {
    const cur = current.get(key);
    if (cur !== undefined) addBackendCounters(cur, done);
    else retired.push(backendTotals(done.pool, done));
  }
  const ls = listeners.map((l) => l.snapshot());
  for (const gone of goneListeners) ls.push(listenerTotals(gone));
  return { listeners: ls, pools: out, retired_backends: retired };
}
