/** Shared helpers for the config tests (not a test file itself). */
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/load';
import type { ConfigIssue } from '../../src/errors';

export const FILE = 'lb.toml';

/** A minimal valid configuration; tests append or replace parts of it. */
export const BASE = `[[listeners]]
name = "web"
bind = "127.0.0.1:8080"
pool = "web"

[pools.web]
backends = [
  { address = "10.0.0.1:80" },
]
`;

/**
 * 1-based line:col of the nth occurrence (0-based) of needle in text. A '|'
 * in the needle marks the exact spot: "retries = |-1" is the position of -1.
 */
export function locate(text: string, needle: string, nth = 0): { line: number; col: number } {
  const mark = Math.max(0, needle.indexOf('|'));
  const plain = needle.replace('|', '');
  let at = -1;
  for (let k = 0; k <= nth; k++) {
    at = text.indexOf(plain, at + 1);
    assert.ok(at >= 0, `needle ${needle} not found`);
  }
  at += mark;
  const before = text.slice(0, at);
  const line = before.split('\n').length;
  return { line, col: at - before.lastIndexOf('\n') };
}

/** Parses text expecting a ConfigError; returns its issues. */
export function issuesOf(text: string): readonly ConfigIssue[] {
  try {
    parseConfig(text, FILE, { cpuCount: 3 });
  } catch (err) {
    const e = err as { code?: string; issues?: readonly ConfigIssue[] };
    assert.equal(e.code, 'ERR_L4LB_CONFIG');
    assert.ok(Array.isArray(e.issues) && e.issues.length > 0);
    return e.issues;
  }
  assert.fail('expected a ConfigError');
}

/** The single issue for `path`, asserting there is exactly one. */
export function issueAt(issues: readonly ConfigIssue[], path: string): ConfigIssue {
  const found = issues.filter((i) => i.path === path);
  assert.equal(found.length, 1, `issues for ${path}: ${JSON.stringify(issues, null, 1)}`);
  return found[0] as ConfigIssue;
}

/** Asserts one issue for `path` positioned at the nth occurrence of needle, message matching re. */
export function expectIssue(text: string, issues: readonly ConfigIssue[], path: string, needle: string, re: RegExp, nth = 0): void {
  const i = issueAt(issues, path);
  const p = locate(text, needle, nth);
  assert.equal(i.file, FILE);
  assert.deepEqual({ line: i.line, col: i.col }, p, `position of ${path}`);
  assert.match(i.message, re);
}
