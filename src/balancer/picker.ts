/**
 * The one small interface every balancing algorithm implements.
 *
 * The control plane builds a Picker from the pool's current candidate set
 * (the backends that may take traffic now: up, not draining, the backup tier
 * only when no primary is up) whenever that set, a weight or a state changes.
 * The data plane only calls `pick()`: no search beyond the algorithm's own,
 * no allocation, no awaiting.
 */
import type { Backend } from '../backend/backend';
import type { PoolConfig } from '../config/schema';

/**
 * The flow being balanced. The listener keeps one instance per listener and
 * overwrites it for each new connection, so building it allocates nothing.
 * Addresses are as Node reports them (`socket.remoteAddress`), IPv4-mapped
 * IPv6 included; pickers that hash must normalise.
 */
export interface Flow {
  /** 6 for TCP, 17 for UDP (IP protocol numbers). */
  protocol: 6 | 17;
  srcAddr: string;
  srcPort: number;
  dstAddr: string;
  dstPort: number;
}

export interface Picker {
  /**
   * A backend that can take this flow now, or null when none can.
   * Backends in `exclude` (already tried for this connection) and backends
   * without room (`!backend.hasRoom()`) are passed over.
   */
  pick(flow: Flow, exclude: readonly Backend[] | null): Backend | null;
}

/** Builds a picker over the candidates, in their stable (configured) order. */
export type PickerFactory = (candidates: readonly Backend[], pool: PoolConfig) => Picker;

/** Shared by pickers: is this backend usable for this attempt? */
export function usable(b: Backend, exclude: readonly Backend[] | null): boolean {
  // A picker is rebuilt on every state change, but a large Maglev table is
  // rebuilt off the event loop: until it is in, the previous picker runs and
  // may name a backend that has gone down or left the pool.
  if (b.state !== 'up' || !b.member || !b.hasRoom()) return false;
  if (exclude !== null) {
    for (let i = 0; i < exclude.length; i++) if (exclude[i] === b) return false;
  }
  return true;
}
