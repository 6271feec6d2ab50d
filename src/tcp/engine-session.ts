/**
 * One connection the native TCP engine accepted (src/tcp/engine.ts): what
 * TypeScript keeps of it — no socket, only the decisions (backend, retries,
 * PROXY header), its byte-counter slot and its end report — and what the
 * engine needs of its listener (EngineHost, implemented by TcpListener).
 */
import { constants as osConstants } from 'node:os';
import type { Backend } from '../backend/backend';
import type { Pool } from '../backend/pool';
import type { ListenerConfig } from '../config/schema';
import type { SpliceBinding } from '../native/addon';
import type { PumpEndReason, PumpHandover } from './pump';
import type { SessionEndReason } from '../listener/reasons';
import type { ListenerContext } from '../listener/context';
import type { ListenerStats } from '../stats/stats';
import type { Flow } from '../balancer/picker';
import { detachedParts } from './splice-pump';
import { classifyConnectFailure, countConnectFailure, mayRetry, proxyHeader, takeBackend } from './decide';

/**
 * What the engine needs of a TCP listener (src/tcp/listener.ts implements
 * it): the same admission, counting and end report as the node:net path.
 */
export interface EngineHost {
  readonly name: string;
  readonly config: ListenerConfig;
  readonly pool: Pool | null;
  readonly ctx: ListenerContext;
  readonly stats: ListenerStats;
  readonly boundAddress: string;
  readonly boundPort: number;
  /** ACL, per-source and listener limits; null when admitted (and counted). */
  admission(addr: string): 'acl' | 'source_limit' | 'limit' | null;
  addSession(session: EngineSession): void;
  countReject(reason: 'acl' | 'limit' | 'source_limit' | 'proxy_protocol' | 'resources'): void;
  onServerError(err: NodeJS.ErrnoException): void;
  flowFor(session: { clientAddr: string; clientPort: number; dstAddr: string; dstPort: number }): Flow;
  onSessionEnd(session: EngineSession, reason: SessionEndReason, bytesIn: number, bytesOut: number): void;
  /** Upgrade: the session went to a new process; it no longer counts here. */
  forgetSession(session: EngineSession): void;
}

const REASONS: readonly PumpEndReason[] = ['closed', 'client_reset', 'backend_reset', 'aborted', 'closed'];

/** errno number → code ('ECONNREFUSED'), for the local-error test and logs. */
export const ERRNO_NAMES = new Map<number, string>();
for (const [name, n] of Object.entries(osConstants.errno)) if (!ERRNO_NAMES.has(n)) ERRNO_NAMES.set(n, name);
const ETIMEDOUT = osConstants.errno.ETIMEDOUT;

export interface Engine {
  addon: Required<Pick<SpliceBinding, 'engineListen' | 'engineUnlisten' | 'engineDetach' | 'engineConnect' | 'engineRefuse'>> & SpliceBinding;
  slab: Float64Array;
  freeSlots: number[];
  /** Listeners by engine id (kept until the listener is disposed: late records of a removed one still find it). */
  listeners: Map<number, EngineHost>;
  /** Connections JS carries, by engine id. */
  conns: Map<number, EngineSession>;
}

/**
 * One connection carried by the engine. What the listener reads of a
 * session (bytes, backend, ages, the connection log's fields), with no
 * socket object: an idle connection costs this object and its slot.
 */
export class EngineSession {
  readonly listener: EngineHost;
  private readonly e: Engine;
  readonly id: number;
  private readonly slot: number;
  clientAddr: string;
  clientPort: number;
  dstAddr: string;
  dstPort: number;
  readonly startedAt: number;
  pool: Pool | null;
  backend: Backend | null = null;
  private tried: Backend[] | null = null;
  private attempts = 0;
  /** 'splice' once connected (the engine splices it); null while connecting. */
  pumpKind: 'splice' | null = null;
  readonly sniRouted = false;
  readonly sni: string | null = null;
  idleBytes = 0;
  idleSince: number;
  connectMs: number | null = null;
  firstFin: 'client' | 'backend' | null = null;
  private endReason: SessionEndReason | null = null;
  /** Aborted: no more retries; the engine's report ends it. */
  private stopping = false;
  private finished = false;
  /** Until it ends, the slab holds its live byte counts (zeroed here, then written by the engine only). */
  private live = true;
  private finalIn = 0;
  private finalOut = 0;
  private head: Buffer | null = null;

  constructor(e: Engine, listener: EngineHost, id: number, slot: number, srcAddr: string, srcPort: number, dstAddr: string, dstPort: number, now: number) {
    this.e = e;
    this.listener = listener;
    this.id = id;
    this.slot = slot;
    this.clientAddr = srcAddr;
    this.clientPort = srcPort;
    this.dstAddr = dstAddr;
    this.dstPort = dstPort;
    this.pool = listener.pool;
    this.startedAt = now;
    this.idleSince = now;
    e.slab[slot * 2] = 0;
    e.slab[slot * 2 + 1] = 0;
  }

