/**
 * A pool: its backends in a stable order and the current picker.
 *
 * The picker is immutable and rebuilt (off the hot path) whenever the set of
 * candidates, a state or an effective weight changes. Candidates are the
 * primaries that are `up`; when none is, the backups that are `up`.
 */
import type { PoolConfig } from '../config/schema';
import type { Flow, Picker } from '../balancer/picker';
import { createPicker } from '../balancer';
import { Backend, type BackendState } from './backend';

export class Pool {
  readonly name: string;
  config: PoolConfig;
  /** Members in stable order: configuration order, resolved addresses sorted. */
  backends: Backend[];
  private picker: Picker;
  /** Called after every rebuild (metrics, status, worker sync hooks). */
  onChange: ((pool: Pool) => void) | null = null;

  constructor(config: PoolConfig, backends: Backend[]) {
    this.name = config.name;
    this.config = config;
    this.backends = backends;
    this.picker = createPicker(config.algorithm, [], config);
    this.rebuild();
  }

  /** The backends that may take new connections now, in stable order (weight 0, set at run time, takes none). */
  candidates(): Backend[] {
    const primaries = this.backends.filter((b) => !b.backup && b.state === 'up' && b.weight > 0);
    if (primaries.length > 0) return primaries;
    return this.backends.filter((b) => b.backup && b.state === 'up' && b.weight > 0);
  }

  rebuild(): void {
    this.picker = createPicker(this.config.algorithm, this.candidates(), this.config);
    if (this.onChange !== null) this.onChange(this);
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
   * next state change rebuilds).
   */
  setEffectiveWeight(backend: Backend, weight: number): void {
    if (backend.effectiveWeight === weight) return;
    backend.effectiveWeight = weight;
    if (backend.state === 'up') this.rebuild();
  }

  /** Sets a backend's state and rebuilds the picker. Returns the previous state. */
  setState(backend: Backend, state: BackendState): BackendState {
    const from = backend.state;
    if (from === state) return from;
    backend.state = state;
    this.rebuild();
    return from;
  }
}
