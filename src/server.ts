/**
 * The control plane: owns the configuration and its generations, name
 * resolution, health checking, the admin API and the lifecycle (start,
 * reload, drain). It drives the data plane through DataPlane's narrow
 * interface only.
 */
import type { Config, PoolConfig, SpliceMode } from './config/schema';
import { canSplice, splicePump, spliceEngineInfo } from './tcp/splice-pump';
import { spliceAvailable, tuneMalloc } from './native/addon';
import { loadConfigFile } from './config/load';
import { ConfigError, L4lbError, formatConfigIssue } from './errors';
import { createLogger, type Logger } from './log';
import { DataPlane, type BackendSpec, type DataPlaneApi, type ListenerBinding } from './dataplane/dataplane';
import { ClusterDataPlane } from './cluster/primary';
import type { BackendSnapshot, DataPlaneSnapshot } from './dataplane/stats';
import { HealthMonitor } from './health/monitor';
import { VERSION } from './version';
import { AdminServer } from './admin/admin';
import { createRegistry } from './metrics/metrics';
import { Notifier } from './systemd/notify';
import type { Registry } from 'prom-client';
import { PoolResolver, type LookupFn } from './dns/resolver';
import { formatAddress } from './backend/backend';

export interface ServerOptions {
  configPath: string;
  /** An already validated configuration (from the CLI's first load). */
  config: Config;
  log?: Logger;
  /** Inherited listening sockets by listener name (systemd socket activation). */
  fds?: ReadonlyMap<string, number>;
  /** Name resolution for backends given by name; defaults to the system resolver (dns.lookup). */
  lookup?: LookupFn;
}

export type ReloadResult =
  | { ok: true; generation: number }
  | { ok: false; errors: string[] };

export class Server {
  readonly log: Logger;
  readonly configPath: string;
  config: Config;
  generation = 1;
  readonly startedAt = Date.now();
  readonly dataPlane: DataPlaneApi;
  reloads = { success: 0, failure: 0 };
  draining = false;
  private drainPromise: Promise<void> | null = null;
  private reloadChain: Promise<unknown> = Promise.resolve();
  private readonly fds: ReadonlyMap<string, number> | undefined;
  bindings: ListenerBinding[] = [];
  readonly registry: Registry;
  admin: AdminServer | null = null;
  readonly notifier: Notifier;
  readonly health: HealthMonitor;
  /** One per pool: its backends by name, re-resolved every resolve_interval. */
  resolvers = new Map<string, PoolResolver>();
  private readonly lookup: LookupFn | undefined;
  /** True while a reload resolves and applies: DNS changes wait for it. */
  private reloading = false;
  private readonly poolChangedListeners = new Set<(pool: string) => void>();

  private constructor(opts: ServerOptions) {
    this.configPath = opts.configPath;
    this.config = opts.config;
    this.log = opts.log ?? createLogger(opts.config.global.logLevel);
    this.fds = opts.fds;
    const workers = opts.config.global.workers;
    const pump = choosePump(opts.config.global.splice, workers);
    // Only the JS pump churns 64 KiB read buffers, and only where the data
    // plane runs (workers tune themselves); with splice the tuning would only
    // cost idle memory (~0.5 KiB per connection, bench/README.md).
    const mallocTuned = pump.kind === 'js' && workers <= 1 ? tuneMalloc() : false;
    this.log.info({ pump: pump.kind, reason: pump.reason, malloc_tuned: mallocTuned }, 'byte pump');
    this.lookup = opts.lookup;
    this.registry = createRegistry(this);
    this.notifier = new Notifier(this.log);
    const onListening = (listener: string, address: string, port: number): void => this.log.info({ listener, address, port }, 'listening');
    const onConnectFailure = (pool: string, address: string, kind: 'refused' | 'timeout'): void => this.health.onConnectFailure(pool, address, kind);
    if (workers > 1) {
      this.log.info({ workers }, 'data plane in worker processes');
      this.dataPlane = new ClusterDataPlane({ log: this.log, workers, splice: pump.kind === 'splice' ? opts.config.global.splice : 'off', onConnectFailure, onListening });
    } else {
      this.dataPlane = new DataPlane({
        log: this.log,
        splice: pump.kind === 'splice' ? { pump: splicePump, canSplice } : null,
        onListening,
        onConnectFailure,
      });
    }
    this.health = new HealthMonitor({
      log: this.log,
      setState: (pool, address, state) => void this.dataPlane.setBackendState(pool, address, state),
      setWeight: (pool, address, w) => void this.dataPlane.setBackendWeight(pool, address, w),
    });
  }

