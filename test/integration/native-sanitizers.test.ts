/**
 * The splice addon under AddressSanitizer and ThreadSanitizer: the addon is
 * rebuilt with -fsanitize=address and -fsanitize=thread, loaded into the
 * real CLI (LD_PRELOAD of the sanitizer runtime, L4LB_NATIVE_ADDON), and
 * driven through the handoff with thousands of client resets, echo traffic
 * and backend resets. Any sanitizer report fails the test.
 *
 * Skipped, with the reason, where there is no compiler, no sanitizer
 * runtime or no addon.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { startServer, startEchoServer, readBytes, withTimeout, type TestServer } from '../helpers/net';
import { L4lbProcess } from '../helpers/l4lb';
import { poolToml, listenerToml } from '../helpers/toml';
import { spliceAvailable } from '../../src/native/addon';

const ROOT = join(__dirname, '..', '..', '..');

/** The sanitizer runtime gcc links against, or null. */
function runtime(lib: string): string | null {
  const r = spawnSync('gcc', [`-print-file-name=${lib}`], { encoding: 'utf8' });
  const p = r.status === 0 ? r.stdout.trim() : '';
  return p.startsWith('/') && existsSync(p) ? p : null;
}

/** Builds native/ with `flags` in a temp dir; returns the .node path or the reason it could not. */
function buildWith(flags: string): { path: string } | { reason: string } {
  const dir = mkdtempSync(join(tmpdir(), 'l4lb-san-'));
  cpSync(join(ROOT, 'native', 'binding.gyp'), join(dir, 'binding.gyp'));
  cpSync(join(ROOT, 'native', 'src'), join(dir, 'src'), { recursive: true });
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  let gyp: string;
  try {
    gyp = require.resolve('node-gyp/bin/node-gyp.js');
  } catch {
    return { reason: 'node-gyp is not installed' };
  }
  const args = [gyp, 'rebuild', '--jobs', '2', '--directory', dir];
  const prefix = join(dirname(process.execPath), '..');
  if (existsSync(join(prefix, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${prefix}`);
  const r = spawnSync(process.execPath, args, {
    encoding: 'utf8',
    timeout: 240_000,
    env: { ...process.env, CXXFLAGS: `${flags} -g -O1 -fno-omit-frame-pointer`, LDFLAGS: flags },
  });
  const path = join(dir, 'build', 'Release', 'l4lb_splice.node');
  if (r.status !== 0 || !existsSync(path)) return { reason: `build with ${flags} failed: ${(r.stderr || r.stdout || '').split('\n').slice(-4).join(' ')}` };
  return { path };
}

const SANITIZERS = [
  { name: 'address', lib: 'libasan.so', options: { ASAN_OPTIONS: 'detect_leaks=0:halt_on_error=1:exitcode=86' }, marker: /AddressSanitizer/ },
  // Node itself is not instrumented: TSan's pthread interceptors report
  // false races inside V8's platform threads, so only reports whose stacks
  // reach the addon count, and the exit code is left alone.
  { name: 'thread', lib: 'libtsan.so', options: { TSAN_OPTIONS: 'halt_on_error=0:exitcode=0:report_signal_unsafe=0' }, marker: /ThreadSanitizer/ },
] as const;

const addon = spliceAvailable();

for (const san of SANITIZERS) {
  const rt = process.platform === 'linux' ? runtime(san.lib) : null;
  const skip = !addon.ok
    ? `native splice addon not available: ${addon.reason}`
    : rt === null
      ? `${san.lib} (gcc's ${san.name} sanitizer runtime) not found`
      : false;
  // The sanitizer build of the whole addon takes minutes on a loaded 2-core machine.
  describe(`splice addon under the ${san.name} sanitizer`, { skip, timeout: 420_000 }, () => {
    let build: { path: string } | { reason: string };
    let echo: TestServer;
    let rst: TestServer;
    let lb: L4lbProcess | null = null;
    let port = 0;
    let rstPort = 0;
    let legacyPort = 0;
    let udpEcho: dgram.Socket;

    before(async () => {
      build = buildWith(`-fsanitize=${san.name}`);
      udpEcho = dgram.createSocket('udp4');
      udpEcho.on('message', (m, r) => udpEcho.send(m, r.port, r.address));
      udpEcho.bind(0, '127.0.0.1');
      await once(udpEcho, 'listening');
      echo = await startEchoServer();
      rst = await startServer((s) => {
        s.once('data', () => {
          s.write('no\n');
          s.resetAndDestroy();
        });
      });
      if (!('path' in build)) return;
      lb = new L4lbProcess(
        `[global]\nsplice = "on"\n` +
          listenerToml('echo', 'echo') +
          listenerToml('rst', 'rst') +
          // accept_proxy_protocol stays on node:net: the splice pump's handoff (add()).
          listenerToml('legacy', 'echo', 'accept_proxy_protocol = true') +
          poolToml('echo', 'round-robin', [`{ address = "127.0.0.1:${echo.port}" }`]) +
          poolToml('rst', 'round-robin', [`{ address = "127.0.0.1:${rst.port}" }`], 'retries = 0') +
          // The UDP engine (same module): a session per request, and sessions left to expire.
          `[[listeners]]\nname = "u1"\nprotocol = "udp"\nbind = "127.0.0.1:0"\npool = "u"\nudp_responses = 1\n` +
          `[[listeners]]\nname = "ui"\nprotocol = "udp"\nbind = "127.0.0.1:0"\npool = "u"\nidle_timeout = "200ms"\n` +
          poolToml('u', 'round-robin', [`{ address = "127.0.0.1:${udpEcho.address().port}" }`]),
        { env: { LD_PRELOAD: rt as string, L4LB_NATIVE_ADDON: build.path, ...san.options } },
      );
      port = await lb.port('echo', 30000);
      rstPort = await lb.port('rst', 30000);
      legacyPort = await lb.port('legacy', 30000);
    });
    after(async () => {
      if (lb !== null && lb.exitCode === null) await lb.stop();
      await echo.close();
      await rst.close();
      udpEcho.close();
      if ('path' in build) rmSync(join(dirname(build.path), '..', '..'), { recursive: true, force: true });
    });

    test('2,000 client resets at the handoff, echo traffic and backend resets: no sanitizer report, clean exit', async (t) => {
      if (!('path' in build)) {
        t.skip(build.reason);
        return;
      }
      const proc = lb as L4lbProcess;
      // Client resets racing the handoff: connect, then RST at once.
      const resetOne = (): Promise<void> =>
        new Promise((resolve) => {
          const s = net.connect({ port, host: '127.0.0.1' }, () => {
            s.resetAndDestroy();
            resolve();
          });
          s.on('error', () => resolve());
        });
      for (let i = 0; i < 2000; i += 50) await Promise.all(Array.from({ length: 50 }, resetOne));
      // The pump still works, echo round trips in between.
      for (let i = 0; i < 50; i++) {
        const s = net.connect({ port, host: '127.0.0.1' });
        s.on('error', () => {});
        s.write('ping\n');
        assert.equal((await readBytes(s, 5, 10000)).toString(), 'ping\n');
        s.destroy();
      }
      // The splice pump's handoff (node:net accepts, the addon takes the fds), with resets racing it.
      const header = 'PROXY TCP4 127.0.0.1 127.0.0.1 1000 2000\r\n';
      for (let i = 0; i < 30; i++) {
        const s = net.connect({ port: legacyPort, host: '127.0.0.1' });
        s.on('error', () => {});
        s.write(`${header}ping\n`);
        assert.equal((await readBytes(s, 5, 10000)).toString(), 'ping\n');
        s.destroy();
      }
      const legacyReset = (): Promise<void> =>
        new Promise((resolve) => {
          const s = net.connect({ port: legacyPort, host: '127.0.0.1' }, () => {
            s.write(header);
            setImmediate(() => {
              s.resetAndDestroy();
              resolve();
            });
          });
          s.on('error', () => resolve());
        });
      for (let i = 0; i < 300; i += 50) await Promise.all(Array.from({ length: 50 }, legacyReset));
      // Backend resets right after a reply.
      const rstOne = (): Promise<void> =>
        new Promise((resolve) => {
          const s = net.connect({ port: rstPort, host: '127.0.0.1' }, () => s.write('q\n'));
          s.on('error', () => resolve());
          s.on('close', () => resolve());
          s.resume();
        });
      for (let i = 0; i < 200; i += 20) await withTimeout(Promise.all(Array.from({ length: 20 }, rstOne)), 20000, 'backend resets');
      // UDP through the engine: 20 clients x 10 requests on each listener, then expiry.
      for (const name of ['u1', 'ui']) {
        const up = await proc.port(name, 30000);
        await Promise.all(
          Array.from({ length: 20 }, async (_, c) => {
            const s = dgram.createSocket('udp4');
            try {
              for (let i = 0; i < 10; i++) {
                const got = withTimeout(once(s, 'message'), 10000, `udp reply via ${name}`);
                s.send(`${c}-${i}`, up, '127.0.0.1');
                assert.equal(String((await got)[0]), `${c}-${i}`);
              }
            } finally {
              s.close();
            }
          }),
        );
      }
      proc.signal('SIGTERM');
      const code = await proc.waitExit(30000);
      const reports = proc.stderr
        .split('==================')
        .filter((b) => san.marker.test(b) && (san.name === 'address' || (/l4lb_splice|l4lb::|native\/src\//.test(b) && !racesOnlyInNode(b))));
      assert.equal(reports.join('\n').slice(0, 4000), '', `${san.name} sanitizer report`);
      assert.equal(code, 0, `exit code ${code}; stderr: ${proc.stderr.slice(0, 2000)}`);
    });
  });
}

/**
 * A TSan race report whose every racing access happens in Node or V8 code
 * (its first frame outside the sanitizer runtime), such as V8's platform
 * freeing a job while the addon is being loaded: Node is not instrumented,
 * so these are the false reports the comment on SANITIZERS describes, even
 * when a deeper frame passes through the addon's module init.
 */
function racesOnlyInNode(report: string): boolean {
  const accesses = report.split(/\n(?= {2}(?:Previous )?(?:[Ww]rite|[Rr]ead|[Aa]tomic)[^\n]* by )/).slice(1);
  if (accesses.length === 0) return false;
  return accesses.every((a) => {
    const frames = a.split('\n').filter((l) => /^\s+#\d+ /.test(l));
    const top = frames.find((f) => !/libsanitizer|libtsan/.test(f));
    return top !== undefined && /\b(v8::|node::|uv_)/.test(top) && !/l4lb|native\/src\//.test(top);
  });
}
