import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfigFile, parseConfig } from '../../src/config/load';
import { scanPositions } from '../../src/config/positions';
import { ConfigError } from '../../src/errors';
import { BASE, FILE, issuesOf, locate } from './config-helpers';

const ROOT = join(__dirname, '..', '..', '..');

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    assert.equal(err.code, 'ERR_L4LB_CONFIG');
    return err;
  }
  assert.fail('expected a ConfigError');
}

/** Asserts Object.isFrozen on every object reachable from o (typed arrays excepted). */
function assertDeepFrozen(o: unknown, path = 'config'): void {
  if (typeof o !== 'object' || o === null || ArrayBuffer.isView(o)) return;
  assert.ok(Object.isFrozen(o), `${path} is not frozen`);
  for (const [k, v] of Object.entries(o)) assertDeepFrozen(v, `${path}.${k}`);
}

test('a missing file, a directory, and a non-TOML file each give one issue', () => {
  const dir = mkdtempSync(join(tmpdir(), 'l4lb-config-'));
  const missing = configError(() => loadConfigFile(join(dir, 'nope.toml')));
  assert.equal(missing.issues.length, 1);
  assert.deepEqual({ ...missing.issues[0], message: '' }, { file: join(dir, 'nope.toml'), line: 0, col: 0, path: '', message: '' });
  assert.match(missing.message, /no such file/);
  assert.equal(configError(() => loadConfigFile(dir)).issues.length, 1);
  const bad = join(dir, 'bad.toml');
  writeFileSync(bad, 'a = 1\nb = [1,\n  2,,]\n');
  const e = configError(() => loadConfigFile(bad));
  assert.equal(e.issues.length, 1);
  assert.deepEqual({ file: e.issues[0]?.file, line: e.issues[0]?.line, col: e.issues[0]?.col, path: e.issues[0]?.path }, { file: bad, line: 3, col: 5, path: '' });
  assert.match(e.issues[0]?.message ?? '', /^not valid TOML: /);
  assert.ok(!e.message.includes('\n'), 'one line per issue');
  const dup = configError(() => parseConfig('[global]\nworkers = 1\nworkers = 2\n', FILE));
  assert.equal(dup.issues[0]?.line, 3);
});

test('loadConfigFile reads and validates a file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'l4lb-config-'));
  const f = join(dir, 'lb.toml');
  writeFileSync(f, BASE);
  const cfg = loadConfigFile(f);
  assert.equal(cfg.file, f);
  assert.equal(cfg.listeners[0]?.name, 'web');
});

test('every default applies when keys are absent', () => {
  const cfg = parseConfig(BASE, FILE, { cpuCount: 8 });
  assert.deepEqual(cfg.global, { logLevel: 'info', connectionLog: false, workers: 1, splice: 'auto', drainTimeoutMs: 30_000, shutdownDelayMs: 0, stateFile: null, connectionLogIntervalMs: 0 });
  assert.equal(cfg.admin, null);
  assert.deepEqual(cfg.listeners[0], {
    name: 'web', protocol: 'tcp', bindText: '127.0.0.1:8080', bind: { host: '127.0.0.1', port: 8080, family: 4 }, pool: 'web',
    maxConnections: 0, connectTimeoutMs: 5000, idleTimeoutMs: 0, proxyProtocol: 'off', acceptProxyProtocol: false, trustedProxies: null,
    allow: null, deny: [], maxConnectionsPerSource: 0, udpResponses: 0,
    routeBy: 'none', routes: [], clientHelloTimeoutMs: 5000,
  });
  assert.deepEqual(cfg.pools[0], {
    name: 'web', algorithm: 'consistent-hash', hashKey: '5-tuple', hashBalanceFactor: 0, tableSize: 65537, retries: 2,
    slowStartMs: 0, resolveIntervalMs: 30_000,
    backends: [{ address: '10.0.0.1:80', host: '10.0.0.1', port: 80, family: 4, weight: 1, maxConnections: 0, backup: false }],
    healthCheck: {
      enabled: true, intervalMs: 2000, timeoutMs: 1000, rise: 2, fall: 3, port: null,
      type: 'connect', protocol: 'tcp', sendHex: '', expect: null, expectRegex: null, path: '/', expectStatus: null,
    },
  });
  const udp = parseConfig(BASE.replace('pool = "web"', 'pool = "web"\nprotocol = "udp"'), FILE);
  assert.equal(udp.listeners[0]?.idleTimeoutMs, 30_000);
  assert.equal(udp.listeners[0]?.protocol, 'udp');
  const admin = parseConfig(`[admin]\nbind = "127.0.0.1:9090"\n${BASE}`, FILE);
  assert.deepEqual(admin.admin, { bind: { host: '127.0.0.1', port: 9090, family: 4 }, token: null });
});

