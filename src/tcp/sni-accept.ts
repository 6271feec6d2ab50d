/**
 * `route_by = "sni"` (SPEC §8.2): read the client's TLS ClientHello before
 * choosing a pool, without terminating TLS.
 *
 * The session is already admitted (ACL and limits passed, counted active);
 * after a PROXY header when `accept_proxy_protocol` is on. This reads the
 * client's bytes in JavaScript until the ClientHello is complete (at most
 * 64 KiB, see src/tls/client-hello.ts), keeping every chunk read. The
 * session then routes by the server name and hands the bytes read, all of
 * them and unchanged, to the pump as part of its `head` (after the PROXY
 * header sent to the backend, if any), so both pumps forward them first and
 * the splice pump can still take over the sockets for the rest.
 *
 * Refusals: bytes that are not a ClientHello, a malformed or oversized one,
 * or one not complete within `client_hello_timeout` (an absolute deadline,
 * from the moment the session was admitted) end the session with
 * `bad_client_hello`; a client that leaves before sending a single byte
 * ends it with `client_gone`, one that leaves mid-ClientHello with
 * `bad_client_hello`.
 */
import type net from 'node:net';
import { ClientHelloReader } from '../tls/client-hello';

/** What the reader needs of the session. */
export interface HelloSink {
  /** The ClientHello is complete: `bytes` is everything read from the client so far, in order. */
  routed(sni: string | null, bytes: Buffer): void;
  /** Refuse the client (the socket is destroyed by the session). */
  refuse(reason: 'bad_client_hello' | 'client_gone'): void;
}

export function readClientHello(socket: net.Socket, timeoutMs: number, sink: HelloSink): void {
  const reader = new ClientHelloReader();
  const chunks: Buffer[] = [];
  let got = 0;
  let settled = false;
  const cleanup = (): void => {
    settled = true;
    clearTimeout(timer);
    socket.removeListener('data', onData);
    socket.removeListener('end', onEnd);
    socket.removeListener('close', onEnd);
  };
  const fail = (reason: 'bad_client_hello' | 'client_gone'): void => {
    if (settled) return;
    cleanup();
    chunks.length = 0;
    sink.refuse(reason);
  };
  const onData = (chunk: Buffer): void => {
    if (settled) return;
    chunks.push(chunk);
    got += chunk.length;
    const r = reader.push(chunk);
    if (r.state === 'need-more') return;
    if (r.state === 'bad') {
      fail('bad_client_hello');
      return;
    }
    cleanup();
    stopReading(socket);
    const bytes = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, got);
    chunks.length = 0;
    sink.routed(r.sni, bytes);
  };
  // EOF, reset or close before the ClientHello was complete.
  const onEnd = (): void => fail(got === 0 ? 'client_gone' : 'bad_client_hello');
  const timer = setTimeout(() => fail('bad_client_hello'), timeoutMs);
  socket.on('data', onData);
  socket.on('end', onEnd);
  socket.on('close', onEnd);
  socket.resume();
}

interface ReadableHandle {
  reading?: boolean;
  readStop?: () => number;
  readStart?: () => number;
}

/**
 * Pauses `socket` and stops libuv reading from it now, so that later bytes
 * and a FIN stay in the kernel for the pump. Node's pause() alone lets libuv
 * read on into the stream buffer, and an EOF read while the buffer is empty
 * emits 'end' before the pump listens for it: the FIN would be lost.
 *
 * The handle keeps `reading = true` so the stream's own read-ahead
 * (maybeReadMore) does not start it again; the next resume() (the JS pump,
 * or the next reader) starts it. The splice pump takes the fd without
 * resuming. Called from a 'data' handler, this stops libuv's read loop for
 * this socket before it reads again.
 */
export function stopReading(socket: net.Socket): void {
  socket.pause();
  const h = (socket as unknown as { _handle?: ReadableHandle | null })._handle;
  if (!h || h.reading !== true || typeof h.readStop !== 'function' || typeof h.readStart !== 'function') return;
  h.readStop();
  // A 'resume' still pending from an earlier resume() call may fire while paused: wait for a flowing one.
  const onResume = (): void => {
    const now = (socket as unknown as { _handle?: ReadableHandle | null })._handle;
    if (now !== h || socket.destroyed || typeof h.readStart !== 'function') return;
    if (socket.readableFlowing !== true) socket.once('resume', onResume);
    else h.readStart();
  };
  socket.once('resume', onResume);
}
