/**
 * Consistent hashing with a Maglev lookup table (Eisenbud et al., "Maglev: A
 * Fast and Reliable Software Network Load Balancer", NSDI 2016, §3.4), made
 * weighted, plus bounded load (Mirrokni, Thorup, Zadimoghaddam, "Consistent
 * Hashing with Bounded Loads", 2018; HAProxy's hash-balance-factor).
 *
 * The table depends only on the backends' address strings, their order and
 * weights and the table size, so two l4lb instances (and two versions) with
 * the same pool build the same table. docs/consistent-hash.md gives every
 * detail needed to reproduce it.
 */
import type { Backend } from '../backend/backend';
import type { PoolConfig } from '../config/schema';
import { type Flow, type Picker, type PickerFactory, usable } from './picker';
import { murmur3String } from './hash';
import { flowHash } from './flow-hash';

export const OFFSET_SEED = 0x4d61676c; // "Magl"
export const SKIP_SEED = 0x65763031; // "ev01"

/**
 * Builds the lookup table: entry j names the index (into `keys`) of the
 * backend owning slot j, or -1 when there are no backends (or no weight).
 *
 * Each backend i walks its own permutation of the slots,
 * `(offset_i + k * skip_i) mod M` with offset_i = murmur3(key, OFFSET_SEED)
 * mod M and skip_i = murmur3(key, SKIP_SEED) mod (M − 1) + 1 (M prime, so
 * every skip visits every slot). Backends take turns in the given order;
 * weights decide how often each gets a turn: every round adds w_i / w_max
 * to a backend's credit and the backend claims one slot (its next free
 * preferred slot) for each whole credit. With equal weights this is the
 * paper's Algorithm 1 exactly.
 *
 * Contract: `keys` and `weights` have the same length; M is prime and ≥ 2;
 * weights ≥ 0 (a zero weight claims nothing). Pure: same input, same table.
 */
export function buildMaglevTable(keys: readonly string[], weights: readonly number[], M: number): Int32Array {
  const table = new Int32Array(M).fill(-1);
  const n = keys.length;
  let wmax = 0;
  for (let i = 0; i < n; i++) wmax = Math.max(wmax, weights[i] ?? 0);
  if (n === 0 || wmax <= 0) return table;
  const offset = new Float64Array(n);
  const skip = new Float64Array(n);
  const next = new Float64Array(n); // k: how far along its permutation each backend is
  const credit = new Float64Array(n);
  const share = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const key = keys[i] as string;
    offset[i] = murmur3String(key, OFFSET_SEED) % M;
    skip[i] = (murmur3String(key, SKIP_SEED) % (M - 1)) + 1;
    share[i] = (weights[i] ?? 0) / wmax;
  }
  let filled = 0;
  while (filled < M) {
    for (let i = 0; i < n && filled < M; i++) {
      credit[i] = (credit[i] as number) + (share[i] as number);
      while ((credit[i] as number) >= 1 && filled < M) {
        credit[i] = (credit[i] as number) - 1;
        // Next free slot in backend i's preference order. offset + k*skip is
        // computed incrementally modulo M to stay within exact integers.
        const off = offset[i] as number;
        const sk = skip[i] as number;
        let k = next[i] as number;
        let c = (off + ((k * sk) % M)) % M;
        while (table[c] !== -1) {
          k++;
          c += sk;
          if (c >= M) c -= M;
        }
        table[c] = i;
        next[i] = k + 1;
        filled++;
      }
    }
  }
  return table;
}

class MaglevPicker implements Picker {
  private readonly backends: readonly Backend[];
  private readonly table: Int32Array;
  private readonly sourceOnly: boolean;
  /** hash_balance_factor / 100; 0 = bounded load off. */
  private readonly factor: number;

  /** `table`: a table already built for exactly these candidates (off the event loop); else built here. */
  constructor(candidates: readonly Backend[], pool: PoolConfig, table?: Int32Array) {
    this.backends = candidates;
    this.table =
      table ??
      buildMaglevTable(
        candidates.map((b) => b.address),
        candidates.map((b) => b.effectiveWeight),
        pool.tableSize,
      );
    this.sourceOnly = pool.hashKey === 'source-ip';
    this.factor = pool.hashBalanceFactor / 100;
  }

  /**
   * One hash and one index in the common case. When the owner of the flow's
   * slot cannot take it (excluded for a retry, at max_connections, or over
   * the bounded-load limit), the flow's preference order is the table walked
   * forward from its slot: the next slot naming a different backend that can
   * take it wins. Deterministic for a given table and load.
   */
  pick(flow: Flow, exclude: readonly Backend[] | null): Backend | null {
    const bs = this.backends;
    if (bs.length === 0) return null;
    const table = this.table;
    const M = table.length;
    const start = flowHash(flow, this.sourceOnly) % M;
    const first = bs[table[start] as number];
    if (first === undefined) return null;
    const limit = this.factor > 0 ? this.loadLimit(exclude) : Infinity;
    if (usable(first, exclude) && fits(first, limit)) return first;
    // Walk on. Stop once every candidate has been seen (at most M slots).
    let seen = 1;
    let last = first;
    for (let step = 1; step < M && seen < bs.length; step++) {
      let j = start + step;
      if (j >= M) j -= M;
      const b = bs[table[j] as number] as Backend;
      if (b === last) continue;
      last = b;
      seen++;
      if (usable(b, exclude) && fits(b, limit)) return b;
    }
    // Everyone is over the bounded-load limit: load must still go somewhere.
    if (limit !== Infinity) return this.leastLoaded(exclude);
    return null;
  }

  /**
   * Bounded load: factor × the average load per unit of weight of the
   * usable candidates, counting the new connection. See fits().
   */
  private loadLimit(exclude: readonly Backend[] | null): number {
    let active = 0;
    let weight = 0;
    for (const b of this.backends) {
      if (!usable(b, exclude)) continue;
      active += b.active;
      weight += b.effectiveWeight;
    }
    if (weight === 0) return Infinity;
    return (this.factor * (active + 1)) / weight;
  }

  private leastLoaded(exclude: readonly Backend[] | null): Backend | null {
    let best: Backend | null = null;
    let bestLoad = Infinity;
    for (const b of this.backends) {
      if (!usable(b, exclude)) continue;
      const load = b.active / b.effectiveWeight;
      if (load < bestLoad) {
        best = b;
        bestLoad = load;
      }
    }
    return best;
  }
}

/**
 * A backend may take one more connection while its active connections,
 * counting the new one, stay within ceil(limit × its weight): its share of
 * factor × the average (rounded up, as in Mirrokni et al., so that a lightly
 * loaded pool keeps every flow on its first choice).
 */
function fits(b: Backend, limit: number): boolean {
  return limit === Infinity || b.active + 1 <= Math.ceil(limit * b.effectiveWeight);
}

export const createMaglev: PickerFactory = (candidates, pool) => new MaglevPicker(candidates, pool);

/** A picker over a table built elsewhere (maglev-async.ts) for exactly these candidates, in this order. */
export function maglevPickerWithTable(candidates: readonly Backend[], pool: PoolConfig, table: Int32Array): Picker {
  return new MaglevPicker(candidates, pool, table);
}
