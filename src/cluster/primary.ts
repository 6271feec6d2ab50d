/**
 * The data plane as N worker processes (global.workers > 1), behind the same
 * interface the control plane uses for the in-process DataPlane.
 *
 * - Workers are cluster workers running src/cluster/worker.ts. TCP listening
 *   sockets are shared (cluster SCHED_NONE: every worker accepts on the same
 *   socket and the kernel spreads new connections; no per-connection hop
 *   through the primary). UDP listeners run on worker 1 only: a shared UDP
 *   socket would let the kernel hand one client's datagrams to different
 *   workers, and Node 20's dgram has no SO_REUSEPORT, so this is how a UDP
 *   flow stays on one worker.
 * - The primary keeps a shadow DataPlane with the pools only (no listeners):
 *   it answers state questions at once and its Backend records carry the
 *   states; every change is broadcast to the workers in the same order.
 * - Counters come from the workers' snapshots (pushed every 250 ms and after
 *   each apply/idle): `snapshot()` is their sum, so /metrics and the status
 *   API describe the whole daemon. The last totals of a worker that exited
 *   are kept and added, so counters never go down.
 * - Limits are per worker: `max_connections` of a listener or a backend is
 *   divided among workers (each gets ceil(max / N)), so the total can
 *   overshoot by less than N; a backend of a pool only UDP listeners use
 *   keeps its whole limit (UDP runs on worker 0 alone); least-connections
 *   counts each worker's own connections. Both bounds are documented in
 *   the README.
 * - A worker that dies is replaced (logged `worker exited`, counted); its
 *   connections are lost, the others are untouched. While draining it is
 *   not replaced.
 */
import cluster, { type Worker } from 'node:cluster';
import { join } from 'node:path';
import type { Config } from '../config/schema';
import type { Logger } from '../log';
import type { BackendState } from '../backend/backend';
import { DataPlane, type BackendSpec, type DataPlaneApi, type ListenerBinding } from '../dataplane/dataplane';
import type { BackendSnapshot, DataPlaneSnapshot, ListenerSnapshot, RetiredBackendSnapshot } from '../dataplane/stats';
import { addBackendCounters, addListenerCounters, backendTotals, cloneBackend, cloneListener, listenerTotals, zeroBackendCounters } from '../dataplane/stats';
import type { ToPrimary, ToWorker } from './protocol';
import { oldestFirst, type ConnectionInfo, type ConnectionQuery } from '../dataplane/connections';

export interface ClusterOptions {
  log: Logger;
  workers: number;
  splice: 'auto' | 'on' | 'off';
  onConnectFailure: (pool: string, address: string, kind: 'refused' | 'timeout') => void;
  onListening: (listener: string, address: string, port: number) => void;
}

interface Slot {
  index: number;
  worker: Worker;
  snap: DataPlaneSnapshot | null;
  /** Set once the worker exited (its last snapshot went into the dead totals). */
  exited: boolean;
}

export class ClusterDataPlane implements DataPlaneApi {
  private readonly opts: ClusterOptions;
  private readonly shadow: DataPlane;
  private readonly slots: Slot[] = [];
  private config: Config | null = null;
  private backends: Map<string, BackendSpec[]> = new Map();
  private nextId = 1;
  /** Requests in flight: the workers that still owe an answer, and the answers so far. */
  private readonly waiting = new Map<number, { owe: Set<Slot>; resolve: (v: ToPrimary[]) => void; replies: ToPrimary[] }>();
  private stopping = false;
  /** False once stopAccepting() ran (drain): a worker that dies is then not replaced. */
  private accepting = true;
  private bound = new Map<string, ListenerBinding>();
  /** Inherited listening sockets by listener name (systemd socket activation). */
  private fds: ReadonlyMap<string, number> = new Map();
  workerRestarts = 0;
  /** Counter totals of workers that exited, as a snapshot with gauges 0 (counters never go down). */
  private readonly dead: { listeners: Map<string, ListenerSnapshot>; backends: Map<string, RetiredBackendSnapshot> } = { listeners: new Map(), backends: new Map() };

