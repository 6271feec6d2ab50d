/**
 * First TCP benchmark: throughput and new connections per second through
 * l4lb against a direct connection to the same backend.
 *
 *   npm run build && node dist/bench/tcp.js [--seconds 5] [--pump js|auto]
 *
 * l4lb runs as its own process (pinned to CPU 0 with taskset when present);
 * this process is the load generator and the backend (pinned to CPU 1).
 * Reported: Gbit/s and l4lb CPU-seconds per GB (bulk), connections/s and l4lb
 * CPU-µs per connection (short connections). CPU time is read from
 * /proc/<pid>/stat, the stable figure on a shared machine.
 */
import net from 'node:net';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const args = process.argv.slice(2);
const arg = (name: string, def: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? (args[i + 1] as string) : def;
};
const SECONDS = Number(arg('seconds', '5'));
const PUMP = arg('pump', 'off'); // splice = "off" | "auto"
const WORKERS = Number(arg('workers', '1'));
const PIN = arg('pin', 'yes') === 'yes';
const CLK_TCK = 100;

function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  // utime + stime, plus cutime + cstime? No: workers are alive; add their own stat.
  let t = (Number(rest[11]) + Number(rest[12])) / CLK_TCK;
  for (const child of childPids(pid)) t += cpuSeconds(child);
  return t;
}

/** Child processes of pid (the data-plane workers when workers > 1). */
function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function hasTaskset(): boolean {
  return spawnSync('taskset', ['-c', '0', 'true']).status === 0;
}

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return (server.address() as net.AddressInfo).port;
}

/** Sink backend for bulk: discards what it gets. Echo backend for short connections. */
async function backends(): Promise<{ sink: number; echo: number; close(): void }> {
  const sink = net.createServer((s) => {
    s.on('error', () => {});
    s.resume();
  });
  const echo = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
  return { sink: await listen(sink), echo: await listen(echo), close: () => (sink.close(), echo.close()) };
}

async function startL4lb(sink: number, echo: number): Promise<{ child: ChildProcess; ports: Map<string, number>; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'l4lb-bench-'));
  const cfg = join(dir, 'lb.toml');
  writeFileSync(
    cfg,
    `[global]\nlog_level = "info"\nsplice = "${PUMP}"\nworkers = ${WORKERS}\n` +
      `[[listeners]]\nname = "bulk"\nbind = "127.0.0.1:0"\npool = "sink"\n` +
      `[[listeners]]\nname = "short"\nbind = "127.0.0.1:0"\npool = "echo"\n` +
      `[pools.sink]\nalgorithm = "round-robin"\nbackends = [{ address = "127.0.0.1:${sink}" }]\n[pools.sink.health_check]\nenabled = false\n` +
      `[pools.echo]\nalgorithm = "round-robin"\nbackends = [{ address = "127.0.0.1:${echo}" }]\n[pools.echo.health_check]\nenabled = false\n`,
  );
  const cli = join(__dirname, '..', 'src', 'cli.js');
  const cmd = PIN && hasTaskset() ? ['taskset', '-c', '0', process.execPath, cli, '-c', cfg] : [process.execPath, cli, '-c', cfg];
  const child = spawn(cmd[0] as string, cmd.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
  const ports = new Map<string, number>();
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('l4lb did not start')), 10000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        const o = JSON.parse(line) as { msg: string; listener?: string; port?: number };
        if (o.msg === 'listening' && o.listener && o.port) ports.set(o.listener, o.port);
      } catch {
        /* not JSON */
      }
      if (ports.size === 2) {
        clearTimeout(t);
        resolve();
      }
    });
  });
  return { child, ports, dir };
}

/** Bulk: `streams` connections writing 256 KiB chunks for `seconds`. Returns bytes sent. */
async function bulk(port: number, streams: number, seconds: number): Promise<number> {
  const chunk = Buffer.alloc(256 * 1024, 0x61);
  let bytes = 0;
  const end = Date.now() + seconds * 1000;
  await Promise.all(
    Array.from(
      { length: streams },
      () =>
        new Promise<void>((resolve) => {
          const s = net.connect({ port, host: '127.0.0.1' }, () => {
            const write = (): void => {
              while (Date.now() < end) {
                bytes += chunk.length;
                if (!s.write(chunk)) {
                  s.once('drain', write);
                  return;
                }
              }
              s.end();
              resolve();
            };
            write();
          });
          s.on('error', () => resolve());
        }),
    ),
  );
  return bytes;
}

/** Short connections: `concurrency` loops of connect, 1-byte echo, close. Returns connections completed. */
async function shortConns(port: number, concurrency: number, seconds: number): Promise<number> {
  let done = 0;
  const end = Date.now() + seconds * 1000;
  const loop = async (): Promise<void> => {
    while (Date.now() < end) {
      await new Promise<void>((resolve) => {
        const s = net.connect({ port, host: '127.0.0.1' }, () => s.write('x'));
        s.once('data', () => {
          done++;
          s.destroy();
          resolve();
        });
        s.on('error', () => resolve());
      });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  return done;
}

async function main(): Promise<void> {
  if (PIN && hasTaskset()) spawnSync('taskset', ['-pc', '1', String(process.pid)]);
  const be = await backends();
  const lb = await startL4lb(be.sink, be.echo);
  const pid = lb.child.pid as number;
  const rows: string[][] = [['case', 'direct', 'through l4lb', 'l4lb CPU']];
  try {
    for (const streams of [1, 4]) {
      const d = await bulk(be.sink, streams, SECONDS);
      const c0 = cpuSeconds(pid);
      const l = await bulk(lb.ports.get('bulk') as number, streams, SECONDS);
      const cpu = cpuSeconds(pid) - c0;
      rows.push([
        `bulk ${streams} stream(s)`,
        `${((d * 8) / SECONDS / 1e9).toFixed(2)} Gbit/s`,
        `${((l * 8) / SECONDS / 1e9).toFixed(2)} Gbit/s`,
        `${(cpu / (l / 1e9)).toFixed(3)} CPU-s/GB`,
      ]);
    }
    const d = await shortConns(be.echo, 50, SECONDS);
    const c0 = cpuSeconds(pid);
    const l = await shortConns(lb.ports.get('short') as number, 50, SECONDS);
    const cpu = cpuSeconds(pid) - c0;
    rows.push(['new connections (50 loops)', `${Math.round(d / SECONDS)} conn/s`, `${Math.round(l / SECONDS)} conn/s`, `${((cpu / l) * 1e6).toFixed(0)} CPU-µs/conn`]);
  } finally {
    lb.child.kill('SIGTERM');
    be.close();
    rmSync(lb.dir, { recursive: true, force: true });
  }
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  for (const r of rows) console.log(r.map((c, i) => c.padEnd(w[i] as number)).join('  '));
  console.log(`(${SECONDS} s per case; workers = ${WORKERS}; splice = "${PUMP}"; taskset: ${PIN && hasTaskset() ? 'l4lb on CPU 0, generator on CPU 1' : 'not available'})`);
  process.exit(0);
}

void main();
