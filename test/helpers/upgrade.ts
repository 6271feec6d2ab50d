/**
 * Upgrade tests (SPEC §8.5): l4lb started through the real CLI, whose
 * process is replaced by upgrades. The new process inherits the first one's
 * stdout, so every process's log lines arrive on the same pipe; the pid
 * serving now is read from `upgrade handed over`.
 */
import net from 'node:net';
import dgram from 'node:dgram';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { CLI, L4lbProcess, type LogLine } from './l4lb';
import assert from 'node:assert/strict';
import { connect, waitFor, withTimeout } from './net';

export class UpgradingL4lb {
  readonly proc: L4lbProcess;
  /** Pids that served, oldest first. */
  readonly pids: number[] = [];

  constructor(config: string, env: NodeJS.ProcessEnv = {}, launcher?: (configPath: string) => [string, string[]]) {
    this.proc = new L4lbProcess(config, launcher !== undefined ? { env, launcher } : { env });
    if (this.proc.child.pid !== undefined) this.pids.push(this.proc.child.pid);
  }

  get pid(): number {
    return this.pids[this.pids.length - 1] ?? 0;
  }

  /** The `n`-th (0-based) log line matching `pred`, waited for (bounded) even after the first process exited. */
  async log(pred: (l: LogLine) => boolean, timeoutMs = 15000, what = 'log line', n = 0): Promise<LogLine> {
    let hit: LogLine | undefined;
    await waitFor(
      () => {
        hit = this.proc.logs.filter(pred)[n];
        return hit !== undefined;
      },
      timeoutMs,
      `${what}; stderr: ${this.proc.stderr}`,
    );
    return hit as LogLine;
  }

  count(msg: string): number {
    return this.proc.logs.filter((l) => l.msg === msg).length;
  }

  /**
   * SIGUSR2 to the serving process (or `trigger`, e.g. the admin API);
   * resolves with the `upgrade handed over` line and the time it took.
   */
  async upgrade(timeoutMs = 20000, trigger?: () => Promise<void>): Promise<{ line: LogLine; ms: number }> {
    const before = this.count('upgrade handed over');
    const t0 = Date.now();
    if (trigger !== undefined) await trigger();
    else process.kill(this.pid, 'SIGUSR2');
    const line = await this.log((l) => l.msg === 'upgrade handed over', timeoutMs, 'upgrade handed over', before);
    this.pids.push(line.pid as number);
    await this.log((l) => l.msg === 'upgrade taken over', timeoutMs, 'upgrade taken over', before);
    return { line, ms: Date.now() - t0 };
  }

  /**
   * Waits (bounded) until `pid` is gone; on a timeout the error says what
   * the process was doing: its state, its threads' kernel wait channels and
   * its last log lines.
   */
  async waitGone(pid: number, timeoutMs: number, what = `pid ${pid} gone`): Promise<void> {
    try {
      await waitFor(() => !alive(pid), timeoutMs, what);
    } catch (err) {
      const lines = this.proc.logs.filter((l) => l.pid === pid).slice(-8).map((l) => JSON.stringify(l));
      throw new Error(`${(err as Error).message}; state ${processState(pid)}; threads ${threadWaits(pid)}; last log lines:\n${lines.join('\n')}`);
    }
  }

  /** Stops every process this test started (the serving one by SIGTERM, SIGKILL if it lingers). */
  async stop(): Promise<void> {
    // Every process an upgrade started, also those a failed test never got to record.
    const started = this.proc.logs.filter((l) => (l.msg === 'upgrade handed over' || l.msg === 'starting') && typeof l.pid === 'number').map((l) => l.pid as number);
    for (const pid of new Set([...this.pids.slice(1), ...started])) {
      if (pid === this.proc.child.pid) continue;
      if (!alive(pid)) continue;
      try {
        process.kill(pid, 'SIGTERM');
        await waitFor(() => !alive(pid), 10000, `pid ${pid} exit`);
      } catch {
        if (alive(pid)) process.kill(pid, 'SIGKILL');
      }
    }
    await this.proc.stop();
  }
}