test('the result is deeply frozen', () => {
  const cfg = parseConfig(readFileSync(join(ROOT, 'test', 'fixtures', 'spec-example.toml'), 'utf8'), FILE);
  assertDeepFrozen(cfg);
  assert.throws(() => { (cfg.listeners as unknown as unknown[]).push(1); }, TypeError);
});

test('the SPEC §2 example validates, with every value as written', () => {
  const cfg = parseConfig(readFileSync(join(ROOT, 'test', 'fixtures', 'spec-example.toml'), 'utf8'), FILE);
  assert.equal(cfg.admin?.token, 'change-me');
  const l = cfg.listeners[0];
  assert.equal(l?.allow?.[0]?.text, '10.0.0.0/8');
  assert.equal(l?.deny[0]?.prefix, 16);
  const p = cfg.pools[0];
  assert.deepEqual(p?.backends.map((b) => [b.address, b.family, b.weight, b.maxConnections, b.backup]), [
    ['10.0.0.11:5432', 4, 1, 0, false],
    ['10.0.0.12:5432', 4, 2, 500, false],
    ['db3.internal:5432', 0, 1, 0, false],
    ['10.0.0.19:5432', 4, 1, 0, true],
  ]);
  assert.equal(p?.healthCheck.port, 5432);
});

test('configs/lb.example.toml and configs/quickstart.toml validate', () => {
  const ex = loadConfigFile(join(ROOT, 'configs', 'lb.example.toml'), { cpuCount: 2 });
  assert.equal(ex.listeners[0]?.name, 'pg');
  const tlsListener = ex.listeners.find((x) => x.name === 'tls');
  assert.equal(tlsListener?.routeBy, 'sni');
  assert.deepEqual(tlsListener?.routes.map((r) => r.sni), ['api.example.com', '*.example.com']);
  assert.equal(ex.pools[0]?.backends.length, 4);
  const q = loadConfigFile(join(ROOT, 'configs', 'quickstart.toml'));
  assert.equal(q.global.logLevel, 'info');
  assert.deepEqual(q.admin?.bind, { host: '127.0.0.1', port: 9090, family: 4 });
  assert.deepEqual(q.listeners.map((x) => [x.name, x.protocol, x.bindText, x.pool]), [['demo', 'tcp', '127.0.0.1:8080', 'demo']]);
  assert.equal(q.pools[0]?.algorithm, 'round-robin');
  assert.deepEqual(q.pools[0]?.backends.map((b) => b.address), ['127.0.0.1:9001', '127.0.0.1:9002']);
  assert.equal(q.pools[0]?.healthCheck.intervalMs, 1000);
});

