/**
 * l4lb side by side with HAProxy and nginx on one core (`npm run bench`).
 *
 *   scripts/bench-peers.sh          # once, as root: haproxy, nginx + stream, wrk, iperf3
 *   npm run bench -- [--seconds 5] [--runs 3] [--only conn,keepalive,bulk,udp,idle] [--quick]
 *                    [--balancers direct,l4lb-js,l4lb-splice,haproxy,nginx]
 *                    [--l4lb-node-options "--max-semi-space-size=4"]
 *
 * Each balancer (direct = none, l4lb with the JS pump, l4lb with the splice
 * pump, HAProxy mode tcp, nginx stream) runs pinned to CPU 0; load
 * generators and backends run on CPU 1. The balancer's own CPU time is read
 * from /proc/<pid>/stat over each measurement window, because CPU per unit
 * of work is the stable figure on a shared machine. Every case is bounded in
 * time and run in `--runs` (default 3) rounds that interleave the balancers;
 * the median is kept. What is not installed is skipped and said so. The
 * table goes to stdout and bench/results/<date>.md.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, rmSync, mkdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { once } from 'node:events';

const argv = process.argv.slice(2);
const opt = (name: string, def: string): string => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] !== undefined ? (argv[i + 1] as string) : def;
};
const QUICK = argv.includes('--quick');
const SECONDS = Number(opt('seconds', QUICK ? '2' : '5'));
const ONLY = new Set(opt('only', 'conn,keepalive,bulk,udp,idle').split(','));
const RUNS = QUICK ? 1 : Number(opt('runs', '3'));
/** Which balancers to run (default all): direct, l4lb-js, l4lb-splice, haproxy, nginx. */
const BALANCERS = new Set(opt('balancers', 'direct,l4lb-js,l4lb-splice,haproxy,nginx').split(','));
/** Node/V8 options for l4lb (as NODE_OPTIONS in the systemd unit); see bench/README.md. */
const L4LB_NODE_OPTIONS = opt('l4lb-node-options', '--max-semi-space-size=4').split(' ').filter(Boolean);
/** The fd hard limit bounds the idle case: a balancer holds 2 fds per connection (ulimit -Hn here may be below 20,000). */
const FD_LIMIT = Number(spawnSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).stdout.trim()) || 1024;
const IDLE_CONNS = Math.min(QUICK ? 2000 : 10000, Math.floor((FD_LIMIT - 3000) / 2));
const MAXCONN = IDLE_CONNS + 500;
const ROOT = join(__dirname, '..', '..');
const CLI = join(ROOT, 'dist', 'src', 'cli.js');
const work = mkdtempSync(join(tmpdir(), 'l4lb-bench-'));
const children: ChildProcess[] = [];

const has = (cmd: string): boolean => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const TASKSET = has('taskset');

/** Starts a command pinned to `cpu` with a high fd limit; killed at exit. */
function start(cpu: number, cmd: string[], opts: { stdout?: 'pipe' | 'ignore' } = {}): ChildProcess {
  const line = `ulimit -n ${FD_LIMIT} 2>/dev/null; exec ${TASKSET ? `taskset -c ${cpu} ` : ''}${cmd.map((c) => `'${c.replace(/'/g, "'\\''")}'`).join(' ')}`;
  const child = spawn('sh', ['-c', line], { stdio: ['ignore', opts.stdout ?? 'ignore', 'inherit'] });
  children.push(child);
  return child;
}

function cpuOf(pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const r = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return (Number(r[11]) + Number(r[12])) / 100;
  } catch {
    return 0;
  }
}

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitPort(port: number, timeoutMs = 10000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ port, host: '127.0.0.1' }, () => (s.destroy(), resolve(true)));
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`port ${port} did not open`);
}

/**
 * Ports for balancers and backends come from below the kernel's ephemeral
 * range, so the thousands of client connections of a run can never take one.
 */
