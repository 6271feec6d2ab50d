import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/load';
import { formatConfigIssue } from '../../src/errors';
import { BASE, FILE, expectIssue, issueAt, issuesOf, locate } from './config-helpers';

test('the SPEC error example: backend address without a port, exact line:col', () => {
  const text = BASE.replace('{ address = "10.0.0.1:80" },', '{ address = "10.0.0.1:80" },\n  { address = "10.0.0.7" },');
  const issues = issuesOf(text);
  assert.equal(issues.length, 1);
  expectIssue(text, issues, 'pools.web.backends[1].address', '"10.0.0.7"', /expected "host:port", got "10.0.0.7"/);
  const p = locate(text, '"10.0.0.7"');
  assert.equal(formatConfigIssue(issues[0]!), `lb.toml:${p.line}:${p.col}: pools.web.backends[1].address: expected "host:port", got "10.0.0.7"`);
});

test('all errors are reported at once, sorted by position', () => {
  const text = `[global]
log_level = "loud"
workers = 0
drain_timeout = 30
connection_log = "yes"
splice = "maybe"

[[listeners]]
name = "Bad Name"
protocol = "sctp"
bind = "localhost:80"
pool = "missing"
max_connections = -1

[pools.web]
algorithm = "fastest"
hash_key = "dest"
hash_balance_factor = 50
table_size = 65536
retries = -1
slow_start = "5"
resolve_interval = "0s"
backends = [
  { address = "10.0.0.1:0", weight = 0, max_connections = -5, backup = "no" },
]
[pools.web.health_check]
enabled = 1
interval = "fast"
timeout = 1
rise = 0
fall = 0
port = 0
`;
  const issues = issuesOf(text);
  const e = (path: string, needle: string, re: RegExp): void => expectIssue(text, issues, path, needle, re);
  e('global.log_level', '"loud"', /expected one of "trace", "debug", "info", "warn", "error", got "loud"/);
  e('global.workers', 'workers = |0', /expected an integer from 1 to 256 or "auto", got 0/);
  e('global.drain_timeout', '= |30', /expected a duration string with a unit .*got 30$/);
  e('global.connection_log', '"yes"', /expected true or false, got "yes"/);
  e('global.splice', '"maybe"', /expected one of "auto", "on", "off"/);
  e('listeners[0].name', '"Bad Name"', /\[a-z0-9_-\]\+, got "Bad Name"/);
  e('listeners[0].protocol', '"sctp"', /expected one of "tcp", "udp", got "sctp"/);
  e('listeners[0].bind', '"localhost:80"', /expected an IP address .*got "localhost:80"/);
  e('listeners[0].pool', '"missing"', /defined: "web"\), got "missing"/);
  e('listeners[0].max_connections', 'max_connections = |-1', /expected an integer >= 0, got -1/);
  e('pools.web.algorithm', '"fastest"', /got "fastest"/);
  e('pools.web.hash_key', '"dest"', /expected one of "5-tuple", "source-ip", got "dest"/);
  e('pools.web.hash_balance_factor', '50', /0 \(off\) or a percentage >= 100, got 50/);
  e('pools.web.table_size', '65536', /expected a prime between 7 and 1000003, got 65536/);
  e('pools.web.retries', 'retries = |-1', /expected an integer >= 0, got -1/);
  e('pools.web.slow_start', '"5"', /expected a duration string with a unit/);
  e('pools.web.resolve_interval', '"0s"', /at least 1ms, got "0s"/);
  e('pools.web.backends[0].address', '"10.0.0.1:0"', /expected a port between 1 and 65535/);
  e('pools.web.backends[0].weight', 'weight = |0', /expected an integer between 1 and 1000, got 0/);
  e('pools.web.backends[0].max_connections', '-5', /expected an integer >= 0, got -5/);
  e('pools.web.backends[0].backup', '"no"', /expected true or false, got "no"/);
  e('pools.web.health_check.enabled', 'enabled = |1', /expected true or false, got 1/);
  e('pools.web.health_check.interval', '"fast"', /duration/);
  e('pools.web.health_check.timeout', 'timeout = |1', /duration string with a unit.*got 1$/);
  e('pools.web.health_check.rise', 'rise = |0', /expected an integer >= 1, got 0/);
  e('pools.web.health_check.fall', 'fall = |0', /expected an integer >= 1, got 0/);
  e('pools.web.health_check.port', 'port = |0', /expected an integer between 1 and 65535, got 0/);
  assert.equal(issues.length, 27);
  const lines = issues.map((i) => i.line);
  assert.deepEqual(lines, [...lines].sort((a, b) => a - b));
});

