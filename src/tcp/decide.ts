/**
 * The decisions a TCP connection needs once it is admitted, shared by both
 * data paths: the node:net path (TcpSession, src/tcp/session.ts) and the
 * native TCP engine (EngineSession, src/tcp/engine.ts). Admission itself
 * (ACL, per-source and listener limits, in SPEC order) is
 * TcpListener.admission(), also called by both.
 *
 * Nothing here touches a socket: each path carries out the answer its own way.
 */
import type { Backend } from '../backend/backend';
import type { Pool } from '../backend/pool';
import type { Flow } from '../balancer/picker';
import type { ListenerContext } from '../listener/context';
import { encodeV1, encodeV2 } from '../proxy';
import { LOCAL_ERRORS } from '../net/fd-budget';

/** The PROXY header sent to the backend first (`proxy_protocol`), or null when off. */
export function proxyHeader(mode: 'off' | 'v1' | 'v2', srcAddr: string, srcPort: number, dstAddr: string, dstPort: number): Buffer | null {
  if (mode === 'off') return null;
  const src = { address: srcAddr, port: srcPort };
  const dst = { address: dstAddr, port: dstPort };
  return mode === 'v1' ? encodeV1(src, dst) : encodeV2(src, dst);
}

/**
 * Picks a backend not tried yet for this flow and counts the attempt on it
 * (active, total). Null when no backend can take it.
 */
export function takeBackend(pool: Pool, flow: Flow, tried: readonly Backend[] | null): Backend | null {
  const backend = pool.pick(flow, tried as Backend[] | null);
  if (backend === null) return null;
  backend.active++;
  backend.total++;
  return backend;
}

/**
 * What a failed backend connect means:
 * - `resources`: this process ran short (EMFILE, ENFILE, ENOBUFS, ENOMEM,
 *   EADDRNOTAVAIL): not the backend's failure, not retried;
 * - `backend_reset`: it accepted and reset at once: it answered, its reset is passed on;
 * - `timeout` / `refused`: a failed check of the backend (passive health), then a retry.
 */
export type ConnectFailure = 'resources' | 'backend_reset' | 'timeout' | 'refused';

export function classifyConnectFailure(code: string | undefined, timedOut: boolean): ConnectFailure {
  if (code !== undefined && LOCAL_ERRORS.has(code)) return 'resources';
  if (code === 'ECONNRESET' || code === 'EPIPE') return 'backend_reset';
  return timedOut ? 'timeout' : 'refused';
}

/** A client connect to `backend` failed: counted, and passive health hears of it. */
export function countConnectFailure(ctx: Pick<ListenerContext, 'onConnectFailure'>, pool: Pool, backend: Backend, kind: 'timeout' | 'refused'): void {
  backend.connectFailures++;
  ctx.onConnectFailure(pool, backend, kind);
}

/** Whether another backend may be tried after `attempts` connect attempts. */
export function mayRetry(pool: Pool, attempts: number): boolean {
  return attempts <= pool.config.retries;
}
