import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runFuzz } from '../support/proxy-fuzz';

// Seeded property test: see checkInput() in test/support/proxy-fuzz.ts for
// the properties (never throws, three states, bounded buffering, chunking
// invariance, round trip of every 'done', valid headers always accepted).
test('fuzz: 25,000 seeded random/mutated headers with random chunk splits', () => {
  const t0 = Date.now();
  const stats = runFuzz(0x5eed1234, 25_000);
  const ms = Date.now() - t0;
  assert.ok(ms < 15_000, `fuzz took ${ms} ms`);
  assert.ok(stats.done > 5_000, `only ${stats.done} accepted`);
  assert.ok(stats.needMore > 1_000);
  for (const c of ['bad_signature', 'bad_v1', 'too_long', 'bad_version', 'bad_command', 'bad_family',
    'bad_protocol', 'truncated', 'bad_tlv']) {
    assert.ok((stats.errors[c] ?? 0) > 0, `no ${c} produced: ${JSON.stringify(stats.errors)}`);
  }
  assert.ok(stats.maxBuffered <= 65535);
  console.log(`# proxy fuzz: ${stats.iterations} inputs, ${stats.pushes} pushes in ${ms} ms; ` +
    `done ${stats.done}, need-more ${stats.needMore}, errors ${JSON.stringify(stats.errors)}`);
});
