/**
 * Upgrade, the new side of one data plane (a single process, or one
 * worker of many): a received TCP connection or UDP session joins its
 * listener, or is closed when the new configuration has no place for it.
 */
import type dgram from 'node:dgram';
import { Backend } from '../backend/backend';
import type { DataPlaneApi } from '../dataplane/api';
import { DataPlane } from '../dataplane/dataplane';
import { TcpListener } from '../tcp/listener';
import { UdpListener } from '../udp/listener';
import { EngineUdpListener } from '../udp/engine';
import { markConnected, socketFromHandle, type RawHandle } from './handles';
import { UPGRADE_HOLD_UDP_ENV, type TcpMeta, type UdpMeta } from './protocol';

/** Where the new process puts what it receives: its own data plane, or its workers (src/cluster/upgrade-new.ts). */
export interface HandoverSink {
  /** Resolves false when the session was closed instead (no listener or pool for it). */
  udp(m: { t: 'udp' } & UdpMeta, sock: dgram.Socket): Promise<boolean>;
  tcp(m: { t: 'tcp' } & TcpMeta, client: RawHandle, backend: RawHandle): Promise<boolean>;
  /** Every UDP session is in: datagrams held for clients without one go on. */
  releaseUdp(): void;
}

/** This process's data plane. */
export function localSink(dp: DataPlaneApi): HandoverSink {
  return {
    udp: async (m, sock) => adoptUdp(dp, m, sock),
    tcp: async (m, client, backend) => adoptTcp(dp, m, client, backend),
    releaseUdp: () => releaseHeldUdp(dp),
  };
}

/** UDP datagrams held while sessions were still to come go on (see UdpListener.holding); processes started from now on hold none. */
export function releaseHeldUdp(dp: DataPlaneApi): void {
  delete process.env[UPGRADE_HOLD_UDP_ENV];
  UdpListener.holding = false;
  if (dp instanceof DataPlane) for (const l of dp.listeners.values()) if (l instanceof UdpListener) l.releaseHeld();
}

function findBackend(dp: DataPlaneApi, pool: string, address: string): Backend | null {
  const p = dp.pools.get(pool);
  if (p === undefined) return null;
  const b = p.find(address);
  if (b !== undefined) return b;
  // A backend the new configuration removed: the connection goes on to it, outside the pool.
  const m = /^\[?([^\]]+)\]?:(\d+)$/.exec(address);
  if (m === null) return null;
  const host = m[1] as string;
  const x = new Backend({ host, port: Number(m[2]), family: host.includes(':') ? 6 : 4 });
  x.member = false;
  return x;
}

export function adoptTcp(dp: DataPlaneApi, m: TcpMeta, ch: RawHandle, bh: RawHandle): boolean {
  const l = dp instanceof DataPlane ? dp.listeners.get(m.listener) : undefined;
  const pool = dp.pools.get(m.pool);
  const backend = findBackend(dp, m.pool, m.backend);
  const client = socketFromHandle(ch);
  const upstream = socketFromHandle(bh);
  if (!(l instanceof TcpListener) || pool === undefined || backend === null) {
    client.on('error', () => {});
    upstream.on('error', () => {});
    client.destroy();
    upstream.destroy();
    return false;
  }
  l.adoptSession(client, upstream, { srcAddr: m.srcAddr, srcPort: m.srcPort, dstAddr: m.dstAddr, dstPort: m.dstPort }, pool, backend, m.startedAt, {
    bytesIn: m.bytesIn,
    bytesOut: m.bytesOut,
    toBackend: Buffer.from(m.toBackend, 'base64'),
    toClient: Buffer.from(m.toClient, 'base64'),
    firstFin: m.firstFin,
    connectMs: m.connectMs,
    sni: m.sni,
    sniRouted: m.sniRouted,
  });
  return true;
}

export function adoptUdp(dp: DataPlaneApi, m: UdpMeta, sock: dgram.Socket): boolean {
  const l = dp instanceof DataPlane ? dp.listeners.get(m.listener) : undefined;
  const backend = findBackend(dp, m.pool, m.backend);
  if (!(l instanceof UdpListener) || backend === null) {
    sock.close();
    return false;
  }
  // The engine serves it on with the same upstream socket (it takes a dup; this one closes).
  const carried = { startedAt: m.startedAt, bytesIn: m.bytesIn, bytesOut: m.bytesOut, responses: m.responses ?? 0, localAddr: m.localAddr ?? '', ifindex: m.ifindex ?? 0 };
  if (l instanceof EngineUdpListener) return l.adoptEngineSession(sock, m.clientAddr, m.clientPort, backend, carried);
  // The JavaScript path cannot choose a reply's source address: on a wildcard bind the kernel picks it.
  l.adoptSession(sock, m.clientAddr, m.clientPort, backend, carried, markConnected(sock));
  return true;
}
