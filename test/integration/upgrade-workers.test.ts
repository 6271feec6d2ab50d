/**
 * Upgrade with `workers = 2` (SPEC §8.5, docs/upgrade.md "Workers"),
 * through the real CLI on loopback: the old workers hand their long-lived
 * echo connections, bulk streams in mid-transfer (sha256 both ways) and UDP
 * sessions to the new workers through both primaries; nothing is cut, the
 * old primary and its workers are gone within 2 s, the new process lists
 * the same connections; three upgrades in a row under a steady rate of new
 * connections lose none; an invalid file leaves the old process serving;
 * under systemd the new primary announces itself (MAINPID, READY); a
 * socket-activated listening socket moves to the new primary and workers.
 */
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, deadPort, startEchoServer, waitFor, type TestServer } from '../helpers/net';
import { listenerToml, poolToml } from '../helpers/toml';
import { SteadyLoad, UpgradeTraffic, UpgradingL4lb, alive, listConnections, roundTrip, socketActivated, checkNotifiedHandover, udpEchoBackend, udpPinger } from '../helpers/upgrade';
import { spliceAvailable } from '../../src/native/addon';
import { hasNotify, hasPython, notifySocket } from '../helpers/notify';
import { childPids } from '../helpers/cluster';


/** The pids of `pid`'s running children (its workers; an upgrade's new process until it is on its own). */
function children(pid: number): number[] {
  return childPids(pid).filter(alive);
}


function config(splice: string, echoPort: number, udpPort: number, workers = 2, tcpPort = 0): string {
  return (
    `[global]\nworkers = ${workers}\nsplice = "${splice}"\ndrain_timeout = "1s"\n[admin]\nbind = "127.0.0.1:0"\n` +
    listenerToml('tcp', 'echo').replace('127.0.0.1:0', `127.0.0.1:${tcpPort}`) +
    `[[listeners]]\nname = "udp"\nprotocol = "udp"\nbind = "127.0.0.1:0"\npool = "uecho"\n` +
    poolToml('echo', 'round-robin', [`{ address = "127.0.0.1:${echoPort}" }`]) +
    poolToml('uecho', 'round-robin', [`{ address = "127.0.0.1:${udpPort}" }`])
  );
}

const LONG = 200;
const BULK = 20;
const UDP_SESSIONS = 10;

