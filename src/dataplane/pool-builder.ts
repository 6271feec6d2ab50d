/**
 * Building a pool for a new generation or a new DNS answer, aside from the
 * running one: Backend objects (state, counters, open connections) of
 * addresses the current pool already has are kept, and changed (weight,
 * limits, membership) only by the returned `commit()`, which also rebuilds
 * the new pool's picker. A pool whose settings and backends are unchanged
 * is kept as it is: its picker (no table rebuilt), round-robin position and
 * slow-start ramps.
 */
import type { PoolConfig } from '../config/schema';
import { Backend } from '../backend/backend';
import { Pool } from '../backend/pool';
import { formatHostPort } from '../net/address';
import type { BackendSpec } from './api';
import type { DepartedBackends } from './departed';

/** A pool built aside; `commit()` makes the changes to kept backends. */
export interface BuiltPool {
  readonly pool: Pool;
  commit(): void;
}

const noop = (): void => {};

/**
 * Contract: the pool for `pc` with `specs`, next to `old` (the running pool
 * of that name, if any). `settingsChanged` says whether the pool's own
 * configuration differs from `old`'s (the reload plan's `poolsChanged`); with
 * it false and the same backends, `old` itself is returned. With `pickers`
 * false (the primary's shadow of its workers' pools) no picker is built.
 */
export function buildPool(pc: PoolConfig, specs: readonly BackendSpec[], old: Pool | undefined, settingsChanged: boolean, departed: DepartedBackends, pickers = true): BuiltPool {
  if (old !== undefined && !settingsChanged && sameBackends(old, specs)) return { pool: old, commit: noop };
  const list: Backend[] = [];
  const inList = new Set<Backend>();
  const updates: [Backend, BackendSpec][] = [];
  for (const s of specs) {
    const address = formatHostPort(s.host, s.port);
    let b = old?.find(address) ?? departed.revive(pc.name, address);
    if (b !== undefined && inList.has(b)) continue;
    if (b === undefined) {
      b = new Backend({ host: s.host, port: s.port, family: s.family, name: s.name, weight: s.weight, maxConnections: s.maxConnections, backup: s.backup });
    } else {
      updates.push([b, s]);
    }
    list.push(b);
    inList.add(b);
  }
  // The replaced pool's picker runs until a large table is built off the event loop.
  const pool = new Pool(pc, list, old?.currentPicker(), pickers);
  const commit = (): void => {
    old?.dispose();
    for (const [b, s] of updates) {
      b.weight = s.weight;
      b.effectiveWeight = s.weight;
      b.maxConnections = s.maxConnections;
      b.backup = s.backup;
    }
    for (const b of list) b.member = true;
    if (old !== undefined) {
      for (const b of old.backends) {
        if (inList.has(b)) continue;
        departed.depart(pc.name, b);
      }
    }
    pool.rebuild();
  };
  return { pool, commit };
}

/**
 * Contract: true when `old` has exactly these backends: addresses in the
 * same order, weights, limits, backup flags and names, all still members.
 */
export function sameBackends(old: Pool, specs: readonly BackendSpec[]): boolean {
  if (old.backends.length !== specs.length) return false;
  return specs.every((s, i) => {
    const b = old.backends[i] as Backend;
    return b.address === formatHostPort(s.host, s.port) && b.weight === s.weight && b.maxConnections === s.maxConnections && b.backup === s.backup && b.name === s.name && b.member;
  });
}