const EPHEMERAL_LOW = Number(/^(\d+)/.exec(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8'))?.[1] ?? 32768);
let nextPort = 10000 + Math.floor(Math.random() * Math.max(1, EPHEMERAL_LOW - 12000));
const port = (): number => {
  if (nextPort >= EPHEMERAL_LOW) nextPort = 10000;
  return nextPort++;
};

interface Ports {
  http: number; // HTTP backend
  iperf: number; // iperf3 server
  udp: number; // UDP echo backend
  udpl: number; // UDP, long-lived sessions (the same echo backend)
  idle: number; // idle TCP backend
}

interface Balancer {
  name: string;
  /** The pid whose CPU and memory count (nginx: its worker). */
  pid: number;
  front: Ports;
  stop(): Promise<void>;
}

/** Backends on CPU 1: nginx for HTTP (or a Node server), iperf3 -s, a UDP echo and an idle TCP sink in a Node helper. */
async function startBackends(): Promise<Ports> {
  const p: Ports = { http: port(), iperf: port(), udp: port(), udpl: 0, idle: port() };
  p.udpl = p.udp;
  if (has('nginx')) {
    const dir = join(work, 'nginx-backend');
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      join(dir, 'nginx.conf'),
      `daemon off; master_process off; worker_processes 1; pid ${dir}/pid; error_log stderr error;\n` +
        `events { worker_connections 65536; }\n` +
        `http { access_log off; keepalive_requests 1000000; server { listen 127.0.0.1:${p.http} backlog=4096; location / { return 200 "ok\\n"; } } }\n`,
    );
    start(1, ['nginx', '-c', join(dir, 'nginx.conf'), '-p', dir]);
  } else {
    const js = `require('http').createServer((q,s)=>s.end('ok\\n')).listen(${p.http},'127.0.0.1')`;
    start(1, [process.execPath, '-e', js]);
  }
  if (has('iperf3')) start(1, ['iperf3', '-s', '-p', String(p.iperf), '-B', '127.0.0.1']);
  const helper = `
const dgram=require('dgram'),net=require('net');
const u=dgram.createSocket({type:'udp4',recvBufferSize:8<<20,sendBufferSize:8<<20});u.on('message',(m,r)=>u.send(m,r.port,r.address));u.bind(${p.udp},'127.0.0.1');
net.createServer(s=>{s.on('error',()=>{})}).listen({port:${p.idle},host:'127.0.0.1',backlog:65535});`;
  start(1, [process.execPath, '-e', helper]);
  await waitPort(p.http);
  await waitPort(p.idle);
  if (has('iperf3')) await waitPort(p.iperf);
  return p;
}

async function startL4lb(backends: Ports, splice: 'on' | 'off'): Promise<Balancer> {
  const f: Ports = { http: port(), iperf: port(), udp: port(), udpl: port(), idle: port() };
  const cfg = join(work, `l4lb-${splice}.toml`);
  const l = (name: string, proto: string, p: number, extra = ''): string => `[[listeners]]\nname = "${name}"\nprotocol = "${proto}"\nbind = "127.0.0.1:${p}"\npool = "${name}"\n${extra}\n`;
  const pool = (name: string, p: number): string => `[pools.${name}]\nalgorithm = "least-connections"\nbackends = [{ address = "127.0.0.1:${p}" }]\n[pools.${name}.health_check]\nenabled = false\n`;
  writeFileSync(
    cfg,
    `[global]\nlog_level = "warn"\nsplice = "${splice}"\n` +
      l('http', 'tcp', f.http) +
      l('iperf', 'tcp', f.iperf) +
      l('udp', 'udp', f.udp, 'udp_responses = 1') +
      `[[listeners]]\nname = "udpl"\nprotocol = "udp"\nbind = "127.0.0.1:${f.udpl}"\npool = "udp"\n` +
      l('idle', 'tcp', f.idle) +
      pool('http', backends.http) +
      pool('iperf', backends.iperf) +
      pool('udp', backends.udp) +
      pool('idle', backends.idle),
  );
  const child = start(0, [process.execPath, ...L4LB_NODE_OPTIONS, CLI, '-c', cfg]);
  await waitPort(f.http);
  return { name: `l4lb (${splice === 'on' ? 'splice' : 'JS'} pump)`, pid: child.pid as number, front: f, stop: () => stop(child) };
}

async function startHaproxy(backends: Ports): Promise<Balancer> {
  const f: Ports = { http: port(), iperf: port(), udp: 0, udpl: 0, idle: port() };
  const dir = join(work, 'haproxy');
  mkdirSync(dir, { recursive: true });
  const fe = (name: string, p: number, b: number): string =>
    `frontend f_${name}\n  bind 127.0.0.1:${p}\n  default_backend b_${name}\nbackend b_${name}\n  balance leastconn\n  server s1 127.0.0.1:${b}\n`;
  writeFileSync(
    join(dir, 'haproxy.cfg'),
    `global\n  nbthread 1\n  maxconn ${MAXCONN}\n  maxpipes 400\n  tune.maxaccept 64\ndefaults\n  mode tcp\n  option splice-request\n  option splice-response\n  maxconn ${MAXCONN}\n  timeout connect 5s\n  timeout client 1h\n  timeout server 1h\n` +
      fe('http', f.http, backends.http) +
      fe('iperf', f.iperf, backends.iperf) +
      fe('idle', f.idle, backends.idle),
  );
  const child = start(0, ['haproxy', '-f', join(dir, 'haproxy.cfg'), '-db']);
  await waitPort(f.http);
  return { name: 'HAProxy (mode tcp, splice)', pid: child.pid as number, front: f, stop: () => stop(child) };
}

async function startNginx(backends: Ports): Promise<Balancer> {
  const f: Ports = { http: port(), iperf: port(), udp: port(), udpl: port(), idle: port() };
  const dir = join(work, 'nginx-lb');
  mkdirSync(dir, { recursive: true });
  const up = (name: string, b: number): string => `upstream u_${name} { least_conn; server 127.0.0.1:${b}; }\n`;
  writeFileSync(
    join(dir, 'nginx.conf'),
    `load_module /usr/lib/nginx/modules/ngx_stream_module.so;\ndaemon off; master_process on; worker_processes 1; worker_rlimit_nofile ${FD_LIMIT}; pid ${dir}/pid; error_log stderr error;\n` +
      `events { worker_connections ${2 * MAXCONN}; }\n` +
      `stream {\n` +
      up('http', backends.http) +
      up('iperf', backends.iperf) +
      up('udp', backends.udp) +
      up('idle', backends.idle) +
      `server { listen 127.0.0.1:${f.http} backlog=4096; proxy_pass u_http; }\n` +
      `server { listen 127.0.0.1:${f.iperf}; proxy_pass u_iperf; }\n` +
      `server { listen 127.0.0.1:${f.udp} udp; proxy_pass u_udp; proxy_responses 1; proxy_timeout 10s; }\n` +
      `server { listen 127.0.0.1:${f.udpl} udp; proxy_pass u_udp; proxy_timeout 30s; }\n` +
      `server { listen 127.0.0.1:${f.idle} backlog=65535; proxy_pass u_idle; proxy_timeout 1h; }\n}\n`,
  );
  const master = start(0, ['nginx', '-c', join(dir, 'nginx.conf'), '-p', dir]);
  await waitPort(f.http);
  let worker = 0;
  for (let i = 0; i < 50 && worker === 0; i++) {
    worker = childrenOf(master.pid as number).find((c) => /nginx: worker/.test(readFileSync(`/proc/${c}/cmdline`, 'utf8'))) ?? childrenOf(master.pid as number)[0] ?? 0;
    if (worker === 0) await sleep(50);
  }
  return { name: 'nginx (stream)', pid: worker, front: f, stop: () => stop(master) };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 5000);
  await once(child, 'exit');
  clearTimeout(t);
}