  /** Builds the server and binds every listener. Throws L4lbError('ERR_L4LB_BIND') when one cannot bind. */
  static async start(opts: ServerOptions): Promise<Server> {
    const s = new Server(opts);
    const { resolvers, backends } = await s.resolveAll(opts.config);
    try {
      s.bindings = await s.dataPlane.apply(opts.config, backends, s.fds);
    } catch (err) {
      for (const r of resolvers.values()) r.stop();
      throw bindError(err);
    }
    s.health.sync(opts.config, backends, true);
    s.installResolvers(resolvers);
    if (opts.config.admin !== null) {
      const admin = new AdminServer(opts.config.admin, s, s.registry);
      try {
        await admin.listen();
      } catch (err) {
        await s.dataPlane.stopAccepting();
        s.stopControlPlane();
        throw bindError(err, 'admin');
      }
      s.admin = admin;
      s.log.info({ address: admin.address, port: admin.port, token: opts.config.admin.token !== null }, 'admin listening');
    }
    return s;
  }

  /**
   * Subscribes to changes of one pool's membership outside a reload (DNS
   * re-resolution): new backends to probe, vanished ones to forget. Returns
   * the unsubscribe function.
   */
  onPoolChanged(fn: (pool: string) => void): () => void {
    this.poolChangedListeners.add(fn);
    return () => this.poolChangedListeners.delete(fn);
  }

  /**
   * Resolves each pool's backends to addresses (see src/dns/resolver.ts):
   * keeps the resolver of a pool whose configuration is unchanged, builds a
   * new one (inheriting what the old one knew) for a changed or new pool,
   * and resolves every name once. Nothing is started or stopped here.
   */
  private async resolveAll(config: Config): Promise<{ resolvers: Map<string, PoolResolver>; backends: Map<string, BackendSpec[]> }> {
    const resolvers = new Map<string, PoolResolver>();
    for (const pc of config.pools) {
      const cur = this.resolvers.get(pc.name);
      if (cur !== undefined && samePool(cur.config, pc)) {
        resolvers.set(pc.name, cur);
        continue;
      }
      const opts = { pool: pc, log: this.log, previous: cur ?? null, onChange: (pool: string) => this.syncPool(pool) };
      resolvers.set(pc.name, new PoolResolver(this.lookup !== undefined ? { ...opts, lookup: this.lookup } : opts));
    }
    const backends = new Map<string, BackendSpec[]>();
    await Promise.all([...resolvers].map(async ([name, r]) => backends.set(name, await r.refresh())));
    return { resolvers, backends };
  }

  /**
   * Makes `resolvers` current after they were applied: stops the ones they
   * replace, starts their timers, and applies any change a kept resolver
   * found while the reload ran.
   */
  private installResolvers(resolvers: Map<string, PoolResolver>): void {
    for (const [name, r] of this.resolvers) if (resolvers.get(name) !== r) r.stop();
    this.resolvers = resolvers;
    for (const name of resolvers.keys()) this.syncPool(name);
    if (!this.draining) for (const r of resolvers.values()) r.start();
  }

  /**
   * Rebuilds one pool in the data plane when its resolver's backend list
   * differs from the pool's members. Deferred while a reload runs (it syncs
   * every pool when done); nothing while draining.
   */
  private syncPool(pool: string): void {
    if (this.reloading || this.draining) return;
    const r = this.resolvers.get(pool);
    const p = this.dataPlane.pools.get(pool);
    if (r === undefined || p === undefined) return;
    const specs = r.specs();
    const want = specs.map((x) => formatAddress(x.host, x.port, x.family)).join(',');
    if (want === p.backends.map((b) => b.address).join(',')) return;
    this.dataPlane.setPoolBackends(pool, specs);
    for (const fn of this.poolChangedListeners) fn(pool);
    // New addresses are probed, vanished ones forgotten, as on a reload.
    const all = new Map<string, BackendSpec[]>();
    for (const [name, res] of this.resolvers) all.set(name, res.specs());
    this.health.sync(this.config, all, false);
  }

