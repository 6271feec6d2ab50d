/**
 * Packaging: scripts/install.sh into a staging root and (as root) onto a
 * throwaway root without systemd, `npm pack` + a global install into a
 * temporary prefix, and the .deb built, installed into a throwaway root,
 * run and purged. Each installed l4lb is started on 127.0.0.1 port 0 in
 * front of a real echo backend and carries bytes.
 *
 * The throwaway root (test/support/throwaway-root.sh) is a copy-on-write
 * view of this system in a private mount namespace: nothing is written to
 * the real root. install.sh and dpkg run chrooted in it, like on a host
 * (or in a container) of their own.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEchoServer, connect, readBytes, type TestServer } from '../helpers/net';
import { L4lbProcess } from '../helpers/l4lb';

const REPO = join(__dirname, '..', '..', '..');
const THROWAWAY = join(REPO, 'test', 'support', 'throwaway-root.sh');
const VERSION = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
const ADDON_BUILT = existsSync(join(REPO, 'native', 'build', 'Release', 'l4lb_splice.node'));
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

function runs(cmd: string, args: string[] = ['--version']): boolean {
  const r = spawnSync(cmd, args, { stdio: 'ignore' });
  return !r.error && r.status === 0;
}
const hasCompiler = runs(process.env.CXX || 'c++') && runs('make') && runs('python3');
const hasDpkgDeb = runs('dpkg-deb');
const hasAnalyze = runs('systemd-analyze');

/** The environment without the npm_* variables `npm test` sets (they would leak into the npm under test). */
function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k)) env[k] = v;
  return { ...env, ...extra };
}

function sh(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeout?: number } = {}): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: opts.env ?? cleanEnv(), cwd: opts.cwd ?? REPO, timeout: opts.timeout ?? 60000 });
  if (r.error) throw r.error;
  return r;
}
const out = (r: SpawnSyncReturns<string>): string => `status ${r.status}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;

/** A throwaway root works here: root, unshare and overlayfs. */
let throwawayWhyNot: string | false | undefined;
function throwawaySkip(): string | false {
  if (throwawayWhyNot !== undefined) return throwawayWhyNot;
  if (!isRoot) return (throwawayWhyNot = 'needs root (mount namespaces and overlayfs for a throwaway root)');
  if (!runs('unshare', ['--version']) || !runs('chroot', ['--version'])) return (throwawayWhyNot = 'unshare or chroot not installed');
  const base = mkdtempSync(join(tmpdir(), 'l4lb-probe-'));
  try {
    const r = spawnSync('bash', [THROWAWAY, base, 'true'], { encoding: 'utf8', timeout: 20000 });
    throwawayWhyNot = r.status === 0 ? false : `cannot make a throwaway root here (overlayfs in a mount namespace): ${(r.stderr || '').trim().split('\n')[0]}`;
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
  return throwawayWhyNot;
}

/** Lines of the unit that systemd-analyze verify objects to (none expected). */
function verifyUnit(path: string): string[] {
  const r = spawnSync('systemd-analyze', ['verify', path], { encoding: 'utf8', timeout: 30000 });
  return `${r.stdout}${r.stderr}`
    .split('\n')
    .filter((l) => l.trim() !== '' && /l4lb\.(service|socket)/.test(l) && !/Failed to (connect|create)|bus|Running in chroot/i.test(l));
}

function lbConfig(backendPort: number): string {
  return (
    `[[listeners]]\nname = "pk"\nprotocol = "tcp"\nbind = "127.0.0.1:0"\npool = "p"\n` +
    `[pools.p]\nbackends = [{ address = "127.0.0.1:${backendPort}" }]\n[pools.p.health_check]\nenabled = false\n`
  );
}

/** Starts an installed l4lb, checks the pump it chose and that bytes go through; returns the `byte pump` line. */
async function runInstalled(launcher: (cfg: string) => [string, string[]], echo: TestServer, wantPump: 'splice' | 'js'): Promise<Record<string, unknown>> {
  const lb = new L4lbProcess(lbConfig(echo.port), { launcher, env: cleanEnv() });
  try {
    const port = await lb.port('pk', 20000);
    const pump = await lb.waitForLog((l) => l.msg === 'byte pump', 5000, 'byte pump');
    assert.equal(pump.pump, wantPump, JSON.stringify(pump));
    const c = await connect(port);
    c.write('packaged\n');
    assert.equal((await readBytes(c, 9)).toString(), 'packaged\n');
    c.destroy();
    return pump;
  } finally {
    await lb.stop();
  }
}

/** PATH inside a throwaway root: the system's, and this node's directory. */
const SYS_PATH = `/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:${join(process.execPath, '..')}`;

/** A systemctl that records being called, first on PATH. */
function fakeSystemctl(dir: string, record: string): string {
  mkdirSync(dir, { recursive: true });
  const p = join(dir, 'systemctl');
  writeFileSync(p, `#!/bin/sh\necho "$@" >> '${record}'\n`);
  chmodSync(p, 0o755);
  return p;
}

