/**
 * The data plane: listeners, pools and the byte pump, driven by the control
 * plane through a narrow interface (apply a configuration generation, set a
 * backend's state, read a snapshot, drain). Nothing here reads files, runs
 * health checks or serves the admin API, so the same object can run in a
 * worker process later with these calls carried over IPC.
 */
import type net from 'node:net';
import type { Config, ListenerConfig, PoolConfig } from '../config/schema';
import type { Logger } from '../log';
import { Backend, type BackendState } from '../backend/backend';
import { Pool } from '../backend/pool';
import { TcpListener, type TcpContext } from '../tcp/listener';
import { formatHostPort } from '../net/address';
import { UdpListener } from '../udp/listener';
import { createUdpListener } from '../udp/engine';

/** Every listener, TCP or UDP, is driven through the same methods. */
export type Listener = TcpListener | UdpListener;
import type { Pump } from '../tcp/pump';
import { jsPump } from '../tcp/js-pump';
import type { BackendSnapshot, DataPlaneSnapshot, ListenerSnapshot, PoolSnapshot, RetiredBackendSnapshot } from './stats';
import { addBackendCounters, addListenerCounters, backendTotals, listenerTotals } from './stats';
import { oldestFirst, type ConnectionInfo, type ConnectionQuery } from './connections';

/** A backend after name resolution: one per address. */
export interface BackendSpec {
  host: string;
  port: number;
  family: 4 | 6;
  /** The configured name when resolved from DNS. */
  name: string | null;
  weight: number;
  maxConnections: number;
  backup: boolean;
}

export interface DataPlaneOptions {
  log: Logger;
  /** The pump to use when the connection can be spliced, or null for JS only. */
  splice: { pump: Pump; canSplice(client: net.Socket, backend: net.Socket): boolean } | null;
  /** Passive health input: a client connect to this backend failed. */
  onConnectFailure?: (pool: string, address: string, kind: 'refused' | 'timeout') => void;
  /** A listener is bound (for the `listening` log line and systemd). */
  onListening?: (listener: string, address: string, port: number) => void;
}

export interface ListenerBinding {
  name: string;
  address: string;
  port: number;
}

/**
 * What the control plane may ask of a data plane: the in-process DataPlane
 * below, or the worker processes behind src/cluster/primary.ts.
 */
export interface DataPlaneApi {
  readonly pools: ReadonlyMap<string, Pool>;
  apply(config: Config, backends: ReadonlyMap<string, readonly BackendSpec[]>, fds?: ReadonlyMap<string, number>): Promise<ListenerBinding[]>;
  setBackendState(pool: string, address: string, state: BackendState): BackendState | null;
  setBackendWeight(pool: string, address: string, effectiveWeight: number): boolean;
  setPoolBackends(pool: string, specs: readonly BackendSpec[]): boolean;
  stopAccepting(): Promise<void>;
  whenIdle(): Promise<void>;
  abortAll(reason: 'drain_timeout' | 'shutdown'): void;
  activeConnections(): number;
  dispose(): void | Promise<void>;
  snapshot(): DataPlaneSnapshot;
  /** Resets every open connection and UDP session of one backend (admin); resolves with how many. */
  shutdownBackend(pool: string, address: string): Promise<number>;
  /** Open connections and UDP sessions matching the query, oldest first, at most `limit`. */
  connections(q: ConnectionQuery): Promise<ConnectionInfo[]>;
}

export class DataPlane implements DataPlaneApi {
  private readonly opts: DataPlaneOptions;
  readonly pools = new Map<string, Pool>();
  readonly listeners = new Map<string, Listener>();
  /** Listeners removed by a reload, finishing their open connections. */
  readonly retired = new Set<Listener>();
  private readonly ctx: TcpContext;
  private accepting = true;
  /** Totals of retired listeners that are gone, by protocol and name (counters never go down). */
  private readonly goneListeners = new Map<string, ListenerSnapshot>();
  /**
   * Backends that left their pool (reload, DNS), by pool and address: the
   * ones still finishing connections (shown as `removed` until their last
   * one ends), and the counter totals of those done (counters never go down).
   */
  private readonly departed = new Map<string, { pool: string; live: Set<Backend>; done: RetiredBackendSnapshot | null }>();
  /** Once a second (or every connection_log_interval if shorter): `connections rejected` and `connection progress`. */
  private ticker: NodeJS.Timeout | null = null;
  private tickerEvery = 0;
  private lastTick = Date.now();
  private progressIntervalMs = 0;
  /** Rejections already reported by `connections rejected`, per listener object and reason. */
  private readonly rejectsLogged = new WeakMap<Listener, Record<string, number>>();