test('positions: every key of the SPEC example maps to the exact line:col of its value and key', () => {
  const text = readFileSync(join(ROOT, 'test', 'fixtures', 'spec-example.toml'), 'utf8');
  const pos = scanPositions(text);
  const cases: [string, string, number?][] = [
    ['global.log_level', 'log_level = |"info"'], ['global.connection_log', 'connection_log = |false'],
    ['global.workers', 'workers = |1'], ['global.splice', 'splice = |"auto"'], ['global.drain_timeout', 'drain_timeout = |"30s"'],
    ['admin.bind', 'bind = |"127.0.0.1:9090"'], ['admin.token', 'token = |"change-me"'],
    ['listeners[0].name', 'name = |"pg"'], ['listeners[0].protocol', 'protocol = |"tcp"'],
    ['listeners[0].bind', 'bind = |"0.0.0.0:5432"'], ['listeners[0].pool', 'pool = |"pg"'],
    ['listeners[0].max_connections', '\nmax_connections = |0'], ['listeners[0].connect_timeout', 'connect_timeout = |"5s"'],
    ['listeners[0].idle_timeout', 'idle_timeout = |"0s"'], ['listeners[0].proxy_protocol', 'proxy_protocol = |"off"'],
    ['listeners[0].accept_proxy_protocol', 'accept_proxy_protocol = |false'],
    ['listeners[0].allow', 'allow = |['], ['listeners[0].allow[0]', 'allow = [|"10.0.0.0/8"'],
    ['listeners[0].deny[0]', 'deny = [|"10.9'], ['listeners[0].max_connections_per_source', 'max_connections_per_source = |0'],
    ['listeners[0].udp_responses', 'udp_responses = |0'],
    ['pools.pg.algorithm', 'algorithm = |"consistent-hash"'], ['pools.pg.hash_key', 'hash_key = |"5-tuple"'],
    ['pools.pg.hash_balance_factor', 'hash_balance_factor = |0'], ['pools.pg.table_size', 'table_size = |65537'],
    ['pools.pg.retries', 'retries = |2'], ['pools.pg.slow_start', 'slow_start = |"0s"'], ['pools.pg.backends', 'backends = |['],
    ['pools.pg.backends[0]', '|{ address = "10.0.0.11'], ['pools.pg.backends[0].address', '|"10.0.0.11:5432"'],
    ['pools.pg.backends[1].address', '|"10.0.0.12:5432"'], ['pools.pg.backends[1].weight', 'weight = |2'],
    ['pools.pg.backends[1].max_connections', 'max_connections = |500'], ['pools.pg.backends[2].address', '|"db3.internal:5432"'],
    ['pools.pg.backends[3].address', '|"10.0.0.19:5432"'], ['pools.pg.backends[3].backup', 'backup = |true'],
    ['pools.pg.resolve_interval', '\nresolve_interval = |"30s"'], ['pools.pg.health_check', '|[pools.pg.health_check]'],
    ['pools.pg.health_check.enabled', 'enabled = |true'], ['pools.pg.health_check.interval', 'interval = |"2s"'],
    ['pools.pg.health_check.timeout', 'timeout = |"1s"'], ['pools.pg.health_check.rise', 'rise = |2'],
    ['pools.pg.health_check.fall', 'fall = |3'], ['pools.pg.health_check.port', '\nport = |5432'],
    ['global', '|[global]'], ['admin', '|[admin]'], ['listeners[0]', '|[[listeners]]'], ['pools.pg', '|[pools.pg]'],
  ];
  for (const [path, needle] of cases) assert.deepEqual(pos.value(path), locate(text, needle), path);
  assert.deepEqual(pos.key('pools.pg.backends[1].weight'), locate(text, '|weight = 2'));
  assert.deepEqual(pos.key('global.workers'), locate(text, '|workers = 1'));
  assert.deepEqual(pos.value('pools.pg.nope'), { line: 0, col: 0 });
  assert.deepEqual(pos.near('pools.pg.backends[1].nope'), locate(text, '|{ address = "10.0.0.12'));
});

test('positions: quoted keys, dotted keys, strings with # [ {, multi-line strings, nested arrays of tables', () => {
  const text = `# a comment with [brackets] and { braces }
title = "a # not a comment [x] {y}"   # real comment
"quoted key" = 1
'literal.key' = 2
a.b . c = 3
ml = """
line "one" [
"""
lit = '''x = 1
'''
[[listeners]]
name = "x"   # ]
[listeners.sub]
k = 4
[[listeners]]
name = "y"
[[listeners.inner]]
v = 5
[[listeners.inner]]
v = 6
[pools."my pool"]
backends = [
  # comment inside an array { address = "nope" }
  { address = "a:1" },   # , ] }
  [ 1, 2 ], { address = "b:2",
    weight = 3 }
]
after = 7
`;
  const pos = scanPositions(text);
  const check = (path: string, needle: string): void => assert.deepEqual(pos.value(path), locate(text, needle), path);
  check('title', 'title = |"a #');
  check('"quoted key"', '"quoted key" = |1');
  check('"literal.key"', "'literal.key' = |2");
  check('a.b.c', 'c = |3');
  check('ml', 'ml = |"""');
  check('lit', "lit = |'''");
  check('listeners[0].name', 'name = |"x"');
  check('listeners[0].sub.k', 'k = |4');
  check('listeners[1].name', 'name = |"y"');
  check('listeners[1].inner[0].v', 'v = |5');
  check('listeners[1].inner[1].v', 'v = |6');
  check('pools."my pool".backends[0].address', '|"a:1"');
  check('pools."my pool".backends[1][1]', '1, |2');
  check('pools."my pool".backends[2].address', '|"b:2"');
  check('pools."my pool".backends[2].weight', 'weight = |3');
  check('pools."my pool".after', 'after = |7');
  assert.deepEqual(pos.key('a.b.c'), locate(text, 'a.b . |c'));
});

test('positions in errors for a pool name that needs quoting', () => {
  const text = BASE.replace('pool = "web"', 'pool = "my pool"') + '\n[pools."my pool"]\nbackends = [ { address = "x" } ]\n';
  const issues = issuesOf(text);
  const i = issues.find((x) => x.path === 'pools."my pool".backends[0].address');
  assert.ok(i);
  assert.deepEqual({ line: i.line, col: i.col }, locate(text, '|"x"'));
});

test('the scanner never throws on odd input', () => {
  for (const t of ['', '[', '[[a', 'a = {', 'a = """', '= 1', 'a = [1,', '\u0000', 'x."y', '[a]]]']) {
    assert.doesNotThrow(() => scanPositions(t).near('a.b[0].c'));
  }
});
