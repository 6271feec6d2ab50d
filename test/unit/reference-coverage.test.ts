/**
 * Keeps the user documentation true: every metric, log event, configuration
 * key and admin route that exists in the code is documented in some page
 * under docs/, and every one that docs/reference.md names exists in the
 * code. The code side is read from the code itself: the metrics registry,
 * the validator's key lists, the admin route table, and the log calls found
 * in src/ (the string literals of the last argument of `.info(`, `.warn(`,
 * `.error(`, ... and `log[level](`).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createRegistry } from '../../src/metrics/metrics';
import { CONFIG_KEYS } from '../../src/config/validate';
import { ROUTES } from '../../src/admin/admin';

const ROOT = join(__dirname, '..', '..', '..');
const DOCS = join(ROOT, 'docs');
const SRC = join(ROOT, 'src');

function walk(dir: string, ext: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, ext, out);
    else if (name.endsWith(ext)) out.push(p);
  }
  return out;
}

const allDocs = walk(DOCS, '.md').map((f) => readFileSync(f, 'utf8')).join('\n');
const reference = readFileSync(join(DOCS, 'reference.md'), 'utf8');

/** The text of one `## title` section of the reference (up to the next `## `). */
function section(title: string): string {
  const start = reference.indexOf(`\n## ${title}\n`);
  assert.ok(start >= 0, `docs/reference.md has a "## ${title}" section`);
  const end = reference.indexOf('\n## ', start + 1);
  return reference.slice(start, end < 0 ? undefined : end);
}

/** First-column values of table rows (`| \`x\` | ...`) in a text. */
function firstColumn(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^\| `([^`]+)`/.exec(line);
    if (m !== null) out.push(m[1] as string);
  }
  return out;
}

const documented = (name: string): boolean => allDocs.includes(`\`${name}\``);

/** Skips a quoted string or template literal starting at s[i]; returns the index after it. */
function skipString(s: string, i: number): number {
  const q = s[i];
  let j = i + 1;
  while (j < s.length && s[j] !== q) j += s[j] === '\\' ? 2 : 1;
  return j + 1;
}

/** The log event names of the code: string literals of the last argument of every log call in src/. */
export function logEventsInCode(): Set<string> {
  const events = new Set<string>();
  const call = /(?:\.(?:trace|debug|info|warn|error|fatal)|log\[[^\]\n]+\])\(/g;
  for (const file of walk(SRC, '.ts')) {
    const s = readFileSync(file, 'utf8');
    for (let m = call.exec(s); m !== null; m = call.exec(s)) {
      // Split the arguments at top-level commas, up to the matching ')'.
      let depth = 0;
      let i = m.index + m[0].length;
      let argStart = i;
      for (; i < s.length; i++) {
        const c = s[i] as string;
        if (c === "'" || c === '"' || c === '`') {
          i = skipString(s, i) - 1;
        } else if (c === '(' || c === '{' || c === '[') depth++;
        else if (c === ']' || c === '}') depth--;
        else if (c === ')') {
          if (depth === 0) break;
          depth--;
        } else if (c === ',' && depth === 0) argStart = i + 1;
      }
      let last = s.slice(argStart, i).trim();
      if (last === '') {
        // A trailing comma: the message is the argument before it.
        const before = s.slice(m.index + m[0].length, argStart - 1);
        last = before.slice(before.lastIndexOf(',') + 1);
      }
      for (const lit of last.matchAll(/'([^'\\]+)'/g)) events.add(lit[1] as string);
    }
  }
  return events;
}

test('the log scan finds the known events (sanity of the scan itself)', () => {
  const events = logEventsInCode();
  for (const e of ['listening', 'config reloaded', 'connection closed', 'backend name resolved', 'backend name resolves again']) {
    assert.ok(events.has(e), `scan finds ${e}`);
  }
});

test('every metric in the registry is documented; every l4lb_ metric the reference names exists', async () => {
  const src = { snapshot: () => ({ listeners: [], pools: [] }), reloads: { success: 0, failure: 0 } };
  const registry = createRegistry(src as unknown as Parameters<typeof createRegistry>[0]);
  const names = registry.getMetricsAsArray().map((m) => m.name).filter((n) => n.startsWith('l4lb_'));
  assert.ok(names.length >= 11);
  const missing = names.filter((n) => !documented(n));
  assert.deepEqual(missing, [], 'metrics missing from docs/*.md');
  const named = new Set([...reference.matchAll(/`(l4lb_[a-z0-9_]+)`/g)].map((m) => m[1] as string));
  const unknown = [...named].filter((n) => !names.includes(n));
  assert.deepEqual(unknown, [], 'metrics named in docs/reference.md that the code does not have');
});

test('every configuration key is documented; every key in the reference tables exists', () => {
  const code = new Set<string>();
  for (const [table, keys] of Object.entries(CONFIG_KEYS)) {
    if (table === 'top') continue;
    for (const k of keys) code.add(k);
  }
  const missing = [...code].filter((k) => !documented(k));
  assert.deepEqual(missing, [], 'configuration keys missing from docs/*.md');
  const inTables = firstColumn(section('Configuration')).filter((k) => /^[a-z_]+$/.test(k));
  assert.ok(inTables.length >= 30, 'the configuration tables were found');
  const states = new Set(['up', 'down', 'draining', 'removed']);
  const unknown = inTables.filter((k) => !code.has(k) && !states.has(k));
  assert.deepEqual(unknown, [], 'keys in docs/reference.md tables that validation does not accept');
});

test('every admin route is documented; every route the reference names exists', () => {
  const code = ROUTES.map((r) => `${r.method} ${r.path}`);
  const api = section('Admin API');
  const headings = [...api.matchAll(/^### `(GET|POST) ([^`]+)`(?: and `\.\.\.\/([a-z-]+)`)?/gm)];
  const named = new Set<string>();
  for (const h of headings) {
    named.add(`${h[1]} ${h[2]}`);
    // "### `POST /x/{a}/drain` and `.../enable`" names a sibling route.
    if (h[3] !== undefined) named.add(`${h[1]} ${(h[2] as string).replace(/[^/]+$/, h[3])}`);
  }
  const missing = code.filter((r) => !named.has(r) && !allDocs.includes(`\`${r}\``));
  assert.deepEqual(missing, [], 'admin routes missing from docs (a "### `METHOD /path`" heading in docs/reference.md, or `METHOD /path` in docs/*.md)');
  const unknown = [...named].filter((r) => !code.includes(r));
  assert.deepEqual(unknown, [], 'routes in docs/reference.md that the admin API does not have');
});

test('every log event is documented; every event the reference lists is logged by the code', () => {
  const code = logEventsInCode();
  const missing = [...code].filter((e) => !documented(e));
  assert.deepEqual(missing, [], 'log events missing from docs/*.md');
  const logs = section('Logs');
  const sub = logs.indexOf('\n### ');
  // The events table comes first; the `### ...` subsections after it describe fields.
  const listed = firstColumn(sub < 0 ? logs : logs.slice(0, sub));
  assert.ok(listed.length >= 20, 'the log table was found');
  const unknown = listed.filter((e) => !code.has(e));
  assert.deepEqual(unknown, [], 'events in docs/reference.md that no code logs');
});
