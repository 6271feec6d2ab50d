/**
 * Maglev: worked examples on tiny prime tables, and the properties the
 * paper promises, measured on real table sizes (seeded, deterministic).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildMaglevTable, createMaglev, OFFSET_SEED, SKIP_SEED } from '../../src/balancer/maglev';
import { flowHash, flowKeyBytes, addressKeyBytes } from '../../src/balancer/flow-hash';
import { murmur3, murmur3String } from '../../src/balancer/hash';
import { Backend } from '../../src/backend/backend';
import type { Flow } from '../../src/balancer/picker';
import type { PoolConfig } from '../../src/config/schema';
import { mulberry32 } from '../helpers/net';

const M = 65537;
const keysOf = (n: number): string[] => Array.from({ length: n }, (_, i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:5432`);
const counts = (t: Int32Array, n: number): number[] => {
  const c = new Array<number>(n).fill(0);
  for (const x of t) c[x] = (c[x] as number) + 1;
  return c;
};

/** The paper's Algorithm 1, written as plainly as possible, for equal weights. */
function paperAlgorithm1(keys: string[], m: number): Int32Array {
  const n = keys.length;
  const perm = keys.map((k) => {
    const offset = murmur3String(k, OFFSET_SEED) % m;
    const skip = (murmur3String(k, SKIP_SEED) % (m - 1)) + 1;
    return Array.from({ length: m }, (_, j) => (offset + j * skip) % m);
  });
  const next = new Array<number>(n).fill(0);
  const entry = new Int32Array(m).fill(-1);
  let filled = 0;
  for (;;) {
    for (let i = 0; i < n; i++) {
      let c = perm[i]![next[i]!]!;
      while (entry[c]! >= 0) {
        next[i]!++;
        c = perm[i]![next[i]!]!;
      }
      entry[c] = i;
      next[i]!++;
      filled++;
      if (filled === m) return entry;
    }
  }
}

test('worked examples: equal weights give exactly the paper\'s Algorithm 1 (tiny and real primes)', () => {
  for (const [n, m] of [
    [3, 7],
    [2, 13],
    [5, 101],
    [7, 65537],
  ] as const) {
    const keys = keysOf(n);
    assert.deepEqual(buildMaglevTable(keys, keys.map(() => 1), m), paperAlgorithm1(keys, m), `n=${n} m=${m}`);
  }
});

test('a 7-slot table for 3 backends: every slot owned, shares 3/2/2', () => {
  const t = buildMaglevTable(['a:1', 'b:1', 'c:1'], [1, 1, 1], 7);
  assert.equal(t.length, 7);
  assert.ok(t.every((x) => x >= 0 && x < 3));
  assert.deepEqual(counts(t, 3).sort(), [2, 2, 3]);
  assert.equal(buildMaglevTable([], [], 7).every((x) => x === -1), true);
});

test('balance: the most-loaded backend holds at most 1% more entries than the average (N ≤ 100), 2% at N = 1000', () => {
  for (const n of [3, 10, 100, 1000]) {
    const c = counts(buildMaglevTable(keysOf(n), new Array(n).fill(1), M), n);
    const ratio = Math.max(...c) / (M / n);
    assert.ok(ratio <= (n <= 100 ? 1.01 : 1.02), `N=${n}: max/avg = ${ratio}`);
  }
});

test('disruption: removing one of N backends moves at most 1% of entries beyond those that had to move', () => {
  for (const n of [3, 10, 100]) {
    const keys = keysOf(n);
    const before = buildMaglevTable(keys, new Array(n).fill(1), M);
    const gone = Math.floor(n / 2);
    const rest = keys.filter((_, i) => i !== gone);
    const after = buildMaglevTable(rest, new Array(n - 1).fill(1), M);
    let extra = 0;
    for (let j = 0; j < M; j++) {
      const was = before[j]!;
      if (was === gone) continue; // had to move
      if (keys[was] !== rest[after[j]!]) extra++;
    }
    assert.ok(extra / M <= 0.01, `N=${n}: ${((extra / M) * 100).toFixed(2)}% moved needlessly`);
  }
});

test('weights 1:3 give 1:3 entries within 1%', () => {
  const c = counts(buildMaglevTable(['10.0.0.1:80', '10.0.0.2:80'], [1, 3], M), 2);
  assert.ok(Math.abs(c[0]! / M - 0.25) < 0.01 && Math.abs(c[1]! / M - 0.75) < 0.01, `shares ${c[0]! / M}, ${c[1]! / M}`);
  const five = counts(buildMaglevTable(keysOf(5), [1, 2, 3, 4, 5], M), 5);
  five.forEach((x, i) => assert.ok(Math.abs(x / M - (i + 1) / 15) < 0.01, `backend ${i}: ${x / M}`));
});