  get bytesIn(): number {
    return this.live ? (this.e.slab[this.slot * 2] ?? 0) : this.finalIn;
  }

  get bytesOut(): number {
    return this.live ? (this.e.slab[this.slot * 2 + 1] ?? 0) : this.finalOut;
  }

  get retries(): number {
    return this.attempts > 0 ? this.attempts - 1 : 0;
  }

  /** The name of the pool the backend is picked from. */
  get poolName(): string | null {
    return this.pool === null ? null : this.pool.name;
  }

  start(): void {
    this.head = proxyHeader(this.listener.config.proxyProtocol, this.clientAddr, this.clientPort, this.dstAddr, this.dstPort);
    this.connectNext();
  }

  private connectNext(): void {
    const pool = this.pool;
    const backend = pool === null ? null : takeBackend(pool, this.listener.flowFor(this), this.tried);
    if (backend === null) {
      this.endReason = this.attempts === 0 ? 'no_backend' : 'connect_failed';
      this.refuse();
      return;
    }
    this.attempts++;
    this.backend = backend;
    const r = this.e.addon.engineConnect(this.id, backend.host, backend.port, this.listener.config.connectTimeoutMs, this.slot, this.head ?? undefined);
    // Only a host that is not a numeric address fails here (resolution gives addresses).
    if (r < 0) this.onConnectFailed(-r);
  }

  /** Times in µs, measured by the engine: from accept, and of the connect attempt that succeeded. */
  onConnected(sinceAcceptUs: number, attemptUs: number): void {
    if (this.finished) return;
    this.pumpKind = 'splice';
    this.head = null;
    this.connectMs = sinceAcceptUs / 1000;
    if (this.backend !== null) this.backend.connectTime.observe(attemptUs / 1e6);
  }

  onConnectFailed(errno: number): void {
    if (this.finished) return;
    const backend = this.backend;
    if (backend !== null) {
      backend.active--;
      this.backend = null;
    }
    // Aborted meanwhile: the engine's report of the abort ends it.
    if (this.stopping) return;
    const failure = classifyConnectFailure(ERRNO_NAMES.get(errno), errno === ETIMEDOUT);
    if (failure === 'resources') {
      // This process's shortage, not the backend's failure: not passive
      // health, not retried.
      this.endReason = 'resources';
      this.refuse();
      return;
    }
    if (backend !== null && failure !== 'backend_reset') {
      countConnectFailure(this.listener.ctx, this.pool as Pool, backend, failure);
      if (this.tried === null) this.tried = [];
      this.tried.push(backend);
    }
    if (mayRetry(this.pool as Pool, this.attempts)) this.connectNext();
    else {
      this.endReason = 'connect_failed';
      this.refuse();
    }
  }

  /** Ends it before the splice: the engine closes the client and forgets it. */
  private refuse(): void {
    this.e.addon.engineRefuse(this.id);
    this.e.conns.delete(this.id);
    this.finish(0, 0);
  }

  onDone(code: number, bytesIn: number, bytesOut: number): void {
    if (this.finished) return;
    const reason = REASONS[code] ?? 'aborted';
    if (this.endReason === null) this.endReason = reason;
    this.firstFin = code === 4 ? 'backend' : code === 0 ? 'client' : null;
    if (this.backend !== null) this.backend.active--;
    this.live = false;
    this.finalIn = bytesIn;
    this.finalOut = bytesOut;
    const stats = this.listener.stats;
    stats.bytesIn += bytesIn;
    stats.bytesOut += bytesOut;
    this.finish(bytesIn, bytesOut);
  }

  /** Resets both sides now (idle, drain deadline, admin, shutdown); the engine's report ends it. */
  abort(reason: SessionEndReason): void {
    if (this.finished || this.stopping) return;
    if (this.endReason === null) this.endReason = reason;
    this.stopping = true;
    this.e.addon.abort(this.id);
  }

  /**
   * Upgrade (src/upgrade/): the engine stops this connection on its thread
   * and hands back both sockets and what its pipes held (native detach), so
   * a new process can carry it on. The session ends here without a report.
   * Null when it cannot be handed over now (not connected yet, ending).
   */
  handover(): Promise<(PumpHandover & { session: EngineSession }) | null> {
    const detach = this.e.addon.detach;
    if (this.pumpKind === null || this.finished || this.stopping || typeof detach !== 'function') return Promise.resolve(null);
    const r = detach.call(this.e.addon, [this.id])[0];
    if (r === undefined || !r.ok) return Promise.resolve(null);
    this.e.conns.delete(this.id);
    this.e.freeSlots.push(this.slot);
    this.live = false;
    this.finished = true;
    if (this.backend !== null) this.backend.active--;
    this.listener.forgetSession(this);
    return Promise.resolve({ ...detachedParts(r), session: this });
  }

  private finish(bytesIn: number, bytesOut: number): void {
    if (this.finished) return;
    this.finished = true;
    this.live = false;
    this.e.freeSlots.push(this.slot);
    this.listener.onSessionEnd(this, this.endReason ?? 'closed', bytesIn, bytesOut);
  }
}
