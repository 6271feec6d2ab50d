/**
 * SNI routing cost: l4lb CPU per new connection on a listener with
 * route_by = "sni" against the same listener without routing, same backend,
 * same client bytes (a ClientHello, echoed back by the backend).
 *
 *   npm run build && node dist/bench/sni.js [--seconds 4] [--rounds 3] [--pump auto|off] [--hello 1700]
 *
 * l4lb runs as its own process (pinned to CPU 0 with taskset when present);
 * this process is the load generator and the echo backend (CPU 1). Each
 * round measures both listeners one after the other (interleaved); the
 * figure is the median over rounds of l4lb CPU-µs per connection, read from
 * /proc/<pid>/stat.
 */
import net from 'node:net';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clientHelloBody, ext, handshake, records } from '../test/support/tls-hello';

const args = process.argv.slice(2);
const arg = (name: string, def: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? (args[i + 1] as string) : def;
};
const SECONDS = Number(arg('seconds', '4'));
const ROUNDS = Number(arg('rounds', '3'));
const PUMP = arg('pump', 'auto');
const HELLO = Number(arg('hello', '1700'));
const CLK_TCK = 100;

function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / CLK_TCK;
}

const taskset = spawnSync('taskset', ['-c', '0', 'true']).status === 0;

/** A ClientHello of about `size` bytes (a post-quantum key share makes ~1.7 KiB), named "api.example.com". */
function hello(size: number): Buffer {
  const base = records(handshake(clientHelloBody({ sni: 'api.example.com' })));
  const keyShare = ext(51, Buffer.alloc(Math.max(0, size - base.length - 4), 7));
  return records(handshake(clientHelloBody({ sni: 'api.example.com', extensions: [ext(43, Buffer.from([2, 3, 4])), keyShare] })));
}

async function main(): Promise<void> {
  if (taskset) spawnSync('taskset', ['-pc', '1', String(process.pid)]);
  const echo = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
  const echoPort = (echo.address() as net.AddressInfo).port;
  const dir = mkdtempSync(join(tmpdir(), 'l4lb-bench-sni-'));
  const cfg = join(dir, 'lb.toml');
  writeFileSync(cfg,
    `[global]\nsplice = "${PUMP}"\n` +
    `[[listeners]]\nname = "plain"\nbind = "127.0.0.1:0"\npool = "echo"\n` +
    `[[listeners]]\nname = "sni"\nbind = "127.0.0.1:0"\nroute_by = "sni"\n` +
    `routes = [{ sni = "www.example.com", pool = "other" }, { sni = "api.example.com", pool = "echo" }, { sni = "*.example.org", pool = "other" }]\n` +
    `[pools.echo]\nalgorithm = "round-robin"\nbackends = [{ address = "127.0.0.1:${echoPort}" }]\n[pools.echo.health_check]\nenabled = false\n` +
    `[pools.other]\nalgorithm = "round-robin"\nbackends = [{ address = "127.0.0.1:${echoPort}" }]\n[pools.other.health_check]\nenabled = false\n`);
  const cli = join(__dirname, '..', 'src', 'cli.js');
  const cmd = taskset ? ['taskset', '-c', '0', process.execPath, cli, '-c', cfg] : [process.execPath, cli, '-c', cfg];
  const child: ChildProcess = spawn(cmd[0] as string, cmd.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
  const ports = new Map<string, number>();
  let pump = '?';
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('l4lb did not start')), 10000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        const o = JSON.parse(line) as { msg: string; listener?: string; port?: number; pump?: string };
        if (o.msg === 'listening' && o.listener && o.port) ports.set(o.listener, o.port);
        if (o.msg === 'byte pump' && o.pump) pump = o.pump;
      } catch {
        /* not JSON */
      }
      if (ports.size === 2) {
        clearTimeout(t);
        resolve();
      }
    });
  });
  const bytes = hello(HELLO);
  const pid = child.pid as number;

  /** `concurrency` loops of: connect, send the ClientHello, wait for its echo, close. */
  const run = async (port: number): Promise<{ conns: number; cpuUs: number }> => {
    let done = 0;
    const end = Date.now() + SECONDS * 1000;
    const c0 = cpuSeconds(pid);
    const loop = async (): Promise<void> => {
      while (Date.now() < end) {
        await new Promise<void>((resolve) => {
          let got = 0;
          const s = net.connect({ port, host: '127.0.0.1' }, () => s.write(bytes));
          s.on('data', (c: Buffer) => {
            got += c.length;
            if (got >= bytes.length) {
              done++;
              s.destroy();
              resolve();
            }
          });
          s.on('error', () => resolve());
          s.on('close', () => resolve());
        });
      }
    };
    await Promise.all(Array.from({ length: 50 }, loop));
    return { conns: done, cpuUs: ((cpuSeconds(pid) - c0) / done) * 1e6 };
  };

  const plain: number[] = [];
  const sni: number[] = [];
  const rates: { plain: number[]; sni: number[] } = { plain: [], sni: [] };
  try {
    await run(ports.get('plain') as number); // warm-up (JIT)
    await run(ports.get('sni') as number);
    for (let r = 0; r < ROUNDS; r++) {
      const a = await run(ports.get('plain') as number);
      const b = await run(ports.get('sni') as number);
      plain.push(a.cpuUs);
      sni.push(b.cpuUs);
      rates.plain.push(a.conns / SECONDS);
      rates.sni.push(b.conns / SECONDS);
      console.log(`round ${r + 1}: without routing ${a.cpuUs.toFixed(1)} CPU-µs/conn (${Math.round(a.conns / SECONDS)} conn/s); ` +
        `route_by = "sni" ${b.cpuUs.toFixed(1)} CPU-µs/conn (${Math.round(b.conns / SECONDS)} conn/s)`);
    }
  } finally {
    child.kill('SIGTERM');
    echo.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const median = (x: number[]): number => [...x].sort((p, q) => p - q)[Math.floor(x.length / 2)] as number;
  const p = median(plain);
  const s = median(sni);
  console.log(`median: without routing ${p.toFixed(1)} CPU-µs/conn, route_by = "sni" ${s.toFixed(1)} CPU-µs/conn, ratio ${(s / p).toFixed(3)}x ` +
    `(ClientHello ${bytes.length} bytes; pump ${pump}; ${SECONDS} s x ${ROUNDS} rounds; taskset: ${taskset ? 'l4lb on CPU 0, generator on CPU 1' : 'not available'})`);
  process.exit(0);
}

void main();
