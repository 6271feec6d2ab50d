/**
 * The data plane: listeners, pools and the byte pump, driven by the control
 * plane through a narrow interface (apply a configuration generation, set a
 * backend's state, read a snapshot, drain). Nothing here reads files, runs
 * health checks or serves the admin API, so the same object runs in the
 * single process and in each worker process (src/cluster/worker.ts).
 *
 * A generation is applied in two phases, as the reload plan
 * (config/diff.ts, planReload) says: `prepare()` builds changed pools aside
 * and binds added listeners; `commit()` makes them current, updates kept
 * listeners and retires removed ones. A bind failure in `prepare()` changes
 * nothing that existed before.
 */
import type { Config } from '../config/schema';
import type { BackendState } from '../backend/backend';
import type { Pool } from '../backend/pool';
import { planReload } from '../config/diff';
import { TcpListener, type TcpContext } from '../tcp/listener';
import { UdpListener } from '../udp/listener';
import { createUdpListener } from '../udp/engine';
import { jsPump } from '../tcp/js-pump';
import type { DataPlaneSnapshot, ListenerSnapshot } from '../stats/stats';
import { addListenerCounters, listenerTotals } from '../stats/stats';
import { oldestFirst, type ConnectionInfo, type ConnectionQuery } from '../stats/connections';
import type { BackendSpec, DataPlaneApi, DataPlaneOptions, ListenerBinding } from './api';
import { DepartedBackends } from './departed';
import { KeptTotals } from '../stats/kept-totals';
import { buildPool, type BuiltPool } from './pool-builder';
import { dataPlaneSnapshot } from './snapshot';
import { DataPlaneTicker } from './ticker';

export type { BackendSpec, DataPlaneApi, DataPlaneOptions, ListenerBinding } from './api';

/** Every listener, TCP or UDP, is driven through the same methods. */
export type Listener = TcpListener | UdpListener;

export class DataPlane implements DataPlaneApi {
  private readonly opts: DataPlaneOptions;
  readonly pools = new Map<string, Pool>();
  readonly listeners = new Map<string, Listener>();
  /** Listeners removed by a reload, finishing their open connections. */
  readonly retired = new Set<Listener>();
  private readonly ctx: TcpContext;
  private accepting = true;
  /** The generation in effect (null before the first). */
  private config: Config | null = null;
  /** Totals of retired listeners that are gone, by protocol and name (counters never go down). */
  private readonly goneListeners = new Map<string, ListenerSnapshot>();
  private readonly inherited = new KeptTotals();
  private readonly departed = new DepartedBackends();
  private readonly ticker: DataPlaneTicker;

  constructor(opts: DataPlaneOptions) {
    this.opts = opts;
    const splice = opts.splice;
    this.ctx = {
      log: opts.log,
      connectionLog: false,
      pumpFor: splice === null ? () => jsPump : (c, b) => (splice.canSplice(c, b) ? splice.pump : jsPump),
      tcpEngine: splice !== null && opts.tcpEngine === true,
      onConnectFailure: (pool, backend, kind) => {
        if (opts.onConnectFailure) opts.onConnectFailure(pool.name, backend.address, kind);
      },
    };
    this.ticker = new DataPlaneTicker(opts.log, () => this.allListeners());
  }

  /**
   * Applies a configuration generation: `prepare()` then `commit()`.
   * `backends` gives each pool's resolved backends.
   * `fds` maps listener names to inherited sockets (socket activation).
   * On a bind failure, listeners bound by this call are closed again and the
   * error is thrown; everything that existed before is left as it was.
   */
  async apply(config: Config, backends: ReadonlyMap<string, readonly BackendSpec[]>, fds?: ReadonlyMap<string, number>): Promise<ListenerBinding[]> {
    return this.commit(await this.prepare(config, backends, fds));
  }

