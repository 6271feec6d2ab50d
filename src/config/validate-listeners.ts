/** The [[listeners]] array (SPEC §2, §8.2 SNI routes, §8.6). */
import { joinIndex, joinKey } from './positions';
import { IssueSink, Reader, isTable } from './reader';
import { describe } from './values';
import { DEFAULTS, type ListenerConfig, type PoolConfig, type ProxyProtocolMode, type RouteBy, type SniRouteConfig } from './schema';
import { canonicalSni, sniPatternError } from '../tls/sni-routes';
import { PROTOCOLS, addressKey, readCidrs, readHostPort } from './validate-common';

const PROXY: readonly ProxyProtocolMode[] = ['off', 'v1', 'v2'];
const ROUTE_BY: readonly RouteBy[] = ['none', 'sni'];
const LISTENER_NAME = /^[a-z0-9_-]+$/;
export const LISTENER_KEYS = [
  'name', 'protocol', 'bind', 'pool', 'max_connections', 'connect_timeout', 'idle_timeout', 'proxy_protocol',
  'accept_proxy_protocol', 'allow', 'deny', 'max_connections_per_source', 'udp_responses', 'trusted_proxies',
  'route_by', 'routes', 'client_hello_timeout',
];
export const ROUTE_KEYS = ['sni', 'pool'];

/** Contract: validates the [[listeners]] array and the cross-listener rules. */
export function readListeners(sink: IssueSink, root: Reader, pools: readonly PoolConfig[], poolsValid: boolean): ListenerConfig[] {
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

/** Contract: the index in the listener's `routes` array of the route with canonical name `sni` (falls back to `k`). */
function routeIndex(listener: Record<string, unknown>, sni: string, k: number): number {
  const list = listener.routes;
  if (!Array.isArray(list)) return k;
  const i = list.findIndex((e: unknown) => isTable(e) && typeof e.sni === 'string' && canonicalSni(e.sni) === sni);
  return i >= 0 ? i : k;
}
