/**
 * The splice(2) pump: hands both TCP sockets to the native addon, which moves
 * bytes inside the kernel on its own epoll threads (see native/README.md).
 *
 * Handoff: only sockets that libuv has never read from and that have nothing
 * queued can be handed over (`canSplice`). The addon dup()s both fds; the JS
 * socket objects are then destroyed at once, which only closes libuv's fd
 * (no shutdown, no FIN, no RST): the connection lives on through the dups.
 * Policy (idle timeout, drain, counts) stays in JS: `bytesIn`/`bytesOut` are
 * live, read from a slab the addon's threads update after every splice batch.
 *
 * `head` (a PROXY header, a ClientHello read to route by SNI) is handed
 * over with the sockets and written by the engine before any client byte.
 * If the sockets cannot be handed over (no free slot, not spliceable), the
 * connection is carried by the JavaScript pump instead; the contract holds.
 */
import { Socket } from 'node:net';
import type { Pump, PumpDone, PumpEndReason, PumpHandle, PumpHandover } from './pump';
import { loadSpliceAddon, type DetachedConn, type SpliceBinding } from '../native/addon';
import { jsPump } from './js-pump';

const REASONS: readonly PumpEndReason[] = ['closed', 'client_reset', 'backend_reset', 'aborted'];

interface Live {
  readonly slot: number;
  /** Which side's FIN came first, from the engine's report (reason 0: client, 4: backend). */
  nativeFirstFin: 'client' | 'backend' | null;
  finish(reason: PumpEndReason, bytesIn: number, bytesOut: number): void;
}

interface Engine {
  addon: SpliceBinding;
  slab: Float64Array;
  freeSlots: number[];
  live: Map<number, Live>;
  threads: number;
}

let engine: Engine | null | undefined;
let engineReason = '';

function envInt(name: string, dflt: number): number {
  const v = Number.parseInt(process.env[name] ?? '', 10);
  return Number.isFinite(v) && v > 0 ? v : dflt;
}

function onNativeDone(id: number, reason: number, bytesIn: number, bytesOut: number): void {
  const e = engine;
  if (!e) return;
  const l = e.live.get(id);
  if (!l) return;
  e.live.delete(id);
  e.freeSlots.push(l.slot);
  try {
    l.nativeFirstFin = reason === 4 ? 'backend' : reason === 0 ? 'client' : null;
    l.finish(reason === 4 ? 'closed' : (REASONS[reason] ?? 'aborted'), bytesIn, bytesOut);
  } catch (err) {
    // Surface a caller bug as an ordinary uncaught exception, not inside the addon callback.
    process.nextTick(() => {
      throw err;
    });
  }
}

/** The process-wide splice engine, started on first use; null when unavailable. */
function getEngine(): Engine | null {
  if (engine !== undefined) return engine;
  const { addon, reason } = loadSpliceAddon();
  if (!addon) {
    engineReason = reason;
    engine = null;
    return null;
  }
  try {
    const slots = envInt('L4LB_SPLICE_SLOTS', 65536);
    const r = addon.init(onNativeDone, slots, envInt('L4LB_SPLICE_THREADS', 0));
    const freeSlots: number[] = [];
    for (let i = slots - 1; i >= 0; i--) freeSlots.push(i);
    engine = { addon, slab: r.slab, freeSlots, live: new Map(), threads: r.threads };
    engineReason = `splice(2) on ${r.threads} thread(s)`;
  } catch (err) {
    engineReason = `native addon init failed: ${(err as Error).message}`;
    engine = null;
  }
  return engine;
}

/**
 * The process-wide engine state the native TCP engine (src/tcp/engine.ts)
 * shares: the addon, the byte-counter slab and its free slots. Null when
 * the addon is unavailable.
 */
export function sharedSpliceEngine(): { addon: SpliceBinding; slab: Float64Array; freeSlots: number[] } | null {
  return getEngine();
}

/** Why the splice engine is (not) running; for status/log lines. */
export function spliceEngineInfo(): { ok: boolean; reason: string; threads: number; active: number; pooledPipes: number } {
  const e = getEngine();
  const pooledPipes = e ? (e.addon.stats().pooledPipes ?? 0) : 0;
  return { ok: e !== null, reason: engineReason, threads: e ? e.threads : 0, active: e ? e.live.size : 0, pooledPipes };
}

interface HandleLike {
  fd?: number;
}

function fdOf(s: Socket): number {
  const h = (s as unknown as { _handle?: HandleLike | null })._handle;
  return h && typeof h.fd === 'number' ? h.fd : -1;
}

function socketReady(s: Socket): boolean {
  return (
    !s.destroyed &&
    !s.connecting &&
    s.readyState === 'open' &&
    !s.readableEnded &&
    !s.writableEnded &&
    s.readableLength === 0 &&
    s.writableLength === 0 &&
    fdOf(s) >= 0
  );
}

/**
 * True when both sockets can be handed to the kernel: the addon is loaded,
 * both are connected TCP sockets with a real fd, and libuv holds no byte of
 * theirs (nothing read into JS, nothing queued to write, no EOF consumed).
 * When false, use the JavaScript pump.
 */
