/**
 * From a parsed TOML document to a deeply frozen Config (SPEC §2). Every
 * problem is collected with its key path and position; if there is any, one
 * ConfigError carrying all of them is thrown.
 */
import { availableParallelism } from 'node:os';
import { ConfigError } from '../errors';
import { isLoopback, parseHostPort } from '../net/address';
import { parseCidr } from '../net/cidr';
import { parseIPv6Into } from '../net/ip';
import { joinIndex, joinKey, type Positions } from './positions';
import { IssueSink, Reader, isTable } from './reader';
import { describe, isPrime, parseHex } from './values';
import {
  DEFAULTS, type AdminConfig, type Algorithm, type BackendConfig, type Cidr, type Config,
  type GlobalConfig, type HashKey, type HealthCheckConfig, type HostPort, type ListenerConfig,
  type LogLevel, type PoolConfig, type Protocol, type ProxyProtocolMode, type SpliceMode, type HealthCheckType,
  type RouteBy, type SniRouteConfig,
} from './schema';
import { canonicalSni, sniPatternError } from '../tls/sni-routes';

export interface ValidateOptions {
  /** CPU count used to resolve `workers = "auto"` (default: os.availableParallelism()). */
  cpuCount?: number;
}

const LOG_LEVELS: readonly LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error'];
const PROTOCOLS: readonly Protocol[] = ['tcp', 'udp'];
const ALGORITHMS: readonly Algorithm[] = ['consistent-hash', 'least-connections', 'round-robin', 'random'];
const HASH_KEYS: readonly HashKey[] = ['5-tuple', 'source-ip'];
const SPLICE: readonly SpliceMode[] = ['auto', 'on', 'off'];
const PROXY: readonly ProxyProtocolMode[] = ['off', 'v1', 'v2'];
const ROUTE_BY: readonly RouteBy[] = ['none', 'sni'];

export const TABLE_SIZE_MIN = 7;
export const TABLE_SIZE_MAX = 1_000_003;
export const WEIGHT_MAX = 1000;
const LISTENER_NAME = /^[a-z0-9_-]+$/;

const TOP_KEYS = ['global', 'admin', 'listeners', 'pools'];
/** A process each: more than this is a typo, not a machine (SPEC §8.6). */
const MAX_WORKERS = 256;
const GLOBAL_KEYS = ['log_level', 'connection_log', 'workers', 'splice', 'drain_timeout', 'shutdown_delay', 'state_file', 'connection_log_interval'];
const ADMIN_KEYS = ['bind', 'token'];
const LISTENER_KEYS = [
  'name', 'protocol', 'bind', 'pool', 'max_connections', 'connect_timeout', 'idle_timeout', 'proxy_protocol',
  'accept_proxy_protocol', 'allow', 'deny', 'max_connections_per_source', 'udp_responses', 'trusted_proxies',
  'route_by', 'routes', 'client_hello_timeout',
];
const ROUTE_KEYS = ['sni', 'pool'];
const POOL_KEYS = [
  'algorithm', 'hash_key', 'hash_balance_factor', 'table_size', 'retries', 'slow_start', 'backends',
  'resolve_interval', 'health_check',
];
const BACKEND_KEYS = ['address', 'weight', 'max_connections', 'backup'];
const HEALTH_KEYS = [
  'enabled', 'interval', 'timeout', 'rise', 'fall', 'port',
  'type', 'protocol', 'send', 'send_hex', 'expect', 'expect_regex', 'path', 'expect_status',
];
const HEALTH_TYPES: readonly HealthCheckType[] = ['connect', 'send-expect', 'http'];

/**
 * Contract: freezes `o` and everything reachable from it (typed arrays such
 * as Cidr.bytes cannot be frozen and are left as they are). Returns `o`.
 */
export function deepFreeze<T>(o: T): T {
  if (typeof o !== 'object' || o === null || ArrayBuffer.isView(o) || Object.isFrozen(o)) return o;
  for (const v of Object.values(o as object)) deepFreeze(v);
  return Object.freeze(o);
}

/** Contract: a canonical "host:port" key for duplicate detection (IPv6 spelled as hex bytes). */
function addressKey(hp: HostPort): string {
  if (hp.family === 6) {
    const b = new Uint8Array(16);
    if (parseIPv6Into(hp.host, b)) return `[${Buffer.from(b).toString('hex')}]:${hp.port}`;
  }
  return `${hp.host.toLowerCase()}:${hp.port}`;
}

