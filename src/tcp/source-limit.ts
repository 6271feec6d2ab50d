/**
 * `max_connections_per_source` of one TCP listener: how many connections
 * each client address has open or waiting, and which sessions hold a place.
 * Only a session admitted while the limit was on holds one, so only such a
 * session gives one back at its end; a limit turned on by a reload counts
 * the connections already open (recount), one turned off forgets every
 * count (clear).
 */
/** The counting half, for code that takes places by address before any session exists (PROXY header waits). */
export interface SourcePlaces {
  take(addr: string, limit: number): boolean;
  add(addr: string): void;
  release(addr: string): void;
}

export class SourceLimit<S extends { readonly clientAddr: string }> implements SourcePlaces {
  private readonly counts = new Map<string, number>();
  private readonly holders = new Set<S>();

  /** Takes a place for `addr`; false (nothing taken) when it has `limit` already. `limit` 0: no limit, nothing counted. */
  take(addr: string, limit: number): boolean {
    if (limit <= 0) return true;
    const n = this.counts.get(addr) ?? 0;
    if (n >= limit) return false;
    this.counts.set(addr, n + 1);
    return true;
  }

  /** Counts one more connection of `addr`, whatever the limit (an adopted or already open one). */
  add(addr: string): void {
    this.counts.set(addr, (this.counts.get(addr) ?? 0) + 1);
  }

  /** Gives back one place of `addr`; nothing when it holds none. */
  release(addr: string): void {
    const n = this.counts.get(addr);
    if (n === undefined) return;
    if (n <= 1) this.counts.delete(addr);
    else this.counts.set(addr, n - 1);
  }

  /** `s` holds the place its address took: drop() gives it back. */
  hold(s: S): void {
    this.holders.add(s);
  }

  /** `s` ended or left this process: its place, when it holds one, is given back. */
  drop(s: S): void {
    if (this.holders.delete(s)) this.release(s.clientAddr);
  }

  /** The limit was turned on: every open session counts and holds a place from now on. */
  recount(open: Iterable<S>): void {
    this.clear();
    for (const s of open) {
      this.add(s.clientAddr);
      this.holders.add(s);
    }
  }

  /** The limit was turned off: nothing is counted any more. */
  clear(): void {
    this.counts.clear();
    this.holders.clear();
  }
}
