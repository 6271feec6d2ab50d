/**
 * The byte pump contract. Once a TCP session has a connected backend it hands
 * both sockets to a pump, which moves bytes both ways unchanged until both
 * directions are finished, or one side fails, or the session aborts it.
 * The session does not care which implementation moves the bytes.
 *
 * Ownership: `start()` takes over both sockets. After it returns the caller
 * must not read, write, pause, resume or destroy them itself; it uses the
 * pump's `abort()` and waits for `onDone`.
 *
 * Half-close: EOF from one side is passed on as a FIN (shutdown) to the other
 * while the other direction keeps flowing. A reset or error on either side
 * resets (or, where the platform cannot, destroys) the other side.
 */
import type { Socket } from 'node:net';

import type { PumpEndReason } from '../listener/reasons';
export type { PumpEndReason };

export interface PumpHandle {
  /** Bytes client → backend so far (received from the client and written on). */
  readonly bytesIn: number;
  /** Bytes backend → client so far. */
  readonly bytesOut: number;
  /** Which side sent the first FIN, when the pump tracks it (the JS pump does). */
  readonly firstFin?: 'client' | 'backend' | null;
  /** Reset both sides now. Idempotent; onDone still fires once. */
  abort(): void;
  /**
   * Upgrade (src/upgrade/): stops moving bytes and gives the connection up
   * (onDone never fires then). Null when it cannot be taken out now (it is
   * ending, or bytes could not be flushed in time): the pump goes on.
   */
  handover?(): Promise<PumpHandover | null>;
}

/** A connection taken out of its pump, both sockets open and no longer read or written here. */
export interface PumpHandover {
  client: Socket;
  backend: Socket;
  /** Bytes read from the client and not yet written to the backend (in order, before anything the client sends next). */
  toBackend: Buffer;
  /** Bytes read from the backend and not yet written to the client. */
  toClient: Buffer;
  bytesIn: number;
  bytesOut: number;
  firstFin: 'client' | 'backend' | null;
}

/**
 * Called exactly once when the pump is finished and both sockets are closed
 * (or handed to the kernel to close). Byte totals are final.
 */
export type PumpDone = (reason: PumpEndReason, bytesIn: number, bytesOut: number) => void;

export interface Pump {
  /** 'js' or 'splice': which implementation carries bytes (logged once, shown in status). */
  readonly kind: 'js' | 'splice';
  /**
   * Start moving bytes. `client` may be paused (accepted with pauseOnConnect)
   * and holds any early data in the kernel or in its readable buffer; `backend`
   * is connected. `head`, when given, is written to the backend before any
   * client byte (e.g. a PROXY protocol header) and is not counted in bytesIn.
   */
  start(client: Socket, backend: Socket, head: Buffer | null, done: PumpDone): PumpHandle;
}