/** Contract: reads `key` as "host:port" with port in minPort..65535; IP literal required when ipOnly. */
function readHostPort(r: Reader, key: string, minPort: number, ipOnly: boolean): { text: string; hp: HostPort } | null {
  const v = r.get(key);
  if (v === undefined) return null;
  const what = ipOnly ? '"ip:port"' : '"host:port"';
  if (typeof v !== 'string') {
    r.sink.at(r.p(key), `expected ${what}, got ${describe(v)}`);
    return null;
  }
  const hp = parseHostPort(v);
  if (typeof hp === 'string') {
    const why = hp.startsWith('expected') ? '' : ` (${hp})`;
    r.sink.at(r.p(key), `expected ${what}, got ${describe(v)}${why}`);
    return null;
  }
  if (ipOnly && hp.family === 0) {
    r.sink.at(r.p(key), `expected an IP address (not a name) in ${what}, got ${describe(v)}`);
    return null;
  }
  if (hp.port < minPort) {
    r.sink.at(r.p(key), `expected a port between ${minPort} and 65535, got ${describe(v)}`);
    return null;
  }
  return { text: v, hp };
}

/** Contract: reads an optional array of CIDR strings; null when absent. */
function readCidrs(r: Reader, key: string): Cidr[] | null {
  const v = r.get(key);
  if (v === undefined) return null;
  if (!Array.isArray(v)) {
    r.sink.at(r.p(key), `expected an array of CIDR strings such as ["10.0.0.0/8"], got ${describe(v)}`);
    return [];
  }
  const out: Cidr[] = [];
  v.forEach((item: unknown, i: number) => {
    const p = joinIndex(r.p(key), i);
    if (typeof item !== 'string') {
      r.sink.at(p, `expected a CIDR string such as "10.0.0.0/8", got ${describe(item)}`);
      return;
    }
    const c = parseCidr(item);
    if (typeof c === 'string') r.sink.at(p, `expected a CIDR such as "10.0.0.0/8" or "fd00::/8", got ${describe(item)} (${c})`);
    else out.push(c);
  });
  return out;
}

/** Contract: validates [global]; absent table = all defaults. */
function readGlobal(r: Reader | null, cpuCount: number): GlobalConfig {
  const d = DEFAULTS.global;
  if (r === null) {
    return { logLevel: d.log_level, connectionLog: d.connection_log, workers: d.workers, splice: d.splice, drainTimeoutMs: 30_000, shutdownDelayMs: 0, stateFile: null, connectionLogIntervalMs: 0 };
  }
  r.checkKeys(GLOBAL_KEYS);
  let workers: number = d.workers;
  const w = r.get('workers');
  if (w === 'auto') workers = Math.min(MAX_WORKERS, Math.max(1, cpuCount));
  else if (w !== undefined) {
    if (typeof w === 'number' && Number.isInteger(w) && w >= 1 && w <= MAX_WORKERS) workers = w;
    else r.sink.at(r.p('workers'), `expected an integer from 1 to ${MAX_WORKERS} or "auto", got ${describe(w)}`);
  }
  return {
    logLevel: r.oneOf('log_level', LOG_LEVELS, d.log_level),
    connectionLog: r.bool('connection_log', d.connection_log),
    workers,
    splice: r.oneOf('splice', SPLICE, d.splice),
    drainTimeoutMs: r.duration('drain_timeout', d.drain_timeout),
    shutdownDelayMs: r.duration('shutdown_delay', d.shutdown_delay),
    stateFile: readStateFile(r),
    connectionLogIntervalMs: readProgressInterval(r),
  };
}

/** Contract: reads [global] state_file: a non-empty path string, or null when absent. */
function readStateFile(r: Reader): string | null {
  if (!r.has('state_file')) return null;
  const v = r.str('state_file', '');
  if (v === '' && typeof r.get('state_file') === 'string') r.sink.at(r.p('state_file'), 'expected a file path, got ""');
  return v === '' ? null : v;
}

