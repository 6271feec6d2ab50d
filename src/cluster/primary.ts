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
 *   API describe the whole daemon.
 * - Limits are per worker: `max_connections` of a listener or a backend is
 *   divided among workers (each gets ceil(max / N)), so the total can
 *   overshoot by less than N; least-connections counts each worker's own
 *   connections. Both bounds are documented in the README.
 * - A worker that dies is replaced (logged `worker exited`, counted); its
 *   connections are lost, the others are untouched.
 */
import cluster, { type Worker } from 'node:cluster';
import { join } from 'node:path';
import type { Config } from '../config/schema';
import type { Logger } from '../log';
import type { BackendState } from '../backend/backend';
import { DataPlane, type BackendSpec, type DataPlaneApi, type ListenerBinding } from '../dataplane/dataplane';
import type { BackendSnapshot, DataPlaneSnapshot, ListenerSnapshot } from '../dataplane/stats';
import type { ToPrimary, ToWorker } from './protocol';
import { oldestFirst, type ConnectionInfo, type ConnectionQuery } from '../dataplane/connections';
import { addBackendTotals, addListenerExtras, applyBackendTotals, cloneListener } from '../dataplane/merge';

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
}

export class ClusterDataPlane implements DataPlaneApi {
  private readonly opts: ClusterOptions;
  private readonly shadow: DataPlane;
  private readonly slots: Slot[] = [];
  private config: Config | null = null;
  private backends: Map<string, BackendSpec[]> = new Map();
  private nextId = 1;
  private readonly waiting = new Map<number, { left: number; resolve: (v: ToPrimary[]) => void; replies: ToPrimary[] }>();
  private stopping = false;
  private bound = new Map<string, ListenerBinding>();
  /** Inherited listening sockets by listener name (systemd socket activation). */
  private fds: ReadonlyMap<string, number> = new Map();
  workerRestarts = 0;

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
    const slot: Slot = { index, worker, snap: null };
    this.slots[index] = slot;
    worker.on('message', (m: ToPrimary) => this.onMessage(slot, m));
    worker.on('exit', (code, signal) => this.onExit(slot, code, signal));
    return slot;
  }

  private onMessage(slot: Slot, m: ToPrimary): void {
    switch (m.t) {
      case 'snapshot':
        slot.snap = m.snap;
        return;
      case 'connect-failure':
        this.opts.onConnectFailure(m.pool, m.address, m.kind);
        return;
      default: {
        const w = this.waiting.get(m.id);
        if (w === undefined) return;
        w.replies.push(m);
        if (--w.left === 0) {
          this.waiting.delete(m.id);
          w.resolve(w.replies);
        }
      }
    }
  }

  /** A worker died: replace it with one in the current configuration and states. */
  private onExit(slot: Slot, code: number | null, signal: string | null): void {
    if (this.slots[slot.index] !== slot) return;
    // Answer for it in anything it was part of.
    for (const [id, w] of this.waiting) {
      w.replies.push({ t: 'done', id });
      if (--w.left === 0) {
        this.waiting.delete(id);
        w.resolve(w.replies);
      }
    }
    if (this.stopping) return;
    this.workerRestarts++;
    this.opts.log.error({ worker: slot.worker.id, pid: slot.worker.process.pid, code, signal, restarts: this.workerRestarts }, 'worker exited');
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
      this.waiting.set(id, { left: live.length, resolve, replies: [] });
      for (const s of live) s.worker.send(make(id, s));
    });
  }

  private broadcast(m: ToWorker): void {
    for (const s of this.slots) if (s.worker.isConnected()) s.worker.send(m);
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
      pools: config.pools.map((p) => ({ ...p, backends: p.backends.map((b) => ({ ...b, maxConnections: share(b.maxConnections) })) })),
    };
  }

  private applyMessage(id: number, index: number): ToWorker {
    const backends = [...this.backends].map(([k, v]) => [k, v.map((s) => ({ ...s, maxConnections: s.maxConnections === 0 ? 0 : Math.ceil(s.maxConnections / this.opts.workers) }))] as [string, BackendSpec[]]);
    const config = this.workerConfig(this.config as Config, index);
    // Socket activation: a worker listens on the inherited socket by its fd
    // number. For TCP the cluster module opens that fd in the primary (where
    // systemd put it) and shares the one socket with every worker; worker 0
    // opens an inherited UDP socket itself (forked workers inherit the fds
    // systemd passed, which are not close-on-exec).
    const fds = [...this.fds].filter(([name]) => config.listeners.some((l) => l.name === name));
    return { t: 'apply', id, config, backends, fds };
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
   * Applies a generation to every worker. Listening sockets are created by
   * the cluster module in the primary and shared, so a bind failure is the
   * same for every worker: the previous generation is re-applied to the
   * workers, the error is thrown (with its errno fields) and the shadow
   * keeps the old pools.
   */
  async apply(config: Config, backends: ReadonlyMap<string, readonly BackendSpec[]>, fds?: ReadonlyMap<string, number>): Promise<ListenerBinding[]> {
    if (fds !== undefined) this.fds = fds;
    const prevConfig = this.config;
    const prevBackends = this.backends;
    this.config = config;
    this.backends = new Map([...backends].map(([k, v]) => [k, [...v]]));
    const replies = await this.ask(this.slots, (id, slot) => this.applyMessage(id, slot.index));
    const failed = replies.find((r): r is Extract<ToPrimary, { t: 'apply-failed' }> => r.t === 'apply-failed');
    if (failed !== undefined) {
      this.config = prevConfig;
      this.backends = prevBackends;
      if (prevConfig !== null) await this.ask(this.slots, (id, slot) => this.applyMessage(id, slot.index));
      throw Object.assign(new Error(failed.error.message), failed.error);
    }
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
      this.broadcast({ t: 'pool', pool, specs: [...specs] });
    }
    return ok;
  }

  async stopAccepting(): Promise<void> {
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

  /** The sum over workers: listeners by name, backend counters by pool and address; states from the shadow. */
  snapshot(): DataPlaneSnapshot {
    const listeners = new Map<string, ListenerSnapshot>();
    const counters = new Map<string, { active: number; total: number; failures: number }>();
    const extras = new Map<string, { pool: string; b: BackendSnapshot }>();
    for (const s of this.slots) {
      const snap = s.snap;
      if (snap === null) continue;
      for (const l of snap.listeners) {
        const key = `${l.name}\u0000${l.current}`;
        const cur = listeners.get(key);
        if (cur === undefined) {
          listeners.set(key, cloneListener(l));
          continue;
        }
        addListenerExtras(cur, l);
        cur.active_connections += l.active_connections;
        cur.connections_total += l.connections_total;
        cur.bytes_in += l.bytes_in;
        cur.bytes_out += l.bytes_out;
        cur.udp_sessions_active += l.udp_sessions_active;
        cur.datagrams_in += l.datagrams_in;
        cur.datagrams_out += l.datagrams_out;
        for (const r of Object.keys(cur.rejected) as (keyof typeof cur.rejected)[]) cur.rejected[r] += l.rejected[r];
      }
      for (const p of snap.pools) {
        for (const b of p.backends) {
          const key = `${p.name}\u0000${b.address}`;
          const c = counters.get(key) ?? { active: 0, total: 0, failures: 0 };
          c.active += b.active_connections;
          c.total += b.total_connections;
          c.failures += b.connect_failures;
          counters.set(key, c);
          addBackendTotals(extras, p.name, b);
        }
      }
    }
    const base = this.shadow.snapshot();
    for (const p of base.pools) {
      for (const b of p.backends) {
        const c = counters.get(`${p.name}\u0000${b.address}`);
        b.active_connections = c?.active ?? 0;
        b.total_connections = c?.total ?? 0;
        b.connect_failures = c?.failures ?? 0;
      }
    }
    applyBackendTotals(base.pools, extras);
    const ordered: ListenerSnapshot[] = [];
    for (const lc of this.config?.listeners ?? []) {
      const l = listeners.get(`${lc.name}\u0000true`);
      if (l !== undefined) ordered.push(l);
    }
    for (const [key, l] of listeners) if (key.endsWith('\u0000false')) ordered.push(l);
    return { listeners: ordered, pools: base.pools };
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
