/** Pure parts of operator control: the runtime state file, histograms, termination. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RuntimeState, stateFilePath } from '../../src/state/runtime-state';
import { Histogram, CONNECT_BUCKETS, addHistogram, emptyHistogram } from '../../src/stats/histogram';
import { tcpTermination, udpTermination } from '../../src/listener/termination';
import { oldestFirst, type ConnectionInfo } from '../../src/stats/connections';

test('runtime state: set, clear, retain, and a round trip through the file (atomic: no temporary file left)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'l4lb-rs-'));
  try {
    const s = new RuntimeState();
    assert.equal(s.setDrain('p', '10.0.0.1:80', true), true);
    assert.equal(s.setDrain('p', '10.0.0.1:80', true), false);
    assert.equal(s.setWeight('p', '10.0.0.2:80', 0), true);
    assert.equal(s.setWeight('q', '10.0.0.3:80', 5), true);
    assert.equal(s.retain((pool) => pool === 'p'), true);
    assert.deepEqual(s.all().map((e) => e.address).sort(), ['10.0.0.1:80', '10.0.0.2:80']);
    const path = join(dir, 'state.json');
    s.write(path);
    assert.deepEqual(readdirSync(dir), ['state.json']);
    const { state, error } = RuntimeState.read(path);
    assert.equal(error, null);
    assert.deepEqual(state.get('p', '10.0.0.1:80'), { pool: 'p', address: '10.0.0.1:80', drain: true, weight: null });
    assert.deepEqual(state.get('p', '10.0.0.2:80'), { pool: 'p', address: '10.0.0.2:80', drain: false, weight: 0 });
    // Back to the configured state: the entry goes.
    assert.equal(state.setDrain('p', '10.0.0.1:80', false), true);
    assert.equal(state.get('p', '10.0.0.1:80'), undefined);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('runtime state: a missing file is empty without error; a broken one is empty with the reason; bad entries are skipped', () => {
  const dir = mkdtempSync(join(tmpdir(), 'l4lb-rs-'));
  try {
    assert.deepEqual(RuntimeState.read(join(dir, 'none.json')).error, null);
    writeFileSync(join(dir, 'bad.json'), '{');
    assert.match(RuntimeState.read(join(dir, 'bad.json')).error ?? '', /not JSON/);
    writeFileSync(join(dir, 'shape.json'), '[1,2]');
    assert.match(RuntimeState.read(join(dir, 'shape.json')).error ?? '', /expected/);
    writeFileSync(
      join(dir, 'mixed.json'),
      JSON.stringify({ version: 1, backends: [null, 3, { pool: 'p' }, { pool: 'p', address: 'a:1', weight: 2000 }, { pool: 'p', address: 'b:1', weight: 7, drain: 'yes' }] }),
    );
    const r = RuntimeState.read(join(dir, 'mixed.json'));
    assert.equal(r.error, null);
    assert.deepEqual(r.state.all(), [{ pool: 'p', address: 'b:1', drain: false, weight: 7 }]);
    if (process.getuid?.() !== 0) {
      writeFileSync(join(dir, 'locked.json'), '{}');
      chmodSync(join(dir, 'locked.json'), 0);
      assert.notEqual(RuntimeState.read(join(dir, 'locked.json')).error, null);
    }
    assert.equal(stateFilePath('/etc/l4lb/lb.toml', 'state.json'), '/etc/l4lb/state.json');
    assert.equal(stateFilePath('/etc/l4lb/lb.toml', '/var/lib/l4lb/s.json'), '/var/lib/l4lb/s.json');
    assert.equal(readFileSync(join(dir, 'bad.json'), 'utf8'), '{');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('histogram: per-bucket counts (le semantics), +Inf, sum, count; snapshots add up', () => {
  const h = new Histogram(CONNECT_BUCKETS);
  for (const v of [0.0001, 0.0005, 0.0006, 0.02, 31]) h.observe(v);
  assert.equal(h.counts[0], 2); // <= 0.0005
  assert.equal(h.counts[1], 1); // <= 0.001
  assert.equal(h.counts[5], 1); // <= 0.025
  assert.equal(h.counts[CONNECT_BUCKETS.length], 1); // +Inf
  assert.equal(h.count, 5);
  assert.ok(Math.abs(h.sum - 31.0212) < 1e-9);
  const total = addHistogram(emptyHistogram(CONNECT_BUCKETS), h.snapshot());
  addHistogram(total, h.snapshot());
  assert.equal(total.count, 10);
  assert.equal(total.counts[0], 4);
  assert.equal(h.count, 5, 'the source is not changed');
});

test('termination: every TCP and UDP end reason maps to a documented value', () => {
  assert.equal(tcpTermination('closed', 'client'), 'client_fin');
  assert.equal(tcpTermination('closed', 'backend'), 'backend_fin');
  assert.equal(tcpTermination('closed', null), 'client_fin');
  assert.equal(tcpTermination('client_reset', null), 'client_reset');
  assert.equal(tcpTermination('backend_reset', null), 'backend_reset');
  assert.equal(tcpTermination('no_backend', null), 'connect_failed');
  assert.equal(tcpTermination('connect_failed', null), 'connect_failed');
  assert.equal(tcpTermination('idle_timeout', null), 'idle_timeout');
  assert.equal(tcpTermination('drain_timeout', null), 'drain_timeout');
  assert.equal(tcpTermination('shutdown', null), 'drain_timeout');
  assert.equal(tcpTermination('admin_shutdown', null), 'admin_shutdown');
  assert.equal(tcpTermination('resources', null), 'connect_failed');
  assert.equal(tcpTermination('bad_client_hello', null), 'client_reset');
  assert.equal(udpTermination('responses'), 'backend_fin');
  assert.equal(udpTermination('backend_refused'), 'connect_failed');
  assert.equal(udpTermination('backend_gone'), 'backend_reset');
  assert.equal(udpTermination('idle_timeout'), 'idle_timeout');
  assert.equal(udpTermination('admin_shutdown'), 'admin_shutdown');
});

test('connections: oldest first, cut to the limit', () => {
  const c = (age: number): ConnectionInfo => ({ listener: 'l', protocol: 'tcp', pool: 'p', client: 'c', backend: 'b', age_ms: age, bytes_in: 0, bytes_out: 0 });
  assert.deepEqual(oldestFirst([c(1), c(30), c(7), c(12)], 3).map((x) => x.age_ms), [30, 12, 7]);
});

test('config: state_file and connection_log_interval are read and checked with positions', async () => {
  const { parseConfig: loadConfigText } = await import('../../src/config/load');
  const base = '[[listeners]]\nname = "l"\nbind = "127.0.0.1:0"\npool = "p"\n[pools.p]\nbackends = [{ address = "127.0.0.1:1" }]\n';
  const ok = loadConfigText(`[global]\nstate_file = "s.json"\nconnection_log_interval = "1m"\n${base}`, 'lb.toml');
  assert.equal(ok.global.stateFile, 's.json');
  assert.equal(ok.global.connectionLogIntervalMs, 60_000);
  const dflt = loadConfigText(base, 'lb.toml');
  assert.equal(dflt.global.stateFile, null);
  assert.equal(dflt.global.connectionLogIntervalMs, 0);
  assert.throws(
    () => loadConfigText(`[global]\nstate_file = ""\nconnection_log_interval = "10ms"\n${base}`, 'lb.toml'),
    (e: { code?: string; message: string }) =>
      e.code === 'ERR_L4LB_CONFIG' && /lb\.toml:2:\d+: global\.state_file: /.test(e.message) && /lb\.toml:3:\d+: global\.connection_log_interval: .*100ms/.test(e.message),
  );
});