/**
 * True while `pid` runs. A process that exited but was not reaped yet (a
 * zombie: a process an upgrade started outlives its parent, the old
 * process, and is then its reaper's, which on some machines never reaps)
 * has exited: it counts as gone, and so does one reaped between the two
 * reads below.
 */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A stat that cannot be read right after kill(0) succeeded: the zombie
  // was reaped in between ('?'), so it is gone too.
  const state = processState(pid);
  return state !== 'Z' && state !== '?';
}

/** Each thread of `pid`: its name, state and kernel wait channel (for a diagnostic). */
function threadWaits(pid: number): string {
  try {
    return readdirSync(`/proc/${pid}/task`)
      .map((tid) => {
        const read = (f: string): string => {
          try {
            return readFileSync(`/proc/${pid}/task/${tid}/${f}`, 'utf8').trim();
          } catch {
            return '?';
          }
        };
        return `${read('comm')}:${processState(Number(tid))}:${read('wchan')}`;
      })
      .join(' ');
  } catch {
    return '?';
  }
}

/** The state letter of /proc/<pid>/stat (R, S, D, Z...), or '?' when it cannot be read. */
export function processState(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // pid (comm) state ...: comm may hold spaces and parentheses.
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) || '?';
  } catch {
    return '?';
  }
}

/**
 * A connection that pings through an echo backend: one line per round trip,
 * each echoed line checked; `maxGapMs` is the longest wait for an echo.
 */
export class Pinger {
  readonly s: net.Socket;
  rounds = 0;
  maxGapMs = 0;
  /** When (Date.now()) the longest wait began. */
  maxGapAt = 0;
  error: string | null = null;
  private running = true;
  private done: Promise<void>;

  constructor(s: net.Socket, id: number, everyMs: number) {
    this.s = s;
    s.setNoDelay(true);
    let buf = '';
    let want = '';
    let sentAt = 0;
    let waiter: (() => void) | null = null;
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      buf += d;
      if (buf.length >= want.length && waiter !== null) {
        const w = waiter;
        waiter = null;
        w();
      }
    });
    s.on('error', (e) => (this.error ??= `socket error ${e.message}`));
    s.on('close', () => {
      if (this.running) this.error ??= 'closed';
      waiter?.();
    });
    this.done = (async () => {
      while (this.running && this.error === null) {
        want = `ping ${id} ${this.rounds}\n`;
        buf = '';
        sentAt = Date.now();
        s.write(want);
        await new Promise<void>((r) => {
          waiter = r;
          if (buf.length >= want.length) r();
        });
        if (this.error !== null) break;
        if (buf !== want) {
          this.error = `echo mismatch: ${JSON.stringify(buf)} != ${JSON.stringify(want)}`;
          break;
        }
        if (Date.now() - sentAt > this.maxGapMs) {
          this.maxGapMs = Date.now() - sentAt;
          this.maxGapAt = sentAt;
        }
        this.rounds++;
        await new Promise((r) => setTimeout(r, everyMs));
      }
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    await withTimeout(this.done, 10000, 'pinger stop');
    this.s.destroy();
  }
}

/**
 * A bulk stream through an echo backend: writes pseudo-random bytes in
 * 16 KiB chunks every `everyMs` (with backpressure) until stop(), reads the
 * echo, and compares sha256 of what was sent and what came back.
 */
export class BulkStream {
  readonly s: net.Socket;
  received = 0;
  written = 0;
  private stopping = false;
  private readonly sent = createHash('sha256');
  private readonly got = createHash('sha256');
  readonly finished: Promise<{ sent: string; got: string; bytes: number; error: string | null }>;