  constructor(opts: DataPlaneOptions) {
    this.opts = opts;
    const splice = opts.splice;
    this.ctx = {
      log: opts.log,
      connectionLog: false,
      pumpFor: splice === null ? () => jsPump : (c, b) => (splice.canSplice(c, b) ? splice.pump : jsPump),
      onConnectFailure: (pool, backend, kind) => {
        if (opts.onConnectFailure) opts.onConnectFailure(pool.name, backend.address, kind);
      },
    };
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
   * First half of applying a generation: builds the new pools aside (kept
   * Backend objects are not touched yet) and binds the new listeners. On a
   * bind failure the listeners bound here are closed and the error thrown:
   * no Backend, pool or listener changed. Otherwise the result is handed to
   * `commit()` (or `cancel()`, when another worker failed).
   */
  async prepare(config: Config, backends: ReadonlyMap<string, readonly BackendSpec[]>, fds?: ReadonlyMap<string, number>): Promise<PreparedApply> {
    const nextPools = new Map<string, BuiltPool>();
    for (const pc of config.pools) nextPools.set(pc.name, this.buildPool(pc, backends.get(pc.name) ?? []));

    const bound: ListenerBinding[] = [];
    const added: Listener[] = [];
    try {
      for (const lc of config.listeners) {
        // route_by = "sni" may have no fallback pool (null).
        const pool = lc.pool === '' && lc.routeBy === 'sni' ? null : nextPools.get(lc.pool);
        if (pool === undefined) throw new Error(`listener ${lc.name}: pool ${lc.pool} missing`); // validated before
        const existing = this.listeners.get(lc.name);
        if (existing !== undefined && sameSocket(existing.config, lc)) continue;
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
    this.ctx.connectionLog = config.global.connectionLog;
    this.progressIntervalMs = config.global.connectionLogIntervalMs;
    this.startTicker();
    for (const built of p.pools.values()) built.commit();
    const nextPools = new Map([...p.pools].map(([name, b]) => [name, b.pool] as const));
    for (const [name, pool] of nextPools) this.pools.set(name, pool);
    for (const [name, old] of [...this.pools]) {
      if (nextPools.has(name)) continue;
      for (const b of old.backends) this.depart(name, b);
      this.pools.delete(name);
    }
    for (const [name, l] of this.listeners) {
      const lc = config.listeners.find((x) => x.name === name);
      if (lc !== undefined && sameSocket(l.config, lc)) {
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
   * Builds a pool for this configuration, keeping the Backend objects (state,
   * counters, open connections) of addresses the current pool already has.
   * Kept Backend objects are changed (weight, limits, membership) only by
   * the returned `commit()`, which also rebuilds the new pool's picker.
   */
  private buildPool(pc: PoolConfig, specs: readonly BackendSpec[]): BuiltPool {
    const old = this.pools.get(pc.name);
    // Nothing changed (the common reload): the pool is kept as it is, with its
    // picker (no table rebuilt), round-robin position and slow-start ramps.
    if (old !== undefined && unchangedPool(old, pc, specs)) return { pool: old, commit: noop };
    const list: Backend[] = [];
    const inList = new Set<Backend>();
    const updates: [Backend, BackendSpec][] = [];
    for (const s of specs) {
      const address = formatHostPort(s.host, s.port);
      let b = old?.find(address) ?? this.revive(pc.name, address);
      if (b !== undefined && inList.has(b)) continue;
      if (b === undefined) {
        b = new Backend({ host: s.host, port: s.port, family: s.family, name: s.name, weight: s.weight, maxConnections: s.maxConnections, backup: s.backup });
      } else {
        updates.push([b, s]);
      }
      list.push(b);
      inList.add(b);
    }
    // The replaced pool's picker runs until a large table is built off the event loop.
    const pool = new Pool(pc, list, old?.currentPicker());
    const commit = (): void => {
      old?.dispose();
      for (const [b, s] of updates) {
        b.weight = s.weight;
        b.effectiveWeight = s.weight;
        b.maxConnections = s.maxConnections;
        b.backup = s.backup;
      }
      for (const b of list) b.member = true;
      if (old !== undefined) {
        for (const b of old.backends) {
          if (inList.has(b)) continue;
          b.member = false;
          this.depart(pc.name, b);
        }
      }
      pool.rebuild();
    };
    return { pool, commit };
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
    const built = this.buildPool(old.config, specs);
    built.commit();
    const next = built.pool;
    this.pools.set(pool, next);
    for (const l of this.listeners.values()) if (l.pool === old) l.update(l.config, next);
    for (const l of this.listeners.values()) if (l instanceof TcpListener) l.replacePool(old, next);
    this.endUdpSessionsOfGoneBackends();
    return true;
  }

  /**
   * A removed backend added back while its connections were still open:
   * the same record (counters, connections) returns.
   */
  private revive(pool: string, address: string): Backend | undefined {
    const key = `${pool}\u0000${address}`;
    const d = this.departed.get(key);
    if (d === undefined) return undefined;
    for (const b of d.live) {
      if (b.active === 0) continue;
      d.live.delete(b);
      if (d.live.size === 0 && d.done === null) this.departed.delete(key);
      b.state = 'up';
      return b;
    }
    return undefined;
  }

  /** The backends that left pool `pool` and still have connections (state `removed` in status and metrics). */
  private removedOf(pool: string): Backend[] {
    const out: Backend[] = [];
    for (const d of this.departed.values()) if (d.pool === pool) for (const b of d.live) if (b.active > 0) out.push(b);
    return out;
  }

  private startTicker(): void {
    const every = this.progressIntervalMs > 0 ? Math.max(10, Math.min(1000, this.progressIntervalMs)) : 1000;
    if (this.ticker !== null && every === this.tickerEvery) return;
    if (this.ticker !== null) clearInterval(this.ticker);
    this.tickerEvery = every;
    this.ticker = setInterval(() => this.tick(), every);
    this.ticker.unref();
  }

  /**
   * Refusals are logged without connection_log too: one `connections
   * rejected` line per listener and reason with the count since the last
   * line, at most once a second (read from the counters: nothing on the
   * refusal path itself). Then `connection progress` lines when asked.
   */
  private tick(): void {
    const now = Date.now();
    const prev = this.lastTick;
    this.lastTick = now;
    if (now - this.lastRejectLog >= 1000) {
      this.lastRejectLog = now;
      for (const l of this.allListeners()) {
        let seen = this.rejectsLogged.get(l);
        if (seen === undefined) {
          seen = {};
          this.rejectsLogged.set(l, seen);
        }
        const rejected = l.stats.rejected as Record<string, number>;
        for (const reason of Object.keys(rejected)) {
          const n = rejected[reason] ?? 0;
          const before = seen[reason] ?? 0;
          if (n > before) this.opts.log.warn({ listener: l.name, reason, count: n - before, total: n }, 'connections rejected');
          seen[reason] = n;
        }
      }
    }
    const every = this.progressIntervalMs;
    if (every > 0) for (const l of this.allListeners()) l.logProgress(prev, now, every);
  }
  private lastRejectLog = 0;

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

  /** A backend left pool `pool`: no new connections; its open ones go on, its counters are kept (see `departed`). */
  private depart(pool: string, b: Backend): void {
    b.member = false;
    const key = `${pool}\u0000${b.address}`;
    const d = this.departed.get(key);
    if (d === undefined) this.departed.set(key, { pool, live: new Set([b]), done: null });
    else d.live.add(b);
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
    if (this.ticker !== null) clearInterval(this.ticker);
    this.ticker = null;
    this.tick(); // the last refusals
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

  snapshot(): DataPlaneSnapshot {
    const live = new Map<Backend, [number, number]>();
    for (const l of this.allListeners()) l.addLiveBackendBytes(live);
    const backendSnapshot = (b: Backend, removed: boolean): BackendSnapshot => {
      const bytes = live.get(b);
      return {
        address: b.address,
        name: b.name,
        state: removed ? 'removed' : b.state,
        weight: b.weight,
        effective_weight: b.effectiveWeight,
        backup: b.backup,
        active_connections: b.active,
        total_connections: b.total,
        connect_failures: b.connectFailures,
        bytes_in: b.bytesIn + (bytes?.[0] ?? 0),
        bytes_out: b.bytesOut + (bytes?.[1] ?? 0),
        connect_time: b.connectTime.snapshot(),
      };
    };
    const pools: PoolSnapshot[] = [];
    const current = new Map<string, BackendSnapshot>();
    for (const p of this.pools.values()) {
      const backends = p.backends.map((b) => backendSnapshot(b, false));
      for (const b of backends) current.set(`${p.name}\u0000${b.address}`, b);
      for (const b of this.removedOf(p.name)) {
        const s = backendSnapshot(b, true);
        current.set(`${p.name}\u0000${b.address}`, s);
        backends.push(s);
      }
      pools.push({ name: p.name, algorithm: p.config.algorithm, backends });
    }
    // Pools a reload removed while connections to their backends are still open.
    const gonePools = new Map<string, BackendSnapshot[]>();
    for (const d of this.departed.values()) {
      if (this.pools.has(d.pool)) continue;
      for (const b of d.live) {
        if (b.active === 0) continue;
        const s = backendSnapshot(b, true);
        current.set(`${d.pool}\u0000${b.address}`, s);
        let list = gonePools.get(d.pool);
        if (list === undefined) gonePools.set(d.pool, (list = []));
        list.push(s);
      }
    }
    for (const [name, backends] of gonePools) pools.push({ name, algorithm: 'removed', backends });
    // Departed backends whose connections are all done: their totals are
    // added to the entry of the same pool and address, or listed as retired.
    const retired: RetiredBackendSnapshot[] = [];
    for (const [key, d] of this.departed) {
      for (const b of d.live) {
        if (b.active > 0) continue;
        if (d.done === null) d.done = backendTotals(d.pool, backendSnapshot(b, true));
        else addBackendCounters(d.done, backendSnapshot(b, true));
        d.live.delete(b);
      }
      if (d.done === null) continue;
      const cur = current.get(key);
      if (cur !== undefined) addBackendCounters(cur, d.done);
      else retired.push(backendTotals(d.pool, d.done));
    }
    const listeners = this.allListeners().map((l) => l.snapshot());
    for (const gone of this.goneListeners.values()) listeners.push(listenerTotals(gone));
    return { listeners, pools, retired_backends: retired };
  }
}

const noop = (): void => {};

/**
 * True when a reload leaves a pool exactly as it is: the same settings and
 * the same backends (addresses in the same order, weights, limits, backup
 * flags, names).
 */
function unchangedPool(old: Pool, pc: PoolConfig, specs: readonly BackendSpec[]): boolean {
  if (old.backends.length !== specs.length || JSON.stringify(old.config) !== JSON.stringify(pc)) return false;
  return specs.every((s, i) => {
    const b = old.backends[i] as Backend;
    const address = formatHostPort(s.host, s.port);
    return b.address === address && b.weight === s.weight && b.maxConnections === s.maxConnections && b.backup === s.backup && b.name === s.name && b.member;
  });
}

/** A pool built aside by `buildPool()`; `commit()` makes the changes to kept backends. */
interface BuiltPool {
  pool: Pool;
  commit(): void;
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

/** A kept listener keeps its socket: same protocol and same configured bind. */
function sameSocket(a: ListenerConfig, b: ListenerConfig): boolean {
  return a.protocol === b.protocol && a.bindText === b.bindText;
}
