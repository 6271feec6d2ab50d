/**
 * A small lab of network namespaces for the scale-out tests and the failover
 * bench: two l4lb hosts, a backends host, a client and a router, all created
 * by this code under a name prefix that carries the process id, and removed
 * by teardown() whatever happened. Nothing is added to the root namespace:
 * every veth is created inside a lab namespace with its peer in another.
 *
 *            client 10.99.2.100
 *               |
 *   router  10.99.2.1 | br0 10.99.1.1 (a bridge: the hosts' LAN)
 *               |-- lb1  eth0 10.99.1.11
 *               |-- lb2  eth0 10.99.1.12
 *               '-- be   eth0 10.99.1.50 (backends on ports 8001-8003)
 *
 * VRRP virtual IP: 10.99.1.10 on the LAN. ECMP service address: 10.99.9.1/32
 * on both hosts' loopback, announced to the router over eBGP.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { L4lbProcess } from '../helpers/l4lb';
import type { ConnResult } from './ns-client';

export type { ConnResult };

/** The repository (this file runs from dist/test/support). */
export const REPO = join(__dirname, '..', '..', '..');

export const ADDR = {
  router: '10.99.1.1',
  routerClientSide: '10.99.2.1',
  client: '10.99.2.100',
  lb1: '10.99.1.11',
  lb2: '10.99.1.12',
  backends: '10.99.1.50',
  vrrpVip: '10.99.1.10',
  ecmpVip: '10.99.9.1',
} as const;
export const BACKEND_PORTS = [8001, 8002, 8003];
/** A backend that stays open and echoes, behind l4lb's listener on port 81. */
export const ECHO_PORT = 8009;
export type Host = 'lb1' | 'lb2';
const NAMESPACES = ['rt', 'c', 'lb1', 'lb2', 'be'] as const;
type Ns = (typeof NAMESPACES)[number];

/** Runs a command to completion (bounded); resolves with stdout, rejects with stderr. */
export function run(cmd: string, args: string[], timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${String(stderr).trim() || err.message}`));
      else resolve(String(stdout));
    });
  });
}

function which(bin: string): boolean {
  for (const dir of ['/usr/sbin', '/usr/bin', '/sbin', '/bin', '/usr/local/sbin', '/usr/local/bin']) {
    if (existsSync(join(dir, bin))) return true;
  }
  return false;
}

/**
 * Why the lab cannot run here, or null when it can: needs Linux, root, the
 * named programs, and a network namespace that can actually be created.
 */
export async function labUnavailable(programs: string[]): Promise<string | null> {
  if (process.platform !== 'linux') return 'network namespaces need Linux';
  if (process.getuid?.() !== 0) return 'network namespaces need root';
  for (const p of ['ip', ...programs]) if (!which(p)) return `${p} is not installed (.ci/run installs it)`;
  const probe = `l4ha${process.pid}-probe`;
  try {
    await run('ip', ['netns', 'add', probe]);
  } catch (err) {
    return `cannot create a network namespace: ${(err as Error).message}`;
  }
  try {
    await run('ip', ['netns', 'exec', probe, 'true']);
  } catch (err) {
    return `cannot run a process in a network namespace: ${(err as Error).message}`;
  } finally {
    await run('ip', ['netns', 'del', probe]).catch(() => {});
  }
  return null;
}

/**
 * Copies an example config, replacing the example addresses with the lab's.
 * Every pattern must match, so the test fails if the example file drifts
 * from what the test knows about it.
 */
export function fromExample(relPath: string, subst: [RegExp, string][]): string {
  let text = readFileSync(join(REPO, relPath), 'utf8');
  for (const [re, to] of subst) {
    if (!re.test(text)) throw new Error(`${relPath}: ${re} not found: the example changed`);
    text = text.replace(new RegExp(re.source, re.flags.includes('g') ? re.flags : re.flags + 'g'), to);
  }
  return text;
}

/** A process started in a namespace, its output kept for diagnostics. */
export class NsProcess {
  readonly child: ChildProcess;
  out = '';
  exitCode: number | null = null;
  readonly exited: Promise<number>;
  private lineWaiters: { pred: (l: string) => boolean; resolve: () => void }[] = [];

  constructor(
    readonly name: string,
    ns: string,
    cmd: string[],
    env: NodeJS.ProcessEnv = {},
    stdin: 'pipe' | 'ignore' = 'ignore',
  ) {
    this.child = spawn('ip', ['netns', 'exec', ns, ...cmd], { env: { ...process.env, ...env }, stdio: [stdin, 'pipe', 'pipe'] });
    const onData = (d: Buffer): void => {
      this.out = (this.out + d.toString()).slice(-20_000);
      this.lineWaiters = this.lineWaiters.filter((w) => {
        if (this.out.split('\n').some(w.pred)) {
          w.resolve();
          return false;
        }
        return true;
      });
    };
    this.child.stdout!.on('data', onData);
    this.child.stderr!.on('data', onData);
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.exitCode = code ?? (signal ? 128 : -1);
        resolve(this.exitCode);
      });
    });
  }

  /** Resolves once a line of output matches (bounded). */
  waitForLine(pred: (l: string) => boolean, timeoutMs: number): Promise<void> {
    if (this.out.split('\n').some(pred)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name}: no expected output within ${timeoutMs} ms; output: ${this.out.slice(-2000)}`)), timeoutMs);
      this.lineWaiters.push({
        pred,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
      void this.exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`${this.name} exited (${code}); output: ${this.out.slice(-2000)}`));
      });
    });
  }

  kill(sig: NodeJS.Signals = 'SIGTERM'): void {
    if (this.exitCode === null) this.child.kill(sig);
  }
}