  constructor(s: net.Socket, seed: number, everyMs = 5) {
    this.s = s;
    let error: string | null = null;
    s.on('error', (e) => (error ??= `socket error ${e.message}`));
    s.on('data', (d: Buffer) => {
      this.received += d.length;
      this.got.update(d);
    });
    const ended = new Promise<void>((resolve) => {
      s.on('end', () => resolve());
      s.on('close', () => resolve());
    });
    this.finished = (async () => {
      let x = seed >>> 0 || 1;
      while (!this.stopping && error === null) {
        const n = 16384;
        const chunk = Buffer.allocUnsafe(n);
        for (let i = 0; i < n; i++) {
          x ^= x << 13;
          x ^= x >>> 17;
          x ^= x << 5;
          chunk[i] = x & 0xff;
        }
        this.sent.update(chunk);
        this.written += n;
        if (!s.write(chunk)) await Promise.race([once(s, 'drain'), once(s, 'close')]);
        await new Promise((r) => setTimeout(r, everyMs));
      }
      s.end();
      await withTimeout(ended, 30000, 'bulk stream echo end');
      return { sent: this.sent.digest('hex'), got: this.got.digest('hex'), bytes: this.written, error };
    })();
  }

  /** Ends the stream (FIN) after the chunk being written. */
  stop(): void {
    this.stopping = true;
  }
}

/** A UDP client bound to one port (one session through l4lb) asking and checking echoes. */
export async function udpPinger(port: number): Promise<{ s: dgram.Socket; ask(msg: string): Promise<string>; close(): void }> {
  const s = dgram.createSocket('udp4');
  s.bind(0, '127.0.0.1');
  await once(s, 'listening');
  const waiting: ((b: string) => void)[] = [];
  s.on('message', (m) => waiting.shift()?.(m.toString()));
  return {
    s,
    ask: (msg) => withTimeout(new Promise<string>((resolve) => {
      waiting.push(resolve);
      s.send(msg, port, '127.0.0.1');
    }), 3000, `udp echo of ${msg}`),
    close: () => s.close(),
  };
}

/** A UDP echo backend that records the source ports it sees (l4lb's upstream sockets). */
export async function udpEchoBackend(): Promise<{ port: number; sources: Set<number>; close(): void }> {
  const s = dgram.createSocket('udp4');
  const sources = new Set<number>();
  s.on('message', (m, r) => {
    sources.add(r.port);
    s.send(m, r.port, r.address);
  });
  s.bind(0, '127.0.0.1');
  await once(s, 'listening');
  return { port: s.address().port, sources, close: () => s.close() };
}

/** One echo round trip on an open connection (through an echo backend). */
export async function roundTrip(s: net.Socket, text: string, timeoutMs = 5000): Promise<void> {
  if (s.readableEnded || s.destroyed) throw new Error('connection already ended');
  const got = new Promise<string>((resolve, reject) => {
    let buf = '';
    const onData = (d: Buffer): void => {
      buf += d.toString();
      if (buf.length >= text.length) {
        s.removeListener('data', onData);
        resolve(buf);
      }
    };
    s.on('data', onData);
    s.once('close', () => reject(new Error('closed')));
    s.once('end', () => reject(new Error('ended')));
  });
  s.write(text);
  assert.equal(await withTimeout(got, timeoutMs, `echo of ${text.trim()}`), text);
}

/** A fresh connection: connect, one round trip, close. */
export async function oneShot(port: number, i: number): Promise<void> {
  const s = await connect(port);
  try {
    await roundTrip(s, `shot ${i}\n`);
  } finally {
    s.destroy();
  }
}

/**
 * A steady rate of new connections (about 100 a second, at most 20 at a
 * time, each one round trip) until stop(); counts what failed.
 */
export class SteadyLoad {
  started = 0;
  failed = 0;
  readonly errors: string[] = [];
  private running = true;
  private readonly done: Promise<void>;