  /**
   * First half of applying a generation: builds the pools the plan changes
   * (or whose resolved backends changed) aside — kept Backend objects are
   * not touched yet — and binds the listeners the plan adds. On a bind
   * failure the listeners bound here are closed and the error thrown: no
   * Backend, pool or listener changed. Otherwise the result is handed to
   * `commit()` (or `cancel()`, when another worker failed).
   */
  async prepare(config: Config, backends: ReadonlyMap<string, readonly BackendSpec[]>, fds?: ReadonlyMap<string, number>): Promise<PreparedApply> {
    const plan = this.config === null ? null : planReload(this.config, config);
    const changedPools = new Set(plan === null ? [] : plan.poolsChanged);
    const keptListeners = new Set(plan === null ? [] : plan.listenersToKeep.map((k) => k.next.name));
    const nextPools = new Map<string, BuiltPool>();
    for (const pc of config.pools) {
      nextPools.set(pc.name, buildPool(pc, backends.get(pc.name) ?? [], this.pools.get(pc.name), changedPools.has(pc.name), this.departed, this.opts.pickers ?? true));
    }

    const bound: ListenerBinding[] = [];
    const added: Listener[] = [];
    try {
      for (const lc of config.listeners) {
        if (keptListeners.has(lc.name) && this.listeners.has(lc.name)) continue;
        // route_by = "sni" may have no fallback pool (null).
        const pool = lc.pool === '' && lc.routeBy === 'sni' ? null : nextPools.get(lc.pool);
        if (pool === undefined) throw new Error(`listener ${lc.name}: pool ${lc.pool} missing`); // validated before
        const l: Listener = lc.protocol === 'udp' ? createUdpListener(lc, (pool as BuiltPool).pool, this.ctx, this.opts.splice !== null) : new TcpListener(lc, pool === null ? null : pool.pool, this.ctx);
        if (l instanceof TcpListener) l.setRoutes(new Map([...nextPools].map(([name, b]) => [name, b.pool] as const)));
        const a = await l.listen(fds?.get(lc.name)).catch((err: unknown) => {
          // Name the listener in the start/reload failure.
          if (err !== null && typeof err === 'object') (err as { listener?: string }).listener = lc.name;
          throw err;
        });
        added.push(l);
        bound.push({ name: lc.name, address: a.address, port: a.port });
      }
    } catch (err) {
      await closeAll(added);
      throw err;
    }
    return { config, pools: nextPools, added, bound };
  }

  /** Drops a prepared generation: closes the listeners it bound. Nothing else had changed. */
  async cancel(p: PreparedApply): Promise<void> {
    await closeAll(p.added);
  }

  /** Second half of applying a generation: makes it current. Nothing here can fail. */
  commit(p: PreparedApply): ListenerBinding[] {
    const { config, added, bound } = p;
    this.config = config;
    this.ctx.connectionLog = config.global.connectionLog;
    this.ticker.start(config.global.connectionLogIntervalMs);
    for (const built of p.pools.values()) built.commit();
    const nextPools = new Map([...p.pools].map(([name, b]) => [name, b.pool] as const));
    for (const [name, pool] of nextPools) this.pools.set(name, pool);
    for (const [name, old] of [...this.pools]) {
      if (nextPools.has(name)) continue;
      for (const b of old.backends) this.departed.depart(name, b);
      this.pools.delete(name);
    }
    const replaced = new Set(added.map((l) => l.name));
    for (const [name, l] of this.listeners) {
      const lc = replaced.has(name) ? undefined : config.listeners.find((x) => x.name === name);
      if (lc !== undefined) {
        const next = nextPools.get(lc.pool) ?? null;
        if (l instanceof TcpListener) {
          l.update(lc, next);
          l.setRoutes(nextPools); // SNI routes apply to new connections
        } else l.update(lc, next as Pool);
      } else {
        this.retire(l);
        this.listeners.delete(name);
      }
    }
    for (const l of added) {
      this.listeners.set(l.name, l);
      if (this.opts.onListening) {
        const b = bound.find((x) => x.name === l.name);
        if (b) this.opts.onListening(l.name, b.address, b.port);
      }
    }
    if (!this.accepting) for (const l of added) void l.stopAccepting();
    this.endUdpSessionsOfGoneBackends();
    return [...bound];
  }

  /**
   * Replaces one pool's backends outside a reload (DNS re-resolution), as
   * `apply()` would: Backend objects of addresses that stay are kept, new
   * ones join `up`, vanished ones get `member = false` while their open
   * connections continue. Listeners using the pool switch to the new one.
   * Returns false when the pool is unknown.
   */
  setPoolBackends(pool: string, specs: readonly BackendSpec[]): boolean {
    const old = this.pools.get(pool);
    if (old === undefined) return false;
    const built = buildPool(old.config, specs, old, false, this.departed, this.opts.pickers ?? true);
    built.commit();
    const next = built.pool;
    this.pools.set(pool, next);
    for (const l of this.listeners.values()) if (l.pool === old) l.update(l.config, next);
    for (const l of this.listeners.values()) if (l instanceof TcpListener) l.replacePool(old, next);
    this.endUdpSessionsOfGoneBackends();
    return true;
  }

