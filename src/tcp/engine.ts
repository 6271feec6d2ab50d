/**
 * The native TCP engine, JavaScript side: the addon (native/src/engine_tcp.cc)
 * accepts on a listener's socket, connects the backend and splices; this
 * file keeps every decision in TypeScript, with the same code as the
 * node:net path:
 *
 * - admission: TcpListener.admission() (ACL, per source, max_connections),
 *   the fd budget and the refusal counters, as TcpListener.onConnection;
 * - the backend: takeBackend() (Pool.pick with the 5-tuple), the PROXY
 *   header (proxyHeader()), connect failures (classifyConnectFailure(),
 *   passive health, retries) from src/tcp/decide.ts;
 * - the end: TcpListener.onSessionEnd() (counters, connection log).
 *
 * No net.Socket exists for such a connection. The engine reports in
 * batches (one call per epoll-thread turn): a Float64Array with 6 numbers
 * per record, [kind, id, listener, a, b, c], and the addresses of the
 * accept records, 2 strings each in order (src, dst; '' = the listener's):
 *   1 accept          a = peer port, b = local port
 *   2 connected       b = µs from accept, c = µs of this connect attempt (measured by the engine)
 *   3 connect failed  a = errno
 *   4 done            a = reason (0 closed, 1 client_reset, 2 backend_reset, 3 aborted, 4 closed, backend's FIN first), b/c = bytes in/out
 *   5 accept error    a = errno
 * JS answers with engineConnect(id, ...) or engineRefuse(id), and abort(id).
 */
import { Socket, type Server } from 'node:net';
import { constants as osConstants } from 'node:os';
import type { Backend } from '../backend/backend';
import type { Pool } from '../backend/pool';
import type { ListenerConfig } from '../config/schema';
import { loadSpliceAddon, type SpliceBinding } from '../native/addon';
import { fdBudget } from '../net/fd-budget';
import type { PumpEndReason, PumpHandover } from './pump';
import type { SessionEndReason } from '../listener/reasons';
import type { ListenerContext } from '../listener/context';
import type { ListenerStats } from '../stats/stats';
import type { Flow } from '../balancer/picker';
import { sharedSpliceEngine } from './splice-pump';
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

const EV_ACCEPT = 1;
const EV_CONNECTED = 2;
const EV_CONNECT_FAILED = 3;
const EV_DONE = 4;
const EV_ACCEPT_ERROR = 5;
const REASONS: readonly PumpEndReason[] = ['closed', 'client_reset', 'backend_reset', 'aborted', 'closed'];

/** errno number → code ('ECONNREFUSED'), for the local-error test and logs. */
const ERRNO_NAMES = new Map<number, string>();
for (const [name, n] of Object.entries(osConstants.errno)) if (!ERRNO_NAMES.has(n)) ERRNO_NAMES.set(n, name);
const ETIMEDOUT = osConstants.errno.ETIMEDOUT;

interface Engine {
  addon: Required<Pick<SpliceBinding, 'engineListen' | 'engineUnlisten' | 'engineDetach' | 'engineConnect' | 'engineRefuse'>> & SpliceBinding;
  slab: Float64Array;
  freeSlots: number[];
  /** Listeners by engine id (kept until the listener is disposed: late records of a removed one still find it). */
  listeners: Map<number, EngineHost>;
  /** Connections JS carries, by engine id. */
  conns: Map<number, EngineSession>;
}

let engine: Engine | null | undefined;
let engineReason = '';

function getEngine(): Engine | null {
  if (engine !== undefined) return engine;
  if (process.env.L4LB_TCP_ENGINE === 'off') {
    engineReason = 'L4LB_TCP_ENGINE=off';
    return (engine = null);
  }
  const shared = sharedSpliceEngine();
  if (shared === null) {
    engineReason = 'the splice addon is not available';
    return (engine = null);
  }
  const a = shared.addon;
  if (typeof a.engineStart !== 'function' || typeof a.engineListen !== 'function' || typeof a.engineConnect !== 'function') {
    engineReason = 'this build of the addon has no TCP engine';
    return (engine = null);
  }
  const e: Engine = { addon: a as Engine['addon'], slab: shared.slab, freeSlots: shared.freeSlots, listeners: new Map(), conns: new Map() };
  a.engineStart(onEvents);
  engineReason = ENGINE_ON;
  return (engine = e);
}

const ENGINE_ON = 'accept, connect and splice in the addon; listeners with accept_proxy_protocol or route_by = "sni" accept through node:net';

/**
 * Whether the engine will run, without starting it (the cluster primary,
 * which carries no bytes: each worker starts its own).
 */
export function tcpEngineExpected(): { ok: boolean; reason: string } {
  if (process.env.L4LB_TCP_ENGINE === 'off') return { ok: false, reason: 'L4LB_TCP_ENGINE=off' };
  const { addon, reason } = loadSpliceAddon();
  if (addon === null) return { ok: false, reason };
  if (typeof addon.engineListen !== 'function') return { ok: false, reason: 'this build of the addon has no TCP engine' };
  return { ok: true, reason: `${ENGINE_ON} (in each worker)` };
}

/** Whether the native TCP engine runs in this process, and why (not). */
export function tcpEngineInfo(): { ok: boolean; reason: string } {
  const e = getEngine();
  return { ok: e !== null, reason: engineReason };
}

/**
 * Listeners the engine takes: those that need no client byte before the
 * backend is chosen. accept_proxy_protocol (a PROXY header to read) and
 * route_by = "sni" (a ClientHello to read) stay on node:net (then the
 * splice pump carries the bytes once connected).
 */
export function engineCanTake(config: ListenerConfig): boolean {
  return !config.acceptProxyProtocol && config.routeBy !== 'sni';
}

