/**
 * `accept_proxy_protocol`: read a PROXY v1/v2 header from a new client before
 * anything else, then let the listener admit the client under the address
 * the header gives.
 *
 * Bounded: the parser never holds more than the largest legal header; a
 * missing, malformed or over-long header, EOF before it, or none complete
 * within 5 s of the accept — an absolute deadline, so a header trickled a
 * byte at a time cannot hold the connection (SPEC §8.6) — fails. Bytes
 * after the header (even in the same segment) are put back with
 * `unshift()` and reach the backend unchanged; an EOF right after the
 * header stays visible to the pump (`readableEnded`), which passes it on.
 * `LOCAL` (a peer's health check) and `UNKNOWN` keep the real connection
 * addresses.
 */
import type net from 'node:net';
import { ProxyHeaderParser } from '../proxy';
import type { PeerAddresses } from '../listener/reasons';
import { stopReading } from './sni-accept';

export const PROXY_HEADER_TIMEOUT_MS = 5000;

/**
 * Reads the header; calls `done(true)` with `peer` updated from it, or
 * `done(false)` when it failed (the caller refuses the socket). `done` is
 * called exactly once, also when the socket is destroyed meanwhile.
 */
export function readProxyHeader(socket: net.Socket, peer: PeerAddresses, done: (ok: boolean) => void): void {
  const parser = new ProxyHeaderParser();
  let settled = false;
  /** Stops reading (and the deadline) before anything is put back or decided. */
  const stop = (): boolean => {
    if (settled) return false;
    settled = true;
    clearTimeout(deadline);
    stopReading(socket); // pause, and leave later bytes and a FIN in the kernel for the next reader
    socket.removeListener('data', onData);
    socket.removeListener('end', onFail);
    socket.removeListener('close', onFail);
    return true;
  };
  const onFail = (): void => {
    if (stop()) done(false);
  };
  const onData = (chunk: Buffer): void => {
    const r = parser.push(chunk);
    if (r.state === 'need-more') return;
    if (!stop()) return;
    if (r.state === 'error') return done(false);
    // Only now (no 'data' listener, paused) can the rest go back unread.
    if (r.rest.length > 0) socket.unshift(r.rest);
    const h = r.header;
    if (h.command === 'PROXY' && h.source !== undefined && h.destination !== undefined) {
      peer.srcAddr = h.source.address;
      peer.srcPort = h.source.port;
      peer.dstAddr = h.destination.address;
      peer.dstPort = h.destination.port;
    }
    done(true);
  };
  const deadline = setTimeout(onFail, PROXY_HEADER_TIMEOUT_MS);
  socket.on('end', onFail);
  socket.on('close', onFail);
  socket.on('data', onData);
  socket.resume();
}