describe('packaging', () => {
  let echo: TestServer;
  const tmp = mkdtempSync(join(tmpdir(), 'l4lb-pkg-'));
  before(async () => {
    echo = await startEchoServer();
  });
  after(async () => {
    await echo.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  test('install.sh --help prints the help only; a bad option is a usage error', () => {
    const r = sh('bash', ['scripts/install.sh', '--help']);
    assert.equal(r.status, 0, out(r));
    assert.match(r.stdout, /^Usage: scripts\/install\.sh \[options\]\n/);
    for (const opt of ['--prefix', '--destdir', '--bindir', '--unitdir', '--node', '--dry-run']) assert.ok(r.stdout.includes(opt), opt);
    assert.doesNotMatch(r.stdout, /set -euo|usage\(\)|\$\{|<<'EOF'/);
    const bad = sh('bash', ['scripts/install.sh', '--bogus']);
    assert.equal(bad.status, 64, out(bad));
    assert.match(bad.stderr, /unknown option --bogus/);
  });

  test('install.sh into a staging root (DESTDIR), no systemd: exit 0, what goes where, the staged l4lb runs', async () => {
    const stage = join(tmp, 'stage');
    const record = join(tmp, 'systemctl-called');
    const fake = join(tmp, 'fakebin');
    fakeSystemctl(fake, record);
    const env = cleanEnv({ DESTDIR: stage, PATH: `${fake}:${process.env.PATH ?? ''}` });
    const r = sh('bash', ['scripts/install.sh', '--prefix', '/opt/l4lb-test'], { env });
    assert.equal(r.status, 0, out(r));
    assert.ok(!existsSync(record), `systemctl was called: ${existsSync(record) ? readFileSync(record, 'utf8') : ''}`);
    assert.match(r.stdout, /On the target host/);

    const prefix = join(stage, 'opt', 'l4lb-test');
    // The program, and nothing of the tests, benchmarks or dev dependencies.
    assert.ok(existsSync(join(prefix, 'dist', 'src', 'cli.js')));
    assert.deepEqual(readdirSync(join(prefix, 'dist')), ['src']);
    for (const dev of ['typescript', 'node-gyp', '@types']) assert.ok(!existsSync(join(prefix, 'node_modules', dev)), `dev dependency ${dev} installed`);
    for (const dep of ['pino', 'commander', 'smol-toml', 'prom-client']) assert.ok(existsSync(join(prefix, 'node_modules', dep, 'package.json')), dep);
    assert.equal(existsSync(join(prefix, 'native', 'build', 'Release', 'l4lb_splice.node')), ADDON_BUILT);
    assert.ok(existsSync(join(prefix, 'scripts', 'build-native.js')));

    // Configuration: the loopback-only starter as the live file, the annotated example beside it.
    const live = readFileSync(join(stage, 'etc', 'l4lb', 'lb.toml'), 'utf8');
    assert.equal(live, readFileSync(join(REPO, 'configs', 'lb.starter.toml'), 'utf8'));
    const binds = [...live.matchAll(/^\s*bind\s*=\s*"([^"]+)"/gm)].map((m) => m[1]);
    assert.ok(binds.length >= 1);
    for (const b of binds) assert.match(b ?? '', /^127\.0\.0\.1:\d+$/, 'the starter binds loopback only');
    assert.equal(statSync(join(stage, 'etc', 'l4lb', 'lb.toml')).mode & 0o777, 0o640);
    assert.equal(readFileSync(join(stage, 'etc', 'l4lb', 'lb.example.toml'), 'utf8'), readFileSync(join(REPO, 'configs', 'lb.example.toml'), 'utf8'));

    // Units: node's absolute path, the prefix, Documentation= following it; the socket installed, nothing enabled.
    const unitPath = join(stage, 'etc', 'systemd', 'system', 'l4lb.service');
    const unit = readFileSync(unitPath, 'utf8');
    assert.match(unit, new RegExp(`^ExecStart=${process.execPath} /opt/l4lb-test/dist/src/cli\\.js --config /etc/l4lb/lb\\.toml$`, 'm'));
    assert.match(unit, /^Documentation=file:\/\/\/opt\/l4lb-test\/README\.md$/m);
    assert.ok(existsSync(join(stage, 'opt', 'l4lb-test', 'README.md')));
    assert.doesNotMatch(unit.split('\n').filter((l) => l.startsWith('Exec')).join('\n'), /\/usr\/local\/bin\/l4lb/);
    assert.ok(existsSync(join(stage, 'etc', 'systemd', 'system', 'l4lb.socket')));
    assert.deepEqual(readdirSync(join(stage, 'etc', 'systemd', 'system')).sort(), ['l4lb.service', 'l4lb.socket']);
    assert.equal(readFileSync(join(stage, 'usr', 'local', 'bin', 'l4lb'), 'utf8').split('\n').find((l) => l.startsWith('exec')), `exec ${process.execPath} /opt/l4lb-test/dist/src/cli.js "$@"`);
    if (hasAnalyze) assert.deepEqual(verifyUnit(unitPath), []);

    // The staged program runs, with the splice pump where the addon was built.
    const cli = join(prefix, 'dist', 'src', 'cli.js');
    const check = sh(process.execPath, [cli, '--config', join(stage, 'etc', 'l4lb', 'lb.toml'), '--check']);
    assert.equal(check.status, 0, out(check));
    assert.match(check.stdout, /^listener example: tcp 127\.0\.0\.1:8080 -> pool example$/m);
    await runInstalled((cfg) => [process.execPath, [cli, '-c', cfg]], echo, ADDON_BUILT ? 'splice' : 'js');

    // Run again over an edited config: it is kept.
    writeFileSync(join(stage, 'etc', 'l4lb', 'lb.toml'), '# the operator\'s\n');
    const again = sh('bash', ['scripts/install.sh', '--prefix', '/opt/l4lb-test'], { env });
    assert.equal(again.status, 0, out(again));
    assert.match(again.stdout, /keeping the existing \/etc\/l4lb\/lb\.toml/);
    assert.equal(readFileSync(join(stage, 'etc', 'l4lb', 'lb.toml'), 'utf8'), '# the operator\'s\n');

    // A step that fails (here npm) leaves the installed version as it was, and no half-built tree.
    const broken = join(tmp, 'broken-npm');
    mkdirSync(broken);
    symlinkSync(process.execPath, join(broken, 'node'));
    writeFileSync(join(broken, 'npm'), '#!/bin/sh\necho "npm: simulated failure" >&2\nexit 1\n');
    chmodSync(join(broken, 'npm'), 0o755);
    writeFileSync(join(prefix, 'marker'), 'previous install');
    const failed = sh('bash', ['scripts/install.sh', '--prefix', '/opt/l4lb-test', '--node', join(broken, 'node')], { env });
    assert.notEqual(failed.status, 0, out(failed));
    assert.match(failed.stderr, /simulated failure/);
    assert.equal(readFileSync(join(prefix, 'marker'), 'utf8'), 'previous install');
    assert.ok(existsSync(join(prefix, 'dist', 'src', 'cli.js')) && existsSync(join(prefix, 'node_modules', 'pino', 'package.json')), 'the previous install is whole');
    assert.deepEqual(readdirSync(join(stage, 'opt')), ['l4lb-test']);

    // Where the addon cannot be built: the build script exits 0 with a hint, l4lb runs the JS pump and says how to build it.
    rmSync(join(prefix, 'native', 'build'), { recursive: true, force: true });
    const nb = sh(process.execPath, [join(prefix, 'scripts', 'build-native.js')], { env: cleanEnv({ CXX: '/nonexistent/c++' }) });
    assert.equal(nb.status, 0, out(nb));
    assert.match(nb.stdout, /not built \(missing C\+\+ compiler \(\/nonexistent\/c\+\+\)[^)]*\); the JavaScript pump will be used; to build it later/);
    assert.ok(nb.stdout.includes(`${process.execPath} ${join(prefix, 'scripts', 'build-native.js')}`), nb.stdout);
    const pump = await runInstalled((cfg) => [process.execPath, [cli, '-c', cfg]], echo, 'js');
    assert.match(String(pump.reason), /at install: missing C\+\+ compiler/);
    assert.ok(String(pump.reason).includes(join(prefix, 'scripts', 'build-native.js')), String(pump.reason));
  });

  test('install.sh as root on a host without systemd (throwaway root): user, config group, no systemctl, l4lb runs as l4lb', { skip: throwawaySkip() }, async () => {
    const base = mkdtempSync(join(tmp, 'root-'));
    const r = sh(
      'bash',
      [THROWAWAY, '--bind', REPO, base, 'sh', '-c', `cp '${fakeSystemctl(join(tmp, 'fake2'), '/tmp/systemctl-called')}' "$ROOT/usr/local/sbin/systemctl" && exec chroot "$ROOT" /usr/bin/env PATH=${SYS_PATH} /src/scripts/install.sh`],
      { timeout: 90000 },
    );
    assert.equal(r.status, 0, out(r));
    assert.match(r.stdout, /systemd is not running here, so systemctl was not called/);
    assert.ok(!existsSync(join(base, 'root', 'tmp', 'systemctl-called')), 'systemctl was called');
    const pw = readFileSync(join(base, 'upper', 'etc', 'passwd'), 'utf8').split('\n').find((l) => l.startsWith('l4lb:'));
    assert.ok(pw, 'user l4lb created');
    const gid = Number(pw.split(':')[3]);
    const st = statSync(join(base, 'upper', 'etc', 'l4lb', 'lb.toml'));
    assert.equal(st.gid, gid, 'lb.toml group l4lb');
    assert.equal(st.mode & 0o777, 0o640);
    assert.ok(existsSync(join(base, 'upper', 'opt', 'l4lb', 'dist', 'src', 'cli.js')));
    // As the service user, through the installed command, the config in the root's /tmp.
    await runInstalled(
      (cfg) => {
        writeFileSync(join(base, 'root', 'tmp', 'lb.toml'), readFileSync(cfg));
        chmodSync(join(base, 'root', 'tmp', 'lb.toml'), 0o644);
        return ['bash', [THROWAWAY, base, 'sh', '-c', 'exec chroot --userspec=l4lb:l4lb "$ROOT" /usr/local/bin/l4lb -c /tmp/lb.toml']];
      },
      echo,
      ADDON_BUILT ? 'splice' : 'js',
    );
  });

  test('npm pack + npm install -g <tgz> --prefix <tmp>: the addon is built by npm\'s own node-gyp (JS pump with a hint without a compiler)', async (t) => {
    const dir = join(tmp, 'npm');
    mkdirSync(dir);
    const pack = sh('npm', ['pack', '--ignore-scripts', '--pack-destination', dir, '--json']);
    assert.equal(pack.status, 0, out(pack));
    const tgz = join(dir, (JSON.parse(pack.stdout) as { filename: string }[])[0]?.filename ?? '');
    const files = sh('tar', ['tzf', tgz]).stdout.split('\n');
    for (const f of ['dist/src/cli.js', 'scripts/build-native.js', 'native/binding.gyp', 'native/src/loop.cc', 'configs/lb.starter.toml']) {
      assert.ok(files.includes(`package/${f}`), `${f} in the tarball`);
    }
    assert.deepEqual(files.filter((f) => /^package\/(dist\/(test|bench)|native\/build|node_modules|test|bench)\//.test(f)), []);

    const started = Date.now();
    const prefix = join(dir, 'g');
    const inst = sh('npm', ['install', '-g', tgz, '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', '--foreground-scripts', '--loglevel=error'], {
      timeout: 120000,
    });
    t.diagnostic(`npm install -g took ${Date.now() - started} ms`);
    assert.equal(inst.status, 0, out(inst));
    const pkg = join(prefix, 'lib', 'node_modules', 'l4lb');
    assert.ok(!existsSync(join(pkg, 'node_modules', 'node-gyp')), 'node-gyp is not a dependency: npm\'s own was used');
    if (hasCompiler) assert.match(inst.stdout, /native splice addon built/, out(inst));
    else assert.match(inst.stdout, /native splice addon not built .*to build it later/, out(inst));
    const bin = join(prefix, 'bin', 'l4lb');
    const v = sh(bin, ['--version']);
    assert.equal(v.stdout.trim(), VERSION, out(v));
    const pump = await runInstalled((cfg) => [bin, ['-c', cfg]], echo, hasCompiler ? 'splice' : 'js');
    if (!hasCompiler) assert.ok(String(pump.reason).includes(join(pkg, 'scripts', 'build-native.js')), String(pump.reason));
  });

  describe('Debian package', { skip: !hasDpkgDeb ? 'dpkg-deb not installed' : !ADDON_BUILT ? 'the splice addon is not built here (the .deb ships it)' : false }, () => {
    let deb = '';
    test('scripts/build-deb.sh builds l4lb_<version>_<arch>.deb: nodejs >= 20, the units, conffiles, the addon, no tests', () => {
      const r = sh('bash', ['scripts/build-deb.sh', '--out', join(tmp, 'deb'), '--compress', 'gzip'], { timeout: 120000 });
      assert.equal(r.status, 0, out(r));
      deb = r.stdout.trim().split('\n').pop() ?? '';
      const arch = sh('dpkg', ['--print-architecture']).stdout.trim();
      assert.equal(deb, join(tmp, 'deb', `l4lb_${VERSION}_${arch}.deb`));
      assert.equal(sh('dpkg-deb', ['-f', deb, 'Package']).stdout.trim(), 'l4lb');
      assert.match(sh('dpkg-deb', ['-f', deb, 'Depends']).stdout, /^nodejs \(>= 20\), adduser, .*libc6/);
      assert.equal(sh('dpkg-deb', ['-I', deb, 'conffiles']).stdout, '/etc/l4lb/lb.toml\n/etc/l4lb/lb.example.toml\n');
      const list = sh('dpkg-deb', ['-c', deb]).stdout;
      for (const f of ['./usr/bin/l4lb', './usr/lib/l4lb/dist/src/cli.js', './usr/lib/l4lb/native/build/Release/l4lb_splice.node', './lib/systemd/system/l4lb.service', './lib/systemd/system/l4lb.socket', './etc/l4lb/lb.toml', './usr/share/doc/l4lb/copyright']) {
        assert.ok(list.includes(` ${f}\n`), `${f} in the package`);
      }
      assert.doesNotMatch(list, /\/dist\/(test|bench)\/|node_modules\/(typescript|node-gyp|@types)\//);
    });

    test('dpkg -i into a throwaway root: user, statoverride, l4lb --version, unit verifies, not enabled; purge removes it all', { skip: throwawaySkip() }, (t) => {
      assert.ok(deb !== '' && existsSync(deb), 'the .deb was built');
      const base = mkdtempSync(join(tmp, 'debroot-'));
      // The throwaway root is this system: where its dpkg has no nodejs >= 20 or adduser package (node from a
      // tarball, say), the dependency check is forced and /usr/bin/node is made to point at this node.
      const depsOk = sh('sh', ['-c', `dpkg --compare-versions "$(dpkg-query -W -f='\${Version}' nodejs 2>/dev/null)" ge 20 && dpkg-query -W adduser`]).status === 0;
      if (!depsOk) t.diagnostic('nodejs >= 20 or adduser is not a dpkg package here: dpkg -i --force-depends');
      // dpkg runs inside the root (it resolves the statoverride's group l4lb there), the package in its /tmp.
      mkdirSync(join(base, 'root', 'tmp'), { recursive: true, mode: 0o1777 });
      writeFileSync(join(base, 'root', 'tmp', 'l4lb.deb'), readFileSync(deb));
      const prep = existsSync('/usr/bin/node') ? '' : `ln -s '${process.execPath}' "$ROOT/usr/bin/node" && `;
      const inst = sh(
        'bash',
        [
          THROWAWAY,
          base,
          'sh',
          '-c',
          `${prep}chroot "$ROOT" dpkg ${depsOk ? '' : '--force-depends '}-i /tmp/l4lb.deb && echo "version=$(chroot "$ROOT" /usr/bin/l4lb --version)" && ` +
            `chroot --userspec=l4lb:l4lb "$ROOT" /usr/bin/l4lb --config /etc/l4lb/lb.toml --check && ` +
            `echo "status=$(chroot "$ROOT" dpkg-query -W -f='\${db:Status-Abbrev}' l4lb)" && ` +
            // Installed again over an operator's edit: the edit stays.
            `echo '# edited by the operator' >> "$ROOT/etc/l4lb/lb.toml" && chroot "$ROOT" dpkg ${depsOk ? '' : '--force-depends '}-i /tmp/l4lb.deb </dev/null`,
        ],
        { timeout: 90000 },
      );
      assert.equal(inst.status, 0, out(inst));
      assert.match(inst.stdout, new RegExp(`^version=${VERSION.replace(/\./g, '\\.')}$`, 'm'));
      assert.match(inst.stdout, /^listener example: tcp 127\.0\.0\.1:8080 -> pool example$/m);
      assert.match(inst.stdout, /^status=ii/m);
      const live = readFileSync(join(base, 'upper', 'etc', 'l4lb', 'lb.toml'), 'utf8');
      assert.ok(live.endsWith('# edited by the operator\n'), 'the edited conffile is kept on reinstall');
      assert.equal(statSync(join(base, 'upper', 'etc', 'l4lb', 'lb.toml')).mode & 0o777, 0o640);
      const passwd = readFileSync(join(base, 'upper', 'etc', 'passwd'), 'utf8');
      assert.match(passwd, /^l4lb:x:\d+:\d+::\/nonexistent:\/usr\/sbin\/nologin$/m);
      assert.match(readFileSync(join(base, 'upper', 'var', 'lib', 'dpkg', 'statoverride'), 'utf8'), /^root l4lb 640 \/etc\/l4lb\/lb\.toml$/m);
      assert.ok(!existsSync(join(base, 'upper', 'etc', 'systemd', 'system', 'multi-user.target.wants', 'l4lb.service')), 'not enabled');
      const unit = [join(base, 'upper', 'usr', 'lib', 'systemd', 'system', 'l4lb.service'), join(base, 'upper', 'lib', 'systemd', 'system', 'l4lb.service')].find((p) => existsSync(p));
      assert.ok(unit, 'unit installed');
      const text = readFileSync(unit, 'utf8');
      assert.match(text, /^ExecStart=\/usr\/bin\/node \/usr\/lib\/l4lb\/dist\/src\/cli\.js --config \/etc\/l4lb\/lb\.toml$/m);
      assert.match(text, /^Documentation=file:\/\/\/usr\/share\/doc\/l4lb\/README\.md$/m);
      if (hasAnalyze) {
        // systemd-analyze checks that ExecStart's binary exists: this host's node stands in for /usr/bin/node.
        const copy = join(base, 'verify', 'l4lb.service');
        mkdirSync(join(base, 'verify'));
        writeFileSync(copy, existsSync('/usr/bin/node') ? text : text.replace(/\/usr\/bin\/node /g, `${process.execPath} `));
        assert.deepEqual(verifyUnit(copy), []);
      }

      const purge = sh(
        'bash',
        [THROWAWAY, base, 'sh', '-c', `chroot "$ROOT" dpkg --purge l4lb && if chroot "$ROOT" getent passwd l4lb; then echo user=kept; else echo user=gone; fi; chroot "$ROOT" dpkg-query -W l4lb || echo package=gone`],
        { timeout: 60000 },
      );
      assert.equal(purge.status, 0, out(purge));
      assert.match(purge.stdout, /^user=gone$/m);
      assert.match(purge.stdout, /^package=gone$/m);
      for (const p of ['usr/lib/l4lb', 'usr/bin/l4lb', 'etc/l4lb', 'usr/lib/systemd/system/l4lb.service', 'usr/share/doc/l4lb']) {
        assert.ok(!existsSync(join(base, 'upper', p)), `${p} removed by purge`);
      }
      assert.doesNotMatch(readFileSync(join(base, 'upper', 'etc', 'passwd'), 'utf8'), /^l4lb:/m);
      assert.doesNotMatch(readFileSync(join(base, 'upper', 'var', 'lib', 'dpkg', 'statoverride'), 'utf8'), /l4lb/);
    });
  });
});