interface HandleLike {
  fd?: number;
  close?: () => void;
}

/**
 * Gives a bound, listening node:net server's socket to the engine: the
 * engine dup()s it, then libuv's handle is closed with the handle's own
 * (prototype) close, so libuv stops polling and closes its fd while the
 * socket lives on through the dup. In a cluster worker this bypasses the
 * cluster module's patched close: the primary keeps the shared socket, so
 * a replaced worker gets the same one. The server object stays "listening"
 * for stopAccepting(). Returns the engine's listener id, or null when the
 * engine cannot take it (node:net goes on accepting).
 */
export function attachEngine(listener: EngineHost, server: Server): number | null {
  const e = getEngine();
  if (e === null) return null;
  const h = (server as unknown as { _handle?: HandleLike | null })._handle;
  const fd = h && typeof h.fd === 'number' ? h.fd : -1;
  if (h === null || h === undefined || fd < 0) return null;
  const id = e.addon.engineListen(fd, listener.boundAddress, listener.boundPort);
  if (id <= 0) {
    listener.ctx.log.warn({ listener: listener.name, err: ERRNO_NAMES.get(-id) ?? id }, 'tcp engine could not take the listener; node:net accepts');
    return null;
  }
  const close = (Object.getPrototypeOf(h) as HandleLike).close;
  if (typeof close === 'function') close.call(h);
  e.listeners.set(id, listener);
  return id;
}

/** Stops the engine accepting on listener `id`; its connections go on. */
export function detachEngine(id: number): void {
  const e = getEngine();
  if (e !== null) e.addon.engineUnlisten(id);
}

/** Takes listener `id` back from the engine: a new fd of its socket for node:net (or null). */
export function detachEngineToFd(id: number): number | null {
  const e = getEngine();
  if (e === null) return null;
  const fd = e.addon.engineDetach(id);
  return fd >= 0 ? fd : null;
}

/** The listener is gone for good (disposed): records naming it are refused. */
export function forgetEngineListener(listener: EngineHost): void {
  const e = engine;
  if (!e) return;
  for (const [id, l] of e.listeners) if (l === listener) e.listeners.delete(id);
}

function onEvents(rec: Float64Array, addresses: string[]): void {
  const e = engine;
  if (!e) return;
  let si = 0;
  for (let i = 0; i + 5 < rec.length; i += 6) {
    const kind = rec[i] as number;
    const id = rec[i + 1] as number;
    try {
      switch (kind) {
        case EV_ACCEPT: {
          const src = addresses[si] ?? '';
          const dst = addresses[si + 1] ?? '';
          si += 2;
          const l = e.listeners.get(rec[i + 2] as number);
          if (l === undefined) {
            e.addon.engineRefuse(id);
            break;
          }
          onAccept(e, l, id, src, rec[i + 3] as number, dst || l.boundAddress, (rec[i + 4] as number) || l.boundPort);
          break;
        }
        case EV_CONNECTED:
          e.conns.get(id)?.onConnected(rec[i + 4] as number, rec[i + 5] as number);
          break;
        case EV_CONNECT_FAILED:
          e.conns.get(id)?.onConnectFailed(rec[i + 3] as number);
          break;
        case EV_DONE: {
          const s = e.conns.get(id);
          if (s !== undefined) {
            e.conns.delete(id);
            s.onDone(rec[i + 3] as number, rec[i + 4] as number, rec[i + 5] as number);
          }
          break;
        }
        case EV_ACCEPT_ERROR: {
          const l = e.listeners.get(rec[i + 2] as number);
          const errno = rec[i + 3] as number;
          if (l !== undefined) l.onServerError(Object.assign(new Error('accept failed'), { code: ERRNO_NAMES.get(errno) ?? String(errno), errno }));
          break;
        }
      }
    } catch (err) {
      // A bug here must not lose the rest of the batch (their fds would leak).
      process.nextTick(() => {
        throw err;
      });
    }
  }
}

/** A connection the engine accepted: the same steps as TcpListener.onConnection + admit. */
function onAccept(e: Engine, l: EngineHost, id: number, srcAddr: string, srcPort: number, dstAddr: string, dstPort: number): void {
  const stats = l.stats;
  stats.connectionsTotal++;
  // The reserve of fds stays free (as on the node:net path); a connection
  // also needs a byte-counter slot.
  if (!fdBudget.has(1, Date.now()) || e.freeSlots.length === 0) {
    l.countReject('resources');
    e.addon.engineRefuse(id);
    return;
  }
  fdBudget.add(1);
  const refused = l.admission(srcAddr);
  if (refused !== null) {
    l.countReject(refused);
    e.addon.engineRefuse(id);
    return;
  }
  const slot = e.freeSlots.pop() as number;
  const s = new EngineSession(e, l, id, slot, srcAddr, srcPort, dstAddr, dstPort, Date.now());
  e.conns.set(id, s);
  l.addSession(s);
  s.start();
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
    const open = (fd: number): Socket => new Socket({ fd, readable: false, writable: false, allowHalfOpen: true });
    return Promise.resolve({
      client: open(r.clientFd),
      backend: open(r.backendFd),
      toBackend: r.toBackend,
      toClient: r.toClient,
      bytesIn: r.bytesIn,
      bytesOut: r.bytesOut,
      firstFin: r.firstFin,
      session: this,
    });
  }

  private finish(bytesIn: number, bytesOut: number): void {
    if (this.finished) return;
    this.finished = true;
    this.live = false;
    this.e.freeSlots.push(this.slot);
    this.listener.onSessionEnd(this, this.endReason ?? 'closed', bytesIn, bytesOut);
  }
}
