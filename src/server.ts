/**
 * The control plane: owns the configuration and its generations, name
 * resolution, health checking, the admin API and the lifecycle (start,
 * reload, drain). It drives the data plane through DataPlane's narrow
 * interface only.
 */
import type { Config, PoolConfig, SpliceMode } from './config/schema';
import { canSplice, splicePump, spliceEngineInfo } from './tcp/splice-pump';
import { spliceAvailable, tuneMalloc } from './native/addon';
import { loadConfigFileOffThread } from './config/load-off-thread';
import { ConfigError, L4lbError, formatConfigIssue } from './errors';
import { createLogger, type Logger } from './log';
import { DataPlane, type BackendSpec, type DataPlaneApi, type ListenerBinding } from './dataplane/dataplane';
import { ClusterDataPlane } from './cluster/primary';
import type { DataPlaneSnapshot } from './dataplane/stats';
import { HealthMonitor } from './health/monitor';
import { VERSION } from './version';
import { AdminServer } from './admin/admin';
import { createRegistry } from './metrics/metrics';
import { Notifier } from './systemd/notify';
import type { Registry } from 'prom-client';
import { PoolResolver, type LookupFn } from './dns/resolver';
import { formatHostPort } from './net/address';
import { RuntimeState, stateFilePath } from './state/runtime-state';
import { planReload } from './config/diff';
import type { ConnectionInfo, ConnectionQuery } from './dataplane/connections';
import type { Inherited } from './upgrade/protocol';
import { upgrade as runUpgrade, type UpgradeResult } from './upgrade/old';
import { inheritRuntime, leaveAfterUpgrade } from './upgrade/hooks';

export interface ServerOptions {
  configPath: string;
  /** An already validated configuration (from the CLI's first load). */
  config: Config;
  log?: Logger;
  /** Inherited listening sockets by listener name (systemd socket activation). */
  fds?: ReadonlyMap<string, number>;
  /** Name resolution for backends given by name; defaults to the system resolver (dns.lookup). */
  lookup?: LookupFn;
  /** Upgrade (SPEC §8.5): what the previous process handed over (listening sockets are in `fds`). */
  inherited?: Inherited;
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
  /** Drain and weight set through the admin API (kept across reloads; with state_file across restarts). */
  runtime = new RuntimeState();
  /** Whether each pool had a backend `up` when last looked at (`pool has no backend up` once per transition). */
  private readonly poolUp = new Map<string, boolean>();