  constructor(opts: ClusterOptions) {
    this.opts = opts;
    this.shadow = new DataPlane({ log: opts.log, splice: null });
    // NODE_CLUSTER_SCHED_POLICY (Node's own switch) may choose otherwise.
    if (process.env.NODE_CLUSTER_SCHED_POLICY === undefined) cluster.schedulingPolicy = cluster.SCHED_NONE;
    cluster.setupPrimary({ exec: join(__dirname, 'worker-main.js'), serialization: 'advanced', execArgv: workerExecArgv() });
    for (let i = 0; i < opts.workers; i++) this.fork(i);
  }

  get pools(): DataPlane['pools'] {
    return this.shadow.pools;
  }

  private fork(index: number): Slot {
    const worker = cluster.fork({
      L4LB_WORKER_INDEX: String(index),
      L4LB_LOG_LEVEL: this.config?.global.logLevel ?? 'info',
      L4LB_SPLICE: this.opts.splice,
    });
    const slot: Slot = { index, worker, snap: null, exited: false };
    this.slots[index] = slot;
    worker.on('message', (m: ToPrimary) => this.onMessage(slot, m));
    worker.on('exit', (code, signal) => this.onExit(slot, code, signal));
    return slot;
  }

  private onMessage(slot: Slot, m: ToPrimary): void {
    switch (m.t) {
      case 'snapshot':
        if (!slot.exited) slot.snap = m.snap;
        return;
      case 'connect-failure':
        this.opts.onConnectFailure(m.pool, m.address, m.kind);
        return;
      default: {
        const w = this.waiting.get(m.id);
        if (w === undefined || !w.owe.delete(slot)) return;
        w.replies.push(m);
        if (w.owe.size === 0) {
          this.waiting.delete(m.id);
          w.resolve(w.replies);
        }
      }
    }
  }

  /** A worker died: replace it with one in the current configuration and states. */
  private onExit(slot: Slot, code: number | null, signal: string | null): void {
    if (this.slots[slot.index] !== slot || slot.exited) return;
    // Its counters stay: the last totals it reported are kept (gauges are not).
    slot.exited = true;
    if (slot.snap !== null) this.keepTotals(slot.snap);
    slot.snap = null;
    // Answer for it in what it was asked and had not answered yet.
    for (const [id, w] of this.waiting) {
      if (!w.owe.delete(slot)) continue;
      w.replies.push({ t: 'done', id });
      if (w.owe.size === 0) {
        this.waiting.delete(id);
        w.resolve(w.replies);
      }
    }
    if (this.stopping) return;
    // Draining: nothing new is accepted, so no replacement (it would listen again).
    const replace = this.accepting;
    if (replace) this.workerRestarts++;
    this.opts.log.error({ worker: slot.worker.id, pid: slot.worker.process.pid, code, signal, restarts: this.workerRestarts, ...(replace ? {} : { replaced: false }) }, 'worker exited');
    if (!replace) return;
    const fresh = this.fork(slot.index);
    if (this.config !== null) {
      void this.ask([fresh], (id) => this.applyMessage(id, fresh.index)).then(() => this.replayStates(fresh));
    }
  }

