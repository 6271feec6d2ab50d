/**
 * PoolResolver through an injected lookup (no network, no real DNS): order,
 * added/removed addresses, failures keeping the last set, warn once per
 * change of outcome, one lookup in flight per name, timers.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import type { BackendConfig, PoolConfig } from '../../src/config/schema';
import type { BackendSpec } from '../../src/dataplane/dataplane';
import { createLogger } from '../../src/log';
import { PoolResolver, type LookupAddress, type LookupFn } from '../../src/dns/resolver';
import { compareIp } from '../../src/dns/order';
import { waitFor } from '../helpers/net';

function backend(address: string, extra: Partial<BackendConfig> = {}): BackendConfig {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(address);
  assert.ok(m);
  const host = m[1] as string;
  const family = /^[\d.]+$/.test(host) ? 4 : host.includes(':') ? 6 : 0;
  return { address, host, port: Number(m[2]), family, weight: 1, maxConnections: 0, backup: false, ...extra };
}

function pool(backends: BackendConfig[], resolveIntervalMs = 30000): PoolConfig {
  return {
    name: 'p',
    algorithm: 'round-robin',
    hashKey: '5-tuple',
    hashBalanceFactor: 0,
    tableSize: 65537,
    retries: 2,
    slowStartMs: 0,
    backends,
    resolveIntervalMs,
    healthCheck: {
      enabled: false, intervalMs: 2000, timeoutMs: 1000, rise: 2, fall: 3, port: null,
      type: 'connect', protocol: 'tcp', sendHex: '', expect: null, expectRegex: null, path: '/', expectStatus: null,
    },
  };
}

interface Deferred {
  host: string;
  resolve: (a: LookupAddress[]) => void;
  reject: (e: Error) => void;
}

/** A test-controlled resolver: fixed answers per name, or held lookups the test completes. */
class FakeDns {
  answers = new Map<string, LookupAddress[] | string>();
  hold = false;
  held: Deferred[] = [];
  calls: string[] = [];
  lookup: LookupFn = (host) => {
    this.calls.push(host);
    if (this.hold) return new Promise((resolve, reject) => this.held.push({ host, resolve, reject }));
    const a = this.answers.get(host);
    if (a === undefined || typeof a === 'string') {
      const err = new Error(`getaddrinfo ${a ?? 'ENOTFOUND'} ${host}`) as NodeJS.ErrnoException;
      err.code = a ?? 'ENOTFOUND';
      return Promise.reject(err);
    }
    return Promise.resolve(a);
  };
  set(host: string, ...ips: string[]): void {
    this.answers.set(host, ips.map((address) => ({ address, family: address.includes(':') ? 6 : 4 })));
  }
}

