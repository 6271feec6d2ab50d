/**
 * UDP request/response through l4lb against a direct echo backend.
 *
 *   npm run build && node dist/bench/udp.js [--seconds 5] [--sockets 64] [--window 4]
 *
 * `sockets` client sockets (each its own source port, so its own session)
 * keep `window` requests outstanding each. Reported: replies/s, p50/p99
 * latency, and l4lb's CPU-µs per reply (from /proc/<pid>/stat). l4lb is
 * pinned to CPU 0 and this process (client and backend) to CPU 1 when
 * taskset exists.
 */
import dgram from 'node:dgram';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';

const args = process.argv.slice(2);
const arg = (name: string, def: number): number => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const SECONDS = arg('seconds', 5);
const SOCKETS = arg('sockets', 64);
const WINDOW = arg('window', 4);

function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / 100;
}
const taskset = spawnSync('taskset', ['-c', '0', 'true']).status === 0;

async function echoBackend(): Promise<dgram.Socket> {
  const s = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
  s.on('message', (m, r) => s.send(m, r.port, r.address));
  s.bind(0, '127.0.0.1');
  await once(s, 'listening');
  return s;
}

/** Runs the load for SECONDS against port; returns replies and sorted latencies (µs). */
async function load(port: number): Promise<{ replies: number; lat: Float64Array }> {
  const socks: dgram.Socket[] = [];
  const lat: number[] = [];
  let replies = 0;
  const end = Date.now() + SECONDS * 1000;
  let running = true;
  const payload = Buffer.alloc(64, 0x71);
  for (let i = 0; i < SOCKETS; i++) {
    const s = dgram.createSocket('udp4');
    s.bind(0, '127.0.0.1');
    await once(s, 'listening');
    socks.push(s);
    const sent: number[] = [];
    const fire = (): void => {
      sent.push(performance.now());
      s.send(payload, port, '127.0.0.1');
    };
    s.on('message', () => {
      const t = sent.shift();
      if (t !== undefined) lat.push((performance.now() - t) * 1000);
      replies++;
      if (running) fire();
    });
    // Lost datagrams would shrink the window: top it up every 100 ms.
    const refill = setInterval(() => {
      if (!running) return clearInterval(refill);
      while (sent.length > 0 && performance.now() - (sent[0] as number) > 1000) sent.shift();
      while (sent.length < WINDOW) fire();
    }, 100);
    for (let w = 0; w < WINDOW; w++) fire();
  }
  await new Promise((r) => setTimeout(r, Math.max(0, end - Date.now())));
  running = false;
  for (const s of socks) s.close();
  const arr = Float64Array.from(lat).sort();
  return { replies, lat: arr };
}

const pct = (a: Float64Array, p: number): string => (a.length ? `${Math.round(a[Math.min(a.length - 1, Math.floor(a.length * p))] as number)} µs` : '-');

async function main(): Promise<void> {
  if (taskset) spawnSync('taskset', ['-pc', '1', String(process.pid)]);
  const be = await echoBackend();
  const bport = be.address().port;
  const dir = mkdtempSync(join(tmpdir(), 'l4lb-bench-udp-'));
  const cfg = join(dir, 'lb.toml');
  writeFileSync(
    cfg,
    `[[listeners]]\nname = "u"\nprotocol = "udp"\nbind = "127.0.0.1:0"\npool = "p"\n` +
      `[pools.p]\nalgorithm = "consistent-hash"\nbackends = [{ address = "127.0.0.1:${bport}" }]\n[pools.p.health_check]\nenabled = false\n`,
  );
  const cli = join(__dirname, '..', 'src', 'cli.js');
  const cmd = taskset ? ['taskset', '-c', '0', process.execPath, cli, '-c', cfg] : [process.execPath, cli, '-c', cfg];
  const child = spawn(cmd[0] as string, cmd.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const t0 = Date.now();
  while (!out.includes('"listening"') && Date.now() - t0 < 10000) await new Promise((r) => setTimeout(r, 20));
  const line = out.split('\n').find((l) => l.includes('"listening"'));
  if (!line) throw new Error('l4lb did not start');
  const lport = (JSON.parse(line) as { port: number }).port;
  try {
    const direct = await load(bport);
    const c0 = cpuSeconds(child.pid as number);
    const via = await load(lport);
    const cpu = cpuSeconds(child.pid as number) - c0;
    console.log(`case          replies/s   p50        p99        l4lb CPU`);
    console.log(`direct        ${String(Math.round(direct.replies / SECONDS)).padEnd(10)}  ${pct(direct.lat, 0.5).padEnd(9)}  ${pct(direct.lat, 0.99).padEnd(9)}  -`);
    console.log(
      `through l4lb  ${String(Math.round(via.replies / SECONDS)).padEnd(10)}  ${pct(via.lat, 0.5).padEnd(9)}  ${pct(via.lat, 0.99).padEnd(9)}  ${((cpu / Math.max(1, via.replies)) * 1e6).toFixed(1)} CPU-µs/reply`,
    );
    console.log(`(${SECONDS} s, ${SOCKETS} client sockets x ${WINDOW} outstanding, 64-byte datagrams; taskset: ${taskset ? 'l4lb CPU 0, load CPU 1' : 'no'})`);
  } finally {
    child.kill('SIGTERM');
    be.close();
    rmSync(dir, { recursive: true, force: true });
  }
  process.exit(0);
}

void main();
