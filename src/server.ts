/**
 * The control plane: owns the configuration and its generations, name
 * resolution, health checking, the admin API and the lifecycle (start,
 * reload, drain). It drives the data plane through DataPlane's narrow
 * interface only.
 */
import dns from 'node:dns';
import type { Config, PoolConfig, SpliceMode } from './config/schema';
import { canSplice, splicePump, spliceEngineInfo } from './tcp/splice-pump';
import { loadConfigFile } from './config/load';
import { ConfigError, L4lbError, formatConfigIssue } from './errors';
import { createLogger, type Logger } from './log';
import { DataPlane, type BackendSpec, type ListenerBinding } from './dataplane/dataplane';
import type { BackendSnapshot, DataPlaneSnapshot } from './dataplane/stats';
import { HealthMonitor } from './health/monitor';
import { VERSION } from './version';

export interface ServerOptions {
  configPath: string;
  /** An already validated configuration (from the CLI's first load). */
  config: Config;
  log?: Logger;
  /** Inherited listening sockets by listener name (systemd socket activation). */
  fds?: ReadonlyMap<string, number>;
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
  readonly dataPlane: DataPlane;
  reloads = { success: 0, failure: 0 };
  draining = false;
  private drainPromise: Promise<void> | null = null;
  private reloadChain: Promise<unknown> = Promise.resolve();
  private readonly fds: ReadonlyMap<string, number> | undefined;
  bindings: ListenerBinding[] = [];
  readonly health: HealthMonitor;

  private constructor(opts: ServerOptions) {
    this.configPath = opts.configPath;
    this.config = opts.config;
    this.log = opts.log ?? createLogger(opts.config.global.logLevel);
    this.fds = opts.fds;
    const pump = choosePump(opts.config.global.splice);
    this.log.info({ pump: pump.kind, reason: pump.reason }, 'byte pump');
    this.dataPlane = new DataPlane({
      log: this.log,
      splice: pump.kind === 'splice' ? { pump: splicePump, canSplice } : null,
      onListening: (listener, address, port) => this.log.info({ listener, address, port }, 'listening'),
      onConnectFailure: (pool, address, kind) => this.health.onConnectFailure(pool, address, kind),
    });
    this.health = new HealthMonitor({
      log: this.log,
      setState: (pool, address, state) => void this.dataPlane.setBackendState(pool, address, state),
      setWeight: (pool, address, w) => void this.dataPlane.setBackendWeight(pool, address, w),
    });
  }

  /** Builds the server and binds every listener. Throws L4lbError('ERR_L4LB_BIND') when one cannot bind. */
  static async start(opts: ServerOptions): Promise<Server> {
    const s = new Server(opts);
    const backends = await s.resolveAll(opts.config);
    try {
      s.bindings = await s.dataPlane.apply(opts.config, backends, s.fds);
    } catch (err) {
      throw bindError(err);
    }
    s.health.sync(opts.config, backends, true);
    return s;
  }

  /**
   * Resolves each pool's backends to addresses. IP literals pass through;
   * names go to the system resolver (A and AAAA). A name that does not
   * resolve is logged at warn and contributes no backend for now.
   */
  private async resolveAll(config: Config): Promise<Map<string, BackendSpec[]>> {
    const out = new Map<string, BackendSpec[]>();
    for (const pc of config.pools) out.set(pc.name, await this.resolvePool(pc));
    return out;
  }

  private async resolvePool(pc: PoolConfig): Promise<BackendSpec[]> {
    const specs: BackendSpec[] = [];
    for (const b of pc.backends) {
      const base = { port: b.port, weight: b.weight, maxConnections: b.maxConnections, backup: b.backup };
      if (b.family !== 0) {
        specs.push({ ...base, host: b.host, family: b.family, name: null });
        continue;
      }
      try {
        const addrs = await dns.promises.lookup(b.host, { all: true, verbatim: true });
        const sorted = addrs.map((a) => ({ host: a.address, family: a.family === 6 ? (6 as const) : (4 as const) }));
        sorted.sort((x, y) => (x.host < y.host ? -1 : x.host > y.host ? 1 : 0));
        const seen = new Set<string>();
        for (const a of sorted) {
          if (seen.has(a.host)) continue;
          seen.add(a.host);
          specs.push({ ...base, host: a.host, family: a.family, name: b.address });
        }
      } catch (err) {
        this.log.warn({ pool: pc.name, backend: b.address, err: (err as NodeJS.ErrnoException).code ?? String(err) }, 'backend name did not resolve');
      }
    }
    return specs;
  }

  /**
   * Reloads the configuration file (SIGHUP, admin API). Invalid: logs every
   * error, counts a failure and changes nothing. Valid: applies it as one new
   * generation. Reloads are serialised.
   */
  reload(): Promise<ReloadResult> {
    const run = async (): Promise<ReloadResult> => {
      if (this.draining) return { ok: false, errors: ['draining: reload refused'] };
      let next: Config;
      try {
        next = loadConfigFile(this.configPath);
      } catch (err) {
        const errors = err instanceof ConfigError ? err.issues.map(formatConfigIssue) : [String((err as Error).message ?? err)];
        return this.reloadFailed(errors);
      }
      try {
        const backends = await this.resolveAll(next);
        this.bindings = await this.dataPlane.apply(next, backends);
        this.health.sync(next, backends, false);
      } catch (err) {
        return this.reloadFailed([bindError(err).message]);
      }
      this.config = next;
      this.generation++;
      this.reloads.success++;
      this.log.level = next.global.logLevel;
      this.log.info({ config_generation: this.generation }, 'config reloaded');
      return { ok: true, generation: this.generation };
    };
    const p = this.reloadChain.then(run, run);
    this.reloadChain = p;
    return p;
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
    this.health.stop();
    this.drainPromise = (async () => {
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
      dp.dispose();
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
        })),
      pools: snap.pools.map((p) => ({
        name: p.name,
        algorithm: p.algorithm,
        backends: p.backends.map((b) => ({
          address: b.address,
          ...(b.name !== null ? { name: b.name } : {}),
          state: b.state,
          weight: b.weight,
          backup: b.backup,
          active_connections: b.active_connections,
          total_connections: b.total_connections,
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
function choosePump(mode: SpliceMode): { kind: 'js' | 'splice'; reason: string } {
  if (mode === 'off') return { kind: 'js', reason: 'splice = "off"' };
  const info = spliceEngineInfo();
  if (info.ok) return { kind: 'splice', reason: info.reason };
  if (mode === 'on') throw new L4lbError('ERR_L4LB_NATIVE', `splice = "on" but the native splice addon is not available: ${info.reason}`);
  return { kind: 'js', reason: `splice addon not available: ${info.reason}` };
}

function bindError(err: unknown): L4lbError {
  if (err instanceof L4lbError) return err;
  const e = err as NodeJS.ErrnoException & { address?: string; port?: number };
  if (e && (e.code === 'EADDRINUSE' || e.code === 'EACCES' || e.code === 'EADDRNOTAVAIL')) {
    const what = e.code === 'EADDRINUSE' ? 'address already in use' : e.code === 'EACCES' ? 'permission denied' : 'address not available';
    return new L4lbError('ERR_L4LB_BIND', `cannot bind ${e.address ?? '?'}:${e.port ?? '?'}: ${what}`, { cause: err });
  }
  return new L4lbError('ERR_L4LB_START', e?.message ?? String(err), { cause: err });
}
