/**
 * The JavaScript byte pump: moves bytes between two net.Sockets through
 * Node's buffers, for every platform and as the fallback of the splice pump.
 *
 * Why not `a.pipe(b).pipe(a)`: pipe() ends the destination on the source's
 * 'end' only if allowHalfOpen is off on both, loses resets (an error on one
 * side leaves the other open) and never reports bytes. This pump:
 *  - needs both sockets created with `allowHalfOpen: true`;
 *  - passes EOF on as `end()` (FIN) while the other direction keeps flowing;
 *  - turns an error or reset on one side into `resetAndDestroy()` of the
 *    other, once every byte read from the failed side before its reset has
 *    been written (a server's last error message, then its RST, reaches the
 *    client in that order). libuv reports a reset that arrives with the last
 *    bytes as EOF; where the addon is loaded the pump asks the kernel at EOF
 *    (`wasReset`) and passes a reset on as a reset;
 *  - applies backpressure both ways (pause the reader while the writer's
 *    buffer is above its high-water mark), so memory per connection is bounded
 *    by two socket high-water marks;
 *  - counts bytes in plain numbers; nothing is allocated per chunk.
 */
import type { Socket } from 'node:net';
import type { Pump, PumpDone, PumpEndReason, PumpHandle, PumpHandover } from './pump';
import { wasReset } from '../native/addon';

const EMPTY = Buffer.alloc(0);

function fdOf(s: Socket): number {
  const h = (s as unknown as { _handle?: { fd?: number } | null })._handle;
  return h && typeof h.fd === 'number' ? h.fd : -1;
}

class JsPumpConn implements PumpHandle {
  bytesIn = 0;
  bytesOut = 0;
  firstFin: 'client' | 'backend' | null = null;
  private closed = 0;
  private reason: PumpEndReason | null = null;
  /** The side being reset once its pending writes are flushed (see fail()). */
  private resetting: Socket | null = null;
  private readonly client: Socket;
  private readonly backend: Socket;
  private readonly done: PumpDone;

  constructor(client: Socket, backend: Socket, done: PumpDone) {
    this.client = client;
    this.backend = backend;
    this.done = done;
  }

  start(head: Buffer | null): void {
    const { client, backend } = this;
    if (head !== null) backend.write(head);

    client.on('data', (chunk: Buffer) => {
      this.bytesIn += chunk.length;
      if (!backend.write(chunk)) client.pause();
    });
    backend.on('data', (chunk: Buffer) => {
      this.bytesOut += chunk.length;
      if (!client.write(chunk)) backend.pause();
    });
    backend.on('drain', () => client.resume());
    client.on('drain', () => backend.resume());

    // FIN one way is passed on as FIN; the other way keeps flowing.
    client.on('end', () => {
      if (this.firstFin === null) this.firstFin = 'client';
      this.onEnd(client, backend, 'client_reset');
    });
    backend.on('end', () => {
      if (this.firstFin === null) this.firstFin = 'backend';
      this.onEnd(backend, client, 'backend_reset');
    });
    // The client's EOF may have been consumed before the pump existed (the
    // PROXY header reader resumes the socket): pass it on now.
    if (client.readableEnded) {
      this.firstFin = 'client';
      this.onEnd(client, backend, 'client_reset');
    }

    client.on('error', () => this.fail('client_reset', backend));
    backend.on('error', () => this.fail('backend_reset', client));
    client.on('close', () => this.onClose(backend));
    backend.on('close', () => this.onClose(client));

    client.resume();
    backend.resume();
  }

  /** EOF from `from`: a FIN to pass on, unless the kernel says it was a reset. */
  private onEnd(from: Socket, to: Socket, resetReason: PumpEndReason): void {
    if (wasReset(fdOf(from)) === true) {
      from.destroy();
      this.fail(resetReason, to);
    } else to.end();
  }

