import { test } from 'node:test';
import assert from 'node:assert/strict';
import { INITIAL_HEALTH, observe, type HealthCounter, type Health } from '../../src/health/hysteresis';

/** Health after each check of a sequence written as "+" (ok) and "-" (failed). */
function run(seq: string, rise: number, fall: number, start: HealthCounter = INITIAL_HEALTH): Health[] {
  const out: Health[] = [];
  let c = start;
  for (const ch of seq) {
    c = observe(c, ch === '+', rise, fall);
    out.push(c.health);
  }
  return out;
}
const DOWN: HealthCounter = { health: 'down', successes: 0, failures: 0 };
const str = (h: Health[]): string => h.map((x) => (x === 'up' ? 'U' : 'D')).join('');

test('starts up; goes down only after fall consecutive failures', () => {
  assert.equal(INITIAL_HEALTH.health, 'up');
  assert.equal(str(run('--+---', 2, 3)), 'UUUUUD');
  assert.equal(str(run('-', 2, 1)), 'D');
});

test('comes back up only after rise consecutive successes', () => {
  assert.equal(str(run('+-++', 2, 3, DOWN)), 'DDDU');
  assert.equal(str(run('++', 3, 3, DOWN)), 'DD');
  assert.equal(str(run('+', 1, 3, DOWN)), 'U');
});

test('a backend alternating up/down never flaps the state when rise, fall >= 2', () => {
  const flap = '+-'.repeat(50);
  assert.ok(run(flap, 2, 3).every((h) => h === 'up'));
  assert.ok(run(flap, 2, 3, DOWN).every((h) => h === 'down'));
  const flap2 = '++--'.repeat(25); // runs of 2 < fall 3: stays up
  assert.ok(run(flap2, 3, 3).every((h) => h === 'up'));
});

test('state changes at most once per rise/fall run (hysteresis bound)', () => {
  // Long seeded pseudo-random sequence: count changes and check each change
  // is preceded by the required run of equal results.
  let x = 12345;
  let seq = '';
  for (let i = 0; i < 2000; i++) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    seq += x % 3 === 0 ? '-' : '+';
  }
  const rise = 2;
  const fall = 3;
  const h = run(seq, rise, fall);
  let prev: Health = 'up';
  for (let i = 0; i < h.length; i++) {
    const cur: Health = h[i]!;
    if (cur !== prev) {
      const need: number = cur === 'down' ? fall : rise;
      const runOf = seq.slice(i - need + 1, i + 1);
      assert.equal(runOf, (cur === 'down' ? '-' : '+').repeat(need), `change at ${i}`);
    }
    prev = cur;
  }
});

test('counters reset after a change and on an opposite result; unchanged counters are returned as is', () => {
  const c1 = observe(INITIAL_HEALTH, false, 2, 3);
  assert.deepEqual(c1, { health: 'up', successes: 0, failures: 1 });
  assert.deepEqual(observe(c1, true, 2, 3), { health: 'up', successes: 0, failures: 0 });
  assert.equal(observe(INITIAL_HEALTH, true, 2, 3), INITIAL_HEALTH);
  assert.deepEqual(observe({ health: 'down', successes: 1, failures: 0 }, false, 2, 3), DOWN);
  // rise/fall below 1 act as 1
  assert.equal(observe(INITIAL_HEALTH, false, 0, 0).health, 'down');
});
