/**
 * Pool membership in the control plane: each pool's backends as its
 * resolver (src/dns/resolver.ts) finds them, with the weights set at run
 * time in place of the configured ones, pushed to the data plane and the
 * health monitor when they change outside a reload (DNS, admin weight), and
 * the `pool has no backend up` / `removed` lines that follow such changes.
 */
import type { Config } from '../config/schema';
import type { Logger } from '../log';
import type { BackendSpec, DataPlaneApi } from '../dataplane/api';
import type { DataPlaneSnapshot } from '../stats/stats';
import type { HealthMonitor } from '../health/monitor';
import type { RuntimeState } from '../state/runtime-state';
import { PoolResolver, type LookupFn } from '../dns/resolver';
import { formatHostPort } from '../net/address';

export interface PoolMembershipDeps {
  readonly log: Logger;
  readonly dataPlane: DataPlaneApi;
  readonly health: HealthMonitor;
  readonly lookup: LookupFn | undefined;
  /** The configuration in effect. */
  config(): Config;
  /** Drain and weight set at run time. */
  runtime(): RuntimeState;
}

export class PoolMembership {
  /** One per pool: its backends by name, re-resolved every resolve_interval. */
  resolvers = new Map<string, PoolResolver>();
  /** True while a reload resolves and applies: DNS changes wait for it. */
  reloading = false;
  /** True once draining: nothing changes any more. */
  draining = false;
  private readonly changeListeners = new Set<(pool: string) => void>();
  /** Whether each pool had a backend `up` when last looked at. */
  private readonly poolUp = new Map<string, boolean>();

  constructor(private readonly deps: PoolMembershipDeps) {}

  /** Subscribes to membership changes outside a reload (new backends to probe, vanished ones to forget); returns the unsubscribe function. */
  onPoolChanged(fn: (pool: string) => void): () => void {
    this.changeListeners.add(fn);
    return () => this.changeListeners.delete(fn);
  }

  /**
   * Resolves each pool's backends to addresses: keeps the resolver of a
   * pool the reload plan leaves unchanged (`changed` lists the changed
   * pools; null at start), builds a new one (inheriting what the old one
   * knew) for a changed or new pool, and resolves every name once. Nothing
   * is started or stopped here.
   */
  async resolveAll(config: Config, changed: readonly string[] | null): Promise<{ resolvers: Map<string, PoolResolver>; backends: Map<string, BackendSpec[]> }> {
    const resolvers = new Map<string, PoolResolver>();
    for (const pc of config.pools) {
      const cur = this.resolvers.get(pc.name);
      if (cur !== undefined && changed !== null && !changed.includes(pc.name)) {
        resolvers.set(pc.name, cur);
        continue;
      }
      const opts = { pool: pc, log: this.deps.log, previous: cur ?? null, onChange: (pool: string) => this.sync(pool) };
      const lookup = this.deps.lookup;
      resolvers.set(pc.name, new PoolResolver(lookup !== undefined ? { ...opts, lookup } : opts));
    }
    const backends = new Map<string, BackendSpec[]>();
    await Promise.all([...resolvers].map(async ([name, r]) => backends.set(name, this.withOverrides(name, await r.refresh()))));
    return { resolvers, backends };
  }

  /**
   * Makes `resolvers` current after they were applied: stops the ones they
   * replace, starts their timers, and applies any change a kept resolver
   * found while the reload ran.
   */
  install(resolvers: Map<string, PoolResolver>): void {
    for (const [name, r] of this.resolvers) if (resolvers.get(name) !== r) r.stop();
    this.resolvers = resolvers;
    for (const name of resolvers.keys()) this.sync(name);
    if (!this.draining) for (const r of resolvers.values()) r.start();
  }

  /** Drops resolvers of a generation that failed to apply; the current ones catch up on what changed meanwhile. */
  discard(resolvers: Map<string, PoolResolver> | null): void {
    if (resolvers !== null) for (const [name, r] of resolvers) if (this.resolvers.get(name) !== r) r.stop();
    for (const name of this.resolvers.keys()) this.sync(name);
  }

