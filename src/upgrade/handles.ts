/**
 * Upgrade: the libuv handles under Node's socket objects. An upgrade sends
 * raw handles over the IPC channel (Node passes their fds with SCM_RIGHTS)
 * so that the receiving side decides how to wrap them: a connection must
 * arrive unread (paused), a listening socket is adopted by its fd.
 */
import net from 'node:net';
import type dgram from 'node:dgram';

/** A libuv stream/udp handle as Node exposes it (TCPWrap, UDPWrap). */
export interface RawHandle {
  readonly fd?: number;
  reading?: boolean;
  readStop?(): number;
  recvStop?(): number;
  recvStart?(): number;
  close?(cb?: () => void): void;
}

/** The handle under a net.Socket or net.Server (null once closed). */
export function netHandle(s: net.Socket | net.Server): RawHandle | null {
  return (s as unknown as { _handle?: RawHandle | null })._handle ?? null;
}

/** The handle under a dgram.Socket (Node keeps it in a symbol-keyed state object). */
export function dgramHandle(s: dgram.Socket): RawHandle | null {
  const sym = Object.getOwnPropertySymbols(s).find((x) => x.description === 'state symbol');
  if (sym === undefined) return null;
  const state = (s as unknown as Record<symbol, { handle?: RawHandle | null } | undefined>)[sym];
  return state?.handle ?? null;
}

/**
 * A received UDP socket that was connected in the old process: libuv sees
 * the fd connected (and refuses a second connect with EISCONN), Node's
 * state object does not. Marks it connected so send() without an address
 * works. False when Node's state could not be reached.
 */
export function markConnected(s: dgram.Socket): boolean {
  const sym = Object.getOwnPropertySymbols(s).find((x) => x.description === 'state symbol');
  if (sym === undefined) return false;
  const state = (s as unknown as Record<symbol, { connectState?: number } | undefined>)[sym];
  if (state === undefined || typeof state.connectState !== 'number') return false;
  state.connectState = 2; // CONNECT_STATE_CONNECTED in lib/dgram.js
  return true;
}

/** Stops reading a UDP socket: datagrams wait in the kernel for whoever reads next. */
export function stopReceiving(s: dgram.Socket): void {
  const h = dgramHandle(s);
  if (h !== null && typeof h.recvStop === 'function') h.recvStop();
}

/** Undoes stopReceiving(). */
export function startReceiving(s: dgram.Socket): void {
  const h = dgramHandle(s);
  if (h !== null && typeof h.recvStart === 'function') h.recvStart();
}

/**
 * A net.Socket over a received (or taken back) TCP handle: half-open
 * allowed, not read until a pump starts it (so the splice pump may take it).
 */
export function socketFromHandle(handle: RawHandle): net.Socket {
  handle.reading = false;
  return new net.Socket({ handle, allowHalfOpen: true, pauseOnCreate: true, readable: true, writable: true } as net.SocketConstructorOpts);
}

/** Closes a handle nobody wraps (a listening socket the new configuration does not use). */
export function closeRaw(handle: RawHandle): void {
  try {
    handle.close?.();
  } catch {
    /* already closed */
  }
}