/** Contract: reads [global] connection_log_interval: "0s" (off) or at least 100 ms (a shorter one would flood the log). */
function readProgressInterval(r: Reader): number {
  const ms = r.duration('connection_log_interval', DEFAULTS.global.connection_log_interval);
  if (ms > 0 && ms < 100) {
    r.sink.at(r.p('connection_log_interval'), `expected "0s" (off) or at least "100ms", got ${describe(r.get('connection_log_interval'))}`);
    return 0;
  }
  return ms;
}

/** Contract: validates [admin]; null when absent. */
function readAdmin(r: Reader | null): AdminConfig | null {
  if (r === null) return null;
  r.checkKeys(ADMIN_KEYS);
  r.require('bind');
  const bind = readHostPort(r, 'bind', 0, true);
  let token: string | null = null;
  if (r.has('token')) {
    token = r.str('token', '');
    if (token === '') {
      if (typeof r.get('token') === 'string') r.sink.at(r.p('token'), 'expected a non-empty token, got ""');
      token = null;
    }
  }
  if (bind !== null && token === null && !isLoopback(bind.hp.host)) {
    r.sink.at(r.p('bind'), `binding the admin endpoint to non-loopback ${JSON.stringify(bind.text)} requires admin.token`);
  }
  return { bind: bind?.hp ?? { host: '127.0.0.1', port: 0, family: 4 }, token };
}

/** Contract: validates one [[listeners]] entry (pool existence and uniqueness are checked later). */
function readListener(r: Reader): ListenerConfig {
  const d = DEFAULTS.listener;
  r.checkKeys(LISTENER_KEYS);
  r.require('name');
  r.require('bind');
  // SPEC §8.2: with route_by = "sni" the pool is the optional fallback.
  if (r.get('route_by') !== 'sni') r.require('pool');
  const name = r.str('name', '');
  if (r.has('name') && typeof r.get('name') === 'string' && !LISTENER_NAME.test(name)) {
    r.sink.at(r.p('name'), `expected a name of [a-z0-9_-]+, got ${describe(name)}`);
  }
  const protocol = r.oneOf('protocol', PROTOCOLS, d.protocol);
  const bind = readHostPort(r, 'bind', 0, true);
  const pool = r.str('pool', '');
  const udp = protocol === 'udp';

  const tcpOnly = (key: string, active: boolean): void => {
    if (udp && r.has(key) && active) r.sink.at(r.p(key), `${key} applies to TCP listeners only; this listener is UDP`);
  };
  const proxyProtocol = r.oneOf('proxy_protocol', PROXY, d.proxy_protocol);
  tcpOnly('proxy_protocol', proxyProtocol !== 'off');
  const acceptProxyProtocol = r.bool('accept_proxy_protocol', d.accept_proxy_protocol);
  tcpOnly('accept_proxy_protocol', acceptProxyProtocol);
  const trustedProxies = readCidrs(r, 'trusted_proxies');
  if (trustedProxies !== null && !acceptProxyProtocol) {
    r.sink.at(r.p('trusted_proxies'), 'trusted_proxies applies only with accept_proxy_protocol = true');
  }
  const maxConnectionsPerSource = r.int('max_connections_per_source', d.max_connections_per_source, 0);
  tcpOnly('max_connections_per_source', maxConnectionsPerSource !== 0);
  const connectTimeoutMs = r.duration('connect_timeout', d.connect_timeout);
  tcpOnly('connect_timeout', true);
  const udpResponses = r.int('udp_responses', d.udp_responses, 0);
  if (!udp && udpResponses !== 0) r.sink.at(r.p('udp_responses'), 'udp_responses applies to UDP listeners only; this listener is TCP');
  const routeBy = r.oneOf('route_by', ROUTE_BY, d.route_by);
  tcpOnly('route_by', routeBy !== 'none');
  const routes = readRoutes(r, routeBy === 'sni');
  const clientHelloTimeoutMs = r.duration('client_hello_timeout', d.client_hello_timeout, 1);
  if (routeBy !== 'sni' && r.has('client_hello_timeout')) {
    r.sink.at(r.p('client_hello_timeout'), 'client_hello_timeout applies only with route_by = "sni"');
  }
  const rv = r.get('routes');
  if (routeBy === 'sni' && !udp && !r.has('pool') && (rv === undefined || (Array.isArray(rv) && rv.length === 0))) {
    r.sink.at(r.p('route_by'), 'route_by = "sni" needs routes = [{ sni = "...", pool = "..." }] or a fallback pool');
  }

  return {
    name,
    protocol,
    bindText: bind?.text ?? '',
    bind: bind?.hp ?? { host: '0.0.0.0', port: 0, family: 4 },
    pool,
    maxConnections: r.int('max_connections', d.max_connections, 0),
    connectTimeoutMs,
    idleTimeoutMs: r.duration('idle_timeout', udp ? d.idle_timeout_udp : d.idle_timeout_tcp),
    proxyProtocol,
    acceptProxyProtocol,
    trustedProxies,
    allow: readCidrs(r, 'allow'),
    deny: readCidrs(r, 'deny') ?? [],
    maxConnectionsPerSource,
    udpResponses,
    routeBy,
    routes,
    clientHelloTimeoutMs,
  };
}

