/**
 * The control plane's coordinator: owns the configuration and its
 * generations, builds the parts and wires them together — the data plane
 * (control/data-plane.ts), pool membership and DNS (control/pools.ts),
 * health checking, the reload sequence (control/reload.ts), admin
 * operations on backends (control/backend-ops.ts), the drain
 * (control/drain.ts), the admin API — and runs start, reload, upgrade and
 * drain. It drives the data plane through DataPlaneApi only.
 */
import type { Config } from './config/schema';
import { createLogger, type Logger } from './log';
import type { DataPlaneApi, ListenerBinding } from './dataplane/api';
import type { DataPlaneSnapshot } from './stats/stats';
import type { ConnectionInfo, ConnectionQuery } from './stats/connections';
import { HealthMonitor } from './health/monitor';
import { VERSION } from './version';
import type { AdminServer, AdminTarget } from './admin/admin';
import { createRegistry } from './metrics/metrics';
import { Notifier } from './systemd/notify';
import type { Registry } from 'prom-client';
import type { LookupFn, PoolResolver } from './dns/resolver';
import { RuntimeState } from './state/runtime-state';
import { createDataPlane } from './control/data-plane';
import { PoolMembership } from './control/pools';
import { bindError } from './control/bind-error';
import { statusDocument } from './control/status';
import { moveAdmin, openAdmin } from './control/admin-endpoint';
import { drainProcess } from './control/drain';
import { readStateFile } from './control/state-file';
import { Reloader, type ReloadResult } from './control/reload';
import { BackendOps } from './control/backend-ops';
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

export class Server implements AdminTarget {
  readonly log: Logger;
  readonly configPath: string;
  config: Config;
  generation = 1;
  readonly startedAt = Date.now();
  readonly dataPlane: DataPlaneApi;
  draining = false;
  private drainPromise: Promise<void> | null = null;
  bindings: ListenerBinding[] = [];
  readonly registry: Registry;
  admin: AdminServer | null = null;
  readonly notifier: Notifier;
  readonly health: HealthMonitor;
  readonly membership: PoolMembership;
  private readonly reloader: Reloader;
  private readonly backends: BackendOps;
  /** Drain and weight set through the admin API (kept across reloads; with state_file across restarts). */
  runtime = new RuntimeState();

  private constructor(opts: ServerOptions) {
    this.configPath = opts.configPath;
    this.config = opts.config;
    this.log = opts.log ?? createLogger(opts.config.global.logLevel);
    this.log.info({ version: VERSION, config: opts.configPath, pid: process.pid, node: process.version }, 'starting');
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
    const parts = { log: this.log, dataPlane: this.dataPlane, health: this.health, config: () => this.config, runtime: () => this.runtime };
    this.membership = new PoolMembership({ ...parts, lookup: opts.lookup });
    this.backends = new BackendOps({ ...parts, membership: this.membership, status: () => this.status() });
    this.reloader = new Reloader({
      ...parts,
      configPath: this.configPath,
      membership: this.membership,
      notifier: this.notifier,
      draining: () => this.draining,
      commit: (next, bindings) => this.commit(next, bindings),
    });
    this.registry = createRegistry({ snapshot: () => this.snapshot(), reloads: this.reloader.counts, healthChecks: () => this.health.checkCounts() });
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
    if (opts.inherited !== undefined) {
      s.health.importStates(opts.inherited.health);
      s.reloader.counts.success += opts.inherited.reloads.success;
      s.reloader.counts.failure += opts.inherited.reloads.failure;
    }
    s.membership.install(resolvers);
    s.backends.restore();
    s.membership.checkPools();
    if (opts.config.admin !== null) {
      try {
        s.admin = await openAdmin(opts.config.admin, s, s.registry, s.log, opts.inherited?.adminFd ?? undefined);
      } catch (err) {
        await s.dataPlane.stopAccepting();
        s.stopControlPlane();
        throw err;
      }
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

  /** Configuration reloads so far, by result (carried across an upgrade). */
  get reloadCounts(): { readonly success: number; readonly failure: number } {
    return this.reloader.counts;
  }

  /** Reloads the configuration file (SIGHUP, admin API): control/reload.ts. */
  reload(): Promise<ReloadResult> {
    return this.reloader.reload();
  }

  /** A reload applied `next`: it is the configuration in effect, one generation on; the admin endpoint and runtime state follow. */
  private async commit(next: Config, bindings: ListenerBinding[]): Promise<number> {
    this.bindings = bindings;
    this.config = next;
    const generation = ++this.generation;
    this.log.level = next.global.logLevel;
    this.admin = await moveAdmin(this.admin, next.admin, this, this.registry, this.log);
    this.backends.forgetDeparted();
    return generation;
  }

  /**
   * Upgrade (SIGUSR2, admin API, SPEC §8.5): hands every listener,
   * connection and UDP session to a new process started from the program
   * on disk; on success this process exits 0 (see src/upgrade/). Waits for
   * a reload in progress.
   */
  upgrade(): Promise<UpgradeResult> {
    return this.reloader.serialise(async () => {
      const r = await runUpgrade(this);
      if (r.ok) leaveAfterUpgrade(this, r.left_behind);
      return r;
    });
  }

  /** Stops timers of the control plane (health, DNS, watchdog). */
  private stopControlPlane(): void {
    this.health.stop();
    this.membership.stop();
    this.notifier.close();
  }

  /** Graceful drain (SIGTERM, control/drain.ts). Idempotent; /healthz answers 503 from now on. */
  drain(): Promise<void> {
    if (this.drainPromise !== null) return this.drainPromise;
    this.draining = true;
    this.membership.draining = true;
    void this.notifier.stopping();
    this.drainPromise = drainProcess({
      log: this.log,
      dataPlane: this.dataPlane,
      notifier: this.notifier,
      config: () => this.config,
      admin: () => this.admin,
      stopControlPlane: () => this.stopControlPlane(),
    });
    return this.drainPromise;
  }

  /** Admin drain / enable of one backend (control/backend-ops.ts). */
  setDrain(pool: string, address: string, drain: boolean): Record<string, unknown> | null {
    return this.backends.setDrain(pool, address, drain);
  }

  /** Admin weight of one backend (control/backend-ops.ts). */
  setWeight(pool: string, address: string, weight: number): Record<string, unknown> | null {
    return this.backends.setWeight(pool, address, weight);
  }

  /** Admin: resets every open connection and UDP session of one backend (control/backend-ops.ts). */
  shutdownConnections(pool: string, address: string): Promise<number | null> {
    return this.backends.shutdownConnections(pool, address);
  }

  /** Admin: open connections and UDP sessions, oldest first. */
  connections(q: ConnectionQuery): Promise<ConnectionInfo[]> {
    return this.dataPlane.connections(q);
  }

  snapshot(): DataPlaneSnapshot {
    return this.dataPlane.snapshot();
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
