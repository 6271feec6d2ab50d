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
import type { Server } from 'node:net';
import type { ListenerConfig } from '../config/schema';
import { loadSpliceAddon } from '../native/addon';
import { fdBudget } from '../net/fd-budget';
import { sharedSpliceEngine } from './splice-pump';
import { ERRNO_NAMES, EngineSession, type Engine, type EngineHost } from './engine-session';

export { EngineSession, type EngineHost } from './engine-session';

const EV_ACCEPT = 1;
const EV_CONNECTED = 2;
const EV_CONNECT_FAILED = 3;
const EV_DONE = 4;
const EV_ACCEPT_ERROR = 5;
const EV_SHED = 6;
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
        case EV_SHED: {
          // Accepted into the fd reserve and closed by the engine at once
          // (engine_tcp.cc, fdCeilingNow): refused as `resources`.
          const l = e.listeners.get(rec[i + 2] as number);
          if (l === undefined) break;
          const n = rec[i + 3] as number;
          l.stats.connectionsTotal += n;
          for (let k = 0; k < n; k++) l.countReject('resources');
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

