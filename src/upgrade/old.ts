/**
 * Upgrade, the old process's side (SPEC §8.5, docs/upgrade.md): starts the
 * program on disk with the same arguments, hands it every listening socket,
 * UDP session and TCP connection (with the bytes in flight) and the runtime
 * state, then exits 0 as soon as it confirms. Until the new process says
 * `ready` nothing here has stopped or paused: any failure before that
 * (invalid file, a program that exits or never answers) leaves this process
 * serving as if nothing had happened.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type net from 'node:net';
import type { UpgradeHost } from './host';
import { DataPlane } from '../dataplane/dataplane';
import { TcpListener, type AnySession } from '../tcp/listener';
import { UdpListener, type UdpSession } from '../udp/listener';
import { EngineUdpListener, type EngineHandover } from '../udp/engine';
import type { PumpHandover } from '../tcp/pump';
import { Channel } from './channel';
import { formatHostPort } from '../net/address';
import { closeRaw, dgramHandle, netHandle, socketFromHandle, startReceiving, stopReceiving, type RawHandle } from './handles';
import { ACK_TIMEOUT_MS, CONNECTING_WAIT_MS, HELLO_TIMEOUT_MS, READY_TIMEOUT_MS, TCP_WINDOW, UPGRADE_ENV, UPGRADE_EXEC_ENV, type ToNew, type ToOld } from './protocol';

export type UpgradeResult =
  | { ok: true; pid: number; listeners: number; connections: number; sessions: number; left_behind: number }
  | { ok: false; reason: string };

let running: Promise<UpgradeResult> | null = null;

/** Runs one upgrade (a second request while one runs gets the same outcome). */
export function upgrade(server: UpgradeHost): Promise<UpgradeResult> {
  if (running !== null) return running;
  running = run(server).finally(() => {
    running = null;
  });
  return running;
}

class Failed extends Error {}

