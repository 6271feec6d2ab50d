/**
 * The UDP listener's sessions: one per client address and port, each with
 * its own connected upstream socket, found by client address → client
 * port (two Map lookups per datagram, no key string built), and by
 * backend, so a backend that goes away ends its sessions at once (Envoy's
 * ActiveSession does the same).
 */
import type dgram from 'node:dgram';
import type { Backend } from '../backend/backend';
import type { OpenConnection } from '../listener/base';

/** One UDP flow (client address and port) and its connected upstream socket. */
export class UdpSession implements OpenConnection {
  readonly clientAddr: string;
  readonly clientPort: number;
  readonly backend: Backend;
  /** The pool the backend was picked from. */
  readonly poolName: string;
  readonly connectMs = null;
  readonly retries = 0;
  readonly upstream: dgram.Socket;
  readonly startedAt: number;
  lastActive: number;
  connected = false;
  /** Datagrams that arrived before the upstream socket was connected. */
  pending: Buffer[] | null = null;
  responses = 0;
  bytesIn = 0;
  bytesOut = 0;
  ended = false;

  constructor(clientAddr: string, clientPort: number, backend: Backend, pool: string, upstream: dgram.Socket, now: number) {
    this.clientAddr = clientAddr;
    this.clientPort = clientPort;
    this.backend = backend;
    this.poolName = pool;
    this.upstream = upstream;
    this.startedAt = now;
    this.lastActive = now;
  }
}

export class FlowTable {
  private readonly flows = new Map<string, Map<number, UdpSession>>();
  private readonly byBackend = new Map<Backend, Set<UdpSession>>();
  private count = 0;

  /** Sessions in the table. */
  get size(): number {
    return this.count;
  }

  /** Hot path: the sessions of one client address by port (undefined when it has none); pass it on to add(). */
  ports(addr: string): Map<number, UdpSession> | undefined {
    return this.flows.get(addr);
  }

  /** Adds `s`; `byPort`: what ports() returned for its address, saving a lookup. */
  add(s: UdpSession, byPort: Map<number, UdpSession> | undefined = this.flows.get(s.clientAddr)): void {
    if (byPort === undefined) {
      byPort = new Map();
      this.flows.set(s.clientAddr, byPort);
    }
    byPort.set(s.clientPort, s);
    let set = this.byBackend.get(s.backend);
    if (set === undefined) {
      set = new Set();
      this.byBackend.set(s.backend, set);
    }
    set.add(s);
    this.count++;
  }

  /** Removes `s` (which is in the table). */
  delete(s: UdpSession): void {
    const byPort = this.flows.get(s.clientAddr);
    if (byPort !== undefined && byPort.get(s.clientPort) === s) {
      byPort.delete(s.clientPort);
      if (byPort.size === 0) this.flows.delete(s.clientAddr);
    }
    const set = this.byBackend.get(s.backend);
    if (set !== undefined) {
      set.delete(s);
      if (set.size === 0) this.byBackend.delete(s.backend);
    }
    this.count--;
  }

  /** Every session, live (do not add or remove while iterating). */
  *[Symbol.iterator](): Iterator<UdpSession> {
    for (const byPort of this.flows.values()) yield* byPort.values();
  }

  /** Every session, copied: the caller may end them as it goes. */
  list(): UdpSession[] {
    return [...this];
  }

  /** The sessions of backends `gone` says can no longer take them, copied. */
  ofBackends(gone: (b: Backend) => boolean): UdpSession[] {
    const out: UdpSession[] = [];
    for (const [backend, set] of this.byBackend) if (gone(backend)) out.push(...set);
    return out;
  }
}
