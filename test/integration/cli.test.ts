/**
 * The command line of SPEC §1 through the real binary: --version, --help,
 * --check, L4LB_CONFIG, exit codes and configuration error messages.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { runCli, tempConfig, L4lbProcess } from '../helpers/l4lb';
import { VERSION } from '../../src/version';

const GOOD = `
[[listeners]]
name = "pg"
bind = "127.0.0.1:0"
pool = "pg"

[[listeners]]
name = "dns"
protocol = "udp"
bind = "127.0.0.1:0"
pool = "pg"

[pools.pg]
backends = [{ address = "127.0.0.1:5432" }]
`;

describe('cli', () => {
  test('--version prints the version and exits 0', async () => {
    const r = await runCli(['--version']);
    assert.equal(r.code, 0);
    assert.equal(r.stdout.trim(), VERSION);
  });

  test('--help prints usage and exits 0', async () => {
    const r = await runCli(['--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /--config <file>/);
    assert.match(r.stdout, /--check/);
  });

  test('bad usage exits 64', async () => {
    for (const args of [['--no-such-flag'], ['--config'], ['extra-argument']]) {
      const r = await runCli(args);
      assert.equal(r.code, 64, `l4lb ${args.join(' ')}: ${r.stderr}`);
    }
  });

  test('--check prints one line per listener and binds nothing', async () => {
    const cfg = tempConfig(GOOD.replace(/127\.0\.0\.1:0/g, '127.0.0.1:1'));
    try {
      const r = await runCli(['--config', cfg.path, '--check']);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.stdout.trim().split('\n'), ['listener pg: tcp 127.0.0.1:1 -> pool pg', 'listener dns: udp 127.0.0.1:1 -> pool pg']);
    } finally {
      cfg.cleanup();
    }
  });

  test('-c and L4LB_CONFIG name the file', async () => {
    const cfg = tempConfig(GOOD);
    try {
      assert.equal((await runCli(['-c', cfg.path, '--check'])).code, 0);
      assert.equal((await runCli(['--check'], { L4LB_CONFIG: cfg.path })).code, 0);
    } finally {
      cfg.cleanup();
    }
  });

  test('a missing file, a file that is not TOML and an invalid file exit 78', async () => {
    const missing = await runCli(['-c', '/nonexistent/l4lb.toml', '--check']);
    assert.equal(missing.code, 78);
    assert.match(missing.stderr, /\/nonexistent\/l4lb\.toml/);

    const notToml = tempConfig('this is [ not toml\n');
    try {
      const r = await runCli(['-c', notToml.path]);
      assert.equal(r.code, 78);
      assert.match(r.stderr, /lb\.toml:1:\d+/);
    } finally {
      notToml.cleanup();
    }
  });

  test('every configuration error is reported with file:line:col, key path and what was expected', async () => {
    const cfg = tempConfig(
      [
        '[global]',
        'log_level = "loud"',
        'workers = 0',
        '',
        '[[listeners]]',
        'name = "web"',
        'bind = "127.0.0.1:0"',
        'pool = "nope"',
        'colour = "blue"',
        '',
        '[pools.web]',
        'table_size = 65536',
        'backends = [',
        '  { address = "10.0.0.6:80" },',
        '  { address = "10.0.0.7" },',
        ']',
        '',
      ].join('\n'),
    );
    try {
      const r = await runCli(['-c', cfg.path]);
      assert.equal(r.code, 78);
      const lines = r.stderr.trim().split('\n');
      const has = (re: RegExp): boolean => lines.some((l) => re.test(l));
      assert.ok(has(/lb\.toml:2:\d+: global\.log_level: /), r.stderr);
      assert.ok(has(/lb\.toml:3:\d+: global\.workers: /), r.stderr);
      assert.ok(has(/lb\.toml:8:\d+: listeners\[0\]\.pool: .*nope/), r.stderr);
      assert.ok(has(/lb\.toml:9:\d+: listeners\[0\]\.colour: /), r.stderr);
      assert.ok(has(/lb\.toml:12:\d+: pools\.web\.table_size: .*prime/), r.stderr);
      assert.ok(has(/lb\.toml:15:15: pools\.web\.backends\[1\]\.address: expected "host:port", got "10\.0\.0\.7"/), r.stderr);
    } finally {
      cfg.cleanup();
    }
  });

  test('an address already in use exits 1 with a one-line reason', async () => {
    const holder = net.createServer();
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', () => r()));
    const port = (holder.address() as net.AddressInfo).port;
    const cfg = tempConfig(GOOD.replace('127.0.0.1:0', `127.0.0.1:${port}`));
    try {
      const r = await runCli(['-c', cfg.path]);
      assert.equal(r.code, 1);
      assert.match(r.stderr.trim(), /address already in use/);
      assert.equal(r.stderr.trim().split('\n').length, 1);
    } finally {
      cfg.cleanup();
      holder.close();
    }
  });

  test('a running l4lb logs `listening` with the bound port and exits 0 on SIGTERM', async () => {
    const lb = new L4lbProcess(GOOD.replace(/\[\[listeners\]\]\nname = "dns"[\s\S]*?pool = "pg"\n/, ''));
    try {
      const port = await lb.port('pg');
      assert.ok(port > 0);
      const line = lb.logs.find((l) => l.msg === 'listening');
      assert.equal(line?.level, 'info');
      assert.equal(typeof line?.time, 'string');
      assert.equal(line?.address, '127.0.0.1');
      lb.signal('SIGTERM');
      assert.equal(await lb.waitExit(), 0);
    } finally {
      await lb.stop();
    }
  });
});