export function canSplice(client: Socket, backend: Socket): boolean {
  const e = getEngine();
  if (!e || e.freeSlots.length === 0) return false;
  return socketReady(client) && socketReady(backend);
}

const noop = (): void => {};

/**
 * One spliced connection. A class rather than closures: it is what an idle
 * connection keeps in memory, so it holds numbers and, until the handoff,
 * the two sockets — nothing else.
 */
class SpliceHandle implements PumpHandle {
  private readonly done: PumpDone;
  private readonly e: Engine | null;
  private finished = false;
  private nativeId = 0;
  /** The engine's slot for this connection (freed by the engine after the completion report). */
  slot = -1;
  private inBytes = 0;
  private outBytes = 0;
  /** Set when the sockets could not be handed to the engine: a JS pump carries them. */
  private jsHandle: PumpHandle | null = null;

  /**
   * Hands both sockets over at once. `head` (a PROXY header, a ClientHello
   * read to route by SNI) goes with them: the engine writes it to the
   * backend before any client byte, so JavaScript never writes it and the
   * handoff waits for no write callback.
   */
  constructor(client: Socket, backend: Socket, head: Buffer | null, done: PumpDone) {
    this.done = done;
    this.e = getEngine();
    const e = this.e;
    if (e !== null && e.freeSlots.length > 0 && socketReady(client) && socketReady(backend)) {
      const s = e.freeSlots.pop() as number;
      const id = head !== null && head.length > 0 ? e.addon.add(fdOf(client), fdOf(backend), s, head) : e.addon.add(fdOf(client), fdOf(backend), s);
      if (id > 0) {
        this.slot = s;
        this.nativeId = id;
        e.live.set(id, this);
        // libuv closes its fds; the dups keep the connections. No FIN, no RST.
        client.on('error', noop);
        backend.on('error', noop);
        client.destroy();
        backend.destroy();
        return;
      }
      e.freeSlots.push(s);
    }
    this.jsHandle = jsPump.start(client, backend, head, (r, bi, bo) => this.finish(r, bi, bo));
  }

  get bytesIn(): number {
    const e = this.e;
    if (this.nativeId !== 0 && e !== null) return e.slab[this.slot * 2] ?? this.inBytes;
    return this.jsHandle !== null ? this.jsHandle.bytesIn : this.inBytes;
  }

  get bytesOut(): number {
    const e = this.e;
    if (this.nativeId !== 0 && e !== null) return e.slab[this.slot * 2 + 1] ?? this.outBytes;
    return this.jsHandle !== null ? this.jsHandle.bytesOut : this.outBytes;
  }

  nativeFirstFin: 'client' | 'backend' | null = null;
  /** From the engine's completion report, or from the JS fallback. */
  get firstFin(): 'client' | 'backend' | null {
    return this.jsHandle?.firstFin ?? this.nativeFirstFin;
  }

  abort(): void {
    if (this.finished) return;
    if (this.nativeId !== 0 && this.e !== null) this.e.addon.abort(this.nativeId);
    else if (this.jsHandle !== null) this.jsHandle.abort();
  }

  /**
   * Upgrade: the engine stops this connection on its thread and hands back
   * both sockets (its dups, open) and what its pipes held (native detach).
   */
  handover(): Promise<PumpHandover | null> {
    if (this.jsHandle !== null) return this.jsHandle.handover ? this.jsHandle.handover() : Promise.resolve(null);
    const e = this.e;
    if (this.finished || this.nativeId === 0 || e === null || typeof e.addon.detach !== 'function') return Promise.resolve(null);
    const r = e.addon.detach([this.nativeId])[0];
    if (r === undefined || !r.ok) return Promise.resolve(null);
    e.live.delete(this.nativeId);
    e.freeSlots.push(this.slot);
    this.finished = true;
    this.nativeId = 0;
    this.inBytes = r.bytesIn;
    this.outBytes = r.bytesOut;
    return Promise.resolve(detachedParts(r));
  }

  /** Called by the engine with the final totals (also via the JS fallback). */
  finish(reason: PumpEndReason, bytesIn: number, bytesOut: number): void {
    if (this.finished) return;
    this.finished = true;
    this.inBytes = bytesIn;
    this.outBytes = bytesOut;
    this.nativeId = 0;
    this.done(reason, bytesIn, bytesOut);
  }
}

export const splicePump: Pump = {
  kind: 'splice',
  start(client: Socket, backend: Socket, head: Buffer | null, done: PumpDone): PumpHandle {
    return new SpliceHandle(client, backend, head, done);
  },
};

/**
 * Upgrade: a connection the addon detached (native/src/detach.h) as the
 * parts a pump hands over: its two sockets (the addon's dups, open, paused),
 * the bytes its pipes held, and its counts.
 */
export function detachedParts(r: Extract<DetachedConn, { ok: true }>): PumpHandover {
  const open = (fd: number): Socket => new Socket({ fd, readable: false, writable: false, allowHalfOpen: true });
  return {
    client: open(r.clientFd),
    backend: open(r.backendFd),
    toBackend: r.toBackend,
    toClient: r.toClient,
    bytesIn: r.bytesIn,
    bytesOut: r.bytesOut,
    firstFin: r.firstFin,
  };
}
