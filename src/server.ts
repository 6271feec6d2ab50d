/**
 * The control plane: owns the configuration and its generations and
 * coordinates the parts that act on it — the data plane (control/data-plane.ts),
 * pool membership and DNS (control/pools.ts), health checking, the admin
 * API, runtime state and the lifecycle (start, reload, drain). It drives the
 * data plane through DataPlaneApi only.
 */
import type { Config } from './config/schema';
import { loadConfigFileOffThread } from './config/load-off-thread';
import { planReload } from './config/diff';
import { ConfigError, formatConfigIssue } from './errors';
import { createLogger, type Logger } from './log';
import type { DataPlaneApi, ListenerBinding } from './dataplane/api';
import type { DataPlaneSnapshot } from './stats/stats';
import type { ConnectionInfo, ConnectionQuery } from './stats/connections';
import { HealthMonitor } from './health/monitor';
import { VERSION } from './version';
import { AdminServer, type AdminTarget } from './admin/admin';
import { createRegistry } from './metrics/metrics';
import { Notifier } from './systemd/notify';
import type { Registry } from 'prom-client';
import type { LookupFn, PoolResolver } from './dns/resolver';
import { RuntimeState } from './state/runtime-state';
import { createDataPlane } from './control/data-plane';
import { PoolMembership } from './control/pools';
import { bindError } from './control/bind-error';
import { describeReload } from './control/reload-report';
import { statusDocument, backendOf } from './control/status';
import { moveAdmin } from './control/admin-endpoint';
import { drainDataPlane } from './control/drain';
import { readStateFile, writeStateFile } from './control/state-file';
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

export class Server implements AdminTarget {
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
  bindings: ListenerBinding[] = [];
  readonly registry: Registry;
  admin: AdminServer | null = null;
  readonly notifier: Notifier;
  readonly health: HealthMonitor;
  readonly membership: PoolMembership;
  /** Drain and weight set through the admin API (kept across reloads; with state_file across restarts). */
  runtime = new RuntimeState();

  private constructor(opts: ServerOptions) {
    this.configPath = opts.configPath;
    this.config = opts.config;
    this.log = opts.log ?? createLogger(opts.config.global.logLevel);
    this.log.info({ version: VERSION, config: opts.configPath, pid: process.pid, node: process.version }, 'starting');
    this.registry = createRegistry(this);
    this.notifier = new Notifier(this.log);
    this.dataPlane = createDataPlane(opts.config, this.log, {
      onListening: (listener, address, port) => this.log.info({ listener, address, port }, 'listening'),
      onConnectFailure: (pool, address, kind) => this.health.onConnectFailure(pool, address, kind),
    });
    this.health = new HealthMonitor({
      log: this.log,
      setState: (pool, address, state) => {
        this.dataPlane.setBackendState(pool, address, state);
        this.membership.checkPools();
      },
      setWeight: (pool, address, w) => void this.dataPlane.setBackendWeight(pool, address, w),
    });
    this.membership = new PoolMembership({
      log: this.log,
      dataPlane: this.dataPlane,
      health: this.health,
      lookup: opts.lookup,
      config: () => this.config,
      runtime: () => this.runtime,
    });
  }

