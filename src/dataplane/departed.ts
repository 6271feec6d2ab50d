/**
 * Backends that left their pool (reload, DNS) while connections to them
 * were open. They take no new connection; they are shown as `removed` until
 * their last connection ends, then their counter totals are kept (counters
 * never go down) and added to whatever later has the same pool and address.
 */
import type { Backend } from '../backend/backend';
import type { RetiredBackendSnapshot } from '../stats/stats';

interface Entry {
  readonly pool: string;
  /** Departed Backend objects that may still have connections. */
  readonly live: Set<Backend>;
  /** Totals of the ones done. */
  done: RetiredBackendSnapshot | null;
}

export class DepartedBackends {
  private readonly entries = new Map<string, Entry>();

  /** A backend left pool `pool`: no new connections; its open ones go on. */
  depart(pool: string, b: Backend): void {
    b.member = false;
    const key = `${pool}\u0000${b.address}`;
    const d = this.entries.get(key);
    if (d === undefined) this.entries.set(key, { pool, live: new Set([b]), done: null });
    else d.live.add(b);
  }

  /**
   * A removed backend added back while its connections were still open:
   * the same record (counters, connections) returns, `up`.
   */
  revive(pool: string, address: string): Backend | undefined {
    const key = `${pool}\u0000${address}`;
    const d = this.entries.get(key);
    if (d === undefined) return undefined;
    for (const b of d.live) {
      if (b.active === 0) continue;
      d.live.delete(b);
      if (d.live.size === 0 && d.done === null) this.entries.delete(key);
      b.state = 'up';
      return b;
    }
    return undefined;
  }

  /** The backends that left pool `pool` and still have connections. */
  removedOf(pool: string): Backend[] {
    const out: Backend[] = [];
    for (const d of this.entries.values()) if (d.pool === pool) for (const b of d.live) if (b.active > 0) out.push(b);
    return out;
  }

  /** Departed backends with open connections whose pool is gone altogether (not in `pools`), by pool. */
  ofGonePools(pools: ReadonlyMap<string, unknown>): Map<string, Backend[]> {
    const out = new Map<string, Backend[]>();
    for (const d of this.entries.values()) {
      if (pools.has(d.pool)) continue;
      for (const b of d.live) {
        if (b.active === 0) continue;
        let list = out.get(d.pool);
        if (list === undefined) out.set(d.pool, (list = []));
        list.push(b);
      }
    }
    return out;
  }

  /**
   * Folds the backends whose connections are all done into their entry's
   * totals (`fold` adds one backend's final counters) and returns every
   * entry with totals, keyed by pool and address.
   */
  settle(
    first: (pool: string, b: Backend) => RetiredBackendSnapshot,
    add: (into: RetiredBackendSnapshot, b: Backend) => void,
  ): Map<string, RetiredBackendSnapshot> {
    const out = new Map<string, RetiredBackendSnapshot>();
    for (const [key, d] of this.entries) {
      for (const b of d.live) {
        if (b.active > 0) continue;
        if (d.done === null) d.done = first(d.pool, b);
        else add(d.done, b);
        d.live.delete(b);
      }
      if (d.done !== null) out.set(key, d.done);
    }
    return out;
  }
}
