import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isPrime, parseDuration, suggest } from '../../src/config/values';
import { parseConfig } from '../../src/config/load';
import { BASE, FILE, expectIssue, issuesOf } from './config-helpers';

test('durations: units ms s m h, fractions, zero', () => {
  assert.equal(parseDuration('250ms'), 250);
  assert.equal(parseDuration('2s'), 2000);
  assert.equal(parseDuration('1.5m'), 90_000);
  assert.equal(parseDuration('1h'), 3_600_000);
  assert.equal(parseDuration('0s'), 0);
  assert.equal(parseDuration('0ms'), 0);
  assert.equal(parseDuration('0.5s'), 500);
  assert.equal(parseDuration('1.0004s'), 1000);
});

test('durations: rejected forms', () => {
  for (const bad of ['2', '', 's', '-1s', '1 s', ' 1s', '1S', '1d', '1.s', '.5s', '1e3ms', '2s ', '1m30s', '999h']) {
    assert.equal(parseDuration(bad), null, bad);
  }
});

test('durations in a config: number, missing unit, minimums', () => {
  const text = BASE.replace('pool = "web"', 'pool = "web"\nconnect_timeout = 5\nidle_timeout = "10"') + '[pools.web.health_check]\ninterval = "0s"\n';
  const issues = issuesOf(text);
  expectIssue(text, issues, 'listeners[0].connect_timeout', 'connect_timeout = |5', /got 5$/);
  expectIssue(text, issues, 'listeners[0].idle_timeout', 'idle_timeout = |"10"', /got "10"$/);
  expectIssue(text, issues, 'pools.web.health_check.interval', '|"0s"', /at least 1ms/);
  const cfg = parseConfig(BASE.replace('pool = "web"', 'pool = "web"\nconnect_timeout = "250ms"\nidle_timeout = "1.5m"'), FILE);
  assert.equal(cfg.listeners[0]?.connectTimeoutMs, 250);
  assert.equal(cfg.listeners[0]?.idleTimeoutMs, 90_000);
});

test('prime check', () => {
  const primes = [2, 3, 5, 7, 11, 13, 251, 65537, 65539, 999_983, 1_000_003];
  const composites = [0, 1, 4, 9, 15, 25, 49, 65535, 65536, 1_000_001, 999_985, -7, 7.5, NaN];
  for (const p of primes) assert.equal(isPrime(p), true, String(p));
  for (const c of composites) assert.equal(isPrime(c), false, String(c));
});

test('suggestions for near-miss keys', () => {
  const known = ['log_level', 'connection_log', 'workers', 'splice', 'drain_timeout'];
  assert.equal(suggest('loglevel', known), 'log_level');
  assert.equal(suggest('log-level', known), 'log_level');
  assert.equal(suggest('worker', known), 'workers');
  assert.equal(suggest('zzzzzz', known), null);
});
