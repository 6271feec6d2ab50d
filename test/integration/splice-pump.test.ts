import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { spliceAvailable } from '../../src/native/addon';
import { splicePump, canSplice, spliceEngineInfo } from '../../src/tcp/splice-pump';
import type { PumpEndReason, PumpHandle } from '../../src/tcp/pump';

const avail = spliceAvailable();
const skip = avail.ok ? false : `splice addon not available: ${avail.reason}`;

interface DoneInfo {
  reason: PumpEndReason;
  bytesIn: number;
  bytesOut: number;
  calls: number;
}

interface Conn {
  client: net.Socket;
  /** The backend server's end of the proxied connection. */
  upstream: net.Socket;
  handle: PumpHandle;
  done: Promise<DoneInfo>;
  info: { calls: number };
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<T>((_, rej) => {
      t = setTimeout(() => rej(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]);
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (v: T) => void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Backend server + front proxy that splices every accepted connection. */
class Harness {
  backend!: net.Server;
  front!: net.Server;
  head: Buffer | null = null;
  notSpliced = 0;
  readonly sockets = new Set<net.Socket>();
  /** backend-side sockets by their remote (= proxy upstream local) port */
  private upstreams = new Map<number, Deferred<net.Socket>>();
  /** pump starts by client port */
  private pumps = new Map<number, Deferred<{ handle: PumpHandle; done: Promise<DoneInfo>; info: { calls: number }; upPort: number }>>();

  private slot<T>(m: Map<number, Deferred<T>>, k: number): Deferred<T> {
    let d = m.get(k);
    if (!d) {
      d = deferred<T>();
      m.set(k, d);
    }
    return d;
  }

  async start(): Promise<void> {
    this.backend = net.createServer({ allowHalfOpen: true }, (s) => {
      this.track(s);
      this.slot(this.upstreams, s.remotePort as number).resolve(s);
    });
    this.front = net.createServer({ pauseOnConnect: true, allowHalfOpen: true }, (client) => {
      const key = client.remotePort as number;
      const up = net.connect({ port: this.port(this.backend), host: '127.0.0.1', allowHalfOpen: true });
      up.pause();
      up.on('error', () => {});
      client.on('error', () => {});
      up.on('connect', () => {
        if (!canSplice(client, up)) this.notSpliced++;
        const upPort = up.localPort as number;
        const info = { calls: 0 };
        const d = deferred<DoneInfo>();
        const handle = splicePump.start(client, up, this.head, (reason, bytesIn, bytesOut) => {
          info.calls++;
          d.resolve({ reason, bytesIn, bytesOut, calls: info.calls });
        });
        this.slot(this.pumps, key).resolve({ handle, done: d.promise, info, upPort });
      });
    });
    this.backend.listen(0, '127.0.0.1');
    this.front.listen(0, '127.0.0.1');
    await Promise.all([once(this.backend, 'listening'), once(this.front, 'listening')]);
  }

  port(s: net.Server): number {
    return (s.address() as net.AddressInfo).port;
  }

  track(s: net.Socket): void {
    this.sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => this.sockets.delete(s));
  }

  /** Opens a client through the proxy (optionally sending `early` at once) and waits until it is spliced. */
  async connect(early?: Buffer): Promise<Conn> {
    const client = net.connect({ port: this.port(this.front), host: '127.0.0.1', allowHalfOpen: true });
    this.track(client);
    if (early) client.write(early);
    await withTimeout(once(client, 'connect'), 5000, 'client connect');
    const key = client.localPort as number;
    const p = await withTimeout(this.slot(this.pumps, key).promise, 5000, 'pump start');
    this.pumps.delete(key);
    const upstream = await withTimeout(this.slot(this.upstreams, p.upPort).promise, 5000, 'backend accept');
    this.upstreams.delete(p.upPort);
    return { client, upstream, handle: p.handle, done: p.done, info: p.info };
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await Promise.all([
      new Promise((r) => this.front.close(r)),
      new Promise((r) => this.backend.close(r)),
    ]);
  }
}

function sha(b: Buffer | Buffer[]): string {
  const h = createHash('sha256');
  for (const x of Array.isArray(b) ? b : [b]) h.update(x);
  return h.digest('hex');
}

/** Collects everything a socket receives until 'end'. */
function collect(s: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  return new Promise((resolve, reject) => {
    s.once('end', () => resolve(Buffer.concat(chunks)));
    s.once('error', reject);
  });
}

function errorOf(s: net.Socket): Promise<NodeJS.ErrnoException> {
  return new Promise((resolve) => s.once('error', resolve));
}

function closed(s: net.Socket): Promise<void> {
  return new Promise((resolve) => (s.destroyed && s.closed ? resolve() : s.once('close', () => resolve())));
}

function countDir(p: string): number {
  return readdirSync(p).length;
}

describe('splice pump', { skip }, () => {
  const h = new Harness();

  before(async () => {
    await h.start();
  });

  after(async () => {
    await h.close();
  });

  test('payload integrity both ways at once: 20 connections x 1 MiB each way', async () => {
    const conns = await Promise.all(Array.from({ length: 20 }, () => h.connect()));
    await Promise.all(
      conns.map(async (c) => {
        const up = randomBytes(1 << 20);
        const down = randomBytes(1 << 20);
        const gotAtBackend = collect(c.upstream);
        const gotAtClient = collect(c.client);
        c.upstream.end(down);
        c.client.end(up);
        const [b, a] = await withTimeout(Promise.all([gotAtBackend, gotAtClient]), 30000, 'transfer');
        assert.equal(sha(b), sha(up));
        assert.equal(sha(a), sha(down));
        const d = await withTimeout(c.done, 5000, 'done');
        assert.equal(d.reason, 'closed');
        assert.equal(d.bytesIn, 1 << 20);
        assert.equal(d.bytesOut, 1 << 20);
        assert.equal(c.handle.bytesIn, 1 << 20);
        assert.equal(c.handle.bytesOut, 1 << 20);
      }),
    );
    assert.equal(h.notSpliced, 0, 'every connection was spliceable');
  });

  test('half-close: client ends first, backend keeps sending', async () => {
    const c = await h.connect();
    const backendGotEnd = collect(c.upstream);
    const clientGot = collect(c.client);
    c.client.end('bye');
    assert.equal((await withTimeout(backendGotEnd, 5000, 'backend end')).toString(), 'bye');
    c.upstream.write('still ');
    c.upstream.end('talking');
    assert.equal((await withTimeout(clientGot, 5000, 'client end')).toString(), 'still talking');
    const d = await withTimeout(c.done, 5000, 'done');
    assert.deepEqual([d.reason, d.bytesIn, d.bytesOut], ['closed', 3, 13]);
  });

  test('half-close: backend ends first, client keeps sending', async () => {
    const c = await h.connect();
    const clientGot = collect(c.client);
    const backendGot = collect(c.upstream);
    c.upstream.end('server done');
    assert.equal((await withTimeout(clientGot, 5000, 'client end')).toString(), 'server done');
    c.client.write('more ');
    c.client.end('data');
    assert.equal((await withTimeout(backendGot, 5000, 'backend end')).toString(), 'more data');
    const d = await withTimeout(c.done, 5000, 'done');
    assert.deepEqual([d.reason, d.bytesIn, d.bytesOut], ['closed', 9, 11]);
  });

  for (const side of ['client', 'backend'] as const) {
    test(`reset from the ${side} reaches the other peer`, async () => {
      const c = await h.connect();
      const [resetter, peer] = side === 'client' ? [c.client, c.upstream] : [c.upstream, c.client];
      // Make sure bytes flow first.
      resetter.write('ping');
      await withTimeout(once(peer, 'data'), 5000, 'ping');
      const err = errorOf(peer);
      resetter.resetAndDestroy();
      const e = await withTimeout(err, 5000, 'peer error');
      assert.equal(e.code, 'ECONNRESET');
      const d = await withTimeout(c.done, 5000, 'done');
      assert.equal(d.reason, side === 'client' ? 'client_reset' : 'backend_reset');
    });

    test(`reset from the ${side} after its half-close, other side idle`, async () => {
      const c = await h.connect();
      const [resetter, peer] = side === 'client' ? [c.client, c.upstream] : [c.upstream, c.client];
      const peerGot = collect(peer);
      resetter.end('half');
      assert.equal((await withTimeout(peerGot, 5000, 'peer end')).toString(), 'half');
      resetter.resetAndDestroy();
      const d = await withTimeout(c.done, 5000, 'done');
      assert.equal(d.reason, side === 'client' ? 'client_reset' : 'backend_reset');
      // The idle peer (not reading after EOF) finds the reset on its next write.
      const err = errorOf(peer);
      peer.write('anyone?');
      const e = await withTimeout(err, 5000, 'peer write error');
      assert.ok(e.code === 'ECONNRESET' || e.code === 'EPIPE', `got ${e.code}`);
    });
  }

  test('head bytes arrive before any client byte and are not counted', async () => {
    const head = Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n');
    h.head = head;
    let c: Conn;
    try {
      c = await h.connect(Buffer.from('early')); // sent before the proxy connected upstream
    } finally {
      h.head = null;
    }
    const got = collect(c.upstream);
    c.client.end(' late');
    c.upstream.end();
    assert.equal((await withTimeout(got, 5000, 'backend end')).toString(), `${head.toString()}early late`);
    const d = await withTimeout(c.done, 5000, 'done');
    assert.deepEqual([d.reason, d.bytesIn, d.bytesOut], ['closed', 10, 0]);
  });

  test('abort mid-transfer resets both peers, done("aborted") once', async () => {
    const c = await h.connect();
    const chunk = randomBytes(64 * 1024);
    let stop = false;
    const pumpClient = (): void => {
      while (!stop && c.client.write(chunk));
      if (!stop) c.client.once('drain', pumpClient);
    };
    // Both peers read, so each notices the reset even with nothing left to write.
    c.upstream.resume();
    c.client.resume();
    pumpClient();
    await until(() => c.handle.bytesIn > 1 << 20, 10000, 'bytes flowing');
    const clientClosed = closed(c.client);
    const upClosed = closed(c.upstream);
    c.handle.abort();
    c.handle.abort();
    const d = await withTimeout(c.done, 5000, 'done');
    stop = true;
    assert.equal(d.reason, 'aborted');
    await withTimeout(clientClosed, 5000, 'client closed');
    // A RST sent while the peer's receive window is full may be ignored
    // (RFC 5961 sequence check); the peer then learns on its next write.
    if (!c.upstream.destroyed) c.upstream.write('x');
    await withTimeout(upClosed, 5000, 'backend peer closed');
    c.handle.abort();
    await new Promise((r) => setImmediate(r));
    assert.equal(c.info.calls, 1);
    assert.ok(d.bytesIn > 1 << 20);
  });

  test('slow backend: memory stays flat while 50 MiB wait in the kernel; all arrive after resume', async () => {
    const c = await h.connect();
    const chunk = randomBytes(1 << 20);
    const total = 50;
    const rss0 = process.memoryUsage().rss;
    let maxRss = rss0;
    let written = 0;
    let stalledSince = 0;
    const sampler = setInterval(() => {
      maxRss = Math.max(maxRss, process.memoryUsage().rss);
    }, 20);
    const writer = new Promise<void>((resolve) => {
      const go = (): void => {
        while (written < total) {
          written++;
          if (!c.client.write(chunk)) {
            stalledSince = Date.now();
            c.client.once('drain', go);
            return;
          }
        }
        c.client.end();
        resolve();
      };
      go();
    });
    try {
      // The backend never reads: the client stalls with most of the data unsent.
      await until(() => stalledSince > 0 && Date.now() - stalledSince > 500 && written < total, 10000, 'writer stalled');
      maxRss = Math.max(maxRss, process.memoryUsage().rss);
      const live = c.handle.bytesIn;
      assert.ok(live > 0 && live < total * (1 << 20), `live bytesIn ${live}`);
      assert.ok(maxRss - rss0 < 20 * (1 << 20), `rss grew by ${((maxRss - rss0) / 1048576).toFixed(1)} MiB`);
      // From here this process is also the reader: its own 64 KiB read
      // buffers would show in its RSS, so memory is judged on the stall above.
      clearInterval(sampler);
      const hash = createHash('sha256');
      let got = 0;
      c.upstream.on('data', (b: Buffer) => {
        got += b.length;
        hash.update(b);
      });
      const ended = new Promise<void>((r) => c.upstream.once('end', () => r()));
      c.upstream.resume();
      await withTimeout(Promise.all([writer, ended]), 30000, 'all bytes');
      assert.equal(got, total * (1 << 20));
      const want = createHash('sha256');
      for (let i = 0; i < total; i++) want.update(chunk);
      assert.equal(hash.digest('hex'), want.digest('hex'));
      c.upstream.end();
      const d = await withTimeout(c.done, 5000, 'done');
      assert.deepEqual([d.reason, d.bytesIn, d.bytesOut], ['closed', total * (1 << 20), 0]);
    } finally {
      clearInterval(sampler);
    }
  });

  test('1,000 concurrent connections: no fd leak, no thread leak', async () => {
    // The engine's threads exist already (earlier tests); settle first.
    await new Promise((r) => setImmediate(r));
    // Empty pipes kept for reuse hold 2 fds each; they are not a leak.
    const fdsNotPooled = (): number => countDir('/proc/self/fd') - 2 * spliceEngineInfo().pooledPipes;
    const fd0 = fdsNotPooled();
    const task0 = countDir('/proc/self/task');
    const n = 1000;
    const conns = await Promise.all(Array.from({ length: n }, () => h.connect()));
    const peakFds = fdsNotPooled();
    assert.ok(peakFds > fd0 + n, `fds in use while open: ${peakFds - fd0}`);
    // Per idle connection: the test's client and backend-side sockets plus
    // the addon's two dups. Pipes are taken only while bytes are in flight.
    assert.ok(peakFds - fd0 <= 4 * n + 16, `idle spliced connections hold no pipes: ${peakFds - fd0} fds for ${n}`);
    await Promise.all(
      conns.map(async (c, i) => {
        const msg = Buffer.from(`hello ${i}`);
        const atBackend = collect(c.upstream);
        const atClient = collect(c.client);
        c.client.end(msg);
        assert.equal((await withTimeout(atBackend, 20000, 'backend end')).toString(), msg.toString());
        c.upstream.end(msg);
        assert.equal((await withTimeout(atClient, 20000, 'client end')).toString(), msg.toString());
        const d = await withTimeout(c.done, 20000, 'done');
        assert.equal(d.reason, 'closed');
        await Promise.all([closed(c.client), closed(c.upstream)]);
      }),
    );
    await until(() => fdsNotPooled() <= fd0, 5000, `fds back to ${fd0} (now ${fdsNotPooled()})`);
    assert.ok(spliceEngineInfo().pooledPipes <= 256, 'the pipe pool is bounded');
    assert.equal(countDir('/proc/self/task'), task0);
  });

  test('malloc tuning: applied on glibc, and an operator\'s MALLOC_TRIM_THRESHOLD_ wins', () => {
    const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
    const glibc = typeof header?.glibcVersionRuntime === 'string';
    const addonJs = join(__dirname, '..', '..', 'src', 'native', 'addon.js');
    const run = (env: NodeJS.ProcessEnv): string =>
      spawnSync(process.execPath, ['-e', `process.stdout.write(String(require(${JSON.stringify(addonJs)}).tuneMalloc()))`], {
        env: { ...process.env, ...env },
        encoding: 'utf8',
        timeout: 10000,
      }).stdout;
    assert.equal(run({}), String(glibc));
    assert.equal(run({ MALLOC_TRIM_THRESHOLD_: '1048576' }), 'false');
    assert.equal(run({ L4LB_NO_NATIVE: '1' }), 'false');
  });

  test('the process exits by itself when idle, and stays alive while a spliced connection lives', async () => {
    const script = join(__dirname, 'fixtures', 'splice-child.js');
    const child = spawn(process.execPath, [script, String(h.port(h.backend))], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    const lines = new Map<string, Deferred<string>>();
    const waitFor = (prefix: string): Promise<string> => {
      const d = deferred<string>();
      lines.set(prefix, d);
      const m = out.split('\n').find((l) => l.startsWith(prefix));
      if (m !== undefined) d.resolve(m);
      return d.promise;
    };
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (t: string) => {
      out += t;
      for (const l of out.split('\n')) for (const [p, d] of lines) if (l.startsWith(p)) d.resolve(l);
    });
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    let childExited = false;
    void exited.then(() => (childExited = true));
    try {
      const port = Number((await withTimeout(waitFor('port '), 10000, 'child port')).slice(5));
      const client = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      h.track(client);
      await once(client, 'connect');
      await withTimeout(waitFor('spliced'), 5000, 'child spliced');
      // Its server is closed, only the spliced connection is left: it must stay alive and forward.
      await new Promise((r) => setTimeout(r, 300)); // a non-event: give it time to (wrongly) exit
      assert.equal(childExited, false, 'child exited while a spliced connection was open');
      const echoed = collect(client);
      client.end('via child');
      const upstream = await withTimeout(
        (async () => {
          for (;;) {
            const s = [...h.sockets].find((x) => x !== client && x.remotePort !== undefined && x.localPort === h.port(h.backend) && !x.readableEnded);
            if (s) return s;
            await new Promise((r) => setTimeout(r, 10));
          }
        })(),
        5000,
        'child upstream',
      );
      const got = await withTimeout(collect(upstream), 5000, 'backend got');
      assert.equal(got.toString(), 'via child');
      upstream.end('back');
      assert.equal((await withTimeout(echoed, 5000, 'client got')).toString(), 'back');
      assert.equal(await withTimeout(waitFor('done '), 5000, 'child done'), 'done closed');
      assert.equal(await withTimeout(exited, 5000, 'child exits by itself'), 0);
    } finally {
      if (!childExited) child.kill('SIGKILL');
    }
  });
});

