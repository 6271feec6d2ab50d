import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JITTER, ProbeTimer, firstDelay, nextDelay } from '../../src/health/schedule';
import { mulberry32, waitFor } from '../helpers/net';

test('first probe phases spread over one interval', () => {
  const rnd = mulberry32(7);
  const d = Array.from({ length: 1000 }, () => firstDelay(1000, rnd));
  assert.ok(d.every((x) => x >= 0 && x < 1000));
  // roughly uniform: every tenth of the interval gets some probes
  for (let k = 0; k < 10; k++) assert.ok(d.filter((x) => x >= k * 100 && x < (k + 1) * 100).length > 50, `bucket ${k}`);
  assert.equal(firstDelay(0, rnd), 0);
});

test('later probes are one interval apart, within the jitter', () => {
  const rnd = mulberry32(9);
  const d = Array.from({ length: 1000 }, () => nextDelay(2000, rnd));
  assert.ok(d.every((x) => x >= 2000 * (1 - JITTER) && x <= 2000 * (1 + JITTER)));
  assert.ok(new Set(d).size > 10, 'jitter varies');
  assert.equal(nextDelay(0, rnd), 1);
});

test('ProbeTimer runs probes one at a time, keeps the interval, stops cleanly', async () => {
  const starts: number[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const timer = new ProbeTimer(
    40,
    (done) => {
      starts.push(Date.now());
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      setTimeout(() => {
        inFlight--;
        done();
        done(); // a second call is ignored
      }, 10);
    },
    mulberry32(3),
  );
  timer.start();
  timer.start(); // idempotent
  await waitFor(() => starts.length >= 5, 3000, '5 probes');
  timer.stop();
  const n = starts.length;
  assert.equal(maxInFlight, 1);
  for (let i = 1; i < starts.length; i++) {
    const gap = starts[i]! - starts[i - 1]!;
    assert.ok(gap >= 40 * (1 - JITTER) - 2, `gap ${gap}`);
  }
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(starts.length, n, 'no probe after stop');
  assert.equal(timer.running, false);
});

test('a probe slower than the interval delays the next one instead of overlapping', async () => {
  const starts: number[] = [];
  const timer = new ProbeTimer(10, (done) => {
    starts.push(Date.now());
    setTimeout(done, 40);
  });
  timer.start();
  await waitFor(() => starts.length >= 3, 3000, '3 probes');
  timer.stop();
  for (let i = 1; i < starts.length; i++) assert.ok(starts[i]! - starts[i - 1]! >= 38);
});
