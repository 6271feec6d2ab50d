/**
 * Validation of the SNI routing keys (SPEC §8.2): route_by, routes,
 * client_hello_timeout, the optional fallback pool; errors name key and line.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/load';
import { expectIssue, issuesOf } from './config-helpers';

const POOLS = `
[pools.api]
backends = [{ address = "10.0.0.1:443" }]
[pools.web]
backends = [{ address = "10.0.0.2:443" }]
`;

test('a valid SNI listener: routes lower-cased, defaults, fallback optional', () => {
  const c = parseConfig(`[[listeners]]
name = "tls"
bind = "0.0.0.0:443"
route_by = "sni"
routes = [
  { sni = "API.example.com", pool = "api" },
  { sni = "*.example.com", pool = "web" },
]
${POOLS}`, 'lb.toml', { cpuCount: 1 });
  const l = c.listeners[0]!;
  assert.equal(l.routeBy, 'sni');
  assert.equal(l.pool, '', 'no fallback pool');
  assert.deepEqual(l.routes, [{ sni: 'api.example.com', pool: 'api' }, { sni: '*.example.com', pool: 'web' }]);
  assert.equal(l.clientHelloTimeoutMs, 5000);

  const d = parseConfig(`[[listeners]]
name = "tls"
bind = "0.0.0.0:443"
route_by = "sni"
pool = "web"
client_hello_timeout = "250ms"
${POOLS}`, 'lb.toml', { cpuCount: 1 });
  assert.equal(d.listeners[0]!.pool, 'web');
  assert.deepEqual(d.listeners[0]!.routes, []);
  assert.equal(d.listeners[0]!.clientHelloTimeoutMs, 250);

  const plain = parseConfig(`[[listeners]]\nname = "x"\nbind = "0.0.0.0:1"\npool = "web"\n${POOLS}`, 'lb.toml', { cpuCount: 1 });
  assert.equal(plain.listeners[0]!.routeBy, 'none');
  assert.deepEqual(plain.listeners[0]!.routes, []);
});

test('route errors name the key and line: bad names, duplicates, unknown pools, unknown keys', () => {
  const text = `[[listeners]]
name = "tls"
bind = "0.0.0.0:443"
route_by = "sni"
pool = "nope"
routes = [
  { sni = "api.example.com", pool = "api" },
  { sni = "API.EXAMPLE.COM", pool = "web" },
  { sni = "a.*.example.com", pool = "web" },
  { sni = "www.example.com", pool = "missing" },
  { sni = "10.0.0.1", pool = "web" },
  { sni = "x.example.com", pool = "web", weight = 2 },
  { pool = "web" },
  "api.example.com",
]
client_hello_timeout = "soon"
${POOLS}`;
  const issues = issuesOf(text);
  const e = (path: string, needle: string, re: RegExp): void => expectIssue(text, issues, path, needle, re);
  e('listeners[0].pool', '"nope"', /defined: "api", "web"\), got "nope"/);
  e('listeners[0].routes[1].sni', '"API.EXAMPLE.COM"', /duplicate route for "API.EXAMPLE.COM" \(also routes\[0\]/);
  e('listeners[0].routes[2].sni', '"a.*.example.com"', /wildcard may only be the whole leftmost label/);
  e('listeners[0].routes[3].pool', '"missing"', /defined: "api", "web"\), got "missing"/);
  e('listeners[0].routes[4].sni', '"10.0.0.1"', /IP address is never sent as a server name/);
  e('listeners[0].routes[5].weight', 'weight', /unknown key "weight"/);
  e('listeners[0].routes[6].sni', '{ pool = "web" }', /required key "sni" is missing/);
  e('listeners[0].routes[7]', '"api.example.com",\n]', /expected a table such as \{ sni = /);
  e('listeners[0].client_hello_timeout', '"soon"', /expected a duration string/);
  assert.equal(issues.length, 9, JSON.stringify(issues, null, 1));
});

test('route_by on UDP, routes or client_hello_timeout without route_by = "sni", nothing to route to', () => {
  const text = `[[listeners]]
name = "dns"
protocol = "udp"
bind = "0.0.0.0:53"
pool = "web"
route_by = "sni"

[[listeners]]
name = "plain"
bind = "0.0.0.0:80"
pool = "web"
routes = [{ sni = "a.example.com", pool = "api" }]
client_hello_timeout = "1s"

[[listeners]]
name = "empty"
bind = "0.0.0.0:443"
route_by = "sni"

[[listeners]]
name = "bad"
bind = "0.0.0.0:444"
route_by = "tls"
${POOLS}`;
  const issues = issuesOf(text);
  const e = (path: string, needle: string, re: RegExp, nth = 0): void => expectIssue(text, issues, path, needle, re, nth);
  e('listeners[0].route_by', '"sni"', /route_by applies to TCP listeners only/);
  e('listeners[1].routes', '[{ sni', /routes apply only with route_by = "sni"/);
  e('listeners[1].client_hello_timeout', '"1s"', /client_hello_timeout applies only with route_by = "sni"/);
  e('listeners[2].route_by', '"sni"', /needs routes = .* or a fallback pool/, 1);
  e('listeners[3].route_by', '"tls"', /expected one of "none", "sni", got "tls"/);
  e('listeners[3].pool', '[[listeners]]', /required key "pool" is missing/, 3);
});
