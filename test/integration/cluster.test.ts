/**
 * workers = 2: the data plane in two worker processes under one control
 * plane, through the real CLI.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type net from 'node:net';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { readdirSync, readlinkSync } from 'node:fs';
import { startEchoServer, startTaggedServer, connect, readLine, readBytes, waitFor, withTimeout, type TestServer } from '../helpers/net';
import { L4lbProcess } from '../helpers/l4lb';
import { childPids } from '../helpers/cluster';
import { listenerToml, poolToml } from '../helpers/toml';

async function status(port: number): Promise<{ listeners: { name: string; active_connections: number }[]; pools: { name: string; backends: { address: string; state: string; total_connections: number }[] }[] }> {
  const r = await fetch(`http://127.0.0.1:${port}/api/v1/status`, { signal: AbortSignal.timeout(5000) });
  return (await r.json()) as never;
}

async function metric(port: number, line: string): Promise<number | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
  const l = text.split('\n').find((x) => x.startsWith(`${line} `));
  return l === undefined ? undefined : Number(l.slice(line.length + 1));
}

/** Worker pids: the children of the l4lb process. */
/** Open sockets of a process (its /proc fd table). */
function socketCount(pid: number): number {
  let n = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:')) n++;
    } catch {
      // closed meanwhile
    }
  }
  return n;
}

async function workerPids(pid: number): Promise<number[]> {
  return childPids(pid);
}

describe('workers = 2', () => {
  let echo: TestServer;
  let lb: L4lbProcess;
  let admin: number;

  before(async () => {
    echo = await startEchoServer();
    lb = new L4lbProcess(
      `[global]\nworkers = 2\nconnection_log = true\n[admin]\nbind = "127.0.0.1:0"\n` +
        listenerToml('e', 'p') +
        listenerToml('m', 'p') +
        poolToml('p', 'round-robin', [`{ address = "127.0.0.1:${echo.port}" }`]),
    );
    admin = (await lb.waitForLog((l) => l.msg === 'admin listening', 10000)).port as number;
    await lb.port('e');
  });
  after(async () => {
    await lb.stop();
    await echo.close();
  });

  test('connections reach both workers', async () => {
    const port = await lb.port('e');
    const seen = new Set<unknown>();
    for (let batch = 0; batch < 10 && seen.size < 2; batch++) {
      const conns = await Promise.all(Array.from({ length: 40 }, () => connect(port)));
      await Promise.all(conns.map(async (c) => (c.write('x'), readBytes(c, 1))));
      for (const c of conns) c.end();
      await waitFor(() => lb.logs.filter((l) => l.msg === 'connection closed').length >= (batch + 1) * 40, 10000, 'connections logged');
      for (const l of lb.logs) if (l.msg === 'connection closed') seen.add(l.worker);
    }
    assert.equal(seen.size, 2, `workers seen: ${[...seen].join(',')}`);
  });

  test('status and metrics are the sum over workers and equal the traffic sent', async () => {
    // Listener "m" carries only this test's traffic.
    const port = await lb.port('m');
    const before = 0;
    const bytesBefore = 0;
    const conns = await Promise.all(Array.from({ length: 30 }, () => connect(port)));
    await Promise.all(conns.map(async (c) => (c.write('0123456789'), readBytes(c, 10))));
    await waitFor(async () => (await status(admin)).listeners.find((l) => l.name === 'm')?.active_connections === 30, 5000, 'status sums active connections');
    for (const c of conns) c.end();
    await waitFor(async () => (await metric(admin, 'l4lb_connections_total{listener="m"}')) === before + 30, 5000, 'connections_total +30');
    await waitFor(async () => (await metric(admin, 'l4lb_bytes_total{listener="m",direction="client_to_backend"}')) === bytesBefore + 300, 5000, 'bytes +300');
  });

  test('a worker killed with SIGKILL is replaced; the other worker\'s open connections survive', async () => {
    const port = await lb.port('e');
    const pids = await workerPids(lb.child.pid!);
    assert.equal(pids.length, 2);
    // Open connections until each worker holds some (the kernel, or the
    // native engine's EPOLLEXCLUSIVE wake-ups, may give a burst to one
    // worker): a worker's share shows in its count of open sockets.
    const base = pids.map(socketCount);
    const conns: net.Socket[] = [];
    for (let round = 0; round < 20; round++) {
      const batch = await Promise.all(Array.from({ length: 20 }, () => connect(port)));
      await Promise.all(batch.map(async (c) => (c.write('a'), readBytes(c, 1))));
      conns.push(...batch);
      if (pids.every((p, i) => socketCount(p) > (base[i] ?? 0))) break;
    }
    assert.ok(pids.every((p, i) => socketCount(p) > (base[i] ?? 0)), `both workers hold connections after ${conns.length}`);
    process.kill(pids[0]!, 'SIGKILL');
    await lb.waitForLog((l) => l.msg === 'worker exited', 5000, 'worker exited logged');
    // Connections of the dead worker are lost; those of the other one still echo.
    const alive = await Promise.all(
      conns.map(async (c) => {
        if (c.destroyed) return false;
        c.write('b');
        return readBytes(c, 1, 2000).then(
          () => true,
          () => false,
        );
      }),
    );
    assert.ok(alive.some(Boolean), 'the other worker kept its connections');
    for (const c of conns) c.destroy();
    await waitFor(async () => (await workerPids(lb.child.pid!)).length === 2, 10000, 'worker replaced');
    // New connections work through both again.
    for (let i = 0; i < 10; i++) {
      const c = await connect(port);
      c.write('n');
      assert.equal((await readBytes(c, 1)).toString(), 'n');
      c.destroy();
    }
  });

  test('a reload under load cuts no connection', async () => {
    const port = await lb.port('e');
    const conns = await Promise.all(Array.from({ length: 20 }, () => connect(port)));
    for (let r = 0; r < 3; r++) {
      const n = lb.logs.filter((l) => l.msg === 'config reloaded').length;
      lb.signal('SIGHUP');
      await lb.waitForLog(() => lb.logs.filter((l) => l.msg === 'config reloaded').length > n, 10000, 'reloaded');
      const replies = await Promise.all(conns.map(async (c, i) => (c.write(`${r}${i}\n`), readLine(c))));
      replies.forEach((x, i) => assert.equal(x, `${r}${i}`));
    }
    for (const c of conns) c.destroy();
  });
});

