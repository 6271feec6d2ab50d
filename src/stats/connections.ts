/**
 * The open-connections listing of the admin API (`GET /api/v1/connections`):
 * what each listener reports of its open TCP connections and UDP sessions,
 * and how a list from one or several processes is cut to `limit`.
 */

export interface ConnectionQuery {
  listener: string | null;
  pool: string | null;
  /** Backend address `ip:port`. */
  backend: string | null;
  limit: number;
}

export interface ConnectionInfo {
  listener: string;
  protocol: 'tcp' | 'udp';
  pool: string;
  /** `address:port` as in the connection log. */
  client: string;
  backend: string | null;
  age_ms: number;
  bytes_in: number;
  bytes_out: number;
  /** route_by = "sni": the server name the ClientHello carried (null: none). */
  sni?: string | null;
}

export const CONNECTIONS_LIMIT_DEFAULT = 100;
export const CONNECTIONS_LIMIT_MAX = 10_000;

/** Contract: the oldest `limit` connections first (the long-lived ones an operator looks for). */
export function oldestFirst(list: ConnectionInfo[], limit: number): ConnectionInfo[] {
  list.sort((a, b) => b.age_ms - a.age_ms);
  if (list.length > limit) list.length = limit;
  return list;
}

/** Contract: whether a connection of this listener, pool and backend matches the query's filters. */
export function matches(q: ConnectionQuery, listener: string, pool: string, backend: string | null): boolean {
  return (q.listener === null || q.listener === listener) && (q.pool === null || q.pool === pool) && (q.backend === null || q.backend === backend);
}