describe('upgrade with workers = 2', () => {
  const cleanup: (() => Promise<void> | void)[] = [];
  after(async () => {
    for (const c of cleanup.reverse()) await c();
  });

  for (const splice of ['off', 'auto'] as const) {
    test(`splice = "${splice}": connections, bulk streams and UDP sessions go on; the old primary and workers are gone; the new one lists them`, async (t) => {
      if (splice === 'auto' && !spliceAvailable().ok) return t.skip(`native addon not available: ${spliceAvailable().reason}`);
      const echo: TestServer = await startEchoServer();
      cleanup.push(() => echo.close());
      const uecho = await udpEchoBackend();
      cleanup.push(() => uecho.close());
      const lb = new UpgradingL4lb(config(splice, echo.port, uecho.port));
      cleanup.push(() => lb.stop());
      const port = await lb.proc.port('tcp');
      const uport = await lb.proc.port('udp');
      const admin = (await lb.log((l) => l.msg === 'admin listening')).port as number;

      const traffic = await UpgradeTraffic.start({ port, uport, admin, uecho, long: LONG, bulk: BULK, udp: UDP_SESSIONS, seed: 2000, cleanup });

      const oldPid = lb.pid;
      const oldWorkers = children(oldPid);
      assert.equal(oldWorkers.length, 2, `old workers: ${oldWorkers.join(' ')}`);
      // With the JS pump through the admin API (as `l4lb --upgrade`), which answers once it is done.
      const viaApi = async (): Promise<void> => {
        const r = await fetch(`http://127.0.0.1:${admin}/api/v1/upgrade`, { method: 'POST' });
        const text = await r.text();
        assert.equal(r.status, 200, text);
        assert.equal((JSON.parse(text) as { connections: number }).connections, LONG + BULK);
      };
      const { line, ms } = await lb.upgrade(25000, splice === 'off' ? viaApi : undefined);
      const handedAt = Date.now();
      assert.equal(line.listeners, 2);
      assert.equal(line.connections, LONG + BULK);
      assert.equal(line.sessions, UDP_SESSIONS);
      await lb.waitGone(oldPid, 2000, 'old primary gone within 2 s of the handover');
      for (const w of oldWorkers) await lb.waitGone(w, 2000, `old worker ${w} gone within 2 s of the handover`);
      const goneMs = Date.now() - handedAt;
      assert.equal(children(lb.pid).length, 2, 'the new process runs 2 workers');

      const maxGap = await traffic.verify(admin);
      t.diagnostic(`workers=2 splice=${splice}: upgrade ${ms} ms (request to handed over), old primary and workers gone ${goneMs} ms after; longest ping wait ${maxGap} ms; handed over ${JSON.stringify({ listeners: line.listeners, connections: line.connections, sessions: line.sessions, left_behind: line.left_behind, duration_ms: line.duration_ms, handover_ms: line.handover_ms, max_pause_ms: line.max_pause_ms })}`);
      assert.ok(maxGap < 1000, `a pinging connection waited ${maxGap} ms`);
      assert.equal(lb.count('upgrade failed'), 0);
    });
  }

  test('three upgrades in a row under a steady rate of new connections: none fails, long-lived ones go on', async (t) => {
    const echo = await startEchoServer();
    cleanup.push(() => echo.close());
    const uecho = await udpEchoBackend();
    cleanup.push(() => uecho.close());
    const lb = new UpgradingL4lb(config('auto', echo.port, uecho.port));
    cleanup.push(() => lb.stop());
    const port = await lb.proc.port('tcp');
    const long = await Promise.all(Array.from({ length: 20 }, () => connect(port)));
    cleanup.push(() => long.forEach((s) => s.destroy()));
    const load = new SteadyLoad(port);
    cleanup.push(() => load.stop()); // a failed test must not leave the load running
    for (let n = 0; n < 3; n++) {
      await waitFor(() => load.started > (n + 1) * 30, 10000, 'load running');
      const oldPid = lb.pid;
      const oldWorkers = children(oldPid);
      const { line, ms } = await lb.upgrade(25000);
      t.diagnostic(`upgrade ${n + 1}: ${ms} ms, ${String(line.connections)} connection(s) handed over`);
      assert.ok((line.connections as number) >= long.length, `${String(line.connections)} connection(s) handed over, ${long.length} long-lived ones open`);
      await lb.waitGone(oldPid, 2000, `pid ${oldPid} gone`);
      for (const w of oldWorkers) await lb.waitGone(w, 2000, `old worker ${w} gone`);
      await Promise.all(long.map((s, i) => roundTrip(s, `long ${i} ${n}\n`)));
    }
    await load.stopAndCheck(t, 'three upgrades');
    assert.equal(lb.count('upgrade failed'), 0);
  });

  test('an invalid configuration file: `upgrade failed`, the old primary and its workers keep serving', async () => {
    const echo = await startEchoServer();
    cleanup.push(() => echo.close());
    const uecho = await udpEchoBackend();
    cleanup.push(() => uecho.close());
    const lb = new UpgradingL4lb(config('auto', echo.port, uecho.port));
    cleanup.push(() => lb.stop());
    const port = await lb.proc.port('tcp');
    const uport = await lb.proc.port('udp');
    const s = await connect(port);
    cleanup.push(() => void s.destroy());
    await roundTrip(s, 'before\n');
    const u = await udpPinger(uport);
    cleanup.push(() => u.close());
    assert.equal(await u.ask('u before'), 'u before');
    const workers = children(lb.pid);
    writeFileSync(lb.proc.configPath, '[global]\nworkers = "many"\n');
    process.kill(lb.pid, 'SIGUSR2');
    const failed = await lb.log((l) => l.msg === 'upgrade failed', 20000, 'upgrade failed');
    assert.match(String(failed.reason), /configuration invalid/);
    assert.equal(lb.count('upgrade handed over'), 0);
    assert.ok(alive(lb.pid), 'the old primary still runs');
    await waitFor(() => children(lb.pid).length === 2, 5000, 'the new process gone');
    assert.deepEqual(children(lb.pid).sort(), workers.sort(), 'the same workers');
    await roundTrip(s, 'after\n');
    const c = await connect(port);
    await roundTrip(c, 'new\n');
    c.destroy();
    assert.equal(await u.ask('u after'), 'u after');
  });

  test('a new process that dies half-way through the handover (test-only knob): the old workers take the rest back, bind again and keep serving', async () => {
    const echo = await startEchoServer();
    cleanup.push(() => echo.close());
    const uecho = await udpEchoBackend();
    cleanup.push(() => uecho.close());
    const fixed = await deadPort();
    const lb = new UpgradingL4lb(config('auto', echo.port, uecho.port, 2, fixed), { L4LB_UPGRADE_TEST_EXIT_AFTER: '3' });
    cleanup.push(() => lb.stop());
    const port = await lb.proc.port('tcp');
    const uport = await lb.proc.port('udp');
    const conns = await Promise.all(Array.from({ length: 30 }, () => connect(port)));
    for (const s of conns) s.on('error', () => {});
    cleanup.push(() => conns.forEach((s) => s.destroy()));
    await Promise.all(conns.map((s, i) => roundTrip(s, `before ${i}\n`)));
    const u = await udpPinger(uport);
    cleanup.push(() => u.close());
    assert.equal(await u.ask('u before'), 'u before');
    const workers = children(lb.pid);
    process.kill(lb.pid, 'SIGUSR2');
    const failed = await lb.log((l) => l.msg === 'upgrade failed', 20000, 'upgrade failed');
    assert.match(String(failed.reason), /after the handover began/);
    assert.ok(alive(lb.pid));
    await waitFor(() => children(lb.pid).length === 2, 5000, 'the new process gone');
    assert.deepEqual(children(lb.pid).sort(), workers.sort(), 'the same workers');
    // Those the dead process had taken are gone with it; every other one goes on here.
    const outcomes = await Promise.all(conns.map((s, i) => roundTrip(s, `after ${i}\n`).then(() => true, () => false)));
    const kept = outcomes.filter((x) => x).length;
    assert.ok(kept >= 27, `${kept} of 30 connections kept (at most the 3 the dead process had confirmed may be lost)`);
    const fresh = async (): Promise<boolean> => {
      const c = await connect(port).catch(() => null);
      if (c === null) return false;
      // One the dying new process accepted is reset: the next try reaches this process.
      c.on('error', () => {});
      try {
        await roundTrip(c, 'fresh\n');
        return true;
      } catch {
        return false;
      } finally {
        c.destroy();
      }
    };
    await waitFor(fresh, 5000, 'the listener bound again');
    assert.equal(await u.ask('u after'), 'u after');
  });

  test('the number of workers changes with the upgrade: 2 → 1 → 2 → 3, every connection goes on', async (t) => {
    const echo = await startEchoServer();
    cleanup.push(() => echo.close());
    const uecho = await udpEchoBackend();
    cleanup.push(() => uecho.close());
    const lb = new UpgradingL4lb(config('auto', echo.port, uecho.port, 2));
    cleanup.push(() => lb.stop());
    const port = await lb.proc.port('tcp');
    const uport = await lb.proc.port('udp');
    const admin = (await lb.log((l) => l.msg === 'admin listening')).port as number;
    const conns = await Promise.all(Array.from({ length: 20 }, () => connect(port)));
    cleanup.push(() => conns.forEach((s) => s.destroy()));
    const u = await udpPinger(uport);
    cleanup.push(() => u.close());
    for (const [n, workers] of [1, 2, 3].entries()) {
      await Promise.all(conns.map((s, i) => roundTrip(s, `${n} ${i}\n`)));
      assert.equal(await u.ask(`u ${n}`), `u ${n}`);
      // The same binds (port 0): every listening socket, the admin's too, is handed over.
      writeFileSync(lb.proc.configPath, config('auto', echo.port, uecho.port, workers));
      const { line, ms } = await lb.upgrade(25000);
      t.diagnostic(`to workers = ${workers}: ${ms} ms, ${String(line.connections)} connection(s), ${String(line.sessions)} session(s)`);
      assert.equal(line.connections, conns.length);
      assert.equal(line.sessions, 1);
      assert.equal(children(lb.pid).length, workers === 1 ? 0 : workers, `the new process runs ${workers} worker(s)`);
      assert.equal((await listConnections(admin)).filter((c) => c.protocol === 'tcp').length, conns.length);
    }
    await Promise.all(conns.map((s, i) => roundTrip(s, `last ${i}\n`)));
    assert.equal(await u.ask('u last'), 'u last');
    assert.equal(lb.count('upgrade failed'), 0);
  });

  test('systemd: the new primary sends MAINPID=<its pid> and READY=1 once its workers serve; the old one sends nothing more', { skip: !hasPython ? 'python3 not installed' : !hasNotify ? 'systemd-notify not installed' : false }, async () => {
    const echo = await startEchoServer();
    cleanup.push(() => echo.close());
    const uecho = await udpEchoBackend();
    cleanup.push(() => uecho.close());
    const dir = mkdtempSync(join(tmpdir(), 'l4lb-upgrade-workers-notify-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const sock = notifySocket(join(dir, 'notify.sock'));
    cleanup.push(() => sock.stop());
    await sock.ready;
    const lb = new UpgradingL4lb(config('auto', echo.port, uecho.port), { NOTIFY_SOCKET: join(dir, 'notify.sock') });
    cleanup.push(() => lb.stop());
    const port = await lb.proc.port('tcp');
    await waitFor(() => sock.messages.some((m) => m.includes('READY=1')), 10000, 'READY=1');
    const s = await connect(port);
    cleanup.push(() => void s.destroy());
    await roundTrip(s, 'before\n');
    const oldPid = lb.pid;
    const { line } = await lb.upgrade(25000);
    const pid = line.pid as number;
    await checkNotifiedHandover(lb, sock.messages, oldPid, pid);
    // MAINPID names the primary, whose workers serve the connection handed over.
    assert.equal(children(pid).length, 2, 'the new primary runs two workers');
    await roundTrip(s, 'after\n');
  });

  test('socket activation: the inherited listening socket is handed over to the new primary and its workers', { skip: hasPython ? false : 'python3 not installed' }, async () => {
    const echo = await startEchoServer();
    cleanup.push(() => echo.close());
    // The configured bind (port 1) cannot be bound: serving after the upgrade proves the inherited socket moved.
    const cfg = `[global]\nworkers = 2\ndrain_timeout = "1s"\n` + listenerToml('web', 'echo').replace('127.0.0.1:0', '127.0.0.1:1') + poolToml('echo', 'round-robin', [`{ address = "127.0.0.1:${echo.port}" }`]);
    const lb = new UpgradingL4lb(cfg, {}, socketActivated('web'));
    cleanup.push(() => lb.stop());
    const port = await lb.proc.port('web', 20000);
    assert.notEqual(port, 1);
    const conns = await Promise.all(Array.from({ length: 10 }, () => connect(port)));
    cleanup.push(() => conns.forEach((c) => c.destroy()));
    await Promise.all(conns.map((c, i) => roundTrip(c, `before ${i}\n`)));
    const oldPid = lb.pid;
    const { line } = await lb.upgrade(25000);
    assert.equal(line.listeners, 1);
    assert.equal(line.connections, conns.length);
    await lb.waitGone(oldPid, 2000, 'old primary gone');
    assert.equal(children(lb.pid).length, 2, 'the new primary runs two workers');
    await Promise.all(conns.map((c, i) => roundTrip(c, `after ${i}\n`)));
    // New connections reach the new workers through the inherited socket.
    for (let k = 0; k < 6; k++) {
      const c = await connect(port);
      await roundTrip(c, `new ${k}\n`);
      c.destroy();
    }
    assert.equal(lb.count('upgrade failed'), 0);
  });
});
