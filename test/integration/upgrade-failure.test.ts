/**
 * Upgrade (SPEC §8.5): a new process that cannot start leaves the old one
 * serving (`upgrade failed`); three upgrades in a row under a steady rate
 * of new connections lose none; `l4lb --upgrade` reports both outcomes.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, startEchoServer, waitFor, withTimeout, type TestServer } from '../helpers/net';
import { listenerToml, poolToml } from '../helpers/toml';
import { hasNotify, hasPython, notifySocket } from '../helpers/notify';
import { runCli } from '../helpers/l4lb';
import { createHash } from 'node:crypto';
import { deadPort, startServer } from '../helpers/net';
import { SteadyLoad, UpgradingL4lb, alive, checkNotifiedHandover, oneShot, roundTrip, socketActivated } from '../helpers/upgrade';

function config(echoPort: number, adminPort = 0, extra = ''): string {
  return `[global]\ndrain_timeout = "1s"\n${extra}[admin]\nbind = "127.0.0.1:${adminPort}"\n` + listenerToml('tcp', 'echo') + poolToml('echo', 'round-robin', [`{ address = "127.0.0.1:${echoPort}" }`]);
}




describe('upgrade failures and repeated upgrades', () => {
  const cleanup: (() => Promise<void> | void)[] = [];
  let echo: TestServer;
  before(async () => {
    echo = await startEchoServer();
    cleanup.push(() => echo.close());
  });
  after(async () => {
    for (const c of cleanup.reverse()) await c();
  });

  test('an invalid configuration file: `upgrade failed`, the old process keeps serving its connections and listeners', async () => {
    const lb = new UpgradingL4lb(config(echo.port));
    cleanup.push(() => lb.stop());
    const port = await lb.proc.port('tcp');
    const s = await connect(port);
    cleanup.push(() => void s.destroy());
    await roundTrip(s, 'before\n');
    const good = lb.proc.configPath;
    writeFileSync(good, '[global]\nworkers = "many"\n');
    process.kill(lb.pid, 'SIGUSR2');
    const failed = await lb.log((l) => l.msg === 'upgrade failed', 20000, 'upgrade failed');
    assert.match(String(failed.reason), /configuration invalid/);
    assert.equal(lb.count('upgrade handed over'), 0);
    assert.ok(alive(lb.pid), 'the old process still runs');
    await roundTrip(s, 'after\n');
    await oneShot(port, 1);
  });

  test('a program that exits at once (L4LB_UPGRADE_EXEC, test-only): `upgrade failed`, and `--upgrade` exits 1 with the reason', async () => {
    const lb0 = new UpgradingL4lb(config(echo.port), {});
    cleanup.push(() => lb0.stop());
    await lb0.proc.port('tcp');
    await lb0.proc.stop();
    // A fixed admin port so that `--upgrade` can find the instance: take one the kernel just gave.
    const adminPort = (await lb0.log((l) => l.msg === 'admin listening')).port as number;
    const script = join(lb0.proc.dir + '-exit.sh');
    writeFileSync(script, '#!/bin/sh\nexit 3\n');
    chmodSync(script, 0o755);
    const lb = new UpgradingL4lb(config(echo.port, adminPort), { L4LB_UPGRADE_EXEC: script });
    cleanup.push(() => lb.stop());
    const port = await lb.proc.port('tcp');
    const s = await connect(port);
    cleanup.push(() => void s.destroy());
    await roundTrip(s, 'before\n');
    const r = await runCli(['-c', lb.proc.configPath, '--upgrade'], {}, 30000);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /upgrade failed: new process exited with code 3/);
    const failed = await lb.log((l) => l.msg === 'upgrade failed', 20000, 'upgrade failed');
    assert.match(String(failed.reason), /exited with code 3/);
    assert.ok(alive(lb.pid));
    await roundTrip(s, 'after\n');
    await oneShot(port, 2);
  });

  test('three upgrades in a row under a steady rate of new connections: none fails, long-lived ones go on', async (t) => {
    const lb = new UpgradingL4lb(config(echo.port));
    cleanup.push(() => lb.stop());
    const port = await lb.proc.port('tcp');
    const long = await Promise.all(Array.from({ length: 20 }, () => connect(port)));
    cleanup.push(() => long.forEach((s) => s.destroy()));
    const load = new SteadyLoad(port);
    cleanup.push(() => load.stop()); // a failed test must not leave the load running
    const pids = [lb.pid];
    const admin = (await lb.log((l) => l.msg === 'admin listening')).port as number;
    // The second upgrade is asked for through the admin API (what `l4lb --upgrade` does), which answers with the outcome.
    const viaApi = async (): Promise<void> => {
      const r = await fetch(`http://127.0.0.1:${admin}/api/v1/upgrade`, { method: 'POST' });
      assert.equal(r.status, 200, await r.clone().text());
      const body = (await r.json()) as { pid: number; connections: number };
      // The long-lived ones, and any of the load's short ones open at that moment.
      assert.ok(body.connections >= long.length, `${body.connections} connection(s) handed over, ${long.length} long-lived ones open`);
    };
    for (let n = 0; n < 3; n++) {
      await waitFor(() => load.started > (n + 1) * 30, 10000, 'load running');
      const { line, ms } = await lb.upgrade(20000, n === 1 ? viaApi : undefined);
      pids.push(line.pid as number);
      t.diagnostic(`upgrade ${n + 1}: ${ms} ms, ${String(line.connections)} connection(s) handed over`);
      await lb.waitGone(pids[n] as number, 2000, `pid ${pids[n]} gone`);
      await Promise.all(long.map((s, i) => roundTrip(s, `long ${i} ${n}\n`)));
    }
    await load.stopAndCheck(t, 'three upgrades');
    assert.equal(lb.count('upgrade failed'), 0);
  });

  test('systemd: the new process sends MAINPID=<its pid> and READY=1; the old one sends nothing more', { skip: !hasPython ? 'python3 not installed' : !hasNotify ? 'systemd-notify not installed' : false }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'l4lb-upgrade-notify-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const sock = notifySocket(join(dir, 'notify.sock'));
    cleanup.push(() => sock.stop());
    await sock.ready;
    const lb = new UpgradingL4lb(config(echo.port), { NOTIFY_SOCKET: join(dir, 'notify.sock') });
    cleanup.push(() => lb.stop());
    await lb.proc.port('tcp');
    await waitFor(() => sock.messages.some((m) => m.includes('READY=1')), 5000, 'READY=1');
    const oldPid = lb.pid;
    const { line } = await lb.upgrade();
    const pid = line.pid as number;
    await checkNotifiedHandover(lb, sock.messages, oldPid, pid);
  });

  test('socket activation: the inherited listening socket is handed over too', { skip: hasPython ? false : 'python3 not installed' }, async () => {
    // The configured bind (port 1) cannot be bound: serving after the upgrade proves the inherited socket moved.
    const cfg = listenerToml('web', 'echo').replace('127.0.0.1:0', '127.0.0.1:1') + poolToml('echo', 'round-robin', [`{ address = "127.0.0.1:${echo.port}" }`]);
    const lb = new UpgradingL4lb(`[global]\ndrain_timeout = "1s"\n` + cfg, {}, socketActivated('web'));
    cleanup.push(() => lb.stop());
    const port = await lb.proc.port('web');
    assert.notEqual(port, 1);
    const s = await connect(port);
    cleanup.push(() => void s.destroy());
    await roundTrip(s, 'before\n');
    const { line } = await lb.upgrade();
    assert.equal(line.listeners, 1);
    assert.equal(line.connections, 1);
    await roundTrip(s, 'after\n');
    await oneShot(port, 3);
    assert.equal(lb.count('upgrade failed'), 0);
  });

  test('JS pump: a connection whose client reads nothing is left behind, finishes in the old process with every byte, then it exits', async () => {
    const total = 24 * 1024 * 1024;
    const sentHash = createHash('sha256');
    const blob = Buffer.alloc(total);
    for (let i = 0; i < total; i++) blob[i] = (i * 7919) & 0xff;
    sentHash.update(blob);
    const gush = await startServer((sock) => sock.end(blob));
    cleanup.push(() => gush.close());
    const lb = new UpgradingL4lb(`[global]\nsplice = "off"\ndrain_timeout = "20s"\n` + listenerToml('g', 'gush') + poolToml('gush', 'round-robin', [`{ address = "127.0.0.1:${gush.port}" }`]));
    cleanup.push(() => lb.stop());
    const port = await lb.proc.port('g');
    const s = await connect(port);
    cleanup.push(() => void s.destroy());
    s.pause();
    // The kernel buffers fill up; l4lb holds the rest in its writable buffer.
    await waitFor(() => gush.accepted === 1, 5000, 'backend connection');
    // Stalled: the backend's own unsent bytes stop going down (sampled 50 ms apart, bounded).
    let last = -1;
    await waitFor(() => {
      const w = [...gush.sockets][0]?.writableLength ?? 0;
      const still = w > 0 && w === last;
      last = w;
      return still;
    }, 10000, 'the stream stalled on the client that reads nothing', 50);
    const oldPid = lb.pid;
    const { line } = await lb.upgrade();
    assert.equal(line.left_behind, 1);
    assert.equal(line.connections, 0);
    await lb.log((l) => l.msg === 'upgrade: finishing connections not handed over', 5000);
    assert.ok(alive(oldPid), 'the old process finishes the connection left behind');
    const got = createHash('sha256');
    let n = 0;
    const done = new Promise<void>((resolve) => s.on('end', resolve));
    s.on('data', (d: Buffer) => {
      n += d.length;
      got.update(d);
    });
    s.resume();
    await withTimeout(done, 20000, 'all bytes');
    assert.equal(n, total);
    assert.equal(got.digest('hex'), sentHash.digest('hex'));
    s.end();
    await lb.waitGone(oldPid, 5000, 'old process exits once the connection left behind ended');
  });

  test('a new process that dies half-way through the handover (test-only knob): the old one takes the rest back, binds again and keeps serving', async () => {
    const fixed = await deadPort();
    const adminPort = await deadPort();
    const lb = new UpgradingL4lb(
      `[global]\ndrain_timeout = "1s"\n[admin]\nbind = "127.0.0.1:${adminPort}"\n` + listenerToml('tcp', 'echo').replace('127.0.0.1:0', `127.0.0.1:${fixed}`) + poolToml('echo', 'round-robin', [`{ address = "127.0.0.1:${echo.port}" }`]),
      { L4LB_UPGRADE_TEST_EXIT_AFTER: '3' },
    );
    cleanup.push(() => lb.stop());
    const port = await lb.proc.port('tcp');
    assert.equal(port, fixed);
    const conns = await Promise.all(Array.from({ length: 30 }, () => connect(port)));
    for (const s of conns) s.on('error', () => {});
    cleanup.push(() => conns.forEach((s) => s.destroy()));
    await Promise.all(conns.map((s, i) => roundTrip(s, `before ${i}\n`)));
    process.kill(lb.pid, 'SIGUSR2');
    const failed = await lb.log((l) => l.msg === 'upgrade failed', 20000, 'upgrade failed');
    assert.match(String(failed.reason), /after the handover began/);
    assert.ok(alive(lb.pid));
    // Those the dead process had taken are gone with it; every other one goes on here.
    const outcomes = await Promise.all(conns.map((s, i) => roundTrip(s, `after ${i}\n`).then(() => true, () => false)));
    const kept = outcomes.filter((x) => x).length;
    assert.ok(kept >= 27, `${kept} of 30 connections kept (at most the 3 the dead process had confirmed may be lost)`);
    await waitFor(async () => oneShot(port, 4).then(() => true, () => false), 5000, 'the listener bound again');
    await waitFor(async () => fetch(`http://127.0.0.1:${adminPort}/healthz`).then((r) => r.status === 200, () => false), 5000, 'the admin endpoint bound again');
  });
});