test('unknown keys anywhere are errors at the key, with a suggestion for near misses', () => {
  const text = `colour = 1
[global]
log_levle = "info"
[admin]
bind = "127.0.0.1:9090"
tokn = "x"
[[listeners]]
name = "web"
bind = "127.0.0.1:8080"
pool = "web"
idle_timout = "1s"
[pools.web]
backends = [ { address = "10.0.0.1:80", wieght = 2 } ]
frobnicate = true
[pools.web.health_check]
intervall = "1s"
`;
  const issues = issuesOf(text);
  assert.equal(issues.length, 7);
  expectIssue(text, issues, 'colour', 'colour', /unknown key "colour"$/);
  expectIssue(text, issues, 'global.log_levle', 'log_levle', /unknown key "log_levle" \(did you mean "log_level"\?\)/);
  expectIssue(text, issues, 'admin.tokn', 'tokn', /did you mean "token"/);
  expectIssue(text, issues, 'listeners[0].idle_timout', 'idle_timout', /did you mean "idle_timeout"/);
  expectIssue(text, issues, 'pools.web.backends[0].wieght', 'wieght', /did you mean "weight"/);
  expectIssue(text, issues, 'pools.web.frobnicate', 'frobnicate', /^unknown key "frobnicate"$/);
  expectIssue(text, issues, 'pools.web.health_check.intervall', 'intervall', /did you mean "interval"/);
});

test('required keys: listener name/bind/pool, pool backends, backend address, admin bind, a listener', () => {
  const text = `[admin]
token = "t"
[[listeners]]
protocol = "tcp"
[pools.a]
algorithm = "random"
[pools.b]
backends = []
[pools.c]
backends = [ { weight = 2 }, "10.0.0.1:80" ]
`;
  const issues = issuesOf(text);
  expectIssue(text, issues, 'admin.bind', '[admin]', /required key "bind" is missing/);
  expectIssue(text, issues, 'listeners[0].name', '[[listeners]]', /required key "name"/);
  expectIssue(text, issues, 'listeners[0].bind', '[[listeners]]', /required key "bind"/);
  expectIssue(text, issues, 'listeners[0].pool', '[[listeners]]', /required key "pool"/);
  expectIssue(text, issues, 'pools.a.backends', '[pools.a]', /required key "backends"/);
  expectIssue(text, issues, 'pools.b.backends', '[]', /at least one backend/);
  expectIssue(text, issues, 'pools.c.backends[0].address', '{ weight', /required key "address"/);
  expectIssue(text, issues, 'pools.c.backends[1]', '"10.0.0.1:80"', /expected a table .*got "10.0.0.1:80"/);
  assert.equal(issues.length, 8);

  const none = issuesOf('[pools.web]\nbackends = [ { address = "10.0.0.1:80" } ]\n');
  assert.equal(issueAt(none, 'listeners').line, 0);
  assert.match(issueAt(none, 'listeners').message, /at least one \[\[listeners\]\]/);
  const notArray = issuesOf('[listeners]\nname = "x"\n');
  expectIssue('[listeners]\nname = "x"\n', notArray, 'listeners', '[listeners]', /expected an array of tables/);
});

test('listener names unique, binds unique per protocol (port 0 and other protocol allowed)', () => {
  const text = `${BASE}
[[listeners]]
name = "web"
bind = "127.0.0.1:8081"
pool = "web"

[[listeners]]
name = "dup-bind"
bind = "127.0.0.1:8080"
pool = "web"

[[listeners]]
name = "udp-same-port"
protocol = "udp"
bind = "127.0.0.1:8080"
pool = "web"

[[listeners]]
name = "zero1"
bind = "127.0.0.1:0"
pool = "web"

[[listeners]]
name = "zero2"
bind = "127.0.0.1:0"
pool = "web"

[[listeners]]
name = "v6a"
bind = "[::1]:53"
pool = "web"

[[listeners]]
name = "v6b"
bind = "[0:0:0:0:0:0:0:1]:53"
pool = "web"
`;
  const issues = issuesOf(text);
  expectIssue(text, issues, 'listeners[1].name', '"web"', /duplicate listener name "web" \(also listeners\[0\]\)/, 2);
  expectIssue(text, issues, 'listeners[2].bind', '"127.0.0.1:8080"', /already bound by listeners\[0\]/, 1);
  expectIssue(text, issues, 'listeners[7].bind', '"[0:0:0:0:0:0:0:1]:53"', /already bound by listeners\[6\]/);
  assert.equal(issues.length, 3);
});

