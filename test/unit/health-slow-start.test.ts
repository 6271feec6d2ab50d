import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MIN_EFFECTIVE_WEIGHT, rampStep, rampWeight } from '../../src/health/slow-start';

test('ramp is linear from ~1% of the weight to the full weight', () => {
  assert.equal(rampWeight(10, 0, 2000), 0.1);
  assert.equal(rampWeight(10, 500, 2000), 2.5);
  assert.equal(rampWeight(10, 1000, 2000), 5);
  assert.equal(rampWeight(10, 2000, 2000), 10);
  assert.equal(rampWeight(10, 5000, 2000), 10);
  assert.equal(rampWeight(10, 10, 2000), 0.1); // floor
});

test('ramp weight is always > 0 and never above the weight', () => {
  for (const w of [1, 2, 100]) {
    for (let t = -10; t <= 3000; t += 7) {
      const x = rampWeight(w, t, 2000);
      assert.ok(x > 0 && x <= w, `w=${w} t=${t} x=${x}`);
      assert.ok(x >= MIN_EFFECTIVE_WEIGHT);
    }
  }
  assert.equal(rampWeight(0.01, 0, 2000), MIN_EFFECTIVE_WEIGHT);
});

test('no slow start means full weight at once', () => {
  assert.equal(rampWeight(3, 0, 0), 3);
});

test('ramp step: a tenth of slow_start, at least 100 ms', () => {
  assert.equal(rampStep(2000), 200);
  assert.equal(rampStep(500), 100);
  assert.equal(rampStep(60_000), 6000);
});
