/**
 * Test helpers over real sockets on 127.0.0.1 port 0. Every wait is bounded.
 */
import net from 'node:net';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';

export interface TestServer {
  server: net.Server;
  port: number;
  /** Sockets accepted so far (open or closed). */
  accepted: number;
  sockets: Set<net.Socket>;
  close(): Promise<void>;
}

/** Starts a TCP server on 127.0.0.1:0 with `onSocket` for each connection. */
export async function startServer(onSocket: (s: net.Socket) => void, opts: net.ServerOpts = {}): Promise<TestServer> {
  const sockets = new Set<net.Socket>();
  const t: TestServer = {
    server: net.createServer({ allowHalfOpen: true, ...opts }, (s) => {
      t.accepted++;
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => sockets.delete(s));
      onSocket(s);
    }),
    port: 0,
    accepted: 0,
    sockets,
    close: async () => {
      for (const s of sockets) s.destroy();
      if (t.server.listening) await new Promise<void>((r) => t.server.close(() => r()));
    },
  };
  t.server.listen(0, '127.0.0.1');
  await once(t.server, 'listening');
  t.port = (t.server.address() as net.AddressInfo).port;
  return t;
}

/** An echo server: writes back everything, passes FIN on. */
export function startEchoServer(): Promise<TestServer> {
  return startServer((s) => {
    s.pipe(s);
  });
}

/** A server that writes its tag ("A\n") on connect, then echoes. */
export function startTaggedServer(tag: string): Promise<TestServer> {
  return startServer((s) => {
    s.write(`${tag}\n`);
    s.pipe(s);
  });
}

export async function connect(port: number, host = '127.0.0.1', opts: Partial<net.TcpNetConnectOpts> = {}): Promise<net.Socket> {
  const s = net.connect({ port, host, allowHalfOpen: true, ...opts });
  await withTimeout(once(s, 'connect'), 5000, `connect to ${host}:${port}`);
  return s;
}

/** Reads until EOF (or close); rejects on error unless `allowError`. */
export function readAll(s: net.Socket, timeoutMs = 20000, allowError = false): Promise<Buffer> {
  return withTimeout(
    new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      s.on('data', (c: Buffer) => chunks.push(c));
      s.on('end', () => resolve(Buffer.concat(chunks)));
      s.on('error', (e) => (allowError ? resolve(Buffer.concat(chunks)) : reject(e)));
      s.on('close', () => resolve(Buffer.concat(chunks)));
    }),
    timeoutMs,
    'readAll',
  );
}

/** Reads until `n` bytes arrived. */
export function readBytes(s: net.Socket, n: number, timeoutMs = 10000): Promise<Buffer> {
  return withTimeout(
    new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let got = 0;
      const onData = (c: Buffer): void => {
        chunks.push(c);
        got += c.length;
        if (got >= n) {
          s.removeListener('data', onData);
          resolve(Buffer.concat(chunks));
        }
      };
      s.on('data', onData);
      s.once('error', reject);
      s.once('close', () => reject(new Error(`closed after ${got} of ${n} bytes`)));
    }),
    timeoutMs,
    `readBytes(${n})`,
  );
}

/** Reads one line (without the newline). */
export function readLine(s: net.Socket, timeoutMs = 10000): Promise<string> {
  return withTimeout(
    new Promise<string>((resolve, reject) => {
      let buf = '';
      const onData = (c: Buffer): void => {
        buf += c.toString('latin1');
        const i = buf.indexOf('\n');
        if (i >= 0) {
          s.removeListener('data', onData);
          const rest = buf.slice(i + 1);
          if (rest.length > 0) s.unshift(Buffer.from(rest, 'latin1'));
          resolve(buf.slice(0, i));
        }
      };
      s.on('data', onData);
      s.once('error', reject);
    }),
    timeoutMs,
    'readLine',
  );
}

/** Resolves with how the socket ended: 'end' (FIN), 'reset' (ECONNRESET) or 'close'. */
export function endOf(s: net.Socket, timeoutMs = 10000): Promise<'end' | 'reset' | 'close'> {
  return withTimeout(
    new Promise((resolve) => {
      s.on('data', () => {});
      s.once('end', () => resolve('end'));
      s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNRESET' || e.code === 'EPIPE' ? 'reset' : 'close'));
      s.once('close', () => resolve('close'));
    }),
    timeoutMs,
    'endOf',
  );
}

export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]);
}

/** Polls `pred` every `everyMs` until true; fails after `timeoutMs`. For states no event announces. */
export async function waitFor(pred: () => boolean | Promise<boolean>, timeoutMs = 5000, what = 'condition', everyMs = 10): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await pred()) return;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Seeded PRNG (mulberry32) for reproducible random payloads and chunkings. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomBytesSeeded(n: number, rnd: () => number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i += 4) {
    const v = (rnd() * 4294967296) >>> 0;
    b[i] = v & 0xff;
    if (i + 1 < n) b[i + 1] = (v >>> 8) & 0xff;
    if (i + 2 < n) b[i + 2] = (v >>> 16) & 0xff;
    if (i + 3 < n) b[i + 3] = v >>> 24;
  }
  return b;
}

/** A port on 127.0.0.1 where nothing listens: bind port 0, note the port, close. */
export async function deadPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Resident memory of a process, in KiB. */
export function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

/** A raw backend recording what each connection sends until EOF, then answering "ok"; `next()` is the next connection's bytes. */
export async function recordingBackend(): Promise<{ server: TestServer; next(): Promise<Buffer> }> {
  const waiting: ((b: Buffer) => void)[] = [];
  const done: Buffer[] = [];
  const server = await startServer((s) => {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => {
      s.end('ok');
      const all = Buffer.concat(chunks);
      const w = waiting.shift();
      if (w) w(all);
      else done.push(all);
    });
  });
  return {
    server,
    next: () => {
      const d = done.shift();
      if (d) return Promise.resolve(d);
      return withTimeout(new Promise<Buffer>((r) => waiting.push(r)), 10000, 'backend connection');
    },
  };
}