  constructor(port: number) {
    this.done = (async () => {
      const inflight = new Set<Promise<void>>();
      while (this.running && this.started < 5000) {
        const i = this.started++;
        const p = oneShot(port, i).catch((e: unknown) => {
          this.failed++;
          if (this.errors.length < 5) this.errors.push(String((e as Error).message));
        });
        inflight.add(p);
        void p.finally(() => inflight.delete(p));
        if (inflight.size >= 20) await Promise.race(inflight);
        await new Promise((r) => setTimeout(r, 10));
      }
      await Promise.all(inflight);
    })();
  }

  /** Stops, then checks that none of the connections failed (and that the load really ran). */
  async stopAndCheck(t: { diagnostic(msg: string): void }, during: string): Promise<void> {
    await this.stop();
    t.diagnostic(`${this.started} connections opened during ${during}, ${this.failed} failed`);
    assert.equal(this.failed, 0, this.errors.join('; '));
    assert.ok(this.started > 90, `only ${this.started} connections opened`);
  }

  /** Stops starting connections; resolves once those under way are done. */
  async stop(): Promise<void> {
    this.running = false;
    await withTimeout(this.done, 20000, 'load end');
  }
}

/** The connections an l4lb lists (GET /api/v1/connections). */
export async function listConnections(admin: number): Promise<{ protocol: string; client: string }[]> {
  const r = await fetch(`http://127.0.0.1:${admin}/api/v1/connections?limit=10000`);
  assert.equal(r.status, 200);
  return ((await r.json()) as { connections: { protocol: string; client: string }[] }).connections;
}

/**
 * The traffic an upgrade must carry, through an l4lb whose listener `tcp`
 * goes to an echo backend and `udp` to `uecho`: `long` long-lived
 * connections (the first 10 pinging every 5 ms, the others idle after one
 * round trip), `bulk` bulk streams some way into their transfer, and `udp`
 * UDP sessions. `verify()` checks, after the upgrade, that all of it went
 * on unchanged and that the new process lists the same connections.
 */
export class UpgradeTraffic {
  readonly pingers: Pinger[] = [];
  readonly idle: net.Socket[] = [];
  readonly bulks: BulkStream[] = [];
  udp: Awaited<ReturnType<typeof udpPinger>>[] = [];
  udpSources = new Set<number>();
  before: { protocol: string; client: string }[] = [];

  private constructor(private readonly uecho: { sources: Set<number> }) {}

  static async start(opts: { port: number; uport: number; admin: number; uecho: { sources: Set<number> }; long: number; bulk: number; udp: number; seed: number; cleanup: (() => Promise<void> | void)[] }): Promise<UpgradeTraffic> {
    const t = new UpgradeTraffic(opts.uecho);
    for (let i = 0; i < opts.long; i++) {
      const s = await connect(opts.port);
      opts.cleanup.push(() => void s.destroy());
      if (i < 10) t.pingers.push(new Pinger(s, i, 5));
      else t.idle.push(s);
    }
    await Promise.all(t.idle.map((s, i) => roundTrip(s, `hello ${i}\n`)));
    t.udp = await Promise.all(Array.from({ length: opts.udp }, () => udpPinger(opts.uport)));
    opts.cleanup.push(() => t.udp.forEach((u) => u.close()));
    for (const [i, u] of t.udp.entries()) assert.equal(await u.ask(`u${i} a`), `u${i} a`);
    t.udpSources = new Set(opts.uecho.sources);
    for (let i = 0; i < opts.bulk; i++) {
      const s = await connect(opts.port);
      opts.cleanup.push(() => void s.destroy());
      t.bulks.push(new BulkStream(s, opts.seed + i));
    }
    await waitFor(() => t.bulks.every((b) => b.received > 64 * 1024), 20000, 'bulk streams under way');
    t.before = await listConnections(opts.admin);
    assert.equal(t.before.filter((c) => c.protocol === 'tcp').length, opts.long + opts.bulk);
    return t;
  }