/**
 * Contract: validates a listener's `routes` (SPEC §8.2): an array of
 * `{ sni, pool }` tables, each sni an exact DNS name or "*.suffix" (one
 * leftmost label), no name twice (compared without case). Routes without
 * route_by = "sni" are an error. Pool existence is checked with the pools.
 */
function readRoutes(r: Reader, sni: boolean): SniRouteConfig[] {
  const v = r.get('routes');
  if (v === undefined) return [];
  if (!sni) {
    r.sink.at(r.p('routes'), 'routes apply only with route_by = "sni"');
    return [];
  }
  if (!Array.isArray(v)) {
    r.sink.at(r.p('routes'), `expected an array of tables such as [{ sni = "api.example.com", pool = "api" }], got ${describe(v)}`);
    return [];
  }
  const out: SniRouteConfig[] = [];
  const seen = new Map<string, number>();
  v.forEach((item: unknown, i: number) => {
    const path = joinIndex(r.p('routes'), i);
    if (!isTable(item)) {
      r.sink.at(path, `expected a table such as { sni = "api.example.com", pool = "api" }, got ${describe(item)}`);
      return;
    }
    const e = new Reader(r.sink, path, item);
    e.checkKeys(ROUTE_KEYS);
    e.require('sni');
    e.require('pool');
    const name = e.str('sni', '');
    const pool = e.str('pool', '');
    if (typeof e.get('sni') !== 'string') return;
    const why = sniPatternError(name);
    if (why !== null) {
      e.sink.at(e.p('sni'), `${why}, got ${describe(name)}`);
      return;
    }
    const key = canonicalSni(name);
    const first = seen.get(key);
    if (first !== undefined) {
      e.sink.at(e.p('sni'), `duplicate route for ${JSON.stringify(name)} (also routes[${first}]; names are compared without case)`);
      return;
    }
    seen.set(key, i);
    if (typeof e.get('pool') === 'string') out.push({ sni: key, pool });
  });
  return out;
}

/** Contract: validates one backend entry of a pool; null when unusable. */
function readBackend(sink: IssueSink, path: string, v: unknown): BackendConfig | null {
  if (!isTable(v)) {
    sink.at(path, `expected a table such as { address = "10.0.0.1:80" }, got ${describe(v)}`);
    return null;
  }
  const r = new Reader(sink, path, v);
  const d = DEFAULTS.backend;
  r.checkKeys(BACKEND_KEYS);
  r.require('address');
  const addr = readHostPort(r, 'address', 1, false);
  const weight = r.int('weight', d.weight, 1, WEIGHT_MAX);
  const maxConnections = r.int('max_connections', d.max_connections, 0);
  const backup = r.bool('backup', d.backup);
  if (addr === null) return null;
  return { address: addr.text, host: addr.hp.host, port: addr.hp.port, family: addr.hp.family, weight, maxConnections, backup };
}

/** Contract: validates [pools.<name>.health_check]; absent = defaults. */
function readHealth(r: Reader | null): HealthCheckConfig {
  const d = DEFAULTS.healthCheck;
  if (r === null) return { enabled: d.enabled, intervalMs: 2000, timeoutMs: 1000, rise: d.rise, fall: d.fall, port: null, ...DEFAULT_PROBE_KIND };
  r.checkKeys(HEALTH_KEYS);
  return {
    enabled: r.bool('enabled', d.enabled),
    intervalMs: r.duration('interval', d.interval, 1),
    timeoutMs: r.duration('timeout', d.timeout, 1),
    rise: r.int('rise', d.rise, 1),
    fall: r.int('fall', d.fall, 1),
    port: r.has('port') ? r.int('port', 0, 1, 65535) || null : null,
    ...readProbeKind(r),
  };
}

