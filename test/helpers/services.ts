/**
 * Real services for the health check tests, started on loopback in temp
 * dirs: redis-server (with a minimal RESP client) and dnsmasq (with a DNS
 * query helper). Each start is bounded; `hasBinary` lets a test skip with a
 * reason when the Debian package is missing.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { deadPort, waitFor, withTimeout } from './net';

/** Contract: true when `name` is an executable on PATH (or in /usr/sbin, /sbin). */
export function hasBinary(name: string): boolean {
  const r = spawnSync('sh', ['-c', `PATH="$PATH:/usr/sbin:/sbin" command -v ${name}`], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.trim() !== '';
}

/** One RESP reply: a simple string, error ("-..."), integer (as text) or bulk string (null for $-1). */
export type RespReply = string | null;

/**
 * Contract: sends one command as a RESP array to 127.0.0.1:port and reads
 * one reply; errors come back as "-ERR ..." text. Bounded by timeoutMs.
 */
export function redisCmd(port: number, args: string[], timeoutMs = 5000): Promise<RespReply> {
  const s = net.connect({ port, host: '127.0.0.1' });
  s.on('error', () => {});
  const req = `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
  s.write(req);
  const p = new Promise<RespReply>((resolve, reject) => {
    let buf = Buffer.alloc(0);
    s.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      const nl = buf.indexOf('\r\n');
      if (nl < 0) return;
      const head = buf.subarray(0, nl).toString('latin1');
      if (head[0] === '$') {
        const len = Number(head.slice(1));
        if (len < 0) return resolve(null);
        if (buf.length >= nl + 2 + len + 2) resolve(buf.subarray(nl + 2, nl + 2 + len).toString('utf8'));
        return;
      }
      resolve(head[0] === '+' || head[0] === ':' ? head.slice(1) : head);
    });
    s.once('close', () => reject(new Error('redis connection closed before a reply')));
    s.once('error', reject);
  });
  return withTimeout(p, timeoutMs, `redis ${args.join(' ')}`).finally(() => s.destroy());
}

export interface Service {
  port: number;
  child: ChildProcess;
  stop(): Promise<void>;
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGCONT');
  child.kill('SIGTERM');
  try {
    await withTimeout(once(child, 'exit'), 5000, 'service exit');
  } catch {
    child.kill('SIGKILL');
    await once(child, 'exit');
  }
}

/** Contract: starts redis-server on 127.0.0.1 (free port, no persistence, temp dir) and waits for PING. */
export async function startRedis(): Promise<Service> {
  const dir = mkdtempSync(join(tmpdir(), 'l4lb-redis-'));
  const port = await deadPort();
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--dir', dir, '--loglevel', 'warning'],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  child.on('error', () => {});
  const stop = async (): Promise<void> => {
    await stopChild(child);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(async () => (await redisCmd(port, ['PING'], 500).catch(() => null)) === 'PONG', 10000, `redis-server on ${port}`, 50);
  } catch (err) {
    await stop();
    throw err;
  }
  return { port, child, stop };
}

/** A DNS query: ID 0x1234, RD, one question of type A class IN for `name`. */
export function dnsQuery(name: string, id = 0x1234): Buffer {
  const labels = name.split('.').filter((x) => x !== '');
  const qname = Buffer.concat([...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'latin1')])), Buffer.from([0])]);
  const header = Buffer.from([id >> 8, id & 0xff, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
  return Buffer.concat([header, qname, Buffer.from([0, 1, 0, 1])]);
}

/** Contract: sends `query` to 127.0.0.1:port over UDP and resolves with the first datagram back, or null on timeout. */
export async function udpAsk(port: number, query: Buffer, timeoutMs = 1000): Promise<Buffer | null> {
  const s = dgram.createSocket('udp4');
  s.on('error', () => {});
  try {
    return await new Promise<Buffer | null>((resolve) => {
      const t = setTimeout(() => resolve(null), timeoutMs);
      s.once('message', (m: Buffer) => {
        clearTimeout(t);
        resolve(m);
      });
      s.send(query, port, '127.0.0.1');
    });
  } finally {
    s.close();
  }
}

/**
 * Contract: starts dnsmasq in the foreground on 127.0.0.1:<free port>, with
 * no upstream, no hosts file and no config file, answering `name` with
 * `answer`; waits until it answers.
 */
export async function startDnsmasq(name: string, answer: string): Promise<Service> {
  const port = await deadPort();
  const child = spawn(
    'dnsmasq',
    [
      '--no-daemon', `--port=${port}`, '--listen-address=127.0.0.1', '--bind-interfaces', '--no-resolv', '--no-hosts',
      `--address=/${name}/${answer}`, '--conf-file=/dev/null', '--pid-file=', '--user=root', '--group=root',
    ],
    { stdio: ['ignore', 'ignore', 'ignore'], env: { ...process.env, PATH: `${process.env.PATH ?? ''}:/usr/sbin:/sbin` } },
  );
  child.on('error', () => {});
  const stop = (): Promise<void> => stopChild(child);
  try {
    await waitFor(async () => (await udpAsk(port, dnsQuery(name), 200)) !== null, 10000, `dnsmasq on ${port}`, 50);
  } catch (err) {
    await stop();
    throw err;
  }
  return { port, child, stop };
}
