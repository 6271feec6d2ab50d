/**
 * Counters of one listener, as plain numbers incremented on the hot path and
 * read at scrape time (SPEC §6). Bytes of finished connections are added
 * here; bytes of open connections are read from their pumps at scrape time.
 */
import type { HistogramSnapshot } from './histogram';
import { addHistogram } from './histogram';

export type RejectReason = 'acl' | 'limit' | 'source_limit' | 'no_backend' | 'proxy_protocol' | 'resources' | 'no_route' | 'bad_client_hello';
export const REJECT_REASONS: readonly RejectReason[] = ['acl', 'limit', 'source_limit', 'no_backend', 'proxy_protocol', 'resources', 'no_route', 'bad_client_hello'];

export class ListenerStats {
  connectionsTotal = 0;
  active = 0;
  rejected: Record<RejectReason, number> = { acl: 0, limit: 0, source_limit: 0, no_backend: 0, proxy_protocol: 0, resources: 0, no_route: 0, bad_client_hello: 0 };
  /** Client → backend bytes of finished connections (UDP: of datagrams forwarded). */
  bytesIn = 0;
  /** Backend → client bytes of finished connections (UDP: of datagrams returned). */
  bytesOut = 0;
  udpSessionsActive = 0;
  datagramsIn = 0;
  datagramsOut = 0;
}

/** What the control plane reads of one listener (status, metrics). */
export interface ListenerSnapshot {
  name: string;
  protocol: 'tcp' | 'udp';
  bind: string;
  address: string;
  port: number;
  pool: string;
  /** False once removed by a reload (still finishing its open connections). */
  current: boolean;
  active_connections: number;
  connections_total: number;
  rejected: Record<RejectReason, number>;
  bytes_in: number;
  bytes_out: number;
  udp_sessions_active: number;
  datagrams_in: number;
  datagrams_out: number;
  /** TCP listeners (SPEC §8.2): how the pool is chosen, and the routes with their pools. */
  route_by?: 'none' | 'sni';
  routes?: { sni: string; pool: string }[];
  /** Durations of finished connections (UDP: sessions), seconds. */
  duration: HistogramSnapshot;
}

export interface BackendSnapshot {
  address: string;
  name: string | null;
  /** `removed`: left its pool by a reload or DNS while connections to it are still open. */
  state: 'up' | 'down' | 'draining' | 'removed';
  weight: number;
  effective_weight: number;
  backup: boolean;
  active_connections: number;
  total_connections: number;
  connect_failures: number;
  /** Bytes client → backend and backend → client, open connections included. */
  bytes_in: number;
  bytes_out: number;
  connect_time: HistogramSnapshot;
}

export interface PoolSnapshot {
  name: string;
  algorithm: string;
  backends: BackendSnapshot[];
}

export interface DataPlaneSnapshot {
  listeners: ListenerSnapshot[];
  pools: PoolSnapshot[];
  /**
   * Counters of backends that are in no current pool (removed by a reload or
   * DNS, their pool removed, or reported by a dead worker), kept so that
   * counters never go down (SPEC §8.4). A (pool, address) listed in `pools`
   * is not listed here: its past totals are added to its entry there.
   */
  retired_backends?: RetiredBackendSnapshot[];
}

export interface RetiredBackendSnapshot extends BackendSnapshot {
  pool: string;
}

/**
 * The counter fields (never going down) of the snapshots: what is kept for
 * a retired listener or backend and for a dead worker. A new counter field
 * must be listed here; gauges (active, sessions, state) must not.
 */
export const LISTENER_COUNTERS = ['connections_total', 'bytes_in', 'bytes_out', 'datagrams_in', 'datagrams_out'] as const;
export const BACKEND_COUNTERS = ['total_connections', 'connect_failures', 'bytes_in', 'bytes_out'] as const;

/** Adds the counters of `from` to `into` (rejected reasons and the duration histogram included). */
export function addListenerCounters(into: ListenerSnapshot, from: ListenerSnapshot): void {
  for (const k of LISTENER_COUNTERS) into[k] += from[k];
  for (const r of REJECT_REASONS) into.rejected[r] += from.rejected[r] ?? 0;
  addHistogram(into.duration, from.duration);
}

/** Adds the counters of `from` to `into` (the connect-time histogram included). */
export function addBackendCounters(into: BackendSnapshot, from: BackendSnapshot): void {
  for (const k of BACKEND_COUNTERS) into[k] += from[k];
  addHistogram(into.connect_time, from.connect_time);
}

/** A copy of a listener snapshot keeping only its counters (deep: summing into it touches nothing else): gauges 0, not current. */
export function listenerTotals(l: ListenerSnapshot): ListenerSnapshot {
  return { ...l, rejected: { ...l.rejected }, duration: cloneHistogram(l.duration), current: false, active_connections: 0, udp_sessions_active: 0 };
}

/** A copy of a backend snapshot keeping only its counters (deep; gauges 0), under its pool's name. */
export function backendTotals(pool: string, b: BackendSnapshot): RetiredBackendSnapshot {
  return { ...b, pool, active_connections: 0, connect_time: cloneHistogram(b.connect_time) };
}

/** A copy of a listener snapshot that summing may change (gauges kept). */
export function cloneListener(l: ListenerSnapshot): ListenerSnapshot {
  return { ...l, rejected: { ...l.rejected }, duration: cloneHistogram(l.duration) };
}

/** A copy of a backend snapshot that summing may change (gauges kept), under its pool's name. */
export function cloneBackend(pool: string, b: BackendSnapshot): RetiredBackendSnapshot {
  return { ...b, pool, connect_time: cloneHistogram(b.connect_time) };
}

function cloneHistogram(h: HistogramSnapshot): HistogramSnapshot {
  return { counts: [...h.counts], sum: h.sum, count: h.count };
}