/** Polls `check` every `everyMs` until it returns true; rejects after `timeoutMs`. */
export async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs: number, everyMs = 50): Promise<number> {
  const t0 = Date.now();
  for (let i = 0; i < 10_000; i++) {
    if (await check()) return Date.now() - t0;
    if (Date.now() - t0 > timeoutMs) break;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

export interface Failover {
  /** ms from the kill to the first successful connection after the last failure (0: none failed). */
  ms: number;
  failures: number;
  /** Connections that succeeded after the failover (all of them must have). */
  after: ConnResult[];
}

/** Reads a failover time off a loop of connections that ran across the kill at `tKill`. */
export function failoverOf(results: ConnResult[], tKill: number): Failover {
  let last = -1;
  results.forEach((r, i) => {
    if (!r.ok) last = i;
  });
  const after = results.slice(last + 1);
  const first = after[0];
  const failures = results.filter((r) => !r.ok).length;
  return { ms: last < 0 ? 0 : first === undefined ? Infinity : Math.max(0, first.t - tKill), failures, after };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export class Lab {
  readonly prefix = `l4ha${process.pid}`;
  readonly dir = mkdtempSync(join(tmpdir(), 'l4lb-lab-'));
  private readonly procs: NsProcess[] = [];
  private readonly l4lbs: L4lbProcess[] = [];
  private created: string[] = [];
  private client: NsProcess | null = null;
  private nextId = 1;
  private pending = new Map<number, (r: ConnResult[]) => void>();

  ns(n: Ns): string {
    return `${this.prefix}-${n}`;
  }

  private ip(...args: string[]): Promise<string> {
    return run('ip', args);
  }

  private exec(n: Ns, ...cmd: string[]): Promise<string> {
    return run('ip', ['netns', 'exec', this.ns(n), ...cmd]);
  }

  /** Creates the namespaces, links and addresses. */
  async up(): Promise<void> {
    for (const n of NAMESPACES) {
      await this.ip('netns', 'add', this.ns(n));
      this.created.push(this.ns(n));
      await this.ip('-n', this.ns(n), 'link', 'set', 'lo', 'up');
    }
    const rt = this.ns('rt');
    await this.ip('-n', rt, 'link', 'add', 'br0', 'type', 'bridge');
    await this.ip('-n', rt, 'addr', 'add', `${ADDR.router}/24`, 'dev', 'br0');
    await this.ip('-n', rt, 'link', 'set', 'br0', 'up');
    for (const h of ['lb1', 'lb2', 'be'] as const) {
      await this.ip('-n', rt, 'link', 'add', `p-${h}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', this.ns(h));
      await this.ip('-n', rt, 'link', 'set', `p-${h}`, 'master', 'br0', 'up');
      await this.ip('-n', this.ns(h), 'link', 'set', 'eth0', 'up');
    }
    await this.ip('-n', this.ns('lb1'), 'addr', 'add', `${ADDR.lb1}/24`, 'dev', 'eth0');
    await this.ip('-n', this.ns('lb2'), 'addr', 'add', `${ADDR.lb2}/24`, 'dev', 'eth0');
    await this.ip('-n', this.ns('be'), 'addr', 'add', `${ADDR.backends}/24`, 'dev', 'eth0');
    await this.ip('-n', rt, 'link', 'add', 'p-c', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', this.ns('c'));
    await this.ip('-n', rt, 'addr', 'add', `${ADDR.routerClientSide}/24`, 'dev', 'p-c');
    await this.ip('-n', rt, 'link', 'set', 'p-c', 'up');
    await this.ip('-n', this.ns('c'), 'addr', 'add', `${ADDR.client}/24`, 'dev', 'eth0');
    await this.ip('-n', this.ns('c'), 'link', 'set', 'eth0', 'up');
    await this.ip('-n', this.ns('c'), 'route', 'add', 'default', 'via', ADDR.routerClientSide);
    for (const h of ['lb1', 'lb2'] as const) {
      await this.ip('-n', this.ns(h), 'route', 'add', 'default', 'via', ADDR.router);
      // The VRRP pair binds the virtual IP whether or not this host holds it.
      await this.exec(h, 'sysctl', '-qw', 'net.ipv4.ip_nonlocal_bind=1');
    }
    // The router forwards, and spreads multipath routes by the 5-tuple.
    await this.exec('rt', 'sysctl', '-qw', 'net.ipv4.ip_forward=1', 'net.ipv4.fib_multipath_hash_policy=1');
    // A gratuitous ARP always moves the virtual IP's neighbour entry. With
    // Linux's default locktime (1 s) one that comes within a second of the
    // entry's last update (lb1 answering the router's probe) is ignored, and
    // the router keeps sending to lb1, which has given the address up, until
    // keepalived's next burst: a SYN or two lost, seen in CI as a connection
    // that timed out during the VRRP handover.
    await this.exec('rt', 'sysctl', '-qw', 'net.ipv4.neigh.br0.locktime=0');
  }

  /** Starts a long-lived process in a namespace; teardown() stops it. */
  start(name: string, n: Ns, cmd: string[], env: NodeJS.ProcessEnv = {}, stdin: 'pipe' | 'ignore' = 'ignore'): NsProcess {
    const p = new NsProcess(name, this.ns(n), cmd, env, stdin);
    this.procs.push(p);
    return p;
  }

  /** The backends (tags A, B, C on ports 8001-8003) and the client agent. */
  async startPeers(): Promise<void> {
    const be = this.start('backends', 'be', [process.execPath, join(__dirname, 'ns-backend.js'), ADDR.backends, ...BACKEND_PORTS.map((p, i) => `${String.fromCharCode(65 + i)}:${p}`), `echo:${ECHO_PORT}`], {}, 'pipe');
    const c = this.start('client', 'c', [process.execPath, join(__dirname, 'ns-client.js')], {}, 'pipe');
    await be.waitForLine((l) => l === 'ready', 10_000);
    await c.waitForLine((l) => l === 'ready', 10_000);
    let buf = '';
    c.child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (!line.startsWith('{')) continue;
        const msg = JSON.parse(line) as { id: number; results: ConnResult[] };
        this.pending.get(msg.id)?.(msg.results);
        this.pending.delete(msg.id);
      }
    });
    this.client = c;
  }

  private ask(req: Record<string, unknown>, timeoutMs: number): Promise<ConnResult[]> {
    const c = this.client;
    if (c === null) return Promise.reject(new Error('client not started'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`client request ${id} (${String(req.op)}) timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
      c.child.stdin!.write(JSON.stringify({ ...req, id }) + '\n');
    });
  }

  /** One connection per local port, one after the other, from the client namespace. */
  batch(host: string, port: number, localPorts: number[], timeoutMs = 1000): Promise<ConnResult[]> {
    return this.ask({ op: 'batch', host, port, localPorts, timeoutMs }, 60_000);
  }

  /** One UDP datagram (and its answer) per local port, from the client namespace. */
  udp(host: string, port: number, localPorts: number[], timeoutMs = 1000): Promise<ConnResult[]> {
    return this.ask({ op: 'udp', host, port, localPorts, timeoutMs }, 60_000);
  }

  /**
   * Opens a long-lived connection to the echo listener (port 81) that the
   * router sends to `via`; resolves with its handle.
   */
  async hold(host: string, via: Host): Promise<number> {
    const ports = Array.from({ length: 64 }, (_, i) => 46000 + i);
    const [r] = await this.ask({ op: 'hold', host, port: 81, localPorts: ports, via: ADDR[via], timeoutMs: 1000 }, 90_000);
    if (!r?.ok) throw new Error(`no connection through ${via}: ${r?.err}`);
    return Number(r.reply!.split(' ')[1]);
  }

  /** Writes a line on a held connection: its echo, or the error that came instead. */
  async ping(handle: number): Promise<ConnResult> {
    const [r] = await this.ask({ op: 'ping', handle, timeoutMs: 2000 }, 10_000);
    return r!;
  }

  /** The router's neighbour table (`ip neigh`), for a diagnostic. */
  async routerNeighbours(): Promise<string> {
    return (await this.exec('rt', 'ip', 'neigh', 'show')).trim().replace(/\n/g, '; ');
  }

  /**
   * SYNs the client namespace's kernel retransmitted so far (TcpExt
   * TCPSynRetrans of its /proc/net/netstat): a connection that waited for a
   * SYN retransmission shows here, whatever the machine's load did to the
   * time it took.
   */
  async synRetransmits(): Promise<number> {
    const text = await this.exec('c', 'cat', '/proc/net/netstat');
    const lines = text.split('\n').filter((l) => l.startsWith('TcpExt:'));
    const names = (lines[0] ?? '').trim().split(/\s+/);
    const values = (lines[1] ?? '').trim().split(/\s+/);
    const i = names.indexOf('TCPSynRetrans');
    if (i < 0 || values[i] === undefined) throw new Error(`no TCPSynRetrans in the client namespace's /proc/net/netstat: ${text.slice(0, 300)}`);
    return Number(values[i]);
  }

  /** Connections from ephemeral ports, one after the other, for `durationMs`. */
  loop(host: string, port: number, durationMs: number, timeoutMs = 250, gapMs = 20): Promise<ConnResult[]> {
    return this.ask({ op: 'loop', host, port, durationMs, timeoutMs, gapMs }, durationMs + 30_000);
  }

  /** l4lb (the real CLI) on one of the hosts. */
  l4lb(h: Host, config: string): L4lbProcess {
    const p = new L4lbProcess(config, { wrap: ['ip', 'netns', 'exec', this.ns(h)] });
    this.l4lbs.push(p);
    return p;
  }

  /** GET /healthz of l4lb's admin endpoint on a host: the status code, "000" when nothing answers. */
  async healthz(h: Host, port = 9090): Promise<string> {
    const out = await this.exec(h, 'curl', '-s', '-o', '/dev/null', '-m', '1', '-w', '%{http_code}', `http://127.0.0.1:${port}/healthz`).catch(() => '000');
    return out.trim();
  }

  /** Gateways of the router's route to `dst` (several for a multipath route). */
  async nexthops(dst: string): Promise<string[]> {
    const out = await this.ip('-n', this.ns('rt'), '-j', 'route', 'show', dst);
    const routes = JSON.parse(out || '[]') as { gateway?: string; nexthops?: { gateway?: string }[] }[];
    const gws: string[] = [];
    for (const r of routes) {
      if (r.gateway) gws.push(r.gateway);
      for (const n of r.nexthops ?? []) if (n.gateway) gws.push(n.gateway);
    }
    return gws.sort();
  }

  async hasAddress(h: Host, addr: string): Promise<boolean> {
    const out = await this.ip('-n', this.ns(h), '-j', 'addr', 'show', 'dev', 'eth0');
    const links = JSON.parse(out || '[]') as { addr_info?: { local?: string }[] }[];
    return links.some((l) => (l.addr_info ?? []).some((a) => a.local === addr));
  }

  async addLoopback(h: Host, cidr: string): Promise<void> {
    await this.ip('-n', this.ns(h), 'addr', 'add', cidr, 'dev', 'lo');
  }

  /** Takes a host's only link down (as a crash looks to the router) or up again (restoring its default route, which went with it). */
  async setLink(h: Host, state: 'up' | 'down'): Promise<void> {
    await this.ip('-n', this.ns(h), 'link', 'set', 'eth0', state);
    if (state === 'up') await this.ip('-n', this.ns(h), 'route', 'replace', 'default', 'via', ADDR.router);
  }

  /** Writes a file into the lab's directory; returns its path. */
  file(name: string, text: string): string {
    const p = join(this.dir, name);
    writeFileSync(p, text);
    return p;
  }

  /** The output of every process, for a failing test's message. */
  diagnostics(): string {
    return this.procs.map((p) => `--- ${p.name} (exit ${p.exitCode})\n${p.out.slice(-1500)}`).join('\n');
  }

  /**
   * Stops everything this lab started and removes its namespaces. Never
   * throws: each step is bounded and a failed step does not stop the others.
   */
  async teardown(): Promise<void> {
    this.client?.child.stdin?.end();
    for (const p of this.procs) p.kill('SIGKILL');
    for (const p of this.l4lbs) if (p.exitCode === null) p.child.kill('SIGKILL');
    // Anything else still running in a lab namespace was started by this lab.
    for (const ns of this.created) {
      const pids = await run('ip', ['netns', 'pids', ns]).catch(() => '');
      for (const pid of pids.split(/\s+/).filter(Boolean)) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }
    await Promise.all(this.procs.map((p) => Promise.race([p.exited, new Promise((r) => setTimeout(r, 3000))])));
    for (const p of this.l4lbs) await p.stop().catch(() => {});
    for (const ns of this.created) await run('ip', ['netns', 'del', ns]).catch(() => {});
    this.created = [];
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * l4lb's configuration on a lab host: one consistent-hash pool of the three
 * backends, served over TCP on `bind` and over UDP on the same address, port 53.
 */
export function l4lbConfig(bind: string, extraGlobal = ''): string {
  const udpBind = bind.replace(/:\d+$/, ':53');
  return `[global]
drain_timeout = "2s"
${extraGlobal}
[admin]
bind = "127.0.0.1:9090"

[[listeners]]
name = "web"
bind = "${bind}"
pool = "web"

[[listeners]]
name = "dns"
protocol = "udp"
bind = "${udpBind}"
pool = "web"

[[listeners]]
name = "echo"
bind = "${bind.replace(/:\d+$/, ':81')}"
pool = "echo"

[pools.echo]
backends = [{ address = "${ADDR.backends}:${ECHO_PORT}" }]

[pools.web]
algorithm = "consistent-hash"
backends = [
${BACKEND_PORTS.map((p) => `  { address = "${ADDR.backends}:${p}" },`).join('\n')}
]
[pools.web.health_check]
interval = "1s"
`;
}

/** keepalived on a host, from configs/keepalived/keepalived.conf. */
export function startKeepalived(lab: Lab, h: Host): NsProcess {
  const conf = lab.file(
    'keepalived.conf',
    fromExample('configs/keepalived/keepalived.conf', [[/192\.0\.2\.10\/24/, `${ADDR.vrrpVip}/24`]]),
  );
  return lab.start(`keepalived-${h}`, h, [
    'keepalived', '--dont-fork', '--log-console', '--log-detail', '--no-syslog', '--vrrp',
    '-f', conf, '-i', h,
    '-p', join(lab.dir, `keepalived-${h}.pid`), '-r', join(lab.dir, `keepalived-vrrp-${h}.pid`),
  ]);
}

/** BIRD on the router and on both hosts, from configs/bird/, plus the health watchers. */
export function birdRouterConfig(lab: Lab): string {
  return lab.file(
    'bird-router.conf',
    fromExample('configs/bird/bird-router.conf', [
      [/192\.0\.2\.11(?!\d)/, ADDR.lb1],
      [/192\.0\.2\.12(?!\d)/, ADDR.lb2],
      [/192\.0\.2\.1(?!\d)/, ADDR.router],
      [/198\.51\.100\.0\/24/, '10.99.9.0/24'],
    ]),
  );
}

export function birdHostConfig(lab: Lab): string {
  return lab.file(
    'bird-l4lb.conf',
    fromExample('configs/bird/bird-l4lb.conf', [
      [/192\.0\.2\.1(?!\d)/, ADDR.router],
      [/198\.51\.100\.1\/32/, `${ADDR.ecmpVip}/32`],
    ]),
  );
}

export function birdSocket(lab: Lab, n: 'rt' | Host): string {
  return join(lab.dir, `bird-${n}.ctl`);
}

export function startBird(lab: Lab, n: 'rt' | Host, conf: string): NsProcess {
  return lab.start(`bird-${n}`, n, ['bird', '-f', '-c', conf, '-s', birdSocket(lab, n), '-P', join(lab.dir, `bird-${n}.pid`)]);
}

/** Timers of the watcher in the lab (the shipped defaults are 1 s / 1 s). */
export const WATCH = { INTERVAL: '0.2', TIMEOUT: '0.5', RISE: '2', FALL: '1' };

export function startWatcher(lab: Lab, h: Host): NsProcess {
  return lab.start(`watcher-${h}`, h, ['sh', join(REPO, 'scripts', 'l4lb-bgp-health.sh')], {
    L4LB_HEALTHZ_URL: 'http://127.0.0.1:9090/healthz',
    BIRD_SOCKET: birdSocket(lab, h),
    BIRD_PROTOCOL: 'l4lb_vip',
    ...WATCH,
  });
}

/** The backend tag and the l4lb host of a reply ("B 10.99.1.12" -> { tag: 'B', via: 'lb2' }). */
export function parseReply(reply: string | undefined): { tag: string; via: Host | '?' } {
  const [tag = '?', from = ''] = (reply ?? '').split(' ');
  return { tag, via: from === ADDR.lb1 ? 'lb1' : from === ADDR.lb2 ? 'lb2' : '?' };
}
