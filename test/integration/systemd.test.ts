/**
 * systemd integration: sd_notify messages read from a real AF_UNIX datagram
 * socket, socket activation with an inherited listening socket, and the
 * shipped unit checked by systemd-analyze where it exists.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEchoServer, connect, readBytes, waitFor, withTimeout } from '../helpers/net';
import { L4lbProcess, CLI } from '../helpers/l4lb';
import { listenerToml, poolToml } from '../helpers/toml';
import { hasNotify, hasPython, notifySocket } from '../helpers/notify';


/** A python3 child bound to an AF_UNIX datagram socket, collecting what arrives. */
/**
 * Runs python3 `py` (which puts listening sockets on fds 3.. and execs node
 * with the CLI and `cfgPath`, pid unchanged) and collects its output.
 */
function spawnActivated(py: string, cfgPath: string): { child: ChildProcess; exited: Promise<number>; out: () => string; err: () => string } {
  const child = spawn('python3', ['-c', py, process.execPath, CLI, cfgPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number>((r) => child.on('exit', (code) => r(code ?? -1)));
  return { child, exited, out: () => out, err: () => err };
}

describe('systemd', () => {
  test('sd_notify: READY=1, RELOADING=1 with MONOTONIC_USEC then READY=1, WATCHDOG=1, STOPPING=1', { skip: !hasPython ? 'python3 not installed' : !hasNotify ? 'systemd-notify not installed' : false }, async () => {
    const echo = await startEchoServer();
    const dir = mkdtempSync(join(tmpdir(), 'l4lb-notify-'));
    const sock = notifySocket(join(dir, 'notify.sock'));
    await sock.ready;
    const cfg = listenerToml('n', 'p') + poolToml('p', 'round-robin', [`{ address = "127.0.0.1:${echo.port}" }`]);
    const lb = new L4lbProcess(cfg, { env: { NOTIFY_SOCKET: join(dir, 'notify.sock'), WATCHDOG_USEC: '400000' } });
    try {
      await lb.port('n');
      await waitFor(() => sock.messages.some((m) => m.includes('READY=1')), 5000, 'READY=1');
      await waitFor(() => sock.messages.some((m) => m.includes('WATCHDOG=1')), 5000, 'WATCHDOG=1');
      lb.signal('SIGHUP');
      await lb.waitForLog((l) => l.msg === 'config reloaded', 5000);
      await waitFor(() => sock.messages.filter((m) => m.includes('READY=1')).length >= 2, 5000, 'READY=1 after reload');
      const reloading = sock.messages.find((m) => m.includes('RELOADING=1'));
      assert.ok(reloading, sock.messages.join('\n'));
      assert.match(reloading, /MONOTONIC_USEC=\d+/);
      const order = sock.messages.filter((m) => /READY=1|RELOADING=1/.test(m)).map((m) => (m.includes('RELOADING') ? 'RELOADING' : 'READY'));
      assert.deepEqual(order.slice(0, 3), ['READY', 'RELOADING', 'READY']);
      assert.ok(sock.messages.every((m) => !m.includes('MAINPID=') || m.includes(`MAINPID=${lb.child.pid}`)), 'messages name l4lb as the main pid');
      lb.signal('SIGTERM');
      assert.equal(await lb.waitExit(), 0);
      await waitFor(() => sock.messages.some((m) => m.includes('STOPPING=1')), 5000, 'STOPPING=1');
    } finally {
      await lb.stop();
      sock.stop();
      await echo.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('socket activation: a listener named like LISTEN_FDNAMES serves on the inherited fd 3', { skip: hasPython ? false : 'python3 not installed' }, async () => {
    const echo = await startEchoServer();
    const dir = mkdtempSync(join(tmpdir(), 'l4lb-activation-'));
    const cfgPath = join(dir, 'lb.toml');
    // The configured bind is a port nobody can reach it on: serving proves the inherited socket is used.
    writeFileSync(cfgPath, listenerToml('web', 'p').replace('127.0.0.1:0', '127.0.0.1:1') + poolToml('p', 'round-robin', [`{ address = "127.0.0.1:${echo.port}" }`]));
    // python3 opens the listening socket, puts it on fd 3 and execs node with pid unchanged (LISTEN_PID = $$).
    const py = `
import os, socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(16)
print(s.getsockname()[1], flush=True)
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
env = dict(os.environ, LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="web")
os.execve(sys.argv[1], [sys.argv[1], sys.argv[2], "-c", sys.argv[3]], env)
`;
    const { child, exited, out, err } = spawnActivated(py, cfgPath);
    try {
      await waitFor(() => out().includes('\n'), 5000, 'activation port');
      const port = Number(out().split('\n')[0]);
      await waitFor(() => out().includes('"listening"'), 10000, `l4lb listening (stderr: ${err()})`);
      const line = out().split('\n').find((l) => l.includes('"listening"'))!;
      assert.equal((JSON.parse(line) as { port: number }).port, port);
      const c = await connect(port);
      c.write('via-fd-3');
      assert.equal((await readBytes(c, 8)).toString(), 'via-fd-3');
      c.destroy();
      child.kill('SIGTERM');
      assert.equal(await withTimeout(exited, 10000, 'exit'), 0);
    } finally {
      child.kill('SIGKILL');
      await echo.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('socket activation with workers = 2: TCP shared by the workers on fd 3, UDP on fd 4', { skip: hasPython ? false : 'python3 not installed' }, async () => {
    const echo = await startEchoServer();
    const udpEcho = dgram.createSocket('udp4');
    udpEcho.on('message', (m, r) => udpEcho.send(m, r.port, r.address));
    await new Promise<void>((r) => udpEcho.bind(0, '127.0.0.1', () => r()));
    const dir = mkdtempSync(join(tmpdir(), 'l4lb-activation-'));
    const cfgPath = join(dir, 'lb.toml');
    // Both configured binds are unreachable: serving proves the inherited sockets are used.
    writeFileSync(
      cfgPath,
      '[global]\nworkers = 2\n' +
        listenerToml('web', 'p').replace('127.0.0.1:0', '127.0.0.1:1') +
        listenerToml('dns', 'u', 'protocol = "udp"\nudp_responses = 1').replace('127.0.0.1:0', '127.0.0.1:1') +
        poolToml('p', 'round-robin', [`{ address = "127.0.0.1:${echo.port}" }`]) +
        poolToml('u', 'round-robin', [`{ address = "127.0.0.1:${udpEcho.address().port}" }`]),
    );
    const py = `
import os, socket, sys
t = socket.socket()
t.bind(("127.0.0.1", 0))
t.listen(16)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("127.0.0.1", 0))
print(t.getsockname()[1], u.getsockname()[1], flush=True)
os.dup2(t.fileno(), 3)
os.dup2(u.fileno(), 4)
os.set_inheritable(3, True)
os.set_inheritable(4, True)
env = dict(os.environ, LISTEN_FDS="2", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="web:dns")
os.execve(sys.argv[1], [sys.argv[1], sys.argv[2], "-c", sys.argv[3]], env)
`;
    const { child, exited, out, err } = spawnActivated(py, cfgPath);
    const client = dgram.createSocket('udp4');
    try {
      await waitFor(() => out().includes('\n'), 5000, 'activation ports');
      const [tcpPort, udpPort] = out().split('\n')[0]!.split(' ').map(Number) as [number, number];
      const listening = (): { listener: string; port: number }[] =>
        out()
          .split('\n')
          .filter((l) => l.includes('"listening"'))
          .map((l) => JSON.parse(l) as { listener: string; port: number });
      await waitFor(() => listening().length >= 2, 15000, `l4lb listening (stderr: ${err()})`);
      assert.deepEqual(listening().map((l) => [l.listener, l.port]).sort(), [['dns', udpPort], ['web', tcpPort]]);
      for (let i = 0; i < 6; i++) {
        const c = await connect(tcpPort);
        c.write(`via-fd-3-${i}`);
        assert.equal((await readBytes(c, 10)).toString(), `via-fd-3-${i}`);
        c.destroy();
      }
      await new Promise<void>((r) => client.bind(0, '127.0.0.1', () => r()));
      const reply = new Promise<string>((r) => client.once('message', (m) => r(m.toString())));
      client.send('via-fd-4', udpPort, '127.0.0.1');
      assert.equal(await withTimeout(reply, 5000, 'udp reply'), 'via-fd-4');
      child.kill('SIGTERM');
      assert.equal(await withTimeout(exited, 15000, 'exit'), 0);
    } finally {
      child.kill('SIGKILL');
      client.close();
      udpEcho.close();
      await echo.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  const analyze = spawnSync('systemd-analyze', ['--version']).status === 0;
  test('the shipped unit passes systemd-analyze verify', { skip: analyze ? false : 'systemd-analyze not installed' }, () => {
    const dir = mkdtempSync(join(tmpdir(), 'l4lb-unit-'));
    try {
      // Point ExecStart at a binary that exists here; everything else is verified as shipped.
      const unit = readFileSync(join(__dirname, '..', '..', '..', 'configs', 'l4lb.service'), 'utf8').replace(/^ExecStart=\S+/m, `ExecStart=${process.execPath}`);
      const path = join(dir, 'l4lb.service');
      writeFileSync(path, unit);
      const r = spawnSync('systemd-analyze', ['verify', path], { encoding: 'utf8' });
      const problems = `${r.stdout}${r.stderr}`
        .split('\n')
        .filter((l) => l.trim() !== '' && l.includes('l4lb.service') && !/Failed to (connect|create)|No such file|bus|Running in chroot/i.test(l));
      assert.deepEqual(problems, [], `${r.stdout}${r.stderr}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