  /** Builds the server and binds every listener. Throws L4lbError('ERR_L4LB_BIND') when one cannot bind. */
  static async start(opts: ServerOptions): Promise<Server> {
    const s = new Server(opts);
    s.runtime = readStateFile(opts.config, s.log);
    if (opts.inherited !== undefined) inheritRuntime(s, opts.inherited);
    const { resolvers, backends } = await s.membership.resolveAll(opts.config, null);
    try {
      s.bindings = await s.dataPlane.apply(opts.config, backends, opts.fds);
    } catch (err) {
      for (const r of resolvers.values()) r.stop();
      throw bindError(err);
    }
    s.health.sync(opts.config, backends, true);
    if (opts.inherited !== undefined) s.health.importStates(opts.inherited.health);
    s.membership.install(resolvers);
    // Drains from the state file; entries of backends no longer configured are dropped.
    s.forgetDeparted();
    for (const e of s.runtime.all()) if (e.drain) s.health.setDrain(e.pool, e.address, true);
    s.membership.checkPools();
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

  /** Each pool's resolver (DNS), by pool name. */
  get resolvers(): ReadonlyMap<string, PoolResolver> {
    return this.membership.resolvers;
  }

  /** Subscribes to changes of one pool's membership outside a reload (DNS); returns the unsubscribe function. */
  onPoolChanged(fn: (pool: string) => void): () => void {
    return this.membership.onPoolChanged(fn);
  }

  /** Runtime drain/weight of backends that left are forgotten (and the state file follows). */
  private forgetDeparted(): void {
    if (this.runtime.retain((pool, address) => this.dataPlane.pools.get(pool)?.find(address) !== undefined)) this.saveStateFile();
  }

  private saveStateFile(): void {
    writeStateFile(this.config, this.runtime, this.log);
  }

  /**
   * Reloads the configuration file (SIGHUP, admin API). Invalid: logs every
   * error, counts a failure and changes nothing. Valid: applies it as one new
   * generation, as planned by planReload (config/diff.ts): resolve, then
   * prepare and commit in the data plane (a bind failure changes nothing),
   * then the control plane. Reloads are serialised.
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
      const prev = this.config;
      const plan = planReload(prev, next);
      const membership = this.membership;
      membership.reloading = true;
      void this.notifier.reloading();
      const before = this.snapshot();
      let resolvers: Map<string, PoolResolver> | null = null;
      try {
        const resolved = await membership.resolveAll(next, plan.poolsChanged);
        resolvers = resolved.resolvers;
        this.bindings = await this.dataPlane.apply(next, resolved.backends);
        this.health.sync(next, resolved.backends, false);
      } catch (err) {
        membership.reloading = false;
        membership.discard(resolvers);
        void this.notifier.ready();
        return this.reloadFailed([bindError(err).message]);
      }
      membership.reloading = false;
      membership.install(resolvers);
      this.config = next;
      this.generation++;
      this.reloads.success++;
      this.log.level = next.global.logLevel;
      this.admin = await moveAdmin(this.admin, next.admin, this, this.registry, this.log);
      this.forgetDeparted();
      const { changes, restartRequired } = describeReload(plan, prev, next, before, this.snapshot());
      membership.logRemovedBackends(before, 'config_reload');
      membership.checkPools();
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

  /** Stops timers of the control plane (health, DNS, watchdog). */
  private stopControlPlane(): void {
    this.health.stop();
    this.membership.stop();
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
    this.membership.draining = true;
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
      await drainDataPlane(this.dataPlane, this.log, this.config.global.drainTimeoutMs);
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
    return backendOf(this.status(), pool, address);
  }

  /**
   * Admin weight (0-1000; 0 = no new connections, open ones go on). Applies
   * at once (the pool's picker is rebuilt), outlives reloads while the
   * backend stays, and restarts with state_file. Returns the backend's
   * snapshot, or null when the pool or backend is unknown.
   */
  setWeight(pool: string, address: string, weight: number): Record<string, unknown> | null {
    if (!this.membership.resolvers.has(pool) || this.dataPlane.pools.get(pool)?.find(address) === undefined) return null;
    if (this.runtime.setWeight(pool, address, weight)) this.saveStateFile();
    this.membership.refresh(pool);
    return backendOf(this.status(), pool, address);
  }

  /** Admin: resets every open connection and UDP session of one backend. Null when the backend is unknown (not even `removed`). */
  async shutdownConnections(pool: string, address: string): Promise<number | null> {
    if (backendOf(this.status(), pool, address) === null) return null;
    const n = await this.dataPlane.shutdownBackend(pool, address);
    this.log.info({ pool, backend: address, closed: n }, 'backend connections shut down');
    return n;
  }

  /** Admin: open connections and UDP sessions, oldest first. */
  connections(q: ConnectionQuery): Promise<ConnectionInfo[]> {
    return this.dataPlane.connections(q);
  }

  snapshot(): DataPlaneSnapshot {
    return this.dataPlane.snapshot();
  }

  /** Probe outcomes per backend, for `l4lb_health_checks_total` (read at scrape time). */
  healthChecks(): readonly { pool: string; backend: string; ok: number; failed: number }[] {
    return this.health.checkCounts();
  }

  /** The status document of SPEC §5 (`GET /api/v1/status`). */
  status(): Record<string, unknown> {
    return statusDocument({
      snapshot: this.snapshot(),
      startedAt: this.startedAt,
      generation: this.generation,
      draining: this.draining,
      resolveFailures: (pool) => this.membership.resolveFailures(pool),
      checkStatus: (pool, address) => this.health.checkStatus(pool, address),
    });
  }
}