/** Runs a command on CPU 1 to completion and returns its stdout. */
function runLoad(cmd: string[]): Promise<string> {
  return new Promise((resolve) => {
    const child = start(1, cmd, { stdout: 'pipe' });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    const t = setTimeout(() => child.kill('SIGKILL'), (SECONDS + 30) * 1000);
    child.on('exit', () => (clearTimeout(t), resolve(out)));
  });
}

interface Figure {
  value: number; // the throughput figure
  cpu: number; // balancer CPU per unit (µs per conn/request/reply, s per GB)
  extra?: string;
}

/** Measures `fn` on balancer `pid`: CPU seconds used by the balancer during it. */
async function measured<T>(pid: number, fn: () => Promise<T>): Promise<{ r: T; cpu: number }> {
  const c0 = pid > 0 ? cpuOf(pid) : 0;
  const r = await fn();
  return { r, cpu: pid > 0 ? cpuOf(pid) - c0 : 0 };
}

function parseWrk(out: string): { rps: number; requests: number; p50: string; p99: string } {
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0);
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
  const p50 = /\s50%\s+(\S+)/.exec(out)?.[1] ?? '-';
  const p99 = /\s99%\s+(\S+)/.exec(out)?.[1] ?? '-';
  return { rps, requests, p50, p99 };
}

