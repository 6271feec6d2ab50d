/**
 * Admin operations on one backend (SPEC §5): drain / enable, weight, and
 * resetting its connections. Drain and weight are runtime state
 * (state/runtime-state.ts): they outlive reloads while the backend stays,
 * and restarts with state_file (control/state-file.ts), which is rewritten
 * after each change. Answers are the backend's entry of the status
 * document, or null when the pool or backend is unknown.
 */
import type { Config } from '../config/schema';
import type { Logger } from '../log';
import type { DataPlaneApi } from '../dataplane/api';
import type { HealthMonitor } from '../health/monitor';
import type { RuntimeState } from '../state/runtime-state';
import type { PoolMembership } from './pools';
import { backendOf } from './status';
import { writeStateFile } from './state-file';

export interface BackendOpsDeps {
  readonly log: Logger;
  readonly dataPlane: DataPlaneApi;
  readonly health: HealthMonitor;
  readonly membership: PoolMembership;
  /** The configuration in effect (where state_file is). */
  config(): Config;
  /** Drain and weight set at run time. */
  runtime(): RuntimeState;
  /** The status document of SPEC §5. */
  status(): Record<string, unknown>;
}

export class BackendOps {
  constructor(private readonly deps: BackendOpsDeps) {}

  /**
   * Draining takes no new connections while open ones go on, and keeps
   * being probed; enabling returns the backend to `up` or `down` as its
   * checks say.
   */
  setDrain(pool: string, address: string, drain: boolean): Record<string, unknown> | null {
    const { deps } = this;
    if (!deps.health.setDrain(pool, address, drain)) return null;
    if (deps.runtime().setDrain(pool, address, drain)) this.save();
    return backendOf(deps.status(), pool, address);
  }

  /** Weight 0-1000 (0 = no new connections, open ones go on); applies at once (the pool's picker is rebuilt). */
  setWeight(pool: string, address: string, weight: number): Record<string, unknown> | null {
    const { deps } = this;
    if (!deps.membership.resolvers.has(pool) || deps.dataPlane.pools.get(pool)?.find(address) === undefined) return null;
    if (deps.runtime().setWeight(pool, address, weight)) this.save();
    deps.membership.refresh(pool);
    return backendOf(deps.status(), pool, address);
  }

  /** Resets every open connection and UDP session of the backend; how many. Null when unknown (not even `removed`). */
  async shutdownConnections(pool: string, address: string): Promise<number | null> {
    const { deps } = this;
    if (backendOf(deps.status(), pool, address) === null) return null;
    const n = await deps.dataPlane.shutdownBackend(pool, address);
    deps.log.info({ pool, backend: address, closed: n }, 'backend connections shut down');
    return n;
  }

  /** At start: the runtime state read (state file, upgrade) applies; entries of backends no longer configured are dropped. */
  restore(): void {
    this.forgetDeparted();
    for (const e of this.deps.runtime().all()) if (e.drain) this.deps.health.setDrain(e.pool, e.address, true);
  }

  /** Runtime drain/weight of backends that left are forgotten (and the state file follows). */
  forgetDeparted(): void {
    const pools = this.deps.dataPlane.pools;
    if (this.deps.runtime().retain((pool, address) => pools.get(pool)?.find(address) !== undefined)) this.save();
  }

  private save(): void {
    writeStateFile(this.deps.config(), this.deps.runtime(), this.deps.log);
  }
}