test('flow keys: IPv4, IPv6 (all spellings) and IPv4-mapped IPv6 give the documented bytes', () => {
  assert.deepEqual([...addressKeyBytes('192.0.2.7')], [192, 0, 2, 7]);
  assert.deepEqual([...addressKeyBytes('::ffff:192.0.2.7')], [192, 0, 2, 7]);
  const db8 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
  assert.deepEqual([...addressKeyBytes('2001:db8::1')], db8);
  assert.deepEqual([...addressKeyBytes('2001:DB8:0:0:0:0:0:1')], db8);
  assert.deepEqual([...addressKeyBytes('2001:db8::1%eth0')], db8);
  assert.deepEqual([...addressKeyBytes('::1')], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
  assert.deepEqual([...addressKeyBytes('::')], new Array(16).fill(0));
  assert.deepEqual([...addressKeyBytes('1::')], [0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual([...addressKeyBytes('64:ff9b::192.0.2.7')], [0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0, 192, 0, 2, 7]);
  for (const bad of ['1.2.3', '1.2.3.256', 'x', '1:2:3', '1::2::3', '12345::1', '']) assert.equal(addressKeyBytes(bad).length, 0, bad);
});

test('flow hash: murmur3 over the documented key bytes; mapped IPv4 hashes like IPv4; source-ip ignores ports', () => {
  const f = (src: string, sport: number, dst = '10.0.0.1', dport = 5432, protocol: 6 | 17 = 6): Flow => ({ protocol, srcAddr: src, srcPort: sport, dstAddr: dst, dstPort: dport });
  // TCP 192.0.2.7:1000 -> 10.0.0.1:5432 is c0000207 0a000001 03e8 1538 06.
  const key = Uint8Array.from([192, 0, 2, 7, 10, 0, 0, 1, 0x03, 0xe8, 0x15, 0x38, 6]);
  assert.deepEqual(flowKeyBytes(f('192.0.2.7', 1000), false), key);
  assert.equal(flowHash(f('192.0.2.7', 1000), false), murmur3(key, key.length, 0));
  const rnd = mulberry32(5);
  for (let i = 0; i < 500; i++) {
    const v6 = rnd() < 0.5;
    const src = v6 ? `2001:db8::${Math.floor(rnd() * 65535).toString(16)}` : `198.51.100.${Math.floor(rnd() * 256)}`;
    const flow = f(src, Math.floor(rnd() * 65536), v6 ? '2001:db8::1' : '10.0.0.1', Math.floor(rnd() * 65536), rnd() < 0.5 ? 6 : 17);
    for (const so of [false, true]) {
      const k = flowKeyBytes(flow, so);
      assert.equal(flowHash(flow, so), murmur3(k, k.length, 0));
    }
  }
  assert.equal(flowHash(f('192.0.2.7', 1000), false), flowHash(f('::ffff:192.0.2.7', 1000, '::ffff:10.0.0.1'), false));
  assert.notEqual(flowHash(f('192.0.2.7', 1000), false), flowHash(f('192.0.2.7', 1001), false));
  assert.notEqual(flowHash(f('192.0.2.7', 1000), false), flowHash(f('192.0.2.7', 1000, '10.0.0.1', 5432, 17), false));
  assert.equal(flowHash(f('192.0.2.7', 1000), true), flowHash(f('192.0.2.7', 2000, '10.9.9.9', 1), true));
  assert.equal(flowHash(f('192.0.2.7', 1000), true), murmur3(Uint8Array.from([192, 0, 2, 7]), 4, 0));
});

const pool = (over: Partial<PoolConfig> = {}): PoolConfig => ({ tableSize: M, hashKey: '5-tuple', hashBalanceFactor: 0, ...over }) as PoolConfig;
const backends = (n: number): Backend[] => Array.from({ length: n }, (_, i) => new Backend({ host: `10.0.0.${i + 1}`, port: 80, family: 4 }));

test('picker: the same flow goes to the same backend in two independently built pickers', () => {
  const p1 = createMaglev(backends(5), pool());
  const p2 = createMaglev(backends(5), pool());
  const rnd = mulberry32(9);
  for (let i = 0; i < 2000; i++) {
    const flow: Flow = { protocol: 6, srcAddr: `192.0.2.${1 + Math.floor(rnd() * 250)}`, srcPort: 1024 + Math.floor(rnd() * 60000), dstAddr: '10.0.0.100', dstPort: 443 };
    assert.equal(p1.pick(flow, null)!.address, p2.pick(flow, null)!.address);
  }
});

test('picker: an excluded or full first choice falls to the next backend in the flow\'s preference order, deterministically', () => {
  const bs = backends(4);
  const p = createMaglev(bs, pool());
  const flow: Flow = { protocol: 6, srcAddr: '192.0.2.1', srcPort: 4000, dstAddr: '10.0.0.100', dstPort: 443 };
  const first = p.pick(flow, null)!;
  const second = p.pick(flow, [first])!;
  assert.notEqual(second, first);
  assert.equal(p.pick(flow, [first]), second);
  first.maxConnections = 1;
  first.active = 1;
  assert.equal(p.pick(flow, null), second);
  assert.equal(p.pick(flow, bs), null);
});

test('bounded load: a backend above factor x average is passed over; the choice is deterministic for a given load', () => {
  const bs = backends(3);
  const p = createMaglev(bs, pool({ hashBalanceFactor: 125 }));
  const flow: Flow = { protocol: 6, srcAddr: '192.0.2.1', srcPort: 4000, dstAddr: '10.0.0.100', dstPort: 443 };
  const first = p.pick(flow, null)!;
  // Light load: the first choice keeps the flow.
  assert.equal(p.pick(flow, null), first);
  first.active = 10; // average with the new one: 11/3; limit ceil(1.25 * 11/3) = 5
  const other = p.pick(flow, null)!;
  assert.notEqual(other, first);
  assert.equal(p.pick(flow, null), other);
  // Spread: with bounded load no backend exceeds ceil(1.25 * average).
  for (const b of bs) b.active = 0;
  const rnd = mulberry32(3);
  for (let i = 0; i < 3000; i++) {
    const f: Flow = { protocol: 6, srcAddr: '192.0.2.9', srcPort: 1 + Math.floor(rnd() * 65000), dstAddr: '10.0.0.100', dstPort: 443 };
    p.pick(f, null)!.active++;
    const total = bs.reduce((s, b) => s + b.active, 0);
    for (const b of bs) assert.ok(b.active <= Math.ceil((1.25 * total) / 3) + 1, `load ${bs.map((x) => x.active)}`);
  }
});
