/**
 * The layering of src/ (README, "Layout"), checked on the import statements:
 * no import cycle between modules, and no import from a lower layer to a
 * higher one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';

const SRC = join(__dirname, '..', '..', '..', 'src');

function sources(dir: string, out: string[] = []): string[] {
  for (const f of readdirSync(dir)) {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) sources(p, out);
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** module (path relative to src/, no extension) → the src modules it imports (type imports included). */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of sources(SRC)) {
    const text = readFileSync(file, 'utf8');
    const deps: string[] = [];
    for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+'(\.[^']+)'/g)) {
      let target = join(dirname(file), m[1] as string);
      if (existsSync(join(target, 'index.ts'))) target = join(target, 'index');
      deps.push(relative(SRC, target));
    }
    graph.set(relative(SRC, file).replace(/\.ts$/, ''), deps);
  }
  return graph;
}

const graph = importGraph();

test('architecture: the import graph of src/ was read', () => {
  assert.ok(graph.size > 50, `only ${graph.size} modules found under ${SRC}`);
  assert.ok(graph.get('tcp/listener')?.includes('listener/base'), 'tcp/listener imports listener/base');
});

test('architecture: no import cycle between modules (type imports included)', () => {
  const state = new Map<string, 1 | 2>();
  const stack: string[] = [];
  const visit = (m: string): void => {
    state.set(m, 1);
    stack.push(m);
    for (const d of graph.get(m) ?? []) {
      const s = state.get(d);
      if (s === 1) assert.fail(`import cycle: ${[...stack.slice(stack.indexOf(d)), d].join(' → ')}`);
      if (s === undefined) visit(d);
    }
    stack.pop();
    state.set(m, 2);
  };
  for (const m of graph.keys()) if (!state.has(m)) visit(m);
});

test('architecture: no import from a lower layer to a higher one', () => {
  const folder = (m: string): string => (m.includes('/') ? m.slice(0, m.indexOf('/')) : '.');
  // What each folder must not import (by folder, or by module).
  const forbidden: Record<string, string[]> = {
    net: ['*'], // net/ and stats/ import only themselves
    stats: ['*'],
    proxy: ['tcp', 'udp', 'listener', 'dataplane', 'cluster', 'config', '.'],
    balancer: ['tcp', 'udp', 'listener', 'dataplane', 'cluster', '.'],
    listener: ['tcp', 'udp', 'dataplane', 'cluster', 'control', 'server', 'admin', 'metrics'],
    tcp: ['udp', 'dataplane', 'cluster', 'control', 'server'],
    udp: ['tcp', 'dataplane', 'cluster', 'control', 'server'],
    dataplane: ['cluster', 'control', 'server', 'admin', 'metrics'],
    cluster: ['control', 'server'],
  };
  const problems: string[] = [];
  for (const [m, deps] of graph) {
    const rules = forbidden[folder(m)];
    if (rules === undefined) continue;
    for (const d of deps) {
      if (folder(d) === folder(m)) continue;
      if (rules.includes('*') || rules.includes(folder(d)) || rules.includes(d)) problems.push(`${m} imports ${d}`);
    }
  }
  assert.deepEqual(problems, []);
});
