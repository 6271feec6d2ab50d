/**
 * A loopback address where TCP connects hang: a listening socket with a
 * backlog of 0 that never accepts, its accept queue already full, so the
 * kernel drops new SYNs. Node always accepts, so a tiny python3 process holds
 * the socket (python3 is on every machine of this project's kind).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { once } from 'node:events';
import { withTimeout } from './net';

export interface Blackhole {
  port: number;
  close(): Promise<void>;
}

const PY = `
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(0)
print(s.getsockname()[1], flush=True)
sys.stdin.read()
`;

export async function startBlackhole(): Promise<Blackhole> {
  const child: ChildProcess = spawn('python3', ['-c', PY], { stdio: ['pipe', 'pipe', 'inherit'] });
  const port = await withTimeout(
    new Promise<number>((resolve, reject) => {
      child.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
      child.once('error', reject);
    }),
    5000,
    'blackhole start',
  );
  // Fill the accept queue (backlog 0 still admits one or two connections).
  const fillers: net.Socket[] = [];
  for (let i = 0; i < 4; i++) {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.on('error', () => {});
    fillers.push(s);
    const ok = await Promise.race([once(s, 'connect').then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 300))]);
    if (!ok) break; // the queue is full: SYNs are now dropped
  }
  return {
    port,
    close: async () => {
      for (const s of fillers) s.destroy();
      child.stdin!.end();
      child.kill();
      if (child.exitCode === null) await once(child, 'exit');
    },
  };
}
