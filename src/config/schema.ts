/**
 * The validated configuration: what SPEC.md §2 describes, after parsing,
 * defaults and validation. Every runtime object is built from these types
 * only; `validate()` returns them deeply frozen.
 *
 * Durations are milliseconds. Addresses are split into host and port.
 */

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';
export type Protocol = 'tcp' | 'udp';
export type Algorithm = 'consistent-hash' | 'least-connections' | 'round-robin' | 'random';
export type HashKey = '5-tuple' | 'source-ip';
export type SpliceMode = 'auto' | 'on' | 'off';
export type ProxyProtocolMode = 'off' | 'v1' | 'v2';
export type HealthCheckType = 'connect' | 'send-expect' | 'http';
export type RouteBy = 'none' | 'sni';

/** "host:port" / "[v6]:port" (host without brackets) and CIDR blocks: see net/types.ts. */
import type { Cidr, HostPort } from '../net/types';
export type { Cidr, HostPort };

export interface GlobalConfig {
  readonly logLevel: LogLevel;
  readonly connectionLog: boolean;
  /** Resolved number of data-plane workers (>= 1); "auto" is resolved to the CPU count. */
  readonly workers: number;
  readonly splice: SpliceMode;
  readonly drainTimeoutMs: number;
  /** On SIGTERM: /healthz answers 503 while listeners still accept for this long, then the drain starts. */
  readonly shutdownDelayMs: number;
  /** Where runtime drain/weight changes are kept across restarts (as written; relative = to the config file's directory); null = nowhere. */
  readonly stateFile: string | null;
  /** `connection progress` every this long for open connections; 0 = off. */
  readonly connectionLogIntervalMs: number;
}

export interface AdminConfig {
  readonly bind: HostPort;
  readonly token: string | null;
}

export interface ListenerConfig {
  readonly name: string;
  readonly protocol: Protocol;
  /** As written in the file, e.g. "127.0.0.1:0". */
  readonly bindText: string;
  readonly bind: HostPort;
  readonly pool: string;
  readonly maxConnections: number;
  readonly connectTimeoutMs: number;
  /** 0 = never. UDP defaults to 30 s. */
  readonly idleTimeoutMs: number;
  readonly proxyProtocol: ProxyProtocolMode;
  readonly acceptProxyProtocol: boolean;
  /**
   * With accept_proxy_protocol: the peers allowed to send PROXY headers
   * (others are refused before a byte is read); null = any peer, and ACLs
   * then see whatever address a header claims.
   */
  readonly trustedProxies: readonly Cidr[] | null;
  /** null when `allow` is absent (everyone allowed unless denied). */
  readonly allow: readonly Cidr[] | null;
  readonly deny: readonly Cidr[];
  readonly maxConnectionsPerSource: number;
  readonly udpResponses: number;
  /** SPEC §8.2: choose the pool from the TLS ClientHello's server name ("sni"), or not ("none"). */
  readonly routeBy: RouteBy;
  /** route_by = "sni": routes in file order; `sni` lower-cased. Empty otherwise. */
  readonly routes: readonly SniRouteConfig[];
  /** route_by = "sni": a complete ClientHello must arrive within this (absolute, from accept). */
  readonly clientHelloTimeoutMs: number;
}

/** One `routes` entry (SPEC §8.2): an exact name or "*.suffix" (lower-case) and its pool. */
export interface SniRouteConfig {
  readonly sni: string;
  readonly pool: string;
}

export interface BackendConfig {
  /** As written, e.g. "db3.internal:5432" or "10.0.0.11:5432". */
  readonly address: string;
  readonly host: string;
  readonly port: number;
  /** 4 or 6 for an IP literal, 0 for a name that must be resolved. */
  readonly family: 0 | 4 | 6;
  readonly weight: number;
  /** 0 = no limit. */
  readonly maxConnections: number;
  readonly backup: boolean;
}

export interface HealthCheckConfig {
  readonly enabled: boolean;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly rise: number;
  readonly fall: number;
  /** null = the backend's own port (TCP pools); UDP pools probe only with a port (or a udp send-expect). */
  readonly port: number | null;
  /** SPEC §8.1: connect (default) | send-expect | http. */
  readonly type: HealthCheckType;
  /** send-expect: tcp (default) | udp. */
  readonly protocol: Protocol;
  /** send-expect: the bytes sent, as lower-case hex ("" = nothing), from `send` or `send_hex`. */
  readonly sendHex: string;
  /** send-expect: a substring the reply must contain; null = not set. */
  readonly expect: string | null;
  /** send-expect: a JavaScript regex source the reply must match (validated); null = not set. */
  readonly expectRegex: string | null;
  /** http: the path requested (default "/"). */
  readonly path: string;
  /** http: the status codes that mean healthy; null = 200-399. */
  readonly expectStatus: readonly number[] | null;
}

export interface PoolConfig {
  readonly name: string;
  readonly algorithm: Algorithm;
  readonly hashKey: HashKey;
  /** Percent; 0 = off. */
  readonly hashBalanceFactor: number;
  readonly tableSize: number;
  readonly retries: number;
  readonly slowStartMs: number;
  readonly backends: readonly BackendConfig[];
  readonly resolveIntervalMs: number;
  readonly healthCheck: HealthCheckConfig;
}

export interface Config {
  /** Path of the file this came from (for messages). */
  readonly file: string;
  readonly global: GlobalConfig;
  readonly admin: AdminConfig | null;
  readonly listeners: readonly ListenerConfig[];
  /** In file order. */
  readonly pools: readonly PoolConfig[];
}

export const DEFAULTS = Object.freeze({
  global: Object.freeze({
    log_level: 'info' as LogLevel,
    connection_log: false,
    workers: 1,
    splice: 'auto' as SpliceMode,
    drain_timeout: '30s',
    shutdown_delay: '0s',
    connection_log_interval: '0s',
  }),
  listener: Object.freeze({
    protocol: 'tcp' as Protocol,
    max_connections: 0,
    connect_timeout: '5s',
    idle_timeout_tcp: '0s',
    idle_timeout_udp: '30s',
    proxy_protocol: 'off' as ProxyProtocolMode,
    accept_proxy_protocol: false,
    max_connections_per_source: 0,
    udp_responses: 0,
    route_by: 'none' as RouteBy,
    client_hello_timeout: '5s',
  }),
  pool: Object.freeze({
    algorithm: 'consistent-hash' as Algorithm,
    hash_key: '5-tuple' as HashKey,
    hash_balance_factor: 0,
    table_size: 65537,
    retries: 2,
    slow_start: '0s',
    resolve_interval: '30s',
  }),
  backend: Object.freeze({ weight: 1, max_connections: 0, backup: false }),
  healthCheck: Object.freeze({ enabled: true, interval: '2s', timeout: '1s', rise: 2, fall: 3, type: 'connect' as HealthCheckType, protocol: 'tcp' as Protocol, path: '/' }),
});
