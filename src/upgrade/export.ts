/**
 * Upgrade, the old side of one data plane (a single process, or one worker
 * of many): its listening sockets, pausing and resuming them, and taking
 * every UDP session and TCP connection out of its pump to send it on a
 * channel. The channel leads to the new process (single process), or to
 * this worker's primary, which relays it (src/cluster/upgrade-old.ts).
 * Only an acknowledged session is released here; any failure takes back
 * what was not acknowledged.
 */
import type net from 'node:net';
import type { Logger } from '../log';
import type { DataPlane } from '../dataplane/dataplane';
import { TcpListener, type AnySession } from '../tcp/listener';
import { UdpListener, type UdpSession } from '../udp/listener';
import { EngineUdpListener, type EngineHandover } from '../udp/engine';
import type { PumpHandover } from '../tcp/pump';
import type { Channel } from './channel';
import { formatHostPort } from '../net/address';
import { dgramHandle, netHandle, socketFromHandle, startReceiving, stopReceiving, type RawHandle } from './handles';
import { ACK_TIMEOUT_MS, CONNECTING_WAIT_MS, TCP_WINDOW, type ToNew, type ToOld } from './protocol';

export type OutChannel = Channel<ToOld, ToNew>;

/** One data plane's part in an upgrade, as src/upgrade/old.ts drives it. */
export interface HandoverSource {
  /** Sends every TCP and UDP listening socket; resolves with how many. */
  sendListeners(ch: OutChannel): Promise<number>;
  /** Stops accepting (the new process accepts now). */
  pause(): Promise<void>;
  /** Sends every UDP session, `udp-done`, then every TCP connection; throws HandoverFailed. */
  handOver(ch: OutChannel): Promise<HandedOver>;
  /** After a failure: accepts again. */
  resume(): void;
}

/** The data plane of this process. */
export function localSource(dp: DataPlane, log: Logger): HandoverSource {
  return {
    sendListeners: (ch) => sendListeners(dp, ch),
    pause: async () => pauseListeners(dp),
    handOver: (ch) => handOverSessions(dp, ch, log),
    resume: () => resumeListeners(dp, log),
  };
}

export interface HandedOver {
  connections: number;
  sessions: number;
  /** Connections still open here after the handover (they finish here). */
  leftBehind: number;
  /** The longest a TCP connection was held: from its pump's pause to the new process's acknowledgement. */
  maxPauseMs: number;
}

/** A handover that failed half-way: what had gone before (the rest is back in the data plane). */
export class HandoverFailed extends Error {
  readonly connections: number;
  readonly sessions: number;

  constructor(message: string, connections: number, sessions: number) {
    super(message);
    this.connections = connections;
    this.sessions = sessions;
  }
}

class Failed extends Error {}

const tcpListeners = (dp: DataPlane): TcpListener[] => [...dp.listeners.values()].filter((l): l is TcpListener => l instanceof TcpListener);
const udpListeners = (dp: DataPlane): UdpListener[] => [...dp.listeners.values()].filter((l): l is UdpListener => l instanceof UdpListener);

/** Sends every TCP and UDP listening socket of `dp` (not the admin's); resolves with how many. */
export async function sendListeners(dp: DataPlane, ch: OutChannel): Promise<number> {
  let listeners = 0;
  for (const l of tcpListeners(dp)) {
    const held = l.upgradeSocket();
    const h = held === null ? null : netHandle(held.socket);
    try {
      if (h === null) continue;
      await ch.send({ t: 'listener', name: l.name, kind: 'tcp', bind: `${l.config.protocol} ${l.config.bindText}` }, h);
      listeners++;
    } finally {
      if (held?.own === true) held.socket.destroy();
    }
  }
  for (const l of udpListeners(dp)) {
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
  return listeners;
}

/** The new process accepts on every listener: stop accepting here (UDP listeners stay open: replies leave through them). */
export function pauseListeners(dp: DataPlane): void {
  for (const l of tcpListeners(dp)) void l.stopAccepting(true);
  for (const l of udpListeners(dp)) if (l.dgramSocket !== null) stopReceiving(l.dgramSocket);
  for (const l of udpListeners(dp)) if (l instanceof EngineUdpListener) l.pauseForUpgrade(true);
}

/** How long a listener binding again after a failed handover waits for the address (the new process may still hold it). */
const REBIND_WAIT_MS = 5_000;

/**
 * Undoes pauseListeners() after a failed handover: UDP reads again, TCP
 * listeners bind again. An address still in use (by the dying new process,
 * or its workers, which end a moment after it) is tried again every 100 ms
 * for up to REBIND_WAIT_MS.
 */
export function resumeListeners(dp: DataPlane, log: Logger): void {
  for (const l of udpListeners(dp)) if (l.dgramSocket !== null) startReceiving(l.dgramSocket);
  for (const l of udpListeners(dp)) if (l instanceof EngineUdpListener) l.pauseForUpgrade(false);
  const until = Date.now() + REBIND_WAIT_MS;
  const bind = (l: TcpListener): void => {
    l.listen().catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'EADDRINUSE' && Date.now() < until) setTimeout(() => bind(l), 100);
      else log.error({ listener: l.name, err: e.message }, 'upgrade: listener could not bind again');
    });
  };
  for (const l of tcpListeners(dp)) bind(l);
}

/**
 * Sends every UDP session, `udp-done`, then every TCP connection (waiting
 * up to CONNECTING_WAIT_MS for those still connecting), each with an id
 * (1, 2, ...) its acknowledgement names. Throws HandoverFailed once what
 * was not acknowledged is back in its listener.
 */
export async function handOverSessions(dp: DataPlane, ch: OutChannel, log: Logger): Promise<HandedOver> {
  let nextId = 1;
  let sessions = 0;
  let connections = 0;
  let maxPause = 0;
  const udp = udpListeners(dp);
  if (udp.some((l) => l instanceof EngineUdpListener)) await EngineUdpListener.settlePending();
  const taken: (PumpHandover & { session: AnySession })[] = [];
  // Engine sessions out of their engine and not yet acknowledged: taken back on a failure.
  const engineOut: EngineHandover[] = [];
  try {
    for (const l of [...udp, ...[...dp.retired].filter((x): x is UdpListener => x instanceof UdpListener)]) {
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
  } catch (err) {
    // What the other side took is its own (and gone with it if it died); the rest goes on here.
    for (const p of taken) takeBack(p);
    for (const h of engineOut.splice(0)) if (!h.listener.takeBackExported(h)) log.warn({ listener: h.listener.name, client: formatHostPort(h.clientAddr, h.clientPort) }, 'upgrade: a UDP session could not be taken back');
    throw new HandoverFailed((err as Error).message, connections, sessions);
  }
  return { connections, sessions, leftBehind: dp.activeConnections(), maxPauseMs: maxPause };
}

async function handUdp(ch: OutChannel, l: UdpListener, s: UdpSession, id: number): Promise<void> {
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
async function handEngineUdp(ch: OutChannel, h: EngineHandover, id: number): Promise<void> {
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

async function handTcp(ch: OutChannel, s: AnySession, p: PumpHandover, id: number): Promise<void> {
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
