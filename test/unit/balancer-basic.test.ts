import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Backend } from '../../src/backend/backend';
import { createRoundRobin } from '../../src/balancer/round-robin';
import { LeastConnectionsPicker } from '../../src/balancer/least-connections';
import { RandomPicker } from '../../src/balancer/random';
import type { Flow } from '../../src/balancer/picker';
import type { PoolConfig } from '../../src/config/schema';
import { mulberry32 } from '../helpers/net';

const flow: Flow = { protocol: 6, srcAddr: '127.0.0.1', srcPort: 1, dstAddr: '127.0.0.1', dstPort: 2 };
const cfg = {} as PoolConfig;
const mk = (port: number, weight = 1, maxConnections = 0): Backend => new Backend({ host: '127.0.0.1', port, family: 4, weight, maxConnections });

test('round-robin: weights 5:1:1 give the smooth sequence a a b a c a a', () => {
  const [a, b, c] = [mk(1, 5), mk(2), mk(3)];
  const p = createRoundRobin([a, b, c], cfg);
  const seq = Array.from({ length: 7 }, () => p.pick(flow, null)!.port);
  assert.deepEqual(seq, [1, 1, 2, 1, 3, 1, 1]);
});

test('round-robin: excluded and full backends sit out; none usable gives null', () => {
  const [a, b] = [mk(1), mk(2, 1, 1)];
  const p = createRoundRobin([a, b], cfg);
  for (let i = 0; i < 4; i++) assert.equal(p.pick(flow, [b])!.port, 1);
  b.active = 1; // at max_connections
  for (let i = 0; i < 4; i++) assert.equal(p.pick(flow, null)!.port, 1);
  assert.equal(p.pick(flow, [a]), null);
  assert.equal(createRoundRobin([], cfg).pick(flow, null), null);
});

test('least-connections: fewest active / weight; ties at random', () => {
  const [a, b, c] = [mk(1), mk(2, 2), mk(3)];
  a.active = 2;
  b.active = 3; // 1.5 per weight
  c.active = 1;
  const p = new LeastConnectionsPicker([a, b, c], mulberry32(1));
  assert.equal(p.pick(flow, null)!.port, 3);
  assert.equal(p.pick(flow, [c])!.port, 2);
  c.active = 3;
  a.active = 3;
  b.active = 6; // all tie at 3
  const seen = new Set<number>();
  for (let i = 0; i < 100; i++) seen.add(p.pick(flow, null)!.port);
  assert.deepEqual([...seen].sort(), [1, 2, 3]);
});

test('random: spread follows weights (1:3) under a seeded generator; honours exclude', () => {
  const [a, b] = [mk(1), mk(2, 3)];
  const p = new RandomPicker([a, b], mulberry32(42));
  const n = 40_000;
  let toA = 0;
  for (let i = 0; i < n; i++) if (p.pick(flow, null) === a) toA++;
  assert.ok(Math.abs(toA / n - 0.25) < 0.01, `a got ${toA / n}`);
  for (let i = 0; i < 50; i++) assert.equal(p.pick(flow, [b]), a);
  assert.equal(p.pick(flow, [a, b]), null);
});
