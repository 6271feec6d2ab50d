/**
 * Control work off the data path (SPEC §8.6): a 1,000,003-entry Maglev table
 * is built on a worker thread while the previous picker keeps serving (and
 * passes over a backend that just went down); slow-start steps rebuild a
 * pool at most every 100 ms.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Pool, SLOW_START_REBUILD_MS } from '../../src/backend/pool';
import { Backend } from '../../src/backend/backend';
import { buildMaglevTable } from '../../src/balancer/maglev';
import { maglevBuilds } from '../../src/balancer/maglev-async';
import type { PoolConfig } from '../../src/config/schema';
import type { Flow } from '../../src/balancer/picker';
import { parseConfig } from '../../src/config/load';

function poolConfig(algorithm: string, tableSize: number): PoolConfig {
  const cfg = parseConfig(
    `[[listeners]]\nname = "a"\nbind = "127.0.0.1:0"\npool = "p"\n[pools.p]\nalgorithm = "${algorithm}"\ntable_size = ${tableSize}\nbackends = [{ address = "10.0.0.1:1" }]\n`,
    'test.toml',
  );
  return cfg.pools[0] as PoolConfig;
}

function backends(n: number): Backend[] {
  return Array.from({ length: n }, (_, i) => new Backend({ host: `10.0.0.${i + 1}`, port: 80, family: 4, name: null, weight: 1, maxConnections: 0, backup: false }));
}

const flow = (i: number): Flow => ({ protocol: 6, srcAddr: `192.168.${(i >> 8) & 255}.${i & 255}`, srcPort: 1000 + (i % 50000), dstAddr: '10.1.1.1', dstPort: 443 });

test('a 1,000,003-entry table is rebuilt off the event loop; the old picker serves meanwhile and skips the down backend', async () => {
  const cfg = poolConfig('consistent-hash', 1_000_003);
  const bs = backends(4);
  const pool = new Pool(cfg, bs); // start-up: built in place
  const before = { ...maglevBuilds };
  const builds = pool.builds;
  const down = bs[1] as Backend;
  pool.setState(down, 'down');
  // Returned at once: no table was built on this thread.
  assert.equal(maglevBuilds.inPlace, before.inPlace);
  assert.equal(pool.builds, builds, 'the new picker is not in yet');
  // The old picker still answers, never with the down backend.
  for (let i = 0; i < 2000; i++) assert.notEqual(pool.pick(flow(i), null), down);
  // Flaps while the build runs fold into one more build.
  pool.setState(down, 'up');
  pool.setState(down, 'down');
  await pool.whenBuilt();
  assert.equal(maglevBuilds.inPlace, before.inPlace, 'still nothing built in place');
  assert.ok(maglevBuilds.offThread >= before.offThread + 1 && maglevBuilds.offThread <= before.offThread + 2, `off-thread builds: ${maglevBuilds.offThread - before.offThread}`);
  // The table is exactly the one an in-place build gives for the final state.
  const want = buildMaglevTable(['10.0.0.1:80', '10.0.0.3:80', '10.0.0.4:80'], [1, 1, 1], 1_000_003);
  const survivors = [bs[0], bs[2], bs[3]] as Backend[];
  for (let i = 0; i < 2000; i++) {
    const got = pool.pick(flow(i), null);
    assert.notEqual(got, down);
    assert.ok(got !== null && survivors.includes(got));
  }
  assert.equal(want.length, 1_000_003);
});

test('slow-start steps rebuild a pool at most every 100 ms (folded into one rebuild at the end of the interval)', async () => {
  const pool = new Pool(poolConfig('round-robin', 65537), backends(3));
  const b = pool.backends[0] as Backend;
  pool.setState(pool.backends[2] as Backend, 'down'); // a rebuild now
  const start = pool.builds;
  for (let w = 1; w <= 50; w++) pool.setEffectiveWeight(b, w / 50); // 50 steps in one turn
  assert.equal(pool.builds, start, 'steps inside the interval wait');
  await new Promise((r) => setTimeout(r, SLOW_START_REBUILD_MS + 50));
  assert.equal(pool.builds, start + 1, 'one rebuild for the 50 steps');
  assert.equal(b.effectiveWeight, 1);
  pool.dispose();
});