  /** After the upgrade: everything went on, byte for byte; resolves with the longest wait of a pinging connection (ms). */
  async verify(admin: number): Promise<number> {
    const at = this.bulks.map((b) => b.received);
    await waitFor(() => this.bulks.every((b, i) => b.received > (at[i] as number) + 256 * 1024), 20000, 'bulk streams going on after the upgrade');
    const key = (c: { protocol: string; client: string }): string => `${c.protocol} ${c.client}`;
    const now = await listConnections(admin);
    assert.equal(now.filter((c) => c.protocol === 'tcp').length, this.before.filter((c) => c.protocol === 'tcp').length, 'the new process lists as many connections as were handed over');
    const listed = new Set(now.map(key));
    for (const c of this.before) assert.ok(listed.has(key(c)), `${key(c)} listed by the new process`);
    for (const b of this.bulks) b.stop();
    const results = await Promise.all(this.bulks.map((b) => b.finished));
    for (const [i, r] of results.entries()) {
      assert.equal(r.error, null, `bulk ${i}: ${r.error}`);
      assert.equal(r.got, r.sent, `bulk ${i}: sha256 of the echo differs from what was sent`);
    }
    await Promise.all(this.idle.map((s, i) => roundTrip(s, `again ${i}\n`)));
    for (const [i, u] of this.udp.entries()) assert.equal(await u.ask(`u${i} b`), `u${i} b`);
    // The same upstream sockets: the backend saw no new source port.
    assert.deepEqual([...this.uecho.sources].sort(), [...this.udpSources].sort(), 'the backend saw no new UDP source port');
    const maxGap = Math.max(...this.pingers.map((p) => p.maxGapMs));
    for (const p of this.pingers) assert.equal(p.error, null);
    await Promise.all(this.pingers.map((p) => p.stop()));
    return maxGap;
  }
}

/**
 * A launcher (for UpgradingL4lb) that starts l4lb socket-activated, as
 * systemd would: python3 binds a listening socket on 127.0.0.1 port 0, puts
 * it at fd 3 and execs l4lb with LISTEN_FDS=1, LISTEN_PID and
 * LISTEN_FDNAMES=<listener>.
 */
export function socketActivated(listener: string): (configPath: string) => [string, string[]] {
  const py = [
    'import os, socket, sys',
    's = socket.socket()',
    's.bind(("127.0.0.1", 0))',
    's.listen(64)',
    'if s.fileno() != 3:',
    '    os.dup2(s.fileno(), 3)',
    'os.set_inheritable(3, True)',
    `env = dict(os.environ, LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="${listener}")`,
    'os.execve(sys.argv[1], [sys.argv[1], sys.argv[2], "-c", sys.argv[3]], env)',
  ].join('\n');
  return (configPath) => ['python3', ['-c', py, process.execPath, CLI, configPath]];
}

/**
 * After an upgrade under systemd: the new process (`pid`) sent MAINPID=pid
 * and READY=1, the old one (`oldPid`) is gone within 2 s and sent nothing
 * after that, and nobody sent STOPPING=1.
 */
export async function checkNotifiedHandover(lb: UpgradingL4lb, messages: readonly string[], oldPid: number, pid: number): Promise<void> {
  const all = (): string => messages.join(' / ');
  await waitFor(() => messages.some((m) => m.includes(`MAINPID=${pid}`) && m.includes('READY=1')) || messages.filter((m) => m.includes(`MAINPID=${pid}`)).length >= 2, 10000, `MAINPID=${pid} and READY=1; got ${all()}`);
  const first = messages.findIndex((m) => m.includes(`MAINPID=${pid}`));
  assert.ok(messages.slice(first).some((m) => m.includes('READY=1')), all());
  await lb.waitGone(oldPid, 2000, 'old process gone');
  assert.ok(!messages.slice(first).some((m) => m.includes(`MAINPID=${oldPid}`)), `the old process notified after the new one: ${all()}`);
  assert.ok(!messages.some((m) => m.includes('STOPPING=1')), 'no STOPPING=1 for an upgrade');
}