async function run(server: UpgradeHost): Promise<UpgradeResult> {
  const log = server.log;
  const dp = server.dataPlane;
  const fail = (reason: string): UpgradeResult => {
    log.error({ reason }, 'upgrade failed');
    return { ok: false, reason };
  };
  if (server.draining) return fail('draining: the process is shutting down');
  if (!(dp instanceof DataPlane)) return fail('workers > 1: upgrade is not supported with worker processes yet (restart instead)');

  const exec = process.env[UPGRADE_EXEC_ENV] || process.execPath;
  const args = [...process.execArgv, ...process.argv.slice(1)];
  log.info({ pid: process.pid, program: exec, args }, 'upgrade started');
  const t0 = Date.now();
  let child: ChildProcess;
  try {
    child = spawn(exec, args, {
      detached: true,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: { ...process.env, [UPGRADE_ENV]: String(process.pid) },
    });
  } catch (err) {
    return fail(`cannot start ${exec}: ${(err as Error).message}`);
  }
  const ch = new Channel<ToOld, ToNew>(child);
  let exitInfo: string | null = null;
  child.on('error', (err) => ch.close(`cannot start ${exec}: ${err.message}`));
  child.on('exit', (code, signal) => {
    exitInfo = signal !== null ? `new process killed by ${signal}` : `new process exited with code ${code}${code === 78 ? ' (configuration invalid)' : ''}`;
    ch.close(exitInfo);
  });
  // An `error` message from the new process ends every wait with its reason.
  const errorWatch = ch.wait((m) => m.t === 'error', 24 * 3600_000, 'error').then(
    ({ msg }) => {
      ch.close(`new process: ${(msg as { reason: string }).reason}`);
    },
    () => undefined,
  );
  void errorWatch;
  const abandon = (): void => {
    // The new process is not used: make sure it does not linger.
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    ch.detach();
  };

  // 1. The new process read a valid file and asks for the state and listeners.
  const tcpListeners = [...dp.listeners.values()].filter((l): l is TcpListener => l instanceof TcpListener);
  const udpListeners = [...dp.listeners.values()].filter((l): l is UdpListener => l instanceof UdpListener);
  let listeners = 0;
  try {
    await ch.wait((m) => m.t === 'hello', HELLO_TIMEOUT_MS, 'hello from the new process');
    await ch.send({ t: 'state', runtime: server.runtime.all(), health: server.health.exportStates() });
    for (const l of tcpListeners) {
      const srv = l.netServer;
      const h = srv === null ? null : netHandle(srv);
      if (h === null) continue;
      await ch.send({ t: 'listener', name: l.name, kind: 'tcp', bind: `${l.config.protocol} ${l.config.bindText}` }, h);
      listeners++;
    }
    for (const l of udpListeners) {
      // The engine's listening socket goes as a dup (the engine keeps its own until this process exits).
      const dup = l instanceof EngineUdpListener ? await l.handoverSocket() : null;
      const s = dup ?? l.dgramSocket;
      const h = s === null ? null : dgramHandle(s);
      if (h === null) continue;
      try {
        await ch.send({ t: 'listener', name: l.name, kind: 'udp', bind: `${l.config.protocol} ${l.config.bindText}` }, h);
      } finally {
        dup?.close();
      }
      listeners++;
    }
    const adminSrv = server.admin?.netServer;
    const ah = adminSrv === undefined ? null : netHandle(adminSrv);
    if (ah !== null && server.config.admin !== null) {
      await ch.send({ t: 'listener', name: 'admin', kind: 'admin', bind: `${server.config.admin.bind.host}:${server.config.admin.bind.port}` }, ah);
    }
    await ch.send({ t: 'listeners-done' });
    await ch.wait((m) => m.t === 'ready', READY_TIMEOUT_MS, 'ready from the new process');
  } catch (err) {
    abandon();
    return fail((err as Error).message);
  }
  const newPid = child.pid ?? 0;
  const tReady = Date.now();

  // 2. The new process accepts on every listener: stop accepting here.
  for (const l of tcpListeners) void l.stopAccepting();
  for (const l of udpListeners) if (l.dgramSocket !== null) stopReceiving(l.dgramSocket);
  for (const l of udpListeners) if (l instanceof EngineUdpListener) l.pauseForUpgrade(true);
  // Only the admin listening socket closes: the request that asked for this
  // upgrade (POST /api/v1/upgrade) is answered when it is done.
  const adminNet = server.admin?.netServer;
  if (adminNet !== undefined && adminNet.listening) adminNet.close();

  // 3. UDP sessions, then TCP connections.
  let nextId = 1;
  let sessions = 0;
  let connections = 0;
  let leftBehind = 0;
  // The longest a TCP connection was held: from its pump's pause to the new process's acknowledgement.
  let maxPause = 0;
  if (udpListeners.some((l) => l instanceof EngineUdpListener)) await EngineUdpListener.settlePending();
  const taken: (PumpHandover & { session: AnySession })[] = [];
  // Engine sessions out of their engine and not yet acknowledged: taken back on a failure.
  const engineOut: EngineHandover[] = [];
  try {
    for (const l of [...udpListeners, ...[...dp.retired].filter((x): x is UdpListener => x instanceof UdpListener)]) {
      if (l instanceof EngineUdpListener) {
        engineOut.push(...(await l.exportSessions()));
        while (engineOut.length > 0) {
          const h = engineOut[0] as EngineHandover;
          await handEngineUdp(ch, h, nextId++);
          engineOut.shift();
          sessions++;
        }
        continue;
      }
      for (const s of l.openSessions()) {
        const id = nextId++;
        await handUdp(ch, l, s, id);
        sessions++;
      }
    }
    await ch.send({ t: 'udp-done' });
    // Connections still connecting to their backend (or reading a PROXY
    // header or ClientHello) get their pump within a connect timeout: they
    // are looked for again, for up to CONNECTING_WAIT_MS.
    const kept = new Set<AnySession>();
    let broken = false;
    const deadline = Date.now() + CONNECTING_WAIT_MS;
    for (;;) {
      const ready: AnySession[] = [];
      let connecting = 0;
      for (const l of [...dp.listeners.values(), ...dp.retired]) {
        if (!(l instanceof TcpListener)) continue;
        for (const s of l.sessions) {
          if (kept.has(s)) continue;
          if (s.pumpKind === null) connecting++;
          else ready.push(s);
        }
      }
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < ready.length && !broken) {
          const s = ready[next++] as AnySession;
          const paused = performance.now();
          const parts = await s.handover();
          if (parts === null) {
            // Ending, or its peer did not read: it stays here.
            kept.add(s);
            continue;
          }
          taken.push(parts);
          if (broken) break;
          const id = nextId++;
          try {
            await handTcp(ch, s, parts, id);
          } catch (err) {
            broken = true;
            throw err;
          }
          taken.splice(taken.indexOf(parts), 1);
          connections++;
          maxPause = Math.max(maxPause, performance.now() - paused);
        }
      };
      // Every worker has stopped (and put what it holds in `taken`) before a failure is handled.
      const outcomes = await Promise.allSettled(Array.from({ length: TCP_WINDOW }, worker));
      for (const o of outcomes) if (o.status === 'rejected') throw o.reason;
      if ((ready.length === 0 && connecting === 0) || Date.now() >= deadline) break;
      if (ready.length === 0) await new Promise((r) => setTimeout(r, 20));
    }
    leftBehind = dp.activeConnections();
    // Counters go on in the new process from these totals (connections left behind count up to now).
    await ch.send({ t: 'done', listeners, connections, sessions, totals: dp.snapshot() });
    await ch.wait((m) => m.t === 'confirmed', ACK_TIMEOUT_MS, 'confirmation from the new process');
  } catch (err) {
    // The new process failed half-way: what it took is its own (and gone with
    // it if it died); the rest goes on here, and listeners bind again.
    abandon();
    for (const p of taken) takeBack(p);
    for (const h of engineOut.splice(0)) if (!h.listener.takeBackExported(h)) log.warn({ listener: h.listener.name, client: formatHostPort(h.clientAddr, h.clientPort) }, 'upgrade: a UDP session could not be taken back');
    for (const l of udpListeners) if (l.dgramSocket !== null) startReceiving(l.dgramSocket);
    for (const l of udpListeners) if (l instanceof EngineUdpListener) l.pauseForUpgrade(false);
    for (const l of tcpListeners) {
      l.listen().catch((e: unknown) => log.error({ listener: l.name, err: (e as Error).message }, 'upgrade: listener could not bind again'));
    }
    server.admin?.listen().catch((e: unknown) => log.error({ listener: 'admin', err: (e as Error).message }, 'upgrade: listener could not bind again'));
    return fail(`${(err as Error).message} (after the handover began: ${connections} connection(s) and ${sessions} UDP session(s) were already handed over)`);
  }
  ch.detach();
  child.unref();
  child.disconnect?.();
  const now = Date.now();
  log.info({ pid: newPid, listeners, connections, sessions, left_behind: leftBehind, duration_ms: now - t0, handover_ms: now - tReady, max_pause_ms: Math.round(maxPause) }, 'upgrade handed over');
  return { ok: true, pid: newPid, listeners, connections, sessions, left_behind: leftBehind };
}