describe('workers = 2: health and UDP', () => {
  test('a health state change reaches both workers', async () => {
    const a = await startTaggedServer('A');
    const b = await startTaggedServer('B');
    const lb = new L4lbProcess(
      `[global]\nworkers = 2\n` +
        listenerToml('h', 'p') +
        poolToml('p', 'round-robin', [`{ address = "127.0.0.1:${a.port}" }`, `{ address = "127.0.0.1:${b.port}" }`], '', 'interval = "100ms"\ntimeout = "100ms"\nfall = 2\nrise = 2'),
    );
    try {
      const port = await lb.port('h');
      a.server.close();
      for (const s of a.sockets) s.destroy();
      await lb.waitForLog((l) => l.msg === 'backend state changed' && l.to === 'down', 5000, 'A down');
      for (let i = 0; i < 30; i++) {
        const c: net.Socket = await connect(port);
        assert.equal(await readLine(c), 'B');
        c.destroy();
      }
    } finally {
      await lb.stop();
      await b.close();
    }
  });

  test('a UDP flow stays on one worker and one backend', async () => {
    const be = dgram.createSocket('udp4');
    be.on('message', (m, r) => be.send(Buffer.concat([Buffer.from(`${r.port}:`), m]), r.port, r.address));
    be.bind(0, '127.0.0.1');
    await once(be, 'listening');
    const lb = new L4lbProcess(
      `[global]\nworkers = 2\n[[listeners]]\nname = "u"\nprotocol = "udp"\nbind = "127.0.0.1:0"\npool = "p"\n` +
        poolToml('p', 'round-robin', [`{ address = "127.0.0.1:${be.address().port}" }`]),
    );
    const c = dgram.createSocket('udp4');
    try {
      const port = await lb.port('u');
      c.bind(0, '127.0.0.1');
      await once(c, 'listening');
      const upstreamPorts = new Set<string>();
      for (let i = 0; i < 20; i++) {
        c.send(`m${i}`, port, '127.0.0.1');
        const [msg] = (await withTimeout(once(c, 'message'), 3000, 'udp reply')) as [Buffer];
        upstreamPorts.add(msg.toString().split(':')[0]!);
      }
      assert.equal(upstreamPorts.size, 1, 'every datagram of the flow went through the same session');
    } finally {
      c.close();
      be.close();
      await lb.stop();
    }
  });
});