async function caseConn(b: Balancer, p: number): Promise<Figure> {
  const { r, cpu } = await measured(b.pid, () => runLoad(['wrk', '-t1', '-c50', `-d${SECONDS}s`, '-H', 'Connection: close', `http://127.0.0.1:${p}/`]));
  const w = parseWrk(r);
  return { value: w.rps, cpu: (cpu / Math.max(1, w.requests)) * 1e6 };
}

async function caseKeepalive(b: Balancer, p: number): Promise<Figure> {
  const { r, cpu } = await measured(b.pid, () => runLoad(['wrk', '-t1', '-c50', `-d${SECONDS}s`, '--latency', `http://127.0.0.1:${p}/`]));
  const w = parseWrk(r);
  return { value: w.rps, cpu: (cpu / Math.max(1, w.requests)) * 1e6, extra: `p50 ${w.p50} p99 ${w.p99}` };
}

async function caseBulk(b: Balancer, p: number, streams: number): Promise<Figure> {
  const { r, cpu } = await measured(b.pid, () => runLoad(['iperf3', '-c', '127.0.0.1', '-p', String(p), '-t', String(SECONDS), '-P', String(streams), '-J']));
  let bytes = 0;
  let bps = 0;
  try {
    const j = JSON.parse(r) as { end: { sum_received: { bytes: number; bits_per_second: number } } };
    bytes = j.end.sum_received.bytes;
    bps = j.end.sum_received.bits_per_second;
  } catch {
    /* failed run */
  }
  return { value: bps / 1e9, cpu: cpu / Math.max(1e-9, bytes / 1e9) };
}

/**
 * UDP request/response from `ports` source ports with `window` outstanding
 * each (in a child on CPU 1). A session per request needs window 1: with
 * udp_responses = 1 l4lb ends a session at its first backend datagram (SPEC),
 * while nginx's proxy_responses counts per client datagram, so with several
 * outstanding per port nginx would answer them all on one session and l4lb
 * drop all but the first — not the same work.
 */
