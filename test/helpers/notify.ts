/**
 * A stand-in for systemd's $NOTIFY_SOCKET: a python3 child bound to an
 * AF_UNIX datagram socket, collecting what arrives (one line per message,
 * its newlines shown as `|`).
 */
import { spawn, spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { withTimeout } from './net';

export const hasPython = spawnSync('python3', ['-c', 'pass']).status === 0;
export const hasNotify = spawnSync('systemd-notify', ['--version']).status === 0;

export function notifySocket(path: string): { messages: string[]; ready: Promise<void>; stop(): void } {
  const py = `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("bound", flush=True)
while True:
    data = s.recv(65536)
    print(data.decode().replace("\\n", "|"), flush=True)
`;
  const child = spawn('python3', ['-c', py, path], { stdio: ['ignore', 'pipe', 'inherit'] });
  const messages: string[] = [];
  let onBound: () => void = () => {};
  const ready = new Promise<void>((r) => (onBound = r));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    if (line === 'bound') onBound();
    else messages.push(line);
  });
  return { messages, ready: withTimeout(ready, 5000, 'notify socket bound'), stop: () => child.kill() };
}
