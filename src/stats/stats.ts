/**
 * The counters of listeners and backends (SPEC §6, §8.4), each declared
 * once in the tables below: from a declaration come the stats field the hot
 * path increments, the snapshot key, the sum over workers and the totals
 * kept of what is gone, the status document field and the Prometheus
 * metric (src/stats/counters.ts, src/metrics/metrics.ts). Adding a
 * counter is one line in a table plus its increment site. Bytes of finished
 * connections are added to the stats; bytes of open connections are read
 * from their pumps at scrape time.
 */
import { CONNECT_BUCKETS, DURATION_BUCKETS } from './histogram';
import { addCounters, cloneCounters, statsClass, totalsOf, zeroCounters, type CounterDecl, type SnapshotOf } from './counters';

export type RejectReason = 'acl' | 'limit' | 'source_limit' | 'no_backend' | 'proxy_protocol' | 'resources' | 'no_route' | 'bad_client_hello';
export const REJECT_REASONS: readonly RejectReason[] = ['acl', 'limit', 'source_limit', 'no_backend', 'proxy_protocol', 'resources', 'no_route', 'bad_client_hello'];

const C2B = { direction: 'client_to_backend' } as const;
const B2C = { direction: 'backend_to_client' } as const;

/** Per listener (metric label `listener`; a listener removed by a reload and its successor of the same name are summed). */
export const LISTENER_COUNTERS = [
  { field: 'connectionsTotal', key: 'connections_total', kind: 'counter', status: 'total_connections', metric: 'l4lb_connections_total', help: 'Client connections accepted (UDP: sessions created), by listener' },
  { field: 'active', key: 'active_connections', kind: 'gauge', status: 'active_connections', metric: 'l4lb_connections_active', help: 'Client connections open now (UDP: sessions), by listener' },
  { field: 'rejected', key: 'rejected', kind: 'counter', status: 'rejected', by: { label: 'reason', values: REJECT_REASONS }, metric: 'l4lb_connections_rejected_total', help: 'Client connections (UDP: datagrams of new clients) refused, by listener and reason' },
  /** Client → backend bytes (UDP: of datagrams forwarded). */
  { field: 'bytesIn', key: 'bytes_in', kind: 'counter', status: 'bytes_in', labels: C2B, metric: 'l4lb_bytes_total', help: 'Bytes carried, by listener and direction (open connections included, at most 5 s behind)' },
  /** Backend → client bytes (UDP: of datagrams returned). */
  { field: 'bytesOut', key: 'bytes_out', kind: 'counter', status: 'bytes_out', labels: B2C, metric: 'l4lb_bytes_total', help: 'Bytes carried, by listener and direction (open connections included, at most 5 s behind)' },
  { field: 'udpSessionsActive', key: 'udp_sessions_active', kind: 'gauge', only: 'udp', metric: 'l4lb_udp_sessions_active', help: 'UDP sessions open now, by listener' },
  { field: 'datagramsIn', key: 'datagrams_in', kind: 'counter', only: 'udp', labels: C2B, metric: 'l4lb_udp_datagrams_total', help: 'UDP datagrams forwarded, by listener and direction' },
  { field: 'datagramsOut', key: 'datagrams_out', kind: 'counter', only: 'udp', labels: B2C, metric: 'l4lb_udp_datagrams_total', help: 'UDP datagrams forwarded, by listener and direction' },
  /** Durations of finished connections (UDP: sessions), seconds. */
  { field: 'duration', key: 'duration', kind: 'histogram', buckets: DURATION_BUCKETS, metric: 'l4lb_connection_duration_seconds', help: 'Duration of finished client connections (UDP: sessions) that reached a backend, by listener' },
] as const satisfies readonly CounterDecl[];

/**
 * Per backend (metric labels `pool`, `backend`). The fields are the
 * `Backend`'s own (src/backend/backend.ts extends `BackendStats`); bytes
 * are of finished connections.
 */