test('TCP-only keys on a UDP listener and udp_responses on TCP are errors', () => {
  const text = `${BASE}
[[listeners]]
name = "dns"
protocol = "udp"
bind = "127.0.0.1:53"
pool = "web"
connect_timeout = "1s"
proxy_protocol = "v2"
accept_proxy_protocol = true
max_connections_per_source = 5
udp_responses = 1

[[listeners]]
name = "dns-tcp"
bind = "127.0.0.1:53"
pool = "web"
udp_responses = 1
proxy_protocol = "v1"
`;
  const issues = issuesOf(text);
  expectIssue(text, issues, 'listeners[1].connect_timeout', '"1s"', /TCP listeners only/);
  expectIssue(text, issues, 'listeners[1].proxy_protocol', '"v2"', /TCP listeners only/);
  expectIssue(text, issues, 'listeners[1].accept_proxy_protocol', 'true', /TCP listeners only/);
  expectIssue(text, issues, 'listeners[1].max_connections_per_source', '= |5', /TCP listeners only/);
  expectIssue(text, issues, 'listeners[2].udp_responses', 'udp_responses = |1\nproxy', /UDP listeners only/);
  assert.equal(issues.length, 5);
  // The "off" values are accepted on UDP, and udp_responses = 0 on TCP.
  const ok = parseConfig(`${BASE}
[[listeners]]
name = "dns"
protocol = "udp"
bind = "127.0.0.1:53"
pool = "web"
proxy_protocol = "off"
accept_proxy_protocol = false
max_connections_per_source = 0
udp_responses = 1
`, FILE);
  assert.equal(ok.listeners[1]?.udpResponses, 1);
});

test('admin: non-loopback bind needs a token; loopback or with token is fine', () => {
  const bad = `[admin]\nbind = "0.0.0.0:9090"\n${BASE}`;
  expectIssue(bad, issuesOf(bad), 'admin.bind', '"0.0.0.0:9090"', /requires admin.token/);
  const v6 = `[admin]\nbind = "[::]:9090"\n${BASE}`;
  expectIssue(v6, issuesOf(v6), 'admin.bind', '"[::]:9090"', /requires admin.token/);
  const emptyToken = `[admin]\nbind = "10.1.1.1:9090"\ntoken = ""\n${BASE}`;
  const ei = issuesOf(emptyToken);
  expectIssue(emptyToken, ei, 'admin.token', '""', /non-empty/);
  expectIssue(emptyToken, ei, 'admin.bind', '"10.1.1.1:9090"', /requires admin.token/);
  assert.equal(parseConfig(`[admin]\nbind = "[::1]:9090"\n${BASE}`, FILE).admin?.token, null);
  assert.equal(parseConfig(`[admin]\nbind = "0.0.0.0:9090"\ntoken = "s3cret"\n${BASE}`, FILE).admin?.token, 's3cret');
  const named = `[admin]\nbind = "localhost:9090"\n${BASE}`;
  expectIssue(named, issuesOf(named), 'admin.bind', '"localhost:9090"', /expected an IP address/);
});

test('addresses: host:port, [v6]:port, names, and their errors', () => {
  const text = BASE.replace('{ address = "10.0.0.1:80" },', `{ address = "10.0.0.1:80" },
  { address = "[2001:db8::1]:443" },
  { address = "db3.internal:5432" },
  { address = "2001:db8::1:443" },
  { address = "[nope]:80" },
  { address = "host:port" },
  { address = "10.0.0.2:65536" },
  { address = "bad_host-.example:1" },
  { address = "10.0.0.256:80" },
  { address = 8080 },
  { address = "10.0.0.1:80" },`);
  const issues = issuesOf(text);
  expectIssue(text, issues, 'pools.web.backends[3].address', '"2001:db8::1:443"', /needs brackets/);
  expectIssue(text, issues, 'pools.web.backends[4].address', '"[nope]:80"', /not an IPv6 address/);
  expectIssue(text, issues, 'pools.web.backends[5].address', '"host:port"', /the port "port" is not a number/);
  expectIssue(text, issues, 'pools.web.backends[6].address', '"10.0.0.2:65536"', /out of range/);
  expectIssue(text, issues, 'pools.web.backends[7].address', '"bad_host-.example:1"', /not a valid IP address or host name/);
  expectIssue(text, issues, 'pools.web.backends[8].address', '"10.0.0.256:80"', /not a valid IP address or host name/);
  expectIssue(text, issues, 'pools.web.backends[9].address', 'address = |8080', /expected "host:port", got 8080/);
  expectIssue(text, issues, 'pools.web.backends[10].address', '"10.0.0.1:80"', /duplicate backend address "10.0.0.1:80" \(also backends\[0\]\)/, 1);
  assert.equal(issues.length, 8);
});

