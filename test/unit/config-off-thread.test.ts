/**
 * A large configuration is validated off the event loop on reload (SPEC
 * §8.6): 100,000 backends take seconds to parse and validate; loaded with
 * loadConfigFileOffThread, the event loop is never blocked for long, and the
 * result (or every error) is the same as an in-place load's.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { loadConfigFile } from '../../src/config/load';
import { loadConfigFileOffThread } from '../../src/config/load-off-thread';
import { ConfigError } from '../../src/errors';

const dir = mkdtempSync(join(tmpdir(), 'l4lb-bigcfg-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function bigConfig(n: number, bad = false): string {
  const lines = ['[[listeners]]', 'name = "a"', 'bind = "127.0.0.1:0"', 'pool = "p"', '[pools.p]', 'algorithm = "round-robin"', 'backends = ['];
  for (let i = 0; i < n; i++) lines.push(`  { address = "10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:80", weight = ${1 + (i % 5)} },`);
  if (bad) lines.push('  { address = "10.0.0.1" },');
  lines.push(']', '[pools.p.health_check]', 'enabled = false');
  return `${lines.join('\n')}\n`;
}

test('100,000 backends: validated on a worker thread, the event loop never blocked for long, the same result as in place', async () => {
  const path = join(dir, 'big.toml');
  writeFileSync(path, bigConfig(100_000));
  const h = monitorEventLoopDelay({ resolution: 10 });
  h.enable();
  const cfg = await loadConfigFileOffThread(path);
  h.disable();
  const maxMs = h.max / 1e6;
  const pool = cfg.pools[0];
  assert.equal(pool?.backends.length, 100_000);
  assert.ok(Object.isFrozen(cfg) && Object.isFrozen(pool.backends) && Object.isFrozen(pool.backends[99_999]), 'frozen like an in-place load');
  // In place this file blocks for seconds; off the loop, pieces of ~2,000 backends.
  assert.ok(maxMs < 500, `event loop blocked for ${maxMs.toFixed(0)} ms`);
  process.stdout.write(`# config off thread: 100k backends, longest event-loop block ${maxMs.toFixed(1)} ms\n`);
  assert.deepEqual(JSON.parse(JSON.stringify(cfg)), JSON.parse(JSON.stringify(loadConfigFile(path))));
});

test('a large invalid file is rejected with the same issues (file, line, column, key) as in place', async () => {
  const path = join(dir, 'bad.toml');
  writeFileSync(path, bigConfig(20_000, true));
  const inPlace = ((): ConfigError => {
    try {
      loadConfigFile(path);
    } catch (err) {
      return err as ConfigError;
    }
    throw new Error('expected a ConfigError');
  })();
  await assert.rejects(loadConfigFileOffThread(path), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.deepEqual(err.issues, inPlace.issues);
    assert.match(err.issues[0]?.message ?? '', /expected "host:port"/);
    return true;
  });
});

test('a small or missing file is loaded in place with the usual errors', async () => {
  await assert.rejects(loadConfigFileOffThread(join(dir, 'missing.toml')), /no such file/);
  const path = join(dir, 'small.toml');
  writeFileSync(path, bigConfig(3));
  assert.equal((await loadConfigFileOffThread(path)).pools[0]?.backends.length, 3);
});
