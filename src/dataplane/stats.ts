/**
 * Counters of one listener, as plain numbers incremented on the hot path and
 * read at scrape time (SPEC §6). Bytes of finished connections are added
 * here; bytes of open connections are read from their pumps at scrape time.
 */
import type { HistogramSnapshot } from './histogram';

export type RejectReason = 'acl' | 'limit' | 'source_limit' | 'no_backend' | 'proxy_protocol';
export const REJECT_REASONS: readonly RejectReason[] = ['acl', 'limit', 'source_limit', 'no_backend', 'proxy_protocol'];

export class ListenerStats {
  connectionsTotal = 0;
  active = 0;
  rejected: Record<RejectReason, number> = { acl: 0, limit: 0, source_limit: 0, no_backend: 0, proxy_protocol: 0 };
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
}