  /**
   * Reloads the configuration file (SIGHUP, admin API). Invalid: logs every
   * error, counts a failure and changes nothing. Valid: applies it as one new
   * generation. Reloads are serialised.
   */
  reload(): Promise<ReloadResult> {
    const run = async (): Promise<ReloadResult> => {
      if (this.draining) return this.reloadFailed(['draining: reload refused (the process is shutting down)']);
      let next: Config;
      try {
        next = loadConfigFile(this.configPath);
      } catch (err) {
        const errors = err instanceof ConfigError ? err.issues.map(formatConfigIssue) : [String((err as Error).message ?? err)];
        return this.reloadFailed(errors);
      }
      this.reloading = true;
      void this.notifier.reloading();
      let resolvers: Map<string, PoolResolver> | null = null;
      try {
        const resolved = await this.resolveAll(next);
        resolvers = resolved.resolvers;
        this.bindings = await this.dataPlane.apply(next, resolved.backends);
        this.health.sync(next, resolved.backends, false);
      } catch (err) {
        this.reloading = false;
        if (resolvers !== null) for (const [name, r] of resolvers) if (this.resolvers.get(name) !== r) r.stop();
        for (const name of this.resolvers.keys()) this.syncPool(name);
        void this.notifier.ready();
        return this.reloadFailed([bindError(err).message]);
      }
      this.reloading = false;
      this.installResolvers(resolvers);
      this.config = next;
      this.generation++;
      this.reloads.success++;
      this.log.level = next.global.logLevel;
      await this.applyAdmin(next);
      this.log.info({ config_generation: this.generation }, 'config reloaded');
      void this.notifier.ready();
      return { ok: true, generation: this.generation };
    };
    const p = this.reloadChain.then(run, run);
    this.reloadChain = p;
    return p;
  }

  /**
   * Follows a change of [admin] on reload: a new bind address is bound
   * before the old one is closed; a failure to bind keeps the old endpoint
   * (logged). A token change takes effect at once.
   */
  private async applyAdmin(next: Config): Promise<void> {
    const cur = this.admin;
    const want = next.admin;
    if (want === null) {
      this.admin = null;
      if (cur !== null) await cur.close();
      return;
    }
    if (cur !== null && cur.config.bind.host === want.bind.host && cur.config.bind.port === want.bind.port) {
      cur.setConfig(want);
      return;
    }
    const fresh = new AdminServer(want, this, this.registry);
    try {
      await fresh.listen();
    } catch (err) {
      this.log.error({ err: bindError(err, 'admin').message }, 'admin endpoint could not move; keeping the old one');
      return;
    }
    this.admin = fresh;
    this.log.info({ address: fresh.address, port: fresh.port, token: want.token !== null }, 'admin listening');
    // Bounded (AdminServer.close): open requests get a second, then are cut.
    if (cur !== null) await cur.close();
  }

  /** Stops timers of the control plane (health, DNS, watchdog). */
  private stopControlPlane(): void {
    this.health.stop();
    for (const r of this.resolvers.values()) r.stop();
    this.notifier.close();
  }

  private reloadFailed(errors: string[]): ReloadResult {
    this.reloads.failure++;
    this.log.error({ errors }, 'config reload failed');
    return { ok: false, errors };
  }