type ProbeKind = Pick<HealthCheckConfig, 'type' | 'protocol' | 'sendHex' | 'expect' | 'expectRegex' | 'path' | 'expectStatus'>;

const DEFAULT_PROBE_KIND: ProbeKind = {
  type: DEFAULTS.healthCheck.type, protocol: DEFAULTS.healthCheck.protocol, sendHex: '', expect: null, expectRegex: null,
  path: DEFAULTS.healthCheck.path, expectStatus: null,
};

/**
 * Contract: validates the probe kind keys of SPEC §8.1 (type, protocol,
 * send / send_hex, expect / expect_regex, path, expect_status): each key
 * belongs to one type (a key of another type is an error, so a forgotten
 * `type` is not silently a connect check); at most one of send / send_hex
 * and of expect / expect_regex is non-empty; hex and regex are checked here;
 * a UDP send-expect must send something.
 */
function readProbeKind(r: Reader): ProbeKind {
  const d = DEFAULTS.healthCheck;
  const type = r.oneOf('type', HEALTH_TYPES, d.type);
  const only = (key: string, want: HealthCheckType): void => {
    if (r.has(key) && type !== want) r.sink.at(r.p(key), `${key} applies to type = "${want}" only; this health check has type = "${type}"`);
  };
  for (const k of ['protocol', 'send', 'send_hex', 'expect', 'expect_regex']) only(k, 'send-expect');
  for (const k of ['path', 'expect_status']) only(k, 'http');
  const protocol = r.oneOf('protocol', PROTOCOLS, d.protocol);
  const send = r.str('send', '');
  const sendHexText = r.str('send_hex', '');
  let sendHex = '';
  if (send !== '' && sendHexText !== '') r.sink.at(r.p('send_hex'), 'at most one of send / send_hex may be set');
  if (sendHexText !== '') {
    const bytes = parseHex(sendHexText);
    if (typeof bytes === 'string') r.sink.at(r.p('send_hex'), `expected hex bytes such as "0a1b2c", got ${describe(sendHexText)} (${bytes})`);
    else sendHex = bytes.toString('hex');
  } else if (send !== '') {
    sendHex = Buffer.from(send, 'utf8').toString('hex');
  }
  const expect = r.str('expect', '');
  const expectRegex = r.str('expect_regex', '');
  if (expect !== '' && expectRegex !== '') r.sink.at(r.p('expect_regex'), 'at most one of expect / expect_regex may be set');
  if (expectRegex !== '') {
    try {
      new RegExp(expectRegex);
    } catch (err) {
      r.sink.at(r.p('expect_regex'), `expected a JavaScript regular expression, got ${describe(expectRegex)} (${(err as Error).message})`);
    }
  }
  if (type === 'send-expect' && protocol === 'udp' && sendHex === '') {
    r.sink.at(r.p('protocol'), 'protocol = "udp" needs send or send_hex: a UDP probe must send a datagram to get a reply');
  }
  const path = r.str('path', d.path);
  if (r.has('path') && typeof r.get('path') === 'string' && !/^\/[\x21-\x7e]*$/.test(path)) {
    r.sink.at(r.p('path'), `expected a path starting with "/" without spaces or control characters, got ${describe(path)}`);
  }
  let expectStatus: number[] | null = null;
  const es = r.get('expect_status');
  if (es !== undefined) {
    if (!Array.isArray(es) || es.length === 0) {
      r.sink.at(r.p('expect_status'), `expected a non-empty array of HTTP status codes such as [200], got ${describe(es)}`);
    } else {
      expectStatus = [];
      es.forEach((v: unknown, i: number) => {
        if (typeof v === 'number' && Number.isInteger(v) && v >= 100 && v <= 599) expectStatus!.push(v);
        else r.sink.at(joinIndex(r.p('expect_status'), i), `expected an HTTP status code between 100 and 599, got ${describe(v)}`);
      });
    }
  }
  return {
    type,
    protocol,
    sendHex,
    expect: expect === '' ? null : expect,
    expectRegex: expectRegex === '' ? null : expectRegex,
    path,
    expectStatus,
  };
}