async function caseUdp(b: Balancer, p: number, ports = 64, window = 4): Promise<Figure> {
  const client = `
const dgram=require('dgram');const lat=[];let n=0;const end=Date.now()+${SECONDS}*1000;let run=true;const pl=Buffer.alloc(64,113);
let open=0;for(let i=0;i<${ports};i++){const s=dgram.createSocket('udp4');const q=[];s.bind(0,'127.0.0.1',()=>{open++;for(let w=0;w<${window};w++){q.push(performance.now());s.send(pl,${p},'127.0.0.1');}});
s.on('message',()=>{const t=q.shift();if(t!==undefined)lat.push(performance.now()-t);n++;if(run){q.push(performance.now());s.send(pl,${p},'127.0.0.1');}});
const iv=setInterval(()=>{if(!run){clearInterval(iv);s.close();return;}while(q.length&&performance.now()-q[0]>500)q.shift();while(q.length<${window}){q.push(performance.now());s.send(pl,${p},'127.0.0.1');}},100);}
setTimeout(()=>{run=false;lat.sort((a,b)=>a-b);const pc=x=>lat.length?Math.round(lat[Math.floor(lat.length*x)]*1000):0;console.log(JSON.stringify({n,p50:pc(0.5),p99:pc(0.99)}));setTimeout(()=>process.exit(0),200);},${SECONDS}*1000);`;
  const { r, cpu } = await measured(b.pid, () => runLoad([process.execPath, '-e', client]));
  let o = { n: 0, p50: 0, p99: 0 };
  try {
    o = JSON.parse(r.trim().split('\n').pop() ?? '{}') as typeof o;
  } catch {
    /* failed */
  }
  return { value: o.n / SECONDS, cpu: (cpu / Math.max(1, o.n)) * 1e6, extra: `p50 ${o.p50} µs p99 ${o.p99} µs` };
}

/** Opens IDLE_CONNS connections through the balancer and reports KiB of balancer memory per connection. */
async function caseIdle(b: Balancer, p: number): Promise<Figure> {
  if (b.pid <= 0) return { value: 0, cpu: 0 };
  await sleep(1000);
  const before = rssKiB(b.pid);
  const client = `
const net=require('net');const N=${IDLE_CONNS};let ok=0;const socks=[];let i=0;
function more(){const batch=Math.min(200,N-i);let pending=batch;if(batch===0)return;for(let k=0;k<batch;k++,i++){const s=net.connect(${p},'127.0.0.1',()=>{ok++;if(--pending===0)setTimeout(more,5);});s.on('error',()=>{if(--pending===0)setTimeout(more,5);});socks.push(s);}}
more();const t=setInterval(()=>{if(i>=N){clearInterval(t);setTimeout(()=>{console.log(JSON.stringify({ok}));},1500);}},50);
process.stdin.on('data',()=>process.exit(0));`;
  const child = start(1, [process.execPath, '-e', client], { stdout: 'pipe' });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const end = Date.now() + 60000;
  while (!out.includes('ok') && Date.now() < end) await sleep(100);
  const ok = Number(/"ok":(\d+)/.exec(out)?.[1] ?? 0);
  // Settled: two readings a second apart within 1 %.
  let after = rssKiB(b.pid);
  for (let i = 0; i < 10; i++) {
    await sleep(1000);
    const now = rssKiB(b.pid);
    const steady = Math.abs(now - after) <= after * 0.01;
    after = now;
    if (steady) break;
  }
  child.kill('SIGKILL');
  await once(child, 'exit');
  return { value: ok, cpu: ok > 0 ? (after - before) / ok : 0, extra: `${ok} connections` };
}