  private constructor(opts: ServerOptions) {
    this.configPath = opts.configPath;
    this.config = opts.config;
    this.log = opts.log ?? createLogger(opts.config.global.logLevel);
    this.log.info({ version: VERSION, config: opts.configPath, pid: process.pid, node: process.version }, 'starting');
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
      setState: (pool, address, state) => {
        this.dataPlane.setBackendState(pool, address, state);
        this.checkPools();
      },
      setWeight: (pool, address, w) => void this.dataPlane.setBackendWeight(pool, address, w),
    });
  }

  /** Builds the server and binds every listener. Throws L4lbError('ERR_L4LB_BIND') when one cannot bind. */
  static async start(opts: ServerOptions): Promise<Server> {
    const s = new Server(opts);
    s.loadStateFile();
    if (opts.inherited !== undefined) inheritRuntime(s, opts.inherited);
    const { resolvers, backends } = await s.resolveAll(opts.config);
    try {
      s.bindings = await s.dataPlane.apply(opts.config, backends, s.fds);
    } catch (err) {
      for (const r of resolvers.values()) r.stop();
      throw bindError(err);
    }
    s.health.sync(opts.config, backends, true);
    if (opts.inherited !== undefined) s.health.importStates(opts.inherited.health);
    s.installResolvers(resolvers);
    // Drains from the state file; entries of backends no longer configured are dropped.
    if (s.runtime.retain((pool, address) => s.dataPlane.pools.get(pool)?.find(address) !== undefined)) s.saveStateFile();
    for (const e of s.runtime.all()) if (e.drain) s.health.setDrain(e.pool, e.address, true);
    s.checkPools();
    if (opts.config.admin !== null) {
      const admin = new AdminServer(opts.config.admin, s, s.registry);
      try {
        await admin.listen(opts.inherited?.adminFd ?? undefined);
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
    await Promise.all([...resolvers].map(async ([name, r]) => backends.set(name, this.withOverrides(name, await r.refresh()))));
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
    const specs = this.withOverrides(pool, r.specs());
    const want = specs.map((x) => formatHostPort(x.host, x.port)).join(',');
    if (want === p.backends.map((b) => b.address).join(',')) return;
    const before = this.snapshot();
    this.pushPool(pool, specs);
    this.logRemovedBackends(before, 'dns');
  }

  /** Rebuilds one pool from `specs` in the data plane and the health monitor (DNS change, weight set at run time). */
  private pushPool(pool: string, specs: BackendSpec[]): void {
    this.dataPlane.setPoolBackends(pool, specs);
    for (const fn of this.poolChangedListeners) fn(pool);
    // New addresses are probed, vanished ones forgotten, as on a reload.
    const all = new Map<string, BackendSpec[]>();
    for (const [name, res] of this.resolvers) all.set(name, name === pool ? specs : this.withOverrides(name, res.specs()));
    this.health.sync(this.config, all, false);
    this.checkPools();
  }

  /** A pool's resolved backends with the weights set at run time in place of the configured ones. */
  private withOverrides(pool: string, specs: BackendSpec[]): BackendSpec[] {
    return specs.map((s) => {
      const w = this.runtime.get(pool, formatHostPort(s.host, s.port))?.weight;
      return w === undefined || w === null ? s : { ...s, weight: w };
    });
  }

  /**
   * `pool has no backend up` (error) when a pool loses its last `up`
   * backend, `pool has backends up` (info) when it has one again: once per
   * transition. A pool first seen without any is reported too.
   */
  private checkPools(): void {
    for (const [name, p] of this.dataPlane.pools) {
      const up = p.backends.some((b) => b.state === 'up');
      const was = this.poolUp.get(name);
      this.poolUp.set(name, up);
      if (was === up || (was === undefined && up)) continue;
      if (up) this.log.info({ pool: name, backends: p.backends.length }, 'pool has backends up');
      else this.log.error({ pool: name, backends: p.backends.length }, 'pool has no backend up');
    }
    for (const name of [...this.poolUp.keys()]) if (!this.dataPlane.pools.has(name)) this.poolUp.delete(name);
  }

  /** `backend state changed` (warn) to `removed` for each backend of `before` that left its pool. */
  private logRemovedBackends(before: DataPlaneSnapshot, reason: 'config_reload' | 'dns'): void {
    for (const p of before.pools) {
      const now = this.dataPlane.pools.get(p.name);
      for (const b of p.backends) {
        if (b.state === 'removed' || now?.find(b.address) !== undefined) continue;
        this.log.warn({ pool: p.name, backend: b.address, from: b.state, to: 'removed', reason, active_connections: b.active_connections }, 'backend state changed');
      }
    }
  }

  /** Reads `state_file` (start): an unreadable file is logged at warn and ignored. */
  private loadStateFile(): void {
    const file = this.config.global.stateFile;
    if (file === null) return;
    const path = stateFilePath(this.config.file, file);
    const { state, error } = RuntimeState.read(path);
    if (error !== null) this.log.warn({ state_file: path, err: error }, 'state file ignored');
    else this.log.info({ state_file: path, backends: state.all().length }, 'state file read');
    this.runtime = state;
  }

  /** Rewrites `state_file` (atomically) after a runtime change; a failure is logged, the change stays in effect. */
  private saveStateFile(): void {
    const file = this.config.global.stateFile;
    if (file === null) return;
    const path = stateFilePath(this.config.file, file);
    try {
      this.runtime.write(path);
    } catch (err) {
      this.log.error({ state_file: path, err: (err as Error).message }, 'state file write failed');
    }
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
        // A large file is validated on a worker thread (SPEC §8.6).
        next = await loadConfigFileOffThread(this.configPath);
      } catch (err) {
        const errors = err instanceof ConfigError ? err.issues.map(formatConfigIssue) : [String((err as Error).message ?? err)];
        return this.reloadFailed(errors);
      }
      this.reloading = true;
      void this.notifier.reloading();
      const before = this.snapshot();
      const prev = this.config;
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
      // Runtime drain/weight of backends that left are forgotten (and the state file follows).
      if (this.runtime.retain((pool, address) => this.dataPlane.pools.get(pool)?.find(address) !== undefined)) this.saveStateFile();
      const { changes, restartRequired } = describeReload(prev, next, before, this.snapshot());
      this.logRemovedBackends(before, 'config_reload');
      this.checkPools();
      this.log.info({ config_generation: this.generation, changes, restart_required: restartRequired }, 'config reloaded');
      if (restartRequired.length > 0) this.log.warn({ restart_required: restartRequired }, 'restart required');
      void this.notifier.ready();
      return { ok: true, generation: this.generation };
    };
    const p = this.reloadChain.then(run, run);
    this.reloadChain = p;
    return p;
  }

  /**
   * Upgrade (SIGUSR2, admin API, SPEC §8.5): hands every listener,
   * connection and UDP session to a new process started from the program
   * on disk; on success this process exits 0 (see src/upgrade/). Waits for
   * a reload in progress.
   */
  upgrade(): Promise<UpgradeResult> {
    const run = async (): Promise<UpgradeResult> => {
      const r = await runUpgrade(this);
      if (r.ok) leaveAfterUpgrade(this, r.left_behind);
      return r;
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
  setDrain(pool: string, address: string, drain: boolean): Record<string, unknown> | null {
    if (!this.health.setDrain(pool, address, drain)) return null;
    if (this.runtime.setDrain(pool, address, drain)) this.saveStateFile();
    return this.backendSnapshot(pool, address);
  }

  /**
   * Admin weight (0-1000; 0 = no new connections, open ones go on). Applies
   * at once (the pool's picker is rebuilt), outlives reloads while the
   * backend stays, and restarts with state_file. Returns the backend's
   * snapshot, or null when the pool or backend is unknown.
   */
  setWeight(pool: string, address: string, weight: number): Record<string, unknown> | null {
    const r = this.resolvers.get(pool);
    if (r === undefined || this.dataPlane.pools.get(pool)?.find(address) === undefined) return null;
    if (this.runtime.setWeight(pool, address, weight)) this.saveStateFile();
    this.pushPool(pool, this.withOverrides(pool, r.specs()));
    return this.backendSnapshot(pool, address);
  }

  /** Admin: resets every open connection and UDP session of one backend. Null when the backend is unknown (not even `removed`). */
  async shutdownConnections(pool: string, address: string): Promise<number | null> {
    if (this.backendSnapshot(pool, address) === null) return null;
    const n = await this.dataPlane.shutdownBackend(pool, address);
    this.log.info({ pool, backend: address, closed: n }, 'backend connections shut down');
    return n;
  }

  /** Admin: open connections and UDP sessions, oldest first. */
  connections(q: ConnectionQuery): Promise<ConnectionInfo[]> {
    return this.dataPlane.connections(q);
  }

  /** One backend as the status document shows it (the admin API's backend JSON), or null. */
  private backendSnapshot(pool: string, address: string): Record<string, unknown> | null {
    const pools = this.status().pools as { name: string; backends: { address: string }[] }[];
    return pools.find((x) => x.name === pool)?.backends.find((b) => b.address === address) ?? null;
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
          total_connections: l.connections_total,
          bytes_in: l.bytes_in,
          bytes_out: l.bytes_out,
          rejected: l.rejected,
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
          connect_failures: b.connect_failures,
          bytes_in: b.bytes_in,
          bytes_out: b.bytes_out,
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
  const e = err as NodeJS.ErrnoException & { address?: string; port?: number; listener?: string };
  if (e && (e.code === 'EADDRINUSE' || e.code === 'EACCES' || e.code === 'EADDRNOTAVAIL')) {
    const why = e.code === 'EADDRINUSE' ? 'address already in use' : e.code === 'EACCES' ? 'permission denied' : 'address not available';
    const who = e.listener !== undefined ? `listener ${e.listener}` : what;
    const out = new L4lbError('ERR_L4LB_BIND', `${who}: cannot bind ${e.address ?? '?'}:${e.port ?? '?'}: ${why}`, { cause: err });
    return Object.assign(out, { listener: e.listener ?? (what === 'admin' ? 'admin' : undefined), address: e.address, port: e.port });
  }
  return new L4lbError('ERR_L4LB_START', e?.message ?? String(err), { cause: err });
}

/** Keys of [global] that take effect only at the next start. */
const RESTART_KEYS: readonly string[] = ['workers', 'splice'];

/**
 * Contract: what a reload changed, for the `config reloaded` line:
 * listeners and pools added, removed, changed (by name; a listener whose
 * bind or protocol changed is `changed`), backends (`pool/address`) added,
 * removed, changed (weight, limit, backup), and the changed [global] keys
 * that need a restart.
 */
export function describeReload(
  prev: Config,
  next: Config,
  before: DataPlaneSnapshot,
  after: DataPlaneSnapshot,
): { changes: Record<string, { added: string[]; removed: string[]; changed: string[] }>; restartRequired: string[] } {
  const plan = planReload(prev, next);
  const addedL = plan.listenersToAdd.map((l) => l.name);
  const removedL = plan.listenersToRemove.map((l) => l.name);
  const moved = addedL.filter((n) => removedL.includes(n));
  const backendsOf = (s: DataPlaneSnapshot): Map<string, string> => {
    const m = new Map<string, string>();
    for (const p of s.pools) for (const b of p.backends) if (b.state !== 'removed') m.set(`${p.name}/${b.address}`, `${b.weight}/${b.backup}`);
    return m;
  };
  const b0 = backendsOf(before);
  const b1 = backendsOf(after);
  // max_connections of backends written as IP literals (a name's limit change shows as its pool's change).
  const limitsOf = (c: Config): Map<string, number> =>
    new Map(c.pools.flatMap((p) => p.backends.filter((bc) => bc.family !== 0).map((bc): [string, number] => [`${p.name}/${formatHostPort(bc.host, bc.port)}`, bc.maxConnections])));
  const l0 = limitsOf(prev);
  const l1 = limitsOf(next);
  const limitChanged = (key: string): boolean => l0.has(key) && l1.has(key) && l0.get(key) !== l1.get(key);
  return {
    changes: {
      listeners: {
        added: addedL.filter((n) => !moved.includes(n)),
        removed: removedL.filter((n) => !moved.includes(n)),
        changed: [...plan.listenersChanged, ...moved],
      },
      pools: { added: [...plan.poolsAdded], removed: [...plan.poolsRemoved], changed: [...plan.poolsChanged] },
      backends: {
        added: [...b1.keys()].filter((k) => !b0.has(k)),
        removed: [...b0.keys()].filter((k) => !b1.has(k)),
        changed: [...b1.keys()].filter((k) => b0.has(k) && (b0.get(k) !== b1.get(k) || limitChanged(k))),
      },
    },
    restartRequired: plan.globalChanged.filter((k) => RESTART_KEYS.includes(k)),
  };
}

/** Contract: true when two pool configurations are equal in every field (a kept pool keeps its resolver). */
function samePool(a: PoolConfig, b: PoolConfig): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