async function handUdp(ch: Channel<ToOld, ToNew>, l: UdpListener, s: UdpSession, id: number): Promise<void> {
  stopReceiving(s.upstream);
  const ack = ch.wait((m) => m.t === 'udp-ok' && m.id === id, ACK_TIMEOUT_MS, 'UDP session acknowledgement');
  ack.catch(() => undefined); // awaited below; a failed send must not leave it unhandled
  await ch.send(
    { t: 'udp', id, listener: l.name, pool: s.poolName, backend: s.backend.address, clientAddr: s.clientAddr, clientPort: s.clientPort, startedAt: s.startedAt, bytesIn: s.bytesIn, bytesOut: s.bytesOut, responses: s.responses, localAddr: '', ifindex: 0 },
    s.upstream,
  );
  try {
    await ack;
  } catch (err) {
    startReceiving(s.upstream);
    throw err;
  }
  l.forgetSession(s);
  s.upstream.close();
}

/** An engine session (out of its engine): sent with its upstream socket; forgotten here once acknowledged. */
async function handEngineUdp(ch: Channel<ToOld, ToNew>, h: EngineHandover, id: number): Promise<void> {
  const ack = ch.wait((m) => m.t === 'udp-ok' && m.id === id, ACK_TIMEOUT_MS, 'UDP session acknowledgement');
  ack.catch(() => undefined); // awaited below; a failed send must not leave it unhandled
  await ch.send(
    {
      t: 'udp',
      id,
      listener: h.listener.name,
      pool: h.pool,
      backend: h.backend.address,
      clientAddr: h.clientAddr,
      clientPort: h.clientPort,
      startedAt: h.startedAt,
      bytesIn: h.bytesIn,
      bytesOut: h.bytesOut,
      responses: h.responses,
      localAddr: h.localAddr,
      ifindex: h.ifindex,
    },
    h.socket,
  );
  await ack;
  h.listener.forgetExported(h);
}