  /** Sends a message carrying an id to `slots` and resolves with their replies. */
  private ask(slots: Slot[], make: (id: number, slot: Slot) => ToWorker): Promise<ToPrimary[]> {
    const live = slots.filter((s) => s.worker.isConnected());
    if (live.length === 0) return Promise.resolve([]);
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.waiting.set(id, { owe: new Set(live), resolve, replies: [] });
      for (const s of live) s.worker.send(make(id, s));
    });
  }

  private broadcast(m: ToWorker): void {
    for (const s of this.slots) if (s.worker.isConnected()) s.worker.send(m);
  }

  /**
   * A backend's max_connections on one worker: a pool that TCP listeners use
   * runs on every worker, so each gets ceil(max / N); a pool used only by
   * UDP listeners runs on worker 0 alone and keeps the full limit.
   */
  private backendShare(config: Config, pool: string, max: number): number {
    if (max === 0) return 0;
    const onEveryWorker = config.listeners.some((l) => l.protocol === 'tcp' && l.pool === pool);
    return onEveryWorker ? Math.ceil(max / this.opts.workers) : max;
  }

  /** A pool's resolved backends as one worker runs them (see backendShare). */
  private workerSpecs(config: Config, pool: string, specs: readonly BackendSpec[]): BackendSpec[] {
    return specs.map((s) => ({ ...s, maxConnections: this.backendShare(config, pool, s.maxConnections) }));
  }

  /** The configuration a worker runs: UDP listeners on worker 0 only; limits divided among workers. */
  private workerConfig(config: Config, index: number): Config {
    const n = this.opts.workers;
    const share = (max: number): number => (max === 0 ? 0 : Math.ceil(max / n));
    return {
      ...config,
      listeners: config.listeners
        .filter((l) => l.protocol === 'tcp' || index === 0)
        .map((l) => ({ ...l, maxConnections: l.protocol === 'tcp' ? share(l.maxConnections) : l.maxConnections, maxConnectionsPerSource: share(l.maxConnectionsPerSource) })),
      pools: config.pools.map((p) => ({ ...p, backends: p.backends.map((b) => ({ ...b, maxConnections: this.backendShare(config, p.name, b.maxConnections) })) })),
    };
  }

  private applyMessage(id: number, index: number, config = this.config as Config, backends = this.backends): Extract<ToWorker, { t: 'apply' }> {
    const shared = [...backends].map(([k, v]) => [k, this.workerSpecs(config, k, v)] as [string, BackendSpec[]]);
    const wc = this.workerConfig(config, index);
    // Socket activation: a worker listens on the inherited socket by its fd
    // number. For TCP the cluster module opens that fd in the primary (where
    // systemd put it) and shares the one socket with every worker; worker 0
    // opens an inherited UDP socket itself (forked workers inherit the fds
    // systemd passed, which are not close-on-exec).
    const fds = [...this.fds].filter(([name]) => wc.listeners.some((l) => l.name === name));
    return { t: 'apply', id, config: wc, backends: shared, fds };
  }

  /** A replacement worker learns the states and weights the others have. */
  private replayStates(slot: Slot): void {
    for (const p of this.shadow.pools.values()) {
      for (const b of p.backends) {
        if (b.state !== 'up') slot.worker.send({ t: 'state', pool: p.name, address: b.address, state: b.state } satisfies ToWorker);
        if (b.effectiveWeight !== b.weight) slot.worker.send({ t: 'weight', pool: p.name, address: b.address, weight: b.effectiveWeight } satisfies ToWorker);
      }
    }
  }

  /**
   * Applies a generation to every worker, in two phases so that a failure
   * changes nothing anywhere: every worker first binds its new listeners
   * ('prepare'); only when all succeeded is the generation committed on
   * every worker, else each closes what it bound ('cancel') and the error is
   * thrown (with its errno fields). Listening TCP sockets are created by the
   * cluster module in the primary and shared; UDP ones by worker 0 alone, so
   * a failure may come from one worker only. The shadow takes the new pools
   * after the commit. A worker that replaced a dead one during the prepare
   * phase gets the committed generation afterwards.
   */
  async apply(config: Config, backends: ReadonlyMap<string, readonly BackendSpec[]>, fds?: ReadonlyMap<string, number>): Promise<ListenerBinding[]> {
    const prevFds = this.fds;
    if (fds !== undefined) this.fds = fds;
    const nextBackends = new Map([...backends].map(([k, v]) => [k, [...v]]));
    const asked = new Set(this.slots);
    const replies = await this.ask(this.slots, (id, slot) => ({ ...this.applyMessage(id, slot.index, config, nextBackends), t: 'prepare' }));
    const failed = replies.find((r): r is Extract<ToPrimary, { t: 'apply-failed' }> => r.t === 'apply-failed');
    if (failed !== undefined) {
      this.fds = prevFds;
      await this.ask(this.slots, (id) => ({ t: 'cancel', id }));
      throw Object.assign(new Error(failed.error.message), failed.error);
    }
    this.config = config;
    this.backends = nextBackends;
    await this.ask(this.slots, (id) => ({ t: 'commit', id }));
    for (const s of this.slots) if (!asked.has(s)) await this.ask([s], (id) => this.applyMessage(id, s.index));
    await this.shadow.apply({ ...config, listeners: [] }, backends);
    // An inherited socket whose listener a reload removed is gone with it;
    // the listener, if added back later, binds its address (as in one process).
    this.fds = new Map([...this.fds].filter(([name]) => config.listeners.some((l) => l.name === name)));
    const out: ListenerBinding[] = [];
    for (const r of replies) {
      if (r.t !== 'applied') continue;
      for (const b of r.bindings) {
        if (out.some((x) => x.name === b.name)) continue;
        out.push(b);
        const known = this.bound.get(b.name);
        if (known === undefined || known.port !== b.port || known.address !== b.address) this.opts.onListening(b.name, b.address, b.port);
        this.bound.set(b.name, b);
      }
    }
    for (const name of [...this.bound.keys()]) if (!config.listeners.some((l) => l.name === name)) this.bound.delete(name);
    return out;
  }

  setBackendState(pool: string, address: string, state: BackendState): BackendState | null {
    const from = this.shadow.setBackendState(pool, address, state);
    if (from !== null) this.broadcast({ t: 'state', pool, address, state });
    return from;
  }

  setBackendWeight(pool: string, address: string, weight: number): boolean {
    const ok = this.shadow.setBackendWeight(pool, address, weight);
    if (ok) this.broadcast({ t: 'weight', pool, address, weight });
    return ok;
  }

  setPoolBackends(pool: string, specs: readonly BackendSpec[]): boolean {
    const ok = this.shadow.setPoolBackends(pool, specs);
    if (ok) {
      this.backends.set(pool, [...specs]);
      if (this.config !== null) this.broadcast({ t: 'pool', pool, specs: this.workerSpecs(this.config, pool, specs) });
    }
    return ok;
  }

  async stopAccepting(): Promise<void> {
    this.accepting = false;
    await this.ask(this.slots, (id) => ({ t: 'stop', id }));
  }

  async whenIdle(): Promise<void> {
    await this.ask(this.slots, (id) => ({ t: 'idle', id }));
  }

  abortAll(reason: 'drain_timeout' | 'shutdown'): void {
    this.broadcast({ t: 'abort', reason });
  }

  activeConnections(): number {
    let n = 0;
    for (const s of this.slots) for (const l of s.snap?.listeners ?? []) n += l.active_connections;
    return n;
  }

  async shutdownBackend(pool: string, address: string): Promise<number> {
    const replies = await this.ask(this.slots, (id) => ({ t: 'shutdown-backend', id, pool, address }));
    let n = 0;
    for (const r of replies) if (r.t === 'closed') n += r.n;
    return n;
  }

  async connections(query: ConnectionQuery): Promise<ConnectionInfo[]> {
    const replies = await this.ask(this.slots, (id) => ({ t: 'connections', id, query }));
    const all: ConnectionInfo[] = [];
    for (const r of replies) if (r.t === 'connection-list') all.push(...r.list);
    return oldestFirst(all, query.limit);
  }

  /** Tells every worker to exit and waits for them. */
  async dispose(): Promise<void> {
    this.stopping = true;
    const exits = this.slots.map((s) => (s.worker.isDead() ? Promise.resolve() : new Promise<void>((r) => s.worker.once('exit', () => r()))));
    this.broadcast({ t: 'exit' });
    await Promise.all(exits);
  }

  /** Adds a dead worker's last snapshot to the kept totals. */
  private keepTotals(snap: DataPlaneSnapshot): void {
    for (const l of snap.listeners) {
      const key = `${l.protocol}\u0000${l.name}`;
      const cur = this.dead.listeners.get(key);
      if (cur === undefined) this.dead.listeners.set(key, listenerTotals(l));
      else addListenerCounters(cur, l);
    }
    const backends = [...snap.pools.flatMap((p) => p.backends.map((b) => backendTotals(p.name, b))), ...(snap.retired_backends ?? [])];
    for (const b of backends) {
      const key = `${b.pool}\u0000${b.address}`;
      const cur = this.dead.backends.get(key);
      if (cur === undefined) this.dead.backends.set(key, backendTotals(b.pool, b));
      else addBackendCounters(cur, b);
    }
  }

  /**
   * The sum over workers: listeners by name (current and retired apart),
   * backend counters by pool and address; states from the shadow. The
   * totals of dead workers are added (as retired entries, gauges 0).
   */
  snapshot(): DataPlaneSnapshot {
    const listeners = new Map<string, ListenerSnapshot>();
    const counters = new Map<string, RetiredBackendSnapshot>();
    const addListener = (l: ListenerSnapshot): void => {
      const key = `${l.name}\u0000${l.current}\u0000${l.protocol}`;
      const cur = listeners.get(key);
      if (cur === undefined) {
        listeners.set(key, cloneListener(l));
        return;
      }
      addListenerCounters(cur, l, true);
    };
    const addBackend = (pool: string, b: BackendSnapshot): void => {
      const key = `${pool}\u0000${b.address}`;
      const c = counters.get(key);
      if (c === undefined) {
        counters.set(key, cloneBackend(pool, b));
        return;
      }
      addBackendCounters(c, b, true);
      // One worker still holds it as removed while another has it again: it is current.
      if (c.state === 'removed' && b.state !== 'removed') c.state = b.state;
    };
    for (const s of this.slots) {
      const snap = s.snap;
      if (snap === null) continue;
      for (const l of snap.listeners) addListener(l);
      for (const p of snap.pools) for (const b of p.backends) addBackend(p.name, b);
      for (const b of snap.retired_backends ?? []) addBackend(b.pool, b);
    }
    for (const l of this.dead.listeners.values()) addListener(l);
    for (const b of this.dead.backends.values()) addBackend(b.pool, b);
    const base = this.shadow.snapshot();
    for (const p of base.pools) {
      for (const b of p.backends) {
        const key = `${p.name}\u0000${b.address}`;
        const c = counters.get(key);
        counters.delete(key);
        zeroBackendCounters(b);
        if (c !== undefined) addBackendCounters(b, c, true);
      }
    }
    // Backends only workers know: removed ones still carrying connections
    // are shown (state `removed`); the others keep their totals as retired.
    const retired: RetiredBackendSnapshot[] = [];
    for (const c of counters.values()) {
      if (c.state !== 'removed' || c.active_connections === 0) {
        retired.push(backendTotals(c.pool, c));
        continue;
      }
      let p = base.pools.find((x) => x.name === c.pool);
      if (p === undefined) {
        p = { name: c.pool, algorithm: 'removed', backends: [] };
        base.pools.push(p);
      }
      const { pool: _pool, ...b } = c;
      p.backends.push(b);
    }
    // Current listeners in configuration order, then the others.
    const ordered = new Set<ListenerSnapshot>();
    for (const lc of this.config?.listeners ?? []) {
      const l = listeners.get(`${lc.name}\u0000true\u0000${lc.protocol}`);
      if (l !== undefined) ordered.add(l);
    }
    for (const l of listeners.values()) ordered.add(l);
    return { listeners: [...ordered], pools: base.pools, retired_backends: retired };
  }
}

/**
 * Node options for data-plane workers: the primary's own, plus a small V8
 * young generation unless the operator chose a size (flag or NODE_OPTIONS).
 * Workers hold the connections; with the default 16 MiB semi-spaces an idle
 * connection costs ~5 KiB of RSS, with 4 MiB ~3 KiB, at the same CPU per
 * connection (bench/README.md, "Memory").
 */
export function workerExecArgv(): string[] {
  const own = process.execArgv;
  const chosen = [...own, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)].some((a) => a.startsWith('--max-semi-space-size'));
  return chosen ? [...own] : [...own, '--max-semi-space-size=4'];
}
