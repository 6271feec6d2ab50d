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
 * - The primary keeps a shadow DataPlane with the pools only (no listeners,
 *   no pickers: it never picks a backend):
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
 * - An upgrade (src/cluster/upgrade-old.ts, upgrade-new.ts) asks the
 *   workers through request(), sendTo() and broadcast() and sees their
 *   upgrade messages first (upgradeTap).
 */
import cluster, { type Worker } from 'node:cluster';
import { join } from 'node:path';
import type { Config } from '../config/schema';
import type { Logger } from '../log';
import type { BackendState } from '../backend/backend';
import { DataPlane, type BackendSpec, type DataPlaneApi, type ListenerBinding } from '../dataplane/dataplane';
import type { DataPlaneSnapshot } from '../stats/stats';
import { sumWorkerSnapshots } from './worker-sum';
import { KeptTotals } from '../stats/kept-totals';
import type { ToPrimary, ToWorker } from './protocol';
import { oldestFirst, type ConnectionInfo, type ConnectionQuery } from '../stats/connections';

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
  /** Counter totals of workers that exited (counters never go down). */
  private readonly dead = new KeptTotals();
  /** Upgrade (src/cluster/upgrade-*.ts): sees every worker message first; true when it took it. */
  upgradeTap: ((index: number, m: ToPrimary, handle: unknown) => boolean) | null = null;

  constructor(opts: ClusterOptions) {
    this.opts = opts;
    this.shadow = new DataPlane({ log: opts.log, splice: null, pickers: false });
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
    worker.on('message', (m: ToPrimary, handle: unknown) => {
      if (this.upgradeTap?.(index, m, handle) !== true) this.onMessage(slot, m);
    });
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
      case 'listener':
      case 'udp':
      case 'udp-done':
      case 'tcp':
      case 'tcp-backend':
      case 'adopted':
        // Upgrade messages no upgrade is waiting for (upgradeTap takes the others).
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
    if (slot.snap !== null) this.dead.keep(slot.snap);
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

  /** Upgrade: the counters go on from the old process's totals (kept as a dead worker's are). */
  inheritTotals(snap: DataPlaneSnapshot): void {
    this.dead.keep(snap);
  }

  /** Upgrade: asks every live worker (or worker `only`) and resolves with their replies. */
  request(make: (id: number) => ToWorker, only?: number): Promise<ToPrimary[]> {
    return this.ask(
      this.slots.filter((s) => only === undefined || s.index === only),
      (id) => make(id),
    );
  }

  /** Upgrade: the number of workers, and one message (with a handle) to worker `index`, resolved once written. */
  get workerCount(): number {
    return this.slots.length;
  }

  sendTo(index: number, m: ToWorker, handle?: object): Promise<void> {
    const w = this.slots[index]?.worker;
    if (w === undefined || !w.isConnected()) return Promise.reject(new Error(`worker ${index} is gone`));
    return new Promise((resolve, reject) => {
      w.send(m, handle as never, {}, (err: Error | null) => (err ? reject(err) : resolve()));
    });
  }

  broadcast(m: ToWorker): void {
    for (const s of this.slots) if (s.worker.isConnected()) s.worker.send(m);
  }

  /**
   * The one place limits are divided among workers. What runs on every
   * worker (a TCP listener; a pool a TCP listener uses, as its pool or by
   * an SNI route) gets ceil(max / N) on each; what runs on worker 0 alone
   * (a UDP listener; a pool only UDP listeners use) keeps its whole limit.
   * 0 (no limit) stays 0.
   */
  private share(max: number, onEveryWorker: boolean): number {
    return max === 0 || !onEveryWorker ? max : Math.ceil(max / this.opts.workers);
  }

  /** A pool's resolved backends as one worker runs them (see share). */
  private workerSpecs(config: Config, pool: string, specs: readonly BackendSpec[]): BackendSpec[] {
    const every = tcpPools(config).has(pool);
    return specs.map((s) => ({ ...s, maxConnections: this.share(s.maxConnections, every) }));
  }

  /** The configuration a worker runs: UDP listeners on worker 0 only; limits divided among workers (see share). */
  private workerConfig(config: Config, index: number): Config {
    const tcp = tcpPools(config);
    return {
      ...config,
      listeners: config.listeners
        .filter((l) => l.protocol === 'tcp' || index === 0)
        .map((l) => ({ ...l, maxConnections: this.share(l.maxConnections, l.protocol === 'tcp'), maxConnectionsPerSource: this.share(l.maxConnectionsPerSource, l.protocol === 'tcp') })),
      pools: config.pools.map((p) => ({ ...p, backends: p.backends.map((b) => ({ ...b, maxConnections: this.share(b.maxConnections, tcp.has(p.name)) })) })),
    };
  }

  private applyMessage(id: number, index: number, config = this.config as Config, backends = this.backends): Extract<ToWorker, { t: 'apply' }> {
    const shared = [...backends].map(([k, v]) => [k, this.workerSpecs(config, k, v)] as [string, BackendSpec[]]);
    const wc = this.workerConfig(config, index);
    // Socket activation: a worker listens on the inherited socket by its fd
    // number. The cluster module opens that fd in the primary (where
    // systemd put it): a TCP socket is shared with every worker, a UDP one
    // goes to worker 0 alone (UDP listeners run there).
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

  /**
   * The sum over workers, with the totals of dead workers and the states
   * of the shadow (src/cluster/worker-sum.ts).
   */
  snapshot(): DataPlaneSnapshot {
    const live = this.slots.flatMap((s) => (s.snap === null ? [] : [s.snap]));
    return sumWorkerSnapshots(live, this.dead, this.shadow.snapshot(), this.config?.listeners ?? []);
  }
}

/** The pools TCP listeners use (as their pool or by an SNI route): these run on every worker. */
function tcpPools(config: Config): Set<string> {
  const out = new Set<string>();
  for (const l of config.listeners) {
    if (l.protocol !== 'tcp') continue;
    if (l.pool !== '') out.add(l.pool);
    for (const r of l.routes) out.add(r.pool);
  }
  return out;
}

/**
 * Node options for data-plane workers: the primary's own, plus a small V8
 * young generation unless the operator chose a size (flag or NODE_OPTIONS).
 * Workers hold the connections; with the default 16 MiB semi-spaces an idle
 * connection costs ~5 KiB of RSS, with 4 MiB ~3 KiB, at the same CPU per
 * connection (bench/README.md, "Idle connections").
 */
export function workerExecArgv(): string[] {
  const own = process.execArgv;
  const chosen = [...own, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)].some((a) => a.startsWith('--max-semi-space-size'));
  return chosen ? [...own] : [...own, '--max-semi-space-size=4'];
}