function capture(): { log: ReturnType<typeof createLogger>; lines: { level: string; msg: string; [k: string]: unknown }[] } {
  const lines: { level: string; msg: string; [k: string]: unknown }[] = [];
  const log = createLogger('trace', { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { log, lines };
}

const addrs = (specs: readonly BackendSpec[]): string[] => specs.map((s) => (s.family === 6 ? `[${s.host}]:${s.port}` : `${s.host}:${s.port}`));

function setup(backends: BackendConfig[], interval = 30000) {
  const dns = new FakeDns();
  const { log, lines } = capture();
  const changes: BackendSpec[][] = [];
  const r = new PoolResolver({ pool: pool(backends, interval), log, lookup: dns.lookup, onChange: (_p, specs) => changes.push(specs) });
  return { dns, lines, changes, r };
}

describe('dns resolver', () => {
  test('configured order, then the resolved addresses sorted and unique, with the configured weight and the name', async () => {
    const { dns, r } = setup([backend('10.0.0.50:80'), backend('db.internal:5432', { weight: 3, maxConnections: 7 }), backend('10.0.0.1:80', { backup: true })]);
    dns.set('db.internal', '10.0.0.10', '::1', '10.0.0.9', '10.0.0.10', '2001:db8::2', '10.0.0.2');
    const specs = await r.refresh();
    assert.deepEqual(addrs(specs), ['10.0.0.50:80', '10.0.0.2:5432', '10.0.0.9:5432', '10.0.0.10:5432', '[::1]:5432', '[2001:db8::2]:5432', '10.0.0.1:80']);
    const named = specs.filter((s) => s.name !== null);
    assert.equal(named.length, 5);
    for (const s of named) {
      assert.equal(s.name, 'db.internal:5432');
      assert.equal(s.weight, 3);
      assert.equal(s.maxConnections, 7);
    }
    assert.equal(specs[0]?.name, null);
    assert.equal(specs[6]?.backup, true);
    // The same answer in another order gives the same list.
    dns.set('db.internal', '2001:db8::2', '10.0.0.2', '10.0.0.10', '::1', '10.0.0.9');
    assert.deepEqual(addrs(await r.refresh()), addrs(specs));
  });

  test('an added address is published once; an unchanged answer publishes nothing', async () => {
    const { dns, r, changes, lines } = setup([backend('db:5432')]);
    dns.set('db', '10.0.0.1');
    assert.deepEqual(addrs(await r.refresh()), ['10.0.0.1:5432']);
    await r.tick();
    assert.equal(changes.length, 0);
    dns.set('db', '10.0.0.2', '10.0.0.1');
    await r.tick();
    assert.equal(changes.length, 1);
    assert.deepEqual(addrs(changes[0] ?? []), ['10.0.0.1:5432', '10.0.0.2:5432']);
    await r.tick();
    assert.equal(changes.length, 1);
    const info = lines.filter((l) => l.msg === 'backend name resolved');
    assert.deepEqual(info.at(-1)?.added, ['10.0.0.2']);
  });

  test('a vanished address is published as removed', async () => {
    const { dns, r, changes, lines } = setup([backend('db:5432')]);
    dns.set('db', '10.0.0.1', '10.0.0.2');
    await r.refresh();
    dns.set('db', '10.0.0.2');
    await r.tick();
    assert.deepEqual(changes.map(addrs), [['10.0.0.2:5432']]);
    assert.deepEqual(lines.filter((l) => l.msg === 'backend name resolved').at(-1)?.removed, ['10.0.0.1']);
  });

  test('a failed or empty lookup keeps the last good set and counts; warn once per change of outcome', async () => {
    const { dns, r, changes, lines } = setup([backend('db:5432'), backend('10.9.9.9:1')]);
    dns.set('db', '10.0.0.1', '10.0.0.2');
    await r.refresh();
    const warns = (): typeof lines => lines.filter((l) => l.level === 'warn');
    dns.answers.set('db', 'EAI_AGAIN');
    for (let i = 0; i < 3; i++) await r.tick();
    assert.equal(r.failures, 3);
    assert.equal(changes.length, 0);
    assert.deepEqual(addrs(r.specs()), ['10.0.0.1:5432', '10.0.0.2:5432', '10.9.9.9:1']);
    assert.equal(warns().length, 1);
    assert.equal(warns()[0]?.name, 'db');
    assert.equal(warns()[0]?.err, 'EAI_AGAIN');
    assert.deepEqual(warns()[0]?.keeping, ['10.0.0.1', '10.0.0.2']);
    dns.answers.set('db', 'ENOTFOUND'); // another outcome: one more warn
    await r.tick();
    await r.tick();
    assert.equal(warns().length, 2);
    dns.answers.set('db', []); // empty answer: a failure too, set kept
    await r.tick();
    assert.equal(warns().length, 3);
    assert.equal(warns()[2]?.err, 'ENODATA');
    assert.equal(r.failures, 6);
    dns.set('db', '10.0.0.1', '10.0.0.2'); // recovers: info, nothing to publish
    await r.tick();
    assert.equal(changes.length, 0);
    assert.equal(lines.filter((l) => l.msg === 'backend name resolves again').length, 1);
    dns.answers.set('db', 'EAI_AGAIN'); // fails again after a success: warns again
    await r.tick();
    assert.equal(warns().length, 4);
    assert.equal(r.failures, 7);
  });

  test('a name unresolvable at start yields no backend, is warned, and joins when it resolves', async () => {
    const { dns, r, changes, lines } = setup([backend('db:5432'), backend('10.0.0.7:5432')]);
    assert.deepEqual(addrs(await r.refresh()), ['10.0.0.7:5432']);
    assert.equal(lines.filter((l) => l.level === 'warn' && l.name === 'db').length, 1);
    assert.equal(r.failures, 1);
    dns.set('db', '10.0.0.1');
    await r.tick();
    assert.deepEqual(changes.map(addrs), [['10.0.0.1:5432', '10.0.0.7:5432']]);
  });

  test('no pile-up: a slow lookup makes later ticks skip the name; refresh joins it', async () => {
    const { dns, r, changes } = setup([backend('db:5432'), backend('db:6432'), backend('other:1')]);
    dns.hold = true;
    const t1 = r.tick();
    void r.tick();
    void r.tick();
    // One lookup per name (db is shared by both of its backends), however many ticks.
    assert.deepEqual([...dns.calls].sort(), ['db', 'other']);
    const refreshed = r.refresh();
    assert.equal(dns.calls.length, 2);
    for (const d of dns.held) d.resolve([{ address: d.host === 'db' ? '10.0.0.1' : '10.0.0.2', family: 4 }]);
    dns.held = [];
    await t1;
    assert.deepEqual(addrs(await refreshed), ['10.0.0.1:5432', '10.0.0.1:6432', '10.0.0.2:1']);
    assert.ok(changes.length <= 1);
    dns.hold = false;
    dns.set('db', '10.0.0.1');
    dns.set('other', '10.0.0.2');
    await r.tick();
    assert.equal(dns.calls.length, 4);
  });

  test('stop: the timer ends and a lookup finishing afterwards publishes nothing', async () => {
    const { dns, r, changes } = setup([backend('db:5432')]);
    dns.hold = true;
    void r.tick();
    r.stop();
    dns.held[0]?.resolve([{ address: '10.0.0.3', family: 4 }]);
    await waitFor(() => dns.held.length === 1 && r.specs().length === 1, 1000, 'held lookup done');
    await new Promise((res) => setImmediate(res));
    assert.equal(changes.length, 0);
    await r.tick();
    assert.equal(dns.calls.length, 1);
    r.start();
    assert.equal(r.running, false);
  });

  test('the timer re-resolves every resolve_interval until stopped', async () => {
    const { dns, r, changes } = setup([backend('db:5432')], 20);
    dns.set('db', '10.0.0.1');
    await r.refresh();
    r.start();
    assert.equal(r.running, true);
    dns.set('db', '10.0.0.1', '10.0.0.4');
    await waitFor(() => changes.length === 1, 5000, 'timer-driven change');
    r.stop();
    assert.equal(r.running, false);
    const n = dns.calls.length;
    await new Promise((res) => setTimeout(res, 100));
    assert.equal(dns.calls.length, n);
  });

  test('a started resolver does not keep the process alive (unref)', () => {
    const mod = JSON.stringify(require.resolve('../../src/dns/resolver'));
    const code = `const { PoolResolver } = require(${mod});
      const pool = { name: 'p', backends: [{ address: 'db:1', host: 'db', port: 1, family: 0, weight: 1, maxConnections: 0, backup: false }], resolveIntervalMs: 60000 };
      const log = { warn() {}, info() {} };
      const r = new PoolResolver({ pool, log, lookup: () => new Promise(() => {}) });
      r.start();
      void r.tick();
      if (!r.running) process.exit(3);`;
    const res = spawnSync(process.execPath, ['-e', code], { timeout: 10000 });
    assert.equal(res.status, 0, String(res.stderr));
  });

  test('a pool without names starts no timer', async () => {
    const { r, dns } = setup([backend('10.0.0.1:80')], 10);
    assert.equal(r.hasNames(), false);
    assert.deepEqual(addrs(await r.refresh()), ['10.0.0.1:80']);
    r.start();
    assert.equal(r.running, false);
    assert.equal(dns.calls.length, 0);
  });

  test('a replacing resolver (reload) keeps the last good set, the logged outcome and the counter', async () => {
    const { dns, r, lines } = setup([backend('db:5432')]);
    dns.set('db', '10.0.0.1');
    await r.refresh();
    dns.answers.set('db', 'EAI_AGAIN');
    await r.tick();
    r.stop();
    const next = new PoolResolver({ pool: pool([backend('db:5432', { weight: 5 }), backend('new:1')]), log: createLogger('error'), lookup: dns.lookup, previous: r });
    dns.set('new', '10.0.0.9');
    const specs = await next.refresh();
    assert.deepEqual(addrs(specs), ['10.0.0.1:5432', '10.0.0.9:1']);
    assert.equal(specs[0]?.weight, 5);
    assert.equal(next.failures, 2);
    assert.equal(lines.filter((l) => l.level === 'warn').length, 1);
  });

  test('compareIp: IPv4 first, numeric, IPv6 expanded', () => {
    const ips = ['::ffff:1.2.3.4', '10.0.0.10', 'fe80::1%eth0', '2001:db8::1', '10.0.0.9', '::1', '9.255.255.255', '2001:db8:0:0:0:0:0:2'];
    assert.deepEqual([...ips].sort(compareIp), ['9.255.255.255', '10.0.0.9', '10.0.0.10', '::1', '::ffff:1.2.3.4', '2001:db8::1', '2001:db8:0:0:0:0:0:2', 'fe80::1%eth0']);
  });
});