type CaseName = 'conn' | 'keepalive' | 'bulk1' | 'bulk4' | 'udp' | 'udpl' | 'idle';
const CASES: { key: CaseName; group: string; title: string; unit: string; cpuUnit: string; lowerBetterTarget: number | null; run: (b: Balancer) => Promise<Figure> | null }[] = [
  { key: 'conn', group: 'conn', title: 'new TCP connections (wrk, Connection: close)', unit: 'conn/s', cpuUnit: 'CPU-µs/conn', lowerBetterTarget: 1.25, run: (b) => (has('wrk') ? caseConn(b, b.front.http) : null) },
  { key: 'keepalive', group: 'keepalive', title: 'keep-alive requests (wrk)', unit: 'req/s', cpuUnit: 'CPU-µs/req', lowerBetterTarget: 1.0, run: (b) => (has('wrk') ? caseKeepalive(b, b.front.http) : null) },
  { key: 'bulk1', group: 'bulk', title: 'bulk TCP, 1 stream (iperf3)', unit: 'Gbit/s', cpuUnit: 'CPU-s/GB', lowerBetterTarget: 1.1, run: (b) => (has('iperf3') ? caseBulk(b, b.front.iperf, 1) : null) },
  { key: 'bulk4', group: 'bulk', title: 'bulk TCP, 4 streams (iperf3)', unit: 'Gbit/s', cpuUnit: 'CPU-s/GB', lowerBetterTarget: 1.1, run: (b) => (has('iperf3') ? caseBulk(b, b.front.iperf, 4) : null) },
  { key: 'udp', group: 'udp', title: 'UDP request/response, a session per request (udp_responses = 1, 256 ports x 1)', unit: 'replies/s', cpuUnit: 'CPU-µs/reply', lowerBetterTarget: 1.0, run: (b) => (b.front.udp > 0 ? caseUdp(b, b.front.udp, 256, 1) : null) },
  { key: 'udpl', group: 'udp', title: 'UDP long-lived sessions (64 ports x 4)', unit: 'replies/s', cpuUnit: 'CPU-µs/reply', lowerBetterTarget: 1.0, run: (b) => (b.front.udpl > 0 ? caseUdp(b, b.front.udpl) : null) },
  { key: 'idle', group: 'idle', title: `idle TCP connections (${IDLE_CONNS})`, unit: 'connections', cpuUnit: 'KiB/conn', lowerBetterTarget: 1.0, run: (b) => (b.pid > 0 ? caseIdle(b, b.front.idle) : null) },
];

