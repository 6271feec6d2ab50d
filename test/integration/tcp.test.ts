/**
 * The TCP data path end to end: real backends on 127.0.0.1, the real CLI as
 * a child process, real clients.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { createHash } from 'node:crypto';
import {
  startServer,
  startEchoServer,
  startTaggedServer,
  connect,
  readAll,
  readBytes,
  readLine,
  endOf,
  waitFor,
  withTimeout,
  mulberry32,
  randomBytesSeeded,
  type TestServer, deadPort, rssKiB } from '../helpers/net';
import { L4lbProcess } from '../helpers/l4lb';
import { poolToml, listenerToml } from '../helpers/toml';
import { spliceAvailable } from '../../src/native/addon';
import { startBlackhole, type Blackhole } from '../helpers/blackhole';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');





/** The [global] table for a run with this pump ("off" = JS pump, "on" = splice). */
function G(mode: PumpMode, extra = ''): string {
  return `[global]\nsplice = "${mode === 'splice' ? 'on' : 'off'}"\n${extra}\n`;
}

type PumpMode = 'js' | 'splice';
const splice = spliceAvailable();
// The whole TCP suite runs once per pump; the splice run is skipped (with the
// reason) where the addon is not built.
for (const mode of ['js', 'splice'] as const) {
  const skip = mode === 'splice' && !splice.ok ? `native splice addon not available: ${splice.reason}` : false;
  describe(`tcp data path with the ${mode} pump`, { skip }, () => {
  describe(`tcp [${mode} pump] data path`, () => {
    let echo: TestServer;
    let lb: L4lbProcess;
    let port: number;

    before(async () => {
      echo = await startEchoServer();
      lb = new L4lbProcess(
        G(mode, 'connection_log = true') + listenerToml('echo', 'echo') + poolToml('echo', 'round-robin', [`{ address = "127.0.0.1:${echo.port}" }`]),
      );
      port = await lb.port('echo');
    });
    after(async () => {
      await lb.stop();
      await echo.close();
    });

    test('100 connections x 1 MiB random bytes in random chunks arrive intact both ways', async () => {
      const rnd = mulberry32(42);
      const one = async (i: number): Promise<void> => {
        const payload = randomBytesSeeded(1 << 20, mulberry32(1000 + i));
        const s = await connect(port);
        const received = readAll(s, 60000);
        let off = 0;
        const write = (): void => {
          while (off < payload.length) {
            const n = 1 + Math.floor(rnd() * 65536);
            const chunk = payload.subarray(off, off + n);
            off += chunk.length;
            if (!s.write(chunk)) {
              s.once('drain', write);
              return;
            }
          }
          s.end();
        };
        write();
        const got = await received;
        assert.equal(got.length, payload.length, `connection ${i} length`);
        assert.equal(sha(got), sha(payload), `connection ${i} content`);
        s.destroy();
      };
      await Promise.all(Array.from({ length: 100 }, (_, i) => one(i)));
    });

    test('client data sent before the backend connection is up is held, not lost', async () => {
      const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      s.write('early-bytes'); // queued before even our own connect completes
      s.end();
      const got = await readAll(s);
      assert.equal(got.toString(), 'early-bytes');
    });

    test('connection_log writes one line per finished connection with bytes', async () => {
      const s = await connect(port);
      s.end('hello');
      await readAll(s);
      const line = await lb.waitForLog((l) => l.msg === 'connection closed' && l.bytes_in === 5, 5000, 'connection closed');
      assert.equal(line.listener, 'echo');
      assert.equal(line.bytes_out, 5);
      assert.equal(line.pump, mode, 'the pump that carried the bytes');
      assert.equal(line.backend, `127.0.0.1:${echo.port}`);
      assert.equal(typeof line.duration_ms, 'number');
      assert.match(String(line.client), /^127\.0\.0\.1:\d+$/);
    });
  });

  describe(`tcp [${mode} pump] half-close, reset, backpressure`, () => {
    let backend: TestServer;
    let lb: L4lbProcess;
    let port: number;
    const behaviours: ((s: net.Socket) => void)[] = [];

    before(async () => {
      backend = await startServer((s) => {
        const b = behaviours.shift();
        if (b) b(s);
        else s.pipe(s);
      });
      lb = new L4lbProcess(G(mode) + listenerToml('t', 'p') + poolToml('p', 'round-robin', [`{ address = "127.0.0.1:${backend.port}" }`]));
      port = await lb.port('t');
    });
    after(async () => {
      await lb.stop();
      await backend.close();
    });

    test('client FIN reaches the backend while the backend keeps sending', async () => {
      // Backend: read until EOF, then answer with the byte count and close.
      behaviours.push((s) => {
        let n = 0;
        s.on('data', (c: Buffer) => (n += c.length));
        s.on('end', () => {
          s.write(`got ${n}`);
          setImmediate(() => s.end(' bye'));
        });
      });
      const c = await connect(port);
      c.end(Buffer.alloc(100_000, 1));
      const reply = await readAll(c);
      assert.equal(reply.toString(), 'got 100000 bye');
    });

    test('backend FIN reaches the client while the client keeps sending', async () => {
      let backendGot = 0;
      const backendDone = new Promise<void>((resolve) => {
        behaviours.push((s) => {
          s.end('server-done'); // FIN first
          s.on('data', (c: Buffer) => (backendGot += c.length));
          s.on('end', () => resolve());
        });
      });
      const c = await connect(port);
      const gotEnd = new Promise<string>((resolve) => {
        let buf = '';
        c.on('data', (d: Buffer) => (buf += d.toString()));
        c.on('end', () => resolve(buf));
      });
      assert.equal(await withTimeout(gotEnd, 5000, 'client end'), 'server-done');
      // The client's direction is still open: send after receiving the FIN.
      c.end(Buffer.alloc(50_000, 2));
      await withTimeout(backendDone, 5000, 'backend end');
      assert.equal(backendGot, 50_000);
      c.destroy();
    });

    test('a client reset is passed on to the backend as a reset', async () => {
      const seen = new Promise<string>((resolve) => {
        behaviours.push((s) => {
          s.write('ready\n');
          s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
          s.on('end', () => resolve('end'));
        });
      });
      const c = await connect(port);
      await readLine(c);
      c.resetAndDestroy();
      assert.equal(await withTimeout(seen, 5000, 'backend sees reset'), 'ECONNRESET');
    });

    test('a backend reset is passed on to the client as a reset', async () => {
      behaviours.push((s) => {
        s.write('ready\n');
        s.once('data', () => s.resetAndDestroy());
      });
      const c = await connect(port);
      await readLine(c);
      c.write('x');
      assert.equal(await endOf(c), 'reset');
    });

    test('a slow-reading client keeps l4lb memory bounded and loses nothing', async () => {
      const total = 64 * 1024 * 1024;
      const chunk = Buffer.alloc(64 * 1024, 7);
      let backendWrote = 0;
      behaviours.push((s) => {
        const pump = (): void => {
          while (backendWrote < total) {
            backendWrote += chunk.length;
            if (!s.write(chunk)) {
              s.once('drain', pump);
              return;
            }
          }
          s.end();
        };
        pump();
      });
      const pid = lb.child.pid!;
      const before = rssKiB(pid);
      const c = await connect(port);
      c.pause();
      // Let the backend fill every buffer on the way: the backend stops being
      // able to write once l4lb stops reading.
      await waitFor(() => backendWrote >= 4 * 1024 * 1024, 10000, 'backend wrote 4 MiB');
      let last = -1;
      await waitFor(
        () => {
          const stalled = backendWrote === last;
          last = backendWrote;
          return stalled;
        },
        10000,
        'backend stalled by backpressure',
        200,
      );
      assert.ok(backendWrote < total, 'backpressure must stop the backend before it wrote everything');
      const during = rssKiB(pid);
      assert.ok(during - before < 32 * 1024, `l4lb RSS grew by ${during - before} KiB while the client did not read`);
      let got = 0;
      c.on('data', (d: Buffer) => (got += d.length));
      c.resume();
      await withTimeout(new Promise((r) => c.on('end', r)), 30000, 'client end');
      assert.equal(got, total);
      c.destroy();
    });
  });

  describe(`tcp [${mode} pump] connect failures and retries`, () => {
    let a: TestServer;
    let hole: Blackhole;
    let dead: number;
    let lb: L4lbProcess;

    before(async () => {
      a = await startTaggedServer('A');
      hole = await startBlackhole();
      dead = await deadPort();
      lb = new L4lbProcess(
        G(mode, 'connection_log = true') +
          listenerToml('refused', 'refused', 'connect_timeout = "300ms"') +
          poolToml('refused', 'round-robin', [`{ address = "127.0.0.1:${dead}" }`, `{ address = "127.0.0.1:${a.port}" }`], 'retries = 2') +
          listenerToml('timeout', 'timeout', 'connect_timeout = "300ms"') +
          poolToml('timeout', 'round-robin', [`{ address = "127.0.0.1:${hole.port}" }`, `{ address = "127.0.0.1:${a.port}" }`], 'retries = 1') +
          listenerToml('allbad', 'allbad', 'connect_timeout = "300ms"') +
          poolToml('allbad', 'round-robin', [`{ address = "127.0.0.1:${dead}" }`], 'retries = 2'),
      );
    });
    after(async () => {
      await lb.stop();
      await a.close();
      await hole.close();
    });

    test('a refused backend is retried on another backend; the client never sees it', async () => {
      const port = await lb.port('refused');
      for (let i = 0; i < 6; i++) {
        const c = await connect(port);
        assert.equal(await readLine(c), 'A');
        c.destroy();
      }
    });

    test('a connect that times out is retried on another backend', async () => {
      const port = await lb.port('timeout');
      for (let i = 0; i < 2; i++) {
        const c = await connect(port);
        const t0 = Date.now();
        assert.equal(await readLine(c, 5000), 'A');
        c.destroy();
        if (i === 0) assert.ok(Date.now() - t0 < 4000);
      }
      await lb.waitForLog((l) => l.msg === 'connection closed' && l.listener === 'timeout', 5000);
    });

    test('when every backend fails the client is closed promptly', async () => {
      const port = await lb.port('allbad');
      const c = await connect(port);
      const how = await endOf(c, 5000);
      assert.ok(how === 'end' || how === 'close' || how === 'reset');
      const line = await lb.waitForLog((l) => l.msg === 'connection closed' && l.listener === 'allbad', 5000);
      assert.equal(line.reason, 'connect_failed');
    });
  });

  describe(`tcp [${mode} pump] idle timeout, limits and ACLs`, () => {
    let echo: TestServer;
    let lb: L4lbProcess;

    before(async () => {
      echo = await startEchoServer();
      const pool = poolToml('p', 'round-robin', [`{ address = "127.0.0.1:${echo.port}" }`]);
      lb = new L4lbProcess(
        G(mode) +
        listenerToml('idle', 'p', 'idle_timeout = "300ms"') +
          listenerToml('limit', 'p', 'max_connections = 2') +
          listenerToml('persource', 'p', 'max_connections_per_source = 1') +
          listenerToml('deny', 'p', 'deny = ["127.0.0.0/8"]') +
          listenerToml('allow', 'p', 'allow = ["10.0.0.0/8"]') +
          listenerToml('allowed', 'p', 'allow = ["127.0.0.1/32", "::1/128"]\ndeny = ["10.9.0.0/16"]') +
          pool,
      );
    });
    after(async () => {
      await lb.stop();
      await echo.close();
    });

    test('a connection idle for idle_timeout is closed; an active one is not', async () => {
      const port = await lb.port('idle');
      const idle = await connect(port);
      const active = await connect(port);
      const t0 = Date.now();
      // Keep `active` busy with an echo every 100 ms while `idle` stays silent.
      let echoes = 0;
      active.on('data', () => echoes++);
      const ticker = setInterval(() => active.write('x'), 100);
      try {
        await endOf(idle, 5000);
        const waited = Date.now() - t0;
        assert.ok(waited >= 250, `closed after ${waited} ms, before the idle timeout`);
        assert.ok(!active.destroyed && active.readable, 'the active connection must stay open');
        assert.ok(echoes > 0);
      } finally {
        clearInterval(ticker);
        active.destroy();
      }
    });

    test('max_connections: the connection over the limit is closed at once', async () => {
      const port = await lb.port('limit');
      const c1 = await connect(port);
      const c2 = await connect(port);
      c1.write('1');
      c2.write('2');
      await readBytes(c1, 1);
      await readBytes(c2, 1);
      const c3 = await connect(port);
      assert.notEqual(await endOf(c3, 5000), null);
      c1.destroy();
      await waitFor(async () => {
        const c4 = await connect(port);
        c4.write('4');
        const ok = await readBytes(c4, 1, 1000).then(
          () => true,
          () => false,
        );
        c4.destroy();
        return ok;
      }, 5000, 'a slot frees up after a connection closes');
      c2.destroy();
    });

    test('max_connections_per_source: a second connection from the same address is closed', async () => {
      const port = await lb.port('persource');
      const c1 = await connect(port);
      c1.write('1');
      await readBytes(c1, 1);
      const c2 = await connect(port);
      assert.notEqual(await endOf(c2, 5000), null);
      c1.destroy();
    });

    test('deny and allow CIDRs refuse clients; allowed clients pass', async () => {
      for (const name of ['deny', 'allow']) {
        const c = await connect(await lb.port(name));
        c.write('x');
        const got = await readAll(c, 5000, true);
        assert.equal(got.length, 0, `${name}: refused client must get no bytes`);
      }
      const c = await connect(await lb.port('allowed'));
      c.write('y');
      assert.equal((await readBytes(c, 1)).toString(), 'y');
      c.destroy();
    });
  });

  describe(`tcp [${mode} pump] graceful drain on SIGTERM`, () => {
    test('open connections finish, new ones are refused, exit 0', async () => {
      const echo = await startEchoServer();
      const lb = new L4lbProcess(G(mode) + listenerToml('d', 'p') + poolToml('p', 'round-robin', [`{ address = "127.0.0.1:${echo.port}" }`]));
      try {
        const port = await lb.port('d');
        const c = await connect(port);
        c.write('a');
        await readBytes(c, 1);
        lb.signal('SIGTERM');
        await lb.waitForLog((l) => l.msg === 'draining', 5000);
        // The open connection still works.
        c.write('b');
        assert.equal((await readBytes(c, 1)).toString(), 'b');
        // New connections are refused.
        await assert.rejects(connect(port));
        c.end();
        assert.equal(await lb.waitExit(10000), 0);
      } finally {
        await lb.stop();
        await echo.close();
      }
    });

    test('connections still open at drain_timeout are closed, exit 0', async () => {
      const echo = await startEchoServer();
      const lb = new L4lbProcess(
        G(mode, 'drain_timeout = "300ms"') + listenerToml('d', 'p') + poolToml('p', 'round-robin', [`{ address = "127.0.0.1:${echo.port}" }`]),
      );
      try {
        const c = await connect(await lb.port('d'));
        c.write('a');
        await readBytes(c, 1);
        const ended = endOf(c, 10000);
        lb.signal('SIGTERM');
        assert.notEqual(await ended, null);
        assert.equal(await lb.waitExit(10000), 0);
      } finally {
        await lb.stop();
        await echo.close();
      }
    });

    test('a second signal exits at once with status 1', async () => {
      const echo = await startEchoServer();
      const lb = new L4lbProcess(G(mode) + listenerToml('d', 'p') + poolToml('p', 'round-robin', [`{ address = "127.0.0.1:${echo.port}" }`]));
      try {
        const c = await connect(await lb.port('d'));
        c.write('a');
        await readBytes(c, 1);
        lb.signal('SIGTERM');
        await lb.waitForLog((l) => l.msg === 'draining', 5000);
        lb.signal('SIGINT');
        assert.equal(await lb.waitExit(5000), 1);
        c.destroy();
      } finally {
        await lb.stop();
        await echo.close();
      }
    });
  });

  });
}