  /**
   * One side failed: reset the other so its peer learns of it too — after
   * what was already written to it has reached the kernel, so bytes read
   * before the failure are not cut off by the reset.
   */
  private fail(reason: PumpEndReason, other: Socket): void {
    if (this.reason === null) this.reason = reason;
    if (other.destroyed) return;
    const reset = (): void => {
      if (!other.destroyed) other.resetAndDestroy();
    };
    if (other.writableLength === 0 && (!other.writableEnded || other.writableFinished)) return reset();
    this.resetting = other;
    if (other.writableEnded) other.once('finish', reset);
    else other.write(EMPTY, reset);
  }

  /**
   * A socket closed. After both directions ended normally Node closes each
   * socket by itself; if one closed any other way (destroyed without error),
   * the other must not linger half-owned.
   */
  private onClose(other: Socket): void {
    this.closed++;
    if (this.closed === 1) {
      // The first side is gone. If the other side has not finished both ways,
      // it can never complete: its partner is gone.
      // It will close by itself once it has received and sent its FIN.
      if (other !== this.resetting && !other.destroyed && !(other.readableEnded && other.writableEnded)) {
        if (this.reason === null) this.reason = 'aborted';
        other.destroy();
      }
      return;
    }
    this.done(this.reason ?? 'closed', this.bytesIn, this.bytesOut);
  }

  /**
   * Upgrade: stops reading both sockets, lets what was already read reach
   * the kernel (bounded by `flushMs`), then lets both sockets go untouched.
   * Null (and reading goes on) when the connection is ending or its bytes
   * did not flush in time (a peer that does not read).
   */
  async handover(flushMs = HANDOVER_FLUSH_MS): Promise<PumpHandover | null> {
    const { client, backend } = this;
    const ending = (): boolean => this.reason !== null || this.closed > 0 || this.resetting !== null || client.destroyed || backend.destroyed;
    if (ending() || !holdReading(client) || !holdReading(backend)) return null;
    const flushed = (): boolean => client.readableLength === 0 && backend.readableLength === 0 && client.writableLength === 0 && backend.writableLength === 0;
    const deadline = Date.now() + flushMs;
    while (!flushed() && !ending() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
    if (ending() || !flushed()) {
      releaseReading(client);
      releaseReading(backend);
      return null;
    }
    for (const s of [client, backend]) {
      for (const ev of ['data', 'end', 'drain', 'error', 'close']) s.removeAllListeners(ev);
      s.on('error', noop);
    }
    this.reason = 'aborted';
    return { client, backend, toBackend: EMPTY, toClient: EMPTY, bytesIn: this.bytesIn, bytesOut: this.bytesOut, firstFin: this.firstFin };
  }

  abort(): void {
    if (this.reason === null) this.reason = 'aborted';
    if (!this.client.destroyed) this.client.resetAndDestroy();
    if (!this.backend.destroyed) this.backend.resetAndDestroy();
  }
}

/** How long an upgrade waits for a JS-pumped connection's bytes to reach the kernel. */
const HANDOVER_FLUSH_MS = 1000;

function noop(): void {}

interface ReadHandle {
  reading?: boolean;
  readStop?(): number;
  readStart?(): number;
}

/**
 * Stops libuv reading a socket and keeps Node from starting it again:
 * `reading` stays true, so the stream's resume() (the pump's backpressure)
 * moves only what was already read. False when the socket has no handle.
 */
function holdReading(s: Socket): boolean {
  const h = (s as unknown as { _handle?: ReadHandle | null })._handle;
  if (!h || typeof h.readStop !== 'function') return false;
  if (h.reading === true) h.readStop();
  h.reading = true;
  return true;
}

/** Undoes holdReading(): reading resumes unless the stream is paused (backpressure resumes it). */
function releaseReading(s: Socket): void {
  const h = (s as unknown as { _handle?: ReadHandle | null })._handle;
  if (!h || typeof h.readStart !== 'function') return;
  h.reading = false;
  if (s.readableFlowing === true && !s.destroyed) {
    h.reading = true;
    h.readStart();
  }
}

export const jsPump: Pump = {
  kind: 'js',
  start(client: Socket, backend: Socket, head: Buffer | null, done: PumpDone): PumpHandle {
    const conn = new JsPumpConn(client, backend, done);
    conn.start(head);
    return conn;
  },
};