/** Contract: validates one [pools.<name>] table. */
function readPool(name: string, r: Reader): PoolConfig {
  const d = DEFAULTS.pool;
  r.checkKeys(POOL_KEYS);
  const backends: BackendConfig[] = [];
  if (r.require('backends')) {
    const list = r.get('backends');
    if (!Array.isArray(list)) {
      r.sink.at(r.p('backends'), `expected an array of backend tables, got ${describe(list)}`);
    } else if (list.length === 0) {
      r.sink.at(r.p('backends'), 'expected at least one backend, got an empty array');
    } else {
      const seen = new Map<string, number>();
      list.forEach((item: unknown, i: number) => {
        const path = joinIndex(r.p('backends'), i);
        const b = readBackend(r.sink, path, item);
        if (b === null) return;
        const key = addressKey(b);
        const first = seen.get(key);
        if (first !== undefined) {
          r.sink.at(joinKey(path, 'address'), `duplicate backend address ${JSON.stringify(b.address)} (also backends[${first}])`);
        } else {
          seen.set(key, i);
        }
        backends.push(b);
      });
    }
  }
  const algorithm = r.oneOf('algorithm', ALGORITHMS, d.algorithm);
  let hashBalanceFactor = r.int('hash_balance_factor', d.hash_balance_factor, 0);
  if (hashBalanceFactor > 0 && hashBalanceFactor < 100) {
    r.sink.at(r.p('hash_balance_factor'), `expected 0 (off) or a percentage >= 100, got ${hashBalanceFactor}`);
    hashBalanceFactor = d.hash_balance_factor;
  }
  let tableSize = r.int('table_size', d.table_size, 0);
  if (r.has('table_size')) {
    if (!isPrime(tableSize) || tableSize < TABLE_SIZE_MIN || tableSize > TABLE_SIZE_MAX) {
      r.sink.at(r.p('table_size'), `expected a prime between ${TABLE_SIZE_MIN} and ${TABLE_SIZE_MAX}, got ${tableSize}`);
      tableSize = d.table_size;
    }
  }
  if (algorithm === 'consistent-hash' && tableSize < backends.length) {
    r.sink.at(r.p('table_size'), `expected a table_size >= the number of backends (${backends.length}), got ${tableSize}`);
  }
  return {
    name,
    algorithm,
    hashKey: r.oneOf('hash_key', HASH_KEYS, d.hash_key),
    hashBalanceFactor,
    tableSize,
    retries: r.int('retries', d.retries, 0),
    slowStartMs: r.duration('slow_start', d.slow_start),
    backends,
    resolveIntervalMs: r.duration('resolve_interval', d.resolve_interval, 1),
    healthCheck: readHealth(r.sub('health_check')),
  };
}

/** Contract: validates [pools]; returns the pools in file order. */
function readPools(sink: IssueSink, root: Reader): PoolConfig[] {
  const v = root.get('pools');
  if (v === undefined) return [];
  if (!isTable(v)) {
    sink.at('pools', `expected tables [pools.<name>], got ${describe(v)}`);
    return [];
  }
  const out: PoolConfig[] = [];
  for (const [name, t] of Object.entries(v)) {
    const path = joinKey('pools', name);
    if (!isTable(t)) {
      sink.at(path, `expected a table [pools.${name}], got ${describe(t)}`);
      continue;
    }
    out.push(readPool(name, new Reader(sink, path, t)));
  }
  return out;
}

