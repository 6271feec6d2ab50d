/**
 * `accept_proxy_protocol`: read a PROXY v1/v2 header from a new client before
 * anything else, then admit the client under the address the header gives.
 *
 * Bounded: the parser never holds more than the largest legal header; a
 * missing, malformed or over-long header, EOF before it, or none complete
 * within 5 s closes the connection, counted as rejected `proxy_protocol`.
 * Bytes after the header (even in the same segment) are put back with
 * `unshift()` and reach the backend unchanged. `LOCAL` (a peer's health
 * check) and `UNKNOWN` keep the real connection addresses.
 */
import type net from 'node:net';
import { ProxyHeaderParser } from '../proxy';
import type { PeerAddresses } from './session';
import type { TcpListener } from './listener';
import { stopReading } from './sni-accept';

export const PROXY_HEADER_TIMEOUT_MS = 5000;

export function readProxyHeader(socket: net.Socket, peer: PeerAddresses, listener: TcpListener): void {
  const parser = new ProxyHeaderParser();
  let settled = false;
  const cleanup = (): void => {
    settled = true;
    stopReading(socket); // pause, and leave later bytes and a FIN in the kernel for the next reader
    socket.removeListener('data', onData);
    socket.removeListener('end', onFail);
    socket.removeListener('timeout', onFail);
    socket.removeListener('close', onFail);
    socket.setTimeout(0);
  };
  const onFail = (): void => {
    if (settled) return;
    cleanup();
    listener.reject(socket, 'proxy_protocol');
  };
  const onData = (chunk: Buffer): void => {
    const r = parser.push(chunk);
    if (r.state === 'need-more') return;
    cleanup();
    if (r.state === 'error') {
      listener.reject(socket, 'proxy_protocol');
      return;
    }
    if (r.rest.length > 0) socket.unshift(r.rest);
    const h = r.header;
    if (h.command === 'PROXY' && h.source !== undefined && h.destination !== undefined) {
      peer.srcAddr = h.source.address;
      peer.srcPort = h.source.port;
      peer.dstAddr = h.destination.address;
      peer.dstPort = h.destination.port;
    }
    if (socket.destroyed) return;
    listener.admit(socket, peer);
  };
  socket.setTimeout(PROXY_HEADER_TIMEOUT_MS);
  socket.on('timeout', onFail);
  socket.on('end', onFail);
  socket.on('close', onFail);
  socket.on('data', onData);
  socket.resume();
}