async function handTcp(ch: Channel<ToOld, ToNew>, s: AnySession, p: PumpHandover, id: number): Promise<void> {
  const ch1 = netHandle(p.client);
  const ch2 = netHandle(p.backend);
  if (ch1 === null || ch2 === null) throw new Failed('a connection lost its socket');
  const ack = ch.wait((m) => m.t === 'tcp-ok' && m.id === id, ACK_TIMEOUT_MS, 'connection acknowledgement');
  ack.catch(() => undefined); // awaited below; a failed send must not leave it unhandled
  await ch.send(
    {
      t: 'tcp',
      id,
      listener: (s.listener as TcpListener).name,
      pool: s.pool?.name ?? '',
      backend: s.backend?.address ?? '',
      srcAddr: s.clientAddr,
      srcPort: s.clientPort,
      dstAddr: s.dstAddr,
      dstPort: s.dstPort,
      startedAt: s.startedAt,
      bytesIn: p.bytesIn,
      bytesOut: p.bytesOut,
      toBackend: p.toBackend.toString('base64'),
      toClient: p.toClient.toString('base64'),
      firstFin: p.firstFin,
      connectMs: s.connectMs,
      sni: s.sni,
      sniRouted: s.sniRouted,
    },
    ch1,
  );
  await ch.send({ t: 'tcp-backend', id }, ch2);
  await ack;
  // Only this process's descriptors close: the connections live on there.
  release(p.client);
  release(p.backend);
}

function release(s: net.Socket): void {
  s.removeAllListeners('close');
  s.on('error', () => {});
  s.destroy();
}

/** A connection taken out of its pump whose handover failed: it goes on here, as a new session of the same listener. */
function takeBack(p: PumpHandover & { session?: AnySession }): void {
  const s = p.session;
  const ch = netHandle(p.client);
  const bh = netHandle(p.backend);
  if (s === undefined || ch === null || bh === null || s.pool === null || s.backend === null) {
    p.client.destroy();
    p.backend.destroy();
    return;
  }
  const client = socketFromHandle(ch as RawHandle);
  const backend = socketFromHandle(bh as RawHandle);
  (s.listener as TcpListener).adoptSession(client, backend, { srcAddr: s.clientAddr, srcPort: s.clientPort, dstAddr: s.dstAddr, dstPort: s.dstPort }, s.pool, s.backend, s.startedAt, {
    bytesIn: p.bytesIn,
    bytesOut: p.bytesOut,
    toBackend: p.toBackend,
    toClient: p.toClient,
    firstFin: p.firstFin,
    connectMs: s.connectMs,
    sni: s.sni,
    sniRouted: s.sniRouted,
  });
}

export { closeRaw };