  /**
   * Graceful drain (SIGTERM): stop accepting, let open connections finish for
   * up to drain_timeout, reset the rest. Idempotent.
   */
  drain(): Promise<void> {
    if (this.drainPromise !== null) return this.drainPromise;
    this.draining = true;
    void this.notifier.stopping();
    this.drainPromise = (async () => {
      // shutdown_delay: /healthz already answers 503 (this.draining); listeners keep
      // accepting so keepalived / BGP in front can move the traffic away first.
      const delay = this.config.global.shutdownDelayMs;
      if (delay > 0) {
        this.log.info({ shutdown_delay_ms: delay }, 'shutdown delay');
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
      this.stopControlPlane();
      const dp = this.dataPlane;
      await dp.stopAccepting();
      const open = dp.activeConnections();
      this.log.info({ active_connections: open, drain_timeout_ms: this.config.global.drainTimeoutMs }, 'draining');
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), this.config.global.drainTimeoutMs);
      });
      const outcome = await Promise.race([dp.whenIdle().then(() => 'idle' as const), deadline]);
      clearTimeout(timer);
      if (outcome === 'timeout') {
        const left = dp.activeConnections();
        this.log.warn({ active_connections: left }, 'drain timeout: closing open connections');
        dp.abortAll('drain_timeout');
        await dp.whenIdle();
      }
      await dp.dispose();
      if (this.admin !== null) await this.admin.close();
      await this.notifier.send(); // let queued notifications go out
      this.log.info('stopped');
    })();
    return this.drainPromise;
  }

  /**
   * Admin drain / enable of one backend (SPEC §5): draining takes no new
   * connections while open ones go on, and keeps being probed; enabling
   * returns it to `up` or `down` as its checks say. Returns the backend's
   * snapshot after the change, or null when the pool or backend is unknown.
   */
  setDrain(pool: string, address: string, drain: boolean): BackendSnapshot | null {
    if (!this.health.setDrain(pool, address, drain)) return null;
    const p = this.snapshot().pools.find((x) => x.name === pool);
    return p?.backends.find((b) => b.address === address) ?? null;
  }

  snapshot(): DataPlaneSnapshot {
    return this.dataPlane.snapshot();
  }

  /**
   * SPEC §8.1 per backend: `check` (the last probe, null before the first
   * or when not probed) and `state_since` (ISO; null for a backend the
   * health monitor does not know, such as one removed by a reload).
   */
  private checkFields(pool: string, address: string): { check: unknown; state_since: string | null } {
    const c = this.health.checkStatus(pool, address);
    return { check: c?.check ?? null, state_since: c?.state_since ?? null };
  }

  /** Probe outcomes per backend, for `l4lb_health_checks_total` (read at scrape time). */
  healthChecks(): readonly { pool: string; backend: string; ok: number; failed: number }[] {
    return this.health.checkCounts();
  }

  /** The status document of SPEC §5 (`GET /api/v1/status`). */
  status(): Record<string, unknown> {
    const snap = this.snapshot();
    return {
      version: VERSION,
      uptime_seconds: Math.floor((Date.now() - this.startedAt) / 1000),
      config_generation: this.generation,
      draining: this.draining,
      listeners: snap.listeners
        .filter((l) => l.current)
        .map((l) => ({
          name: l.name,
          protocol: l.protocol,
          bind: l.bind,
          address: l.address,
          port: l.port,
          pool: l.pool,
          active_connections: l.active_connections,
          ...(l.route_by !== undefined ? { route_by: l.route_by, routes: l.routes ?? [] } : {}),
          ...(l.route_by === 'sni' && l.pool === '' ? { pool: null } : {}),
        })),
      pools: snap.pools.map((p) => ({
        name: p.name,
        algorithm: p.algorithm,
        resolve_failures: this.resolvers.get(p.name)?.failures ?? 0,
        backends: p.backends.map((b) => ({
          address: b.address,
          ...(b.name !== null ? { name: b.name } : {}),
          state: b.state,
          weight: b.weight,
          backup: b.backup,
          active_connections: b.active_connections,
          total_connections: b.total_connections,
          ...this.checkFields(p.name, b.address),
        })),
      })),
    };
  }
}

/**
 * Which byte pump carries TCP connections: splice(2) through the native
 * addon when `splice` allows it and the addon loads, else the JS pump.
 * `splice = "on"` without the addon is a start-up failure (exit 1).
 */
function choosePump(mode: SpliceMode, workers: number): { kind: 'js' | 'splice'; reason: string } {
  if (mode === 'off') return { kind: 'js', reason: 'splice = "off"' };
  // With workers the primary carries no bytes: it only checks that the addon
  // loads; each worker starts its own engine (threads and slab).
  const info = workers > 1 ? withReason(spliceAvailable(), 'splice(2) in each worker') : spliceEngineInfo();
  if (info.ok) return { kind: 'splice', reason: info.reason };
  if (mode === 'on') throw new L4lbError('ERR_L4LB_NATIVE', `splice = "on" but the native splice addon is not available: ${info.reason}`);
  return { kind: 'js', reason: `splice addon not available: ${info.reason}` };
}

function withReason(r: { ok: boolean; reason: string }, ok: string): { ok: boolean; reason: string } {
  return r.ok ? { ok: true, reason: ok } : r;
}

function bindError(err: unknown, what = 'listener'): L4lbError {
  if (err instanceof L4lbError) return err;
  const e = err as NodeJS.ErrnoException & { address?: string; port?: number };
  if (e && (e.code === 'EADDRINUSE' || e.code === 'EACCES' || e.code === 'EADDRNOTAVAIL')) {
    const why = e.code === 'EADDRINUSE' ? 'address already in use' : e.code === 'EACCES' ? 'permission denied' : 'address not available';
    return new L4lbError('ERR_L4LB_BIND', `${what}: cannot bind ${e.address ?? '?'}:${e.port ?? '?'}: ${why}`, { cause: err });
  }
  return new L4lbError('ERR_L4LB_START', e?.message ?? String(err), { cause: err });
}

/** Contract: true when two pool configurations are equal in every field (a kept pool keeps its resolver). */
function samePool(a: PoolConfig, b: PoolConfig): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
