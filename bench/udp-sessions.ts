/**
 * Memory per open UDP session: l4lb's RSS before and after N sessions (one
 * datagram each from N client addresses 127.1.x.y, sent from a raw socket —
 * needs root and python3), with the native engine (`splice = "on"`) and
 * the JavaScript path (`splice = "off"`); then every session expires and
 * the fds are counted again.
 *
 *   npm run build && node dist/bench/udp-sessions.js [--sessions 100000]
 *
 * N is capped by the fd limit l4lb can get (a session holds one socket):
 * the hard RLIMIT_NOFILE (raised with prlimit where allowed) minus the fd
 * reserve. Kernel socket memory is not in RSS (see /proc/meminfo's Slab).
 */
import dgram from 'node:dgram';
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';

const args = process.argv.slice(2);
const want = Number(args[args.indexOf('--sessions') + 1] ?? 100_000) || 100_000;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const rssKiB = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
const fds = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length;

const raise = spawnSync('prlimit', ['--nofile=120000:120000', 'true']).status === 0;
const hard = Number(/^Max open files\s+\S+\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1] ?? 0);
const limit = raise ? 120_000 : hard;
const N = Math.min(want, Math.floor((limit - Math.min(1024, limit / 16) - 500) / 1000) * 1000);

function flood(port: number, n: number): void {
  const script = `
import socket, struct, time
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for i in range(${n}):
    src = socket.inet_aton('127.%d.%d.%d' % (1 + i // 62500, (i // 250) % 250, i % 250 + 1))
    udp = struct.pack('!HHHH', 40000, ${port}, 12, 0) + b'ping'
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), i & 0xffff, 0, 64, 17, 0, src, socket.inet_aton('127.0.0.1'))
    s.sendto(ip + udp, ('127.0.0.1', 0))
    if i % 400 == 399: time.sleep(0.01)
`;
  execFileSync('python3', ['-c', script], { timeout: 120_000 });
}

async function run(splice: 'on' | 'off', backendPort: number): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'l4lb-bench-udps-'));
  const cfg = join(dir, 'lb.toml');
  writeFileSync(
    cfg,
    `[global]\nsplice = "${splice}"\ndrain_timeout = "1s"\n[admin]\nbind = "127.0.0.1:0"\n` +
      `[[listeners]]\nname = "u"\nprotocol = "udp"\nbind = "127.0.0.1:0"\npool = "p"\nidle_timeout = "15s"\n` +
      `[pools.p]\nbackends = [{ address = "127.0.0.1:${backendPort}" }]\n[pools.p.health_check]\nenabled = false\n`,
  );
  const cli = join(__dirname, '..', 'src', 'cli.js');
  const cmd = raise ? ['prlimit', `--nofile=${limit}:${limit}`, '--', process.execPath, cli, '-c', cfg] : [process.execPath, cli, '-c', cfg];
  const child = spawn(cmd[0] as string, cmd.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  try {
    const t0 = Date.now();
    while ((!out.includes('"listening"') || !out.includes('admin listening')) && Date.now() - t0 < 10_000) await sleep(20);
    const lines = out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { msg: string; port: number; listener?: string });
    const port = lines.find((l) => l.msg === 'listening' && l.listener === 'u')?.port;
    const admin = lines.find((l) => l.msg === 'admin listening')?.port;
    if (port === undefined || admin === undefined) throw new Error(`l4lb did not start: ${out}`);
    const active = async (): Promise<number> => {
      const m = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
      return Number(/^l4lb_udp_sessions_active\{listener="u"\} (\d+)/m.exec(m)?.[1] ?? -1);
    };
    const pid = child.pid as number;
    await sleep(1000);
    const fd0 = fds(pid);
    const rss0 = rssKiB(pid);
    let n = 0;
    for (let pass = 0; pass < 3 && n < N; pass++) {
      flood(port, N);
      for (let i = 0; i < 100 && (n = await active()) < N; i++) await sleep(100);
    }
    await sleep(1000);
    const rss1 = rssKiB(pid);
    const fd1 = fds(pid);
    const t = Date.now();
    while ((await active()) > 0 && Date.now() - t < 40_000) await sleep(200);
    const left = await active();
    for (let i = 0; i < 50 && fds(pid) > fd0; i++) await sleep(100);
    return `${splice === 'on' ? 'engine' : 'JS    '}  ${n} sessions: RSS +${rss1 - rss0} KiB = ${(((rss1 - rss0) * 1024) / Math.max(1, n)).toFixed(0)} bytes/session; fds ${fd0} -> ${fd1}; after expiry: ${left} sessions, ${fds(pid)} fds`;
  } finally {
    child.kill('SIGTERM');
    await once(child, 'exit');
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('needs root (raw socket)');
  const be = dgram.createSocket({ type: 'udp4', recvBufferSize: 8 << 20 });
  be.bind(0, '127.0.0.1');
  await once(be, 'listening');
  const info = spawnSync(process.execPath, ['-e', `const a=require(${JSON.stringify(join(__dirname, '..', '..', 'native', 'build', 'Release', 'l4lb_splice.node'))});console.log(a.udpInfo().sessionBytes)`], { encoding: 'utf8' }).stdout.trim();
  console.log(`engine session record: ${info} bytes (+ its flow-table entry); fd limit ${limit}${raise ? ' (raised)' : ' (hard limit, not raisable here)'}; ${N} sessions${N < want ? ` (asked ${want})` : ''}`);
  for (const mode of (process.env.MODES ?? 'on,off').split(',') as ('on' | 'off')[]) console.log(await run(mode, be.address().port));
  be.close();
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