  stop(): void {
    for (const r of this.resolvers.values()) r.stop();
  }

  /** Resolve failures of a pool's resolver (status document). */
  resolveFailures(pool: string): number {
    return this.resolvers.get(pool)?.failures ?? 0;
  }

  /**
   * Rebuilds one pool in the data plane when its resolver's backend list
   * differs from the pool's members. Deferred while a reload runs (it syncs
   * every pool when done); nothing while draining.
   */
  private sync(pool: string): void {
    if (this.reloading || this.draining) return;
    const r = this.resolvers.get(pool);
    const p = this.deps.dataPlane.pools.get(pool);
    if (r === undefined || p === undefined) return;
    const specs = this.withOverrides(pool, r.specs());
    const want = specs.map((x) => formatHostPort(x.host, x.port)).join(',');
    if (want === p.backends.map((b) => b.address).join(',')) return;
    const before = this.deps.dataPlane.snapshot();
    this.push(pool, specs);
    this.logRemovedBackends(before, 'dns');
  }

  /** Re-applies one pool with the run-time weights (after an admin weight change). False when the pool is unknown. */
  refresh(pool: string): boolean {
    const r = this.resolvers.get(pool);
    if (r === undefined) return false;
    this.push(pool, this.withOverrides(pool, r.specs()));
    return true;
  }

  /** Rebuilds one pool from `specs` in the data plane and the health monitor. */
  private push(pool: string, specs: BackendSpec[]): void {
    this.deps.dataPlane.setPoolBackends(pool, specs);
    for (const fn of this.changeListeners) fn(pool);
    // New addresses are probed, vanished ones forgotten, as on a reload.
    const all = new Map<string, BackendSpec[]>();
    for (const [name, res] of this.resolvers) all.set(name, name === pool ? specs : this.withOverrides(name, res.specs()));
    this.deps.health.sync(this.deps.config(), all, false);
    this.checkPools();
  }

  /** A pool's resolved backends with the weights set at run time in place of the configured ones. */
  private withOverrides(pool: string, specs: BackendSpec[]): BackendSpec[] {
    const runtime = this.deps.runtime();
    return specs.map((s) => {
      const w = runtime.get(pool, formatHostPort(s.host, s.port))?.weight;
      return w === undefined || w === null ? s : { ...s, weight: w };
    });
  }

  /**
   * `pool has no backend up` (error) when a pool loses its last `up`
   * backend, `pool has backends up` (info) when it has one again: once per
   * transition. A pool first seen without any is reported too.
   */
  checkPools(): void {
    const { dataPlane, log } = this.deps;
    for (const [name, p] of dataPlane.pools) {
      const up = p.backends.some((b) => b.state === 'up');
      const was = this.poolUp.get(name);
      this.poolUp.set(name, up);
      if (was === up || (was === undefined && up)) continue;
      if (up) log.info({ pool: name, backends: p.backends.length }, 'pool has backends up');
      else log.error({ pool: name, backends: p.backends.length }, 'pool has no backend up');
    }
    for (const name of [...this.poolUp.keys()]) if (!dataPlane.pools.has(name)) this.poolUp.delete(name);
  }

  /** `backend state changed` (warn) to `removed` for each backend of `before` that left its pool. */
  logRemovedBackends(before: DataPlaneSnapshot, reason: 'config_reload' | 'dns'): void {
    for (const p of before.pools) {
      const now = this.deps.dataPlane.pools.get(p.name);
      for (const b of p.backends) {
        if (b.state === 'removed' || now?.find(b.address) !== undefined) continue;
        this.deps.log.warn({ pool: p.name, backend: b.address, from: b.state, to: 'removed', reason, active_connections: b.active_connections }, 'backend state changed');
      }
    }
  }
}