test('CIDR lists: bad prefix, bad address, wrong type, host bits cleared', () => {
  const text = BASE.replace('pool = "web"', `pool = "web"
allow = ["10.0.0.0/33", "fd00::/129", "nonsense", 7, "10.1.2.3/8"]
deny = "10.0.0.0/8"`);
  const issues = issuesOf(text);
  expectIssue(text, issues, 'listeners[0].allow[0]', '"10.0.0.0/33"', /prefix \/33 is out of range 0..32/);
  expectIssue(text, issues, 'listeners[0].allow[1]', '"fd00::/129"', /out of range 0..128/);
  expectIssue(text, issues, 'listeners[0].allow[2]', '"nonsense"', /not an IPv4 or IPv6 address/);
  expectIssue(text, issues, 'listeners[0].allow[3]', ' |7,', /expected a CIDR string/);
  expectIssue(text, issues, 'listeners[0].deny', '"10.0.0.0/8"', /expected an array of CIDR strings/);
  assert.equal(issues.length, 5);
  const ok = parseConfig(BASE.replace('pool = "web"', 'pool = "web"\nallow = ["10.1.2.3/8", "2001:db8::1/32"]'), FILE);
  assert.deepEqual([...ok.listeners[0]!.allow![0]!.bytes], [10, 0, 0, 0]);
  assert.equal(ok.listeners[0]!.allow![1]!.prefix, 32);
});

test('table_size: prime, bounds, and >= the number of backends for consistent-hash', () => {
  for (const [size, ok] of [[7, true], [5, false], [1_000_003, true], [1_000_033, false], [65537, true], [65539, true], [65535, false]] as const) {
    const text = BASE.replace('[pools.web]', `[pools.web]\ntable_size = ${size}`);
    if (ok) assert.equal(parseConfig(text, FILE).pools[0]?.tableSize, size);
    else expectIssue(text, issuesOf(text), 'pools.web.table_size', String(size), /expected a prime between 7 and 1000003/);
  }
  const many = Array.from({ length: 8 }, (_, i) => `{ address = "10.0.0.${i + 1}:80" }`).join(',\n  ');
  const text = `${BASE.replace(/backends = \[[^\]]*\]/, `backends = [\n  ${many}\n]`).replace('[pools.web]', '[pools.web]\ntable_size = 7')}`;
  expectIssue(text, issuesOf(text), 'pools.web.table_size', 'table_size = |7', /table_size >= the number of backends \(8\), got 7/);
  assert.equal(parseConfig(text.replace('table_size = 7', 'table_size = 7\nalgorithm = "random"'), FILE).pools[0]?.backends.length, 8);
});

test('workers = "auto" resolves to the CPU count', () => {
  const cfg = parseConfig(`[global]\nworkers = "auto"\n${BASE}`, FILE, { cpuCount: 6 });
  assert.equal(cfg.global.workers, 6);
  assert.equal(parseConfig(`[global]\nworkers = 4\n${BASE}`, FILE, { cpuCount: 6 }).global.workers, 4);
  const bad = `[global]\nworkers = "many"\n${BASE}`;
  expectIssue(bad, issuesOf(bad), 'global.workers', '"many"', /got "many"/);
});

test('workers is bounded: 256 is accepted, 257 and 100000 name the key and line', () => {
  const base = (w: string): string => `[global]\nworkers = ${w}\n[[listeners]]\nname = "a"\nbind = "127.0.0.1:0"\npool = "p"\n[pools.p]\nbackends = [{ address = "127.0.0.1:1" }]\n`;
  assert.equal(parseConfig(base('256'), FILE, { cpuCount: 3 }).global.workers, 256);
  for (const w of ['257', '100000']) {
    const text = base(w);
    expectIssue(text, issuesOf(text), 'global.workers', `workers = |${w}`, new RegExp(`expected an integer from 1 to 256 or "auto", got ${w}`));
  }
});

test('wrongly typed sections are reported', () => {
  const text = `global = 1\nadmin = "x"\npools = 3\n[[listeners]]\nname = "a"\nbind = "127.0.0.1:1"\npool = "p"\n`;
  const issues = issuesOf(text);
  expectIssue(text, issues, 'global', 'global = |1', /expected a table, got 1/);
  expectIssue(text, issues, 'admin', '"x"', /expected a table, got "x"/);
  expectIssue(text, issues, 'pools', 'pools = |3', /expected tables \[pools.<name>\], got 3/);
  assert.equal(issues.length, 3); // an unknown pool is not reported when [pools] itself is broken
});