export const BACKEND_COUNTERS = [
  { field: 'active', key: 'active_connections', kind: 'gauge', status: 'active_connections', metric: 'l4lb_backend_connections_active', help: 'Connections (UDP: sessions) open to a backend now' },
  { field: 'total', key: 'total_connections', kind: 'counter', status: 'total_connections', metric: 'l4lb_backend_connections_total', help: 'Connections (UDP: sessions) sent to a backend' },
  { field: 'connectFailures', key: 'connect_failures', kind: 'counter', status: 'connect_failures', metric: 'l4lb_backend_connect_failures_total', help: 'Client connects to a backend that failed or timed out (health probes not included)' },
  { field: 'bytesIn', key: 'bytes_in', kind: 'counter', status: 'bytes_in', labels: C2B, metric: 'l4lb_backend_bytes_total', help: 'Bytes carried to and from a backend, by direction (open connections included)' },
  { field: 'bytesOut', key: 'bytes_out', kind: 'counter', status: 'bytes_out', labels: B2C, metric: 'l4lb_backend_bytes_total', help: 'Bytes carried to and from a backend, by direction (open connections included)' },
  /** Time to connect to the backend (successful attempts), seconds. */
  { field: 'connectTime', key: 'connect_time', kind: 'histogram', buckets: CONNECT_BUCKETS, metric: 'l4lb_backend_connect_duration_seconds', help: 'Time to establish a TCP connection to the backend (successful attempts)' },
] as const satisfies readonly CounterDecl[];

/** Counters of one listener, plain fields incremented on the hot path (`stats.connectionsTotal++`). */
export class ListenerStats extends statsClass(LISTENER_COUNTERS) {}

/** The counter fields of a `Backend`. */
export const BackendStats = statsClass(BACKEND_COUNTERS);

export type ListenerCounters = SnapshotOf<typeof LISTENER_COUNTERS>;
export type BackendCounters = SnapshotOf<typeof BACKEND_COUNTERS>;

/** What the control plane reads of one listener (status, metrics). */
export interface ListenerSnapshot extends ListenerCounters {
  name: string;
  protocol: 'tcp' | 'udp';
  bind: string;
  address: string;
  port: number;
  pool: string;
  /** False once removed by a reload (still finishing its open connections). */
  current: boolean;
  /** TCP listeners (SPEC §8.2): how the pool is chosen, and the routes with their pools. */
  route_by?: 'none' | 'sni';
  routes?: { sni: string; pool: string }[];
}

export interface BackendSnapshot extends BackendCounters {
  address: string;
  name: string | null;
  /** `removed`: left its pool by a reload or DNS while connections to it are still open. */
  state: 'up' | 'down' | 'draining' | 'removed';
  weight: number;
  effective_weight: number;
  backup: boolean;
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

/** Adds the counters of `from` to `into` (rejections by reason and the duration histogram included); gauges too when `gauges`. */
export function addListenerCounters(into: ListenerSnapshot, from: ListenerSnapshot, gauges = false): void {
  addCounters(LISTENER_COUNTERS, into, from, gauges);
}

/** Adds the counters of `from` to `into` (the connect-time histogram included); gauges too when `gauges`. */
export function addBackendCounters(into: BackendSnapshot, from: BackendSnapshot, gauges = false): void {
  addCounters(BACKEND_COUNTERS, into, from, gauges);
}

/** Sets every counter and gauge of a backend snapshot to 0, in place. */
export function zeroBackendCounters(b: BackendSnapshot): void {
  zeroCounters(BACKEND_COUNTERS, b);
}

/** A copy of a listener snapshot keeping only its counters (deep: summing into it touches nothing else): gauges 0, not current. */
export function listenerTotals(l: ListenerSnapshot): ListenerSnapshot {
  return { ...totalsOf(LISTENER_COUNTERS, l), current: false };
}

/** A copy of a backend snapshot keeping only its counters (deep; gauges 0), under its pool's name. */
export function backendTotals(pool: string, b: BackendSnapshot): RetiredBackendSnapshot {
  return { ...totalsOf(BACKEND_COUNTERS, b), pool };
}

/** A copy of a listener snapshot that summing may change (gauges kept). */
export function cloneListener(l: ListenerSnapshot): ListenerSnapshot {
  return cloneCounters(LISTENER_COUNTERS, l);
}

/** A copy of a backend snapshot that summing may change (gauges kept), under its pool's name. */
export function cloneBackend(pool: string, b: BackendSnapshot): RetiredBackendSnapshot {
  return { ...cloneCounters(BACKEND_COUNTERS, b), pool };
}
