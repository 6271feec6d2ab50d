/**
 * Whether a datagram from a client without a session may open one, and to
 * which backend: the one decision both UDP data paths take (the JavaScript
 * listener for each such datagram, the native engine for each batch of new
 * clients it reports). Counts nothing: the caller counts the rejection
 * (once per datagram it drops).
 */
import type { ListenerConfig } from '../config/schema';
import type { Pool } from '../backend/pool';
import type { Backend } from '../backend/backend';
import type { Flow } from '../balancer/picker';
import type { RejectReason } from '../stats/stats';
import { fdBudget } from '../net/fd-budget';

export interface UdpAdmission {
  config: ListenerConfig;
  pool: Pool;
  acl: (addr: string) => boolean;
  /** Open sessions of the listener. */
  sessions: number;
  /** Reused for every pick; its destination is the listener's address (or the one the client sent to). */
  flow: Flow;
}

/**
 * A backend, or why not: ACL, `max_connections`, no usable backend
 * (`Pool.pick` on the 5-tuple), the fd reserve (a session costs an fd).
 * `dstAddr`: the address the client sent to when known (wildcard binds on
 * the native engine), else the flow's own.
 */
export function decideUdp(a: UdpAdmission, addr: string, port: number, dstAddr?: string): Backend | RejectReason {
  if (!a.acl(addr)) return 'acl';
  const cfg = a.config;
  if (cfg.maxConnections > 0 && a.sessions >= cfg.maxConnections) return 'limit';
  const f = a.flow;
  f.srcAddr = addr;
  f.srcPort = port;
  const bound = f.dstAddr;
  if (dstAddr !== undefined && dstAddr !== '') f.dstAddr = dstAddr;
  const backend = a.pool.pick(f, null);
  f.dstAddr = bound;
  if (backend === null) return 'no_backend';
  // A session costs an fd: the reserve stays free for probes, the admin
  // endpoint and TCP (an unlimited UDP listener must not take them all).
  if (!fdBudget.has(1, Date.now())) return 'resources';
  return backend;
}