  private retire(l: Listener): void {
    l.current = false;
    this.retired.add(l);
    void l.stopAccepting();
    void l.whenEmpty().then(() => {
      l.dispose();
      this.retired.delete(l);
      // Its totals stay in the metrics under its name.
      const key = `${l.config.protocol}\u0000${l.name}`;
      const gone = this.goneListeners.get(key);
      if (gone === undefined) this.goneListeners.set(key, listenerTotals(l.snapshot()));
      else addListenerCounters(gone, l.snapshot());
    });
  }

  /** Sets a backend's state (health, admin drain). Returns the previous state, or null if unknown. */
  setBackendState(pool: string, address: string, state: BackendState): BackendState | null {
    const p = this.pools.get(pool);
    const b = p?.find(address);
    if (p === undefined || b === undefined) return null;
    const from = p.setState(b, state);
    if (state === 'down') this.endUdpSessionsOfGoneBackends();
    return from;
  }

  /** Sets a backend's effective weight (slow start, > 0). Returns false if unknown. */
  setBackendWeight(pool: string, address: string, effectiveWeight: number): boolean {
    const p = this.pools.get(pool);
    const b = p?.find(address);
    if (p === undefined || b === undefined) return false;
    p.setEffectiveWeight(b, effectiveWeight);
    return true;
  }

  /**
   * UDP sessions of a backend that went down or left its pool end at once,
   * so the client's next datagram opens a session on a healthy backend
   * (TCP connections are left to end on their own).
   */
  private endUdpSessionsOfGoneBackends(): void {
    for (const l of this.allListeners()) if (l instanceof UdpListener) l.endSessionsOfGoneBackends();
  }

  /** Stops accepting on every listener (drain). */
  async stopAccepting(): Promise<void> {
    this.accepting = false;
    await Promise.all([...this.listeners.values(), ...this.retired].map((l) => l.stopAccepting()));
  }

  activeConnections(): number {
    let n = 0;
    for (const l of this.allListeners()) n += l.stats.active;
    return n;
  }

  /** Resolves when no connection is open on any listener. */
  async whenIdle(): Promise<void> {
    await Promise.all(this.allListeners().map((l) => l.whenEmpty()));
  }

  /** Resets every open connection. */
  abortAll(reason: 'drain_timeout' | 'shutdown'): void {
    for (const l of this.allListeners()) l.abortAll(reason);
  }

  /** Stops timers; after abortAll and whenIdle. */
  dispose(): void {
    this.ticker.stop(); // logs the last refusals
    for (const l of this.allListeners()) l.dispose();
  }

  shutdownBackend(pool: string, address: string): Promise<number> {
    let n = 0;
    for (const l of this.allListeners()) n += l.shutdownBackend(pool, address);
    return Promise.resolve(n);
  }

  connections(q: ConnectionQuery): Promise<ConnectionInfo[]> {
    const out: ConnectionInfo[] = [];
    const now = Date.now();
    for (const l of this.allListeners()) l.listConnections(q, now, out);
    return Promise.resolve(oldestFirst(out, q.limit));
  }

  private allListeners(): Listener[] {
    return [...this.listeners.values(), ...this.retired];
  }

  /**
   * Upgrade: the counter totals of the process this one replaced, added to
   * every later snapshot so that counters go on from where they were.
   */
  inheritTotals(snap: DataPlaneSnapshot): void {
    this.inherited.keep(snap);
  }

  snapshot(): DataPlaneSnapshot {
    const snap = dataPlaneSnapshot(this.pools, this.allListeners(), this.departed, this.goneListeners.values());
    if (!this.inherited.empty) this.inherited.addInto(snap);
    return snap;
  }
}

/** A generation whose new listeners are bound but which is not current yet (see `DataPlane.prepare`). */
export interface PreparedApply {
  readonly config: Config;
  readonly pools: ReadonlyMap<string, BuiltPool>;
  readonly added: readonly Listener[];
  readonly bound: readonly ListenerBinding[];
}

async function closeAll(listeners: readonly Listener[]): Promise<void> {
  for (const l of listeners) {
    await l.stopAccepting();
    l.dispose();
  }
}
