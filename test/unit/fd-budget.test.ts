import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FdBudget, isLocalError } from '../../src/net/fd-budget';

test('fd budget: keeps the reserve free, follows add() between samples, re-samples and re-reads the limit', () => {
  let open = 100;
  let limit = 1024;
  const b = new FdBudget(() => limit, () => open);
  assert.equal(b.reserve, 64); // 1024 / 16
  assert.equal(b.has(1, 0), true);
  // 100 open + delta; the last usable fd leaves 64 free.
  b.add(1024 - 64 - 100 - 1);
  assert.equal(b.has(1, 1), true);
  b.add(1);
  assert.equal(b.has(1, 2), false);
  // Above half the limit, samples come every 250 ms: the count wins then.
  open = 200;
  assert.equal(b.has(1, 300), true);
  // prlimit lowered the limit at run time: seen at the next sample (below
  // half the old limit, samples come every 2 s).
  limit = 256;
  assert.equal(b.has(100, 600), true);
  assert.equal(b.has(1, 2300), true); // 200 open, reserve 32, 24 left
  assert.equal(b.has(25, 2300), false);
  assert.equal(b.reserve, 32);
});

test('fd budget: an unknown limit or count means no limit', () => {
  assert.equal(new FdBudget(() => Number.POSITIVE_INFINITY, () => 10).has(1e9, 0), true);
  assert.equal(new FdBudget(() => 64, () => -1).has(1e9, 0), true);
});

test('fd budget: a count that failed for lack of fds (Infinity) leaves no room, and is asked again at the next call', () => {
  const counts = [Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY, 10];
  const b = new FdBudget(() => 1024, () => counts.shift() ?? 10);
  assert.equal(b.has(1, 0), false);
  assert.equal(b.has(0, 1), false);
  // Fds are back: the very next call (1 ms later, not 250) sees it.
  assert.equal(b.has(1, 2), true);
  assert.equal(counts.length, 0);
});

test('local errors are told apart from a backend\'s', () => {
  for (const code of ['EMFILE', 'ENFILE', 'ENOBUFS', 'EADDRNOTAVAIL']) assert.equal(isLocalError({ code }), true, code);
  for (const code of ['ECONNREFUSED', 'ETIMEDOUT', 'ECONNRESET', undefined]) assert.equal(isLocalError({ code }), false, String(code));
  assert.equal(isLocalError(null), false);
});