/** Contract: validates the [[listeners]] array and the cross-listener rules. */
function readListeners(sink: IssueSink, root: Reader, pools: readonly PoolConfig[], poolsValid: boolean): ListenerConfig[] {
  const v = root.get('listeners');
  if (v === undefined || (Array.isArray(v) && v.length === 0)) {
    sink.at('listeners', 'at least one [[listeners]] entry is required');
    return [];
  }
  if (!Array.isArray(v)) {
    sink.at('listeners', `expected an array of tables ([[listeners]]), got ${describe(v)}`);
    return [];
  }
  const out: ListenerConfig[] = [];
  const names = new Map<string, number>();
  const binds = new Map<string, number>();
  const poolNames = pools.map((p) => p.name);
  v.forEach((item: unknown, i: number) => {
    const path = joinIndex('listeners', i);
    if (!isTable(item)) {
      sink.at(path, `expected a table, got ${describe(item)}`);
      return;
    }
    const r = new Reader(sink, path, item);
    const l = readListener(r);
    if (l.name !== '') {
      const first = names.get(l.name);
      if (first !== undefined) sink.at(r.p('name'), `duplicate listener name ${JSON.stringify(l.name)} (also listeners[${first}])`);
      else names.set(l.name, i);
    }
    if (l.pool !== '' && poolsValid && !poolNames.includes(l.pool)) {
      const known = poolNames.length ? poolNames.map((n) => JSON.stringify(n)).join(', ') : 'none';
      sink.at(r.p('pool'), `expected the name of a [pools.<name>] table (defined: ${known}), got ${JSON.stringify(l.pool)}`);
    }
    if (poolsValid) {
      l.routes.forEach((route, k) => {
        if (poolNames.includes(route.pool)) return;
        const known = poolNames.length ? poolNames.map((n) => JSON.stringify(n)).join(', ') : 'none';
        sink.at(joinKey(joinIndex(r.p('routes'), routeIndex(item, route.sni, k)), 'pool'), `expected the name of a [pools.<name>] table (defined: ${known}), got ${JSON.stringify(route.pool)}`);
      });
    }
    if (l.bindText !== '' && l.bind.port !== 0) {
      const key = `${l.protocol} ${addressKey(l.bind)}`;
      const first = binds.get(key);
      if (first !== undefined) {
        sink.at(r.p('bind'), `${l.protocol} ${JSON.stringify(l.bindText)} is already bound by listeners[${first}]`);
      } else {
        binds.set(key, i);
      }
    }
    out.push(l);
  });
  return out;
}

/**
 * Contract: validates a parsed TOML document against SPEC §2 and returns a
 * deeply frozen Config. Throws ConfigError (code ERR_L4LB_CONFIG) listing
 * every issue found, sorted by position (issues without one last).
 */
export function validateConfig(doc: unknown, file: string, positions: Positions, opts: ValidateOptions = {}): Config {
  const sink = new IssueSink(file, positions);
  if (!isTable(doc)) throw new ConfigError([{ file, line: 0, col: 0, path: '', message: 'expected a TOML document' }]);
  const root = new Reader(sink, '', doc);
  root.checkKeys(TOP_KEYS);
  const cpuCount = opts.cpuCount ?? availableParallelism();
  const global = readGlobal(root.sub('global'), cpuCount);
  const admin = readAdmin(root.sub('admin'));
  const poolsValid = root.get('pools') === undefined || isTable(root.get('pools'));
  const pools = readPools(sink, root);
  const listeners = readListeners(sink, root, pools, poolsValid);
  if (sink.issues.length > 0) {
    const rank = (line: number): number => (line > 0 ? line : Number.MAX_SAFE_INTEGER);
    const sorted = sink.issues
      .map((issue, n) => ({ issue, n }))
      .sort((a, b) => rank(a.issue.line) - rank(b.issue.line) || a.issue.col - b.issue.col || a.n - b.n)
      .map((x) => x.issue);
    throw new ConfigError(sorted);
  }
  return deepFreeze({ file, global, admin, listeners, pools });
}

/** Contract: the index in the listener's `routes` array of the route with canonical name `sni` (falls back to `k`). */
function routeIndex(listener: Record<string, unknown>, sni: string, k: number): number {
  const list = listener.routes;
  if (!Array.isArray(list)) return k;
  const i = list.findIndex((e: unknown) => isTable(e) && typeof e.sni === 'string' && canonicalSni(e.sni) === sni);
  return i >= 0 ? i : k;
}

/** Every configuration key by table, as validation accepts them (docs/reference.md documents each; a test keeps them in step). */
export const CONFIG_KEYS: Readonly<Record<string, readonly string[]>> = {
  top: TOP_KEYS,
  global: GLOBAL_KEYS,
  admin: ADMIN_KEYS,
  listeners: LISTENER_KEYS,
  routes: ROUTE_KEYS,
  pools: POOL_KEYS,
  backends: BACKEND_KEYS,
  health_check: HEALTH_KEYS,
};