async function main(): Promise<void> {
  const skipped: string[] = [];
  for (const t of ['haproxy', 'nginx', 'wrk', 'iperf3']) if (!has(t)) skipped.push(`${t} not installed (scripts/bench-peers.sh)`);
  const backends = await startBackends();
  const direct: Balancer = { name: 'direct (no balancer)', pid: 0, front: backends, stop: async () => {} };
  const makers: (() => Promise<Balancer>)[] = [];
  if (BALANCERS.has('direct')) makers.push(async () => direct);
  if (BALANCERS.has('l4lb-js')) makers.push(() => startL4lb(backends, 'off'));
  const splice = spawnSync(process.execPath, ['-e', `process.exit(require(${JSON.stringify(join(ROOT, 'dist/src/native/addon.js'))}).spliceAvailable().ok?0:1)`]).status === 0;
  if (!splice) skipped.push('l4lb splice pump: native addon not built');
  else if (BALANCERS.has('l4lb-splice')) makers.push(() => startL4lb(backends, 'on'));
  if (has('haproxy') && BALANCERS.has('haproxy')) makers.push(() => startHaproxy(backends));
  if (has('nginx') && BALANCERS.has('nginx')) makers.push(() => startNginx(backends));

  // Every balancer runs for the whole benchmark (idle, pinned to CPU 0,
  // when not under load) and the cases interleave them round by round, so
  // the figures compared were taken minutes, not a quarter of an hour,
  // apart: this shared VM drifts. Each figure is the median of RUNS rounds.
  const balancers: Balancer[] = [];
  for (const make of makers) balancers.push(await make());
  const results = new Map<string, Map<CaseName, Figure>>();
  for (const b of balancers) results.set(b.name, new Map());
  // Idle memory first, on fresh processes: after the load cases the heap
  // has grown and would hide what connections cost.
  for (const c of [...CASES.filter((x) => x.key === 'idle'), ...CASES.filter((x) => x.key !== 'idle')]) {
    if (!ONLY.has(c.group)) continue;
    const rounds = c.key === 'idle' ? 1 : RUNS;
    const figures = new Map<string, Figure[]>(balancers.map((b) => [b.name, []]));
    for (let r = 0; r < rounds; r++) {
      // Rotate the order each round so no balancer always runs first.
      for (let k = 0; k < balancers.length; k++) {
        const b = balancers[(k + r) % balancers.length] as Balancer;
        const p = c.run(b);
        if (p === null) continue;
        figures.get(b.name)!.push(await p);
      }
    }
    for (const b of balancers) {
      const fs = figures.get(b.name)!.sort((x, y) => x.cpu - y.cpu || y.value - x.value);
      const med = fs[Math.floor((fs.length - 1) / 2)];
      if (med !== undefined) results.get(b.name)!.set(c.key, med);
      process.stderr.write(`${b.name}: ${c.key} ${med ? `${med.value.toFixed(2)} ${c.unit}, ${med.cpu.toFixed(3)} ${c.cpuUnit} (median of ${fs.length})` : 'skipped'}\n`);
    }
  }
  for (const b of balancers) await b.stop();

  const lines: string[] = [];
  const commit = spawnSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout.trim();
  lines.push(`l4lb benchmark — ${new Date().toISOString()} — commit ${commit || 'unknown'} — ${SECONDS} s per case, median of ${RUNS} interleaved rounds`);
  lines.push(`l4lb node options: ${L4LB_NODE_OPTIONS.join(' ') || '(none)'}`);
  lines.push(`machine: ${readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1] ?? 'unknown'}, ${spawnSync('nproc', { encoding: 'utf8' }).stdout.trim()} CPUs; balancer on CPU 0, load and backends on CPU 1`);
  lines.push('');
  const names = [...results.keys()];
  lines.push(`| case | ${names.join(' | ')} | l4lb / best peer (CPU) | target |`);
  lines.push(`|---|${names.map(() => '---').join('|')}|---|---|`);
  for (const c of CASES) {
    if (!ONLY.has(c.group)) continue;
    const cells = names.map((n) => {
      const f = results.get(n)?.get(c.key);
      if (f === undefined) return 'skipped';
      if (c.key === 'idle') return n.startsWith('direct') ? '-' : `${f.cpu.toFixed(2)} ${c.cpuUnit}`;
      const v = c.unit === 'Gbit/s' ? f.value.toFixed(2) : Math.round(f.value).toString();
      return n.startsWith('direct') ? `${v} ${c.unit}` : `${v} ${c.unit}, ${f.cpu.toFixed(c.cpuUnit === 'CPU-s/GB' ? 3 : 1)} ${c.cpuUnit}${f.extra ? ` (${f.extra})` : ''}`;
    });
    const peers = names.filter((n) => n.startsWith('HAProxy') || n.startsWith('nginx')).map((n) => results.get(n)?.get(c.key)).filter((f): f is Figure => f !== undefined && f.cpu > 0);
    const ours = names.filter((n) => n.startsWith('l4lb')).map((n) => results.get(n)?.get(c.key)).filter((f): f is Figure => f !== undefined && f.cpu > 0);
    let ratio = 'n/a';
    let target = c.lowerBetterTarget === null ? '' : `≤ ${c.lowerBetterTarget}×`;
    if (peers.length > 0 && ours.length > 0) {
      const bestPeer = Math.min(...peers.map((f) => f.cpu));
      const bestOurs = Math.min(...ours.map((f) => f.cpu));
      const r = bestOurs / bestPeer;
      ratio = `${r.toFixed(2)}×`;
      if (c.lowerBetterTarget !== null) target += r <= c.lowerBetterTarget ? ' met' : ' not met';
    }
    lines.push(`| ${c.title} | ${cells.join(' | ')} | ${ratio} | ${target} |`);
  }
  if (skipped.length > 0) lines.push('', `Skipped: ${skipped.join('; ')}.`);
  const text = lines.join('\n');
  console.log(text);
  const outDir = join(ROOT, 'bench', 'results');
  if (!existsSync(outDir)) mkdirSync(outDir, { recursive: true });
  const file = join(outDir, `${new Date().toISOString().replace(/[:.]/g, '-')}.md`);
  writeFileSync(file, `${text}\n`);
  console.log(`\nwritten to ${file}`);
}

const cleanup = (): void => {
  // Balancers were stopped gently already; what is left (backends, loads —
  // the backend nginx runs without a master so it has no orphans) goes now.
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  rmSync(work, { recursive: true, force: true });
};
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));
main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
