/**
 * The native UDP engine's binding and what is one per process around it
 * (see engine.ts): loading and starting the engine, the pump that takes
 * its records for the listeners, the backend ids of its records, and small
 * socket helpers of the upgrade.
 */
import type { Backend } from '../backend/backend';
import { loadSpliceAddon } from '../native/addon';
import type { UdpEndReason } from './listener';
import { constants as osConstants } from 'node:os';
import dgram from 'node:dgram';
import { closeSync } from 'node:fs';
import { stopReceiving } from '../upgrade/handles';

/** The engine's functions on the addon (native/README.md, "UDP engine"). */
export interface UdpEngineBinding {
  udpInit(onReady: () => void): boolean;
  udpListen(family: 4 | 6, host: string, port: number, fd: number, bufferBytes: number, dupFd?: boolean): [number, string, number] | number;
  udpConfigure(id: number, idleMs: number, responses: number, accepting: boolean): boolean;
  udpWantClients(on: boolean): void;
  udpTake(): [unknown[] | null, Float64Array | null, string[] | null] | undefined;
  udpOpen(id: number, family: 4 | 6, host: string, port: number, backend: number): number;
  udpReject(id: number): number;
  udpEnd(listener: number, backend: number, reason: number): number;
  udpSessions(listener: number): unknown[];
  udpBackendBytes(listener: number): Float64Array;
  udpCounters(listener: number): Float64Array;
  udpClose(listener: number): boolean;
  udpInfo(): { sessionBytes: number; open: number; pending: number; slots: number; listeners: number; heldBytes: number };
  readonly udpReasons: readonly string[];
  udpListenerFd(listener: number): number;
  udpPause(listener: number, paused: boolean): boolean;
  udpExport(listener: number): unknown[];
  udpImport(listener: number, family: 4 | 6, clientAddr: string, clientPort: number, backend: number, fd: number, startedMs: number, bytesIn: number, bytesOut: number, responses: number, local: string, ifindex: number): number;
}

export const SOCKET_BUFFER = 4 * 1024 * 1024;
export const REASONS: readonly UdpEndReason[] = ['idle_timeout', 'responses', 'backend_refused', 'backend_gone', 'shutdown', 'drain_timeout', 'admin_shutdown', 'error'];
export const R_GONE = 3;
export const R_ADMIN = 6;

let binding: UdpEngineBinding | null | undefined;

/** The engine's functions when the addon has them and its thread started, else null. */
export function udpEngine(): UdpEngineBinding | null {
  if (binding !== undefined) return binding;
  binding = null;
  const { addon } = loadSpliceAddon();
  const b = addon as unknown as Partial<UdpEngineBinding> | null;
  if (b === null || typeof b.udpInit !== 'function' || !Array.isArray(b.udpReasons) || b.udpReasons.join() !== REASONS.join()) return null;
  try {
    if (b.udpInit(pump)) binding = b as UdpEngineBinding;
  } catch {
    binding = null;
  }
  return binding;
}

/** The engine's functions if udpEngine() loaded them, else null (does not load). */
export function loadedUdpEngine(): UdpEngineBinding | null {
  return binding ?? null;
}

/** What the pump calls on an engine listener (EngineUdpListener). */
export interface EngineListenerHooks {
  readonly ctx: { readonly connectionLog: boolean };
  onEnded(f: Float64Array, i: number, client: string | null): void;
  onNewClient(id: number, addr: string, port: number, local: string): void;
}

/** Backends as small integers for the engine's records (ids live while sessions to them are open). */
const backendIds = new Map<Backend, number>();
export const backendsById = new Map<number, { backend: Backend; pool: string; sessions: number }>();
let nextBackendId = 1;

export const listenersById = new Map<number, EngineListenerHooks>();

/** Reason string of an errno returned by the engine. */
export function errnoName(neg: number): string {
  for (const [k, v] of Object.entries(osConstants.errno)) if (v === -neg) return k;
  return `errno ${-neg}`;
}

let pumping = false;
let again = false;

/** Takes what the engine has for TypeScript (ended sessions, then new clients) until it has nothing. */
export function pump(): void {
  const b = binding;
  if (b === null || b === undefined) return;
  if (pumping) {
    again = true;
    return;
  }
  pumping = true;
  try {
    let want = false;
    for (const l of listenersById.values()) if (l.ctx.connectionLog) want = true;
    b.udpWantClients(want);
    for (let round = 0; round < 64; round++) {
      again = false;
      const r = b.udpTake();
      if (r === undefined) {
        if (!again) break;
        continue;
      }
      const [news, ends, clients] = r;
      if (ends !== null) {
        for (let i = 0, k = 0; i < ends.length; i += 7, k++) {
          const l = listenersById.get(ends[i] as number);
          if (l !== undefined) l.onEnded(ends, i, clients === null ? null : (clients[k] ?? null));
        }
      }
      if (news !== null) {
        for (let i = 0; i < news.length; i += 5) {
          const id = news[i] as number;
          const l = listenersById.get(news[i + 1] as number);
          if (l === undefined) b.udpReject(id);
          else l.onNewClient(id, news[i + 2] as string, news[i + 3] as number, news[i + 4] as string);
        }
      }
    }
  } finally {
    pumping = false;
  }
}

/**
 * A dgram socket over `fd` (which it owns from then on) that does not read:
 * dgram starts reading when it binds, it is stopped in the same turn.
 */
export async function quietSocket(family: 4 | 6, fd: number): Promise<dgram.Socket> {
  const s = dgram.createSocket({ type: family === 6 ? 'udp6' : 'udp4' });
  const bound = new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.once('listening', () => {
      stopReceiving(s);
      resolve();
    });
  });
  try {
    // Exclusive: `fd` is this process's own, also in a cluster worker (whose
    // other binds on an fd ask the primary, where that number means nothing).
    s.bind({ fd, exclusive: true });
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  stopReceiving(s);
  await bound;
  s.on('error', () => {});
  return s;
}

/** The fd of a bound dgram socket (libuv's handle; -1 when it has none). */
export function handleFd(s: dgram.Socket): number {
  // Not `s._handle` (deprecated, warns): the same handle under dgram's state symbol.
  const sym = Object.getOwnPropertySymbols(s).find((x) => x.description === 'state symbol');
  const state = sym === undefined ? undefined : (s as unknown as Record<symbol, { handle?: { fd?: number } } | undefined>)[sym];
  return state?.handle?.fd ?? -1;
}

export function idOf(backend: Backend, pool: string): number {
  let id = backendIds.get(backend);
  if (id === undefined) {
    id = nextBackendId++;
    backendIds.set(backend, id);
    backendsById.set(id, { backend, pool, sessions: 0 });
  }
  return id;
}

/** Forgets a backend's id once no session uses it (`ended`: sessions that just ended). */
export function releaseId(id: number, ended: number): void {
  const e = backendsById.get(id);
  if (e === undefined) return;
  e.sessions -= ended;
  if (e.sessions <= 0) {
    backendsById.delete(id);
    backendIds.delete(e.backend);
  }
}
