/**
 * A pool: its backends in a stable order and the current picker.
 *
 * The picker is immutable and rebuilt (off the hot path) whenever the set of
 * candidates, a state or an effective weight changes. Candidates are the
 * primaries that are `up`; when none is, the backups that are `up`.
 *
 * Control work never stalls the data plane (SPEC §8.6):
 *  - a consistent-hash table larger than ASYNC_TABLE_MIN is built on a
 *    worker thread; until it is in, the previous picker keeps running (it
 *    passes over backends that went down or left, see picker.ts `usable`),
 *    and changes that arrive meanwhile are folded into one more build;
 *  - slow-start weight steps rebuild at most every SLOW_START_REBUILD_MS.
 */
import type { PoolConfig } from '../config/schema';
import type { Flow, Picker } from '../balancer/picker';
import { createPicker } from '../balancer';
import { maglevPickerWithTable } from '../balancer/maglev';
import { ASYNC_TABLE_MIN, buildMaglevTableOffThread } from '../balancer/maglev-async';
import { Backend, type BackendState } from './backend';

/** The picker of a pool that does not pick (see the `picking` argument). */
const NO_PICKER: Picker = { pick: () => null };

/** Weight steps (slow start) rebuild the picker at most this often. */
export const SLOW_START_REBUILD_MS = 100;

export class Pool {
  readonly name: string;
  config: PoolConfig;
  /** Members in stable order: configuration order, resolved addresses sorted. */
  backends: Backend[];
  private picker: Picker;
  /** Pickers built so far (tests, status). */
  builds = 0;
  private building: Promise<void> | null = null;
  private rebuildAgain = false;
  private lastRebuild = Number.NEGATIVE_INFINITY;
  private soon: NodeJS.Timeout | null = null;
  private readonly picking: boolean;

  /**
   * `interim`: the picker of the pool this one replaces (a reload). A large
   * table is then built off the event loop while `interim` runs; without
   * it (start-up, a new pool) the first picker is built here.
   *
   * `picking` false: a pool that only keeps its backends' states and
   * weights and never picks (the primary's shadow pools when workers carry
   * the traffic): no picker, and so no consistent-hash table, is ever built.
   */
  constructor(config: PoolConfig, backends: Backend[], interim?: Picker, picking = true) {
    this.name = config.name;
    this.config = config;
    this.backends = backends;
    this.picking = picking;
    if (!picking) this.picker = NO_PICKER;
    else if (interim !== undefined && this.offThread()) {
      this.picker = interim;
      this.rebuild();
    } else {
      this.picker = createPicker(config.algorithm, [], config);
      this.build();
    }
  }

  /** The backends that may take new connections now, in stable order (weight 0, set at run time, takes none). */
  candidates(): Backend[] {
    const primaries = this.backends.filter((b) => !b.backup && b.state === 'up' && b.weight > 0);
    if (primaries.length > 0) return primaries;
    return this.backends.filter((b) => b.backup && b.state === 'up' && b.weight > 0);
  }

  /** The picker in use (handed to the pool that replaces this one on reload). */
  currentPicker(): Picker {
    return this.picker;
  }

  private offThread(): boolean {
    return this.config.algorithm === 'consistent-hash' && this.config.tableSize > ASYNC_TABLE_MIN;
  }

  /** Rebuilds the picker: in place, or for a large table on the worker thread. */
  rebuild(): void {
    if (this.soon !== null) {
      clearTimeout(this.soon);
      this.soon = null;
    }
    this.lastRebuild = Date.now();
    if (!this.picking) return;
    if (!this.offThread()) return this.build();
    if (this.building !== null) {
      this.rebuildAgain = true;
      return;
    }
    const candidates = this.candidates();
    const cfg = this.config;
    this.building = buildMaglevTableOffThread(
      candidates.map((b) => b.address),
      candidates.map((b) => b.effectiveWeight),
      cfg.tableSize,
    ).then(
      (table) => this.install(maglevPickerWithTable(candidates, cfg, table)),
      () => this.build(), // no worker thread here: build in place
    ).finally(() => {
      this.building = null;
      if (this.rebuildAgain) {
        this.rebuildAgain = false;
        this.rebuild();
      }
    });
  }

  /** Resolves once no build is in flight (tests; a reload's settle). */
  async whenBuilt(): Promise<void> {
    while (this.building !== null) await this.building;
  }

  private build(): void {
    this.install(createPicker(this.config.algorithm, this.candidates(), this.config));
  }

  private install(picker: Picker): void {
    this.picker = picker;
    this.builds++;
  }

  /** Hot path: a backend for this flow, or null (reject as `no_backend`). */
  pick(flow: Flow, exclude: readonly Backend[] | null): Backend | null {
    return this.picker.pick(flow, exclude);
  }

  find(address: string): Backend | undefined {
    return this.backends.find((b) => b.address === address);
  }

  /**
   * Sets a backend's effective weight (slow start; > 0) and rebuilds the
   * picker when the backend is `up` (otherwise it is no candidate and the
   * next state change rebuilds) — at most every SLOW_START_REBUILD_MS: steps
   * that come faster are folded into one rebuild at the end of the interval.
   */
  setEffectiveWeight(backend: Backend, weight: number): void {
    if (backend.effectiveWeight === weight) return;
    backend.effectiveWeight = weight;
    if (backend.state !== 'up') return;
    const wait = this.lastRebuild + SLOW_START_REBUILD_MS - Date.now();
    if (wait <= 0) return this.rebuild();
    if (this.soon === null) {
      this.soon = setTimeout(() => {
        this.soon = null;
        this.rebuild();
      }, wait);
      this.soon.unref();
    }
  }

  /** Sets a backend's state and rebuilds the picker. Returns the previous state. */
  setState(backend: Backend, state: BackendState): BackendState {
    const from = backend.state;
    if (from === state) return from;
    backend.state = state;
    this.rebuild();
    return from;
  }

  /** Stops a pending weight-step rebuild (the pool is being replaced or the process stops). */
  dispose(): void {
    if (this.soon !== null) clearTimeout(this.soon);
    this.soon = null;
  }
}
