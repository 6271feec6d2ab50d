/**
 * Counter totals of what is gone but must still count (SPEC §8.4: counters
 * never go down): a worker process that exited, or the process an upgrade
 * replaced. Kept as snapshots with gauges 0, by listener and by backend,
 * and added to the live snapshot of whoever carries on.
 */
import type { DataPlaneSnapshot, ListenerSnapshot, RetiredBackendSnapshot } from './stats';
import { addBackendCounters, addListenerCounters, backendTotals, listenerTotals } from './stats';

export class KeptTotals {
  /** By protocol and name. */
  readonly listeners = new Map<string, ListenerSnapshot>();
  /** By pool and address. */
  readonly backends = new Map<string, RetiredBackendSnapshot>();

  /** Adds the counters of a snapshot (its listeners, backends and retired backends) to the kept totals. */
  keep(snap: DataPlaneSnapshot): void {
    for (const l of snap.listeners) {
      const key = `${l.protocol}\u0000${l.name}`;
      const cur = this.listeners.get(key);
      if (cur === undefined) this.listeners.set(key, listenerTotals(l));
      else addListenerCounters(cur, l);
    }
    const backends = [...snap.pools.flatMap((p) => p.backends.map((b) => backendTotals(p.name, b))), ...(snap.retired_backends ?? [])];
    for (const b of backends) {
      const key = `${b.pool}\u0000${b.address}`;
      const cur = this.backends.get(key);
      if (cur === undefined) this.backends.set(key, backendTotals(b.pool, b));
      else addBackendCounters(cur, b);
    }
  }

  get empty(): boolean {
    return this.listeners.size === 0 && this.backends.size === 0;
  }

  /**
   * Adds the kept totals into `snap`, in place: into the listener of the
   * same protocol and name (the current one first) and the backend of the
   * same pool and address (current, removed or retired); what has no
   * counterpart is listed as a gone listener or a retired backend.
   */
  addInto(snap: DataPlaneSnapshot): void {
    for (const [key, kept] of this.listeners) {
      const same = snap.listeners.filter((l) => `${l.protocol}\u0000${l.name}` === key);
      const into = same.find((l) => l.current) ?? same[0];
      if (into !== undefined) addListenerCounters(into, kept);
      else snap.listeners.push(listenerTotals(kept));
    }
    const retired = (snap.retired_backends ??= []);
    for (const [key, kept] of this.backends) {
      const pool = snap.pools.find((p) => p.name === kept.pool);
      const into = pool?.backends.find((b) => `${kept.pool}\u0000${b.address}` === key) ?? retired.find((b) => `${b.pool}\u0000${b.address}` === key);
      if (into !== undefined) addBackendCounters(into, kept);
      else retired.push(backendTotals(kept.pool, kept));
    }
  }
}
