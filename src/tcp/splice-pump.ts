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
 * If the sockets turn out not to be spliceable at handoff time (e.g. the
 * backend sent bytes that libuv read while `head` was being written), the
 * connection is carried by a small JavaScript pump instead; the contract holds.
 */
import type { Socket } from 'node:net';
import type { Pump, PumpDone, PumpEndReason, PumpHandle } from './pump';
import { loadSpliceAddon, type SpliceBinding } from '../native/addon';
import { jsPump } from './js-pump';

const REASONS: readonly PumpEndReason[] = ['closed', 'client_reset', 'backend_reset', 'aborted'];

interface Live {
  slot: number;
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
    l.finish(REASONS[reason] ?? 'aborted', bytesIn, bytesOut);
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

/** Why the splice engine is (not) running; for status/log lines. */
export function spliceEngineInfo(): { ok: boolean; reason: string; threads: number; active: number } {
  const e = getEngine();
  return { ok: e !== null, reason: engineReason, threads: e ? e.threads : 0, active: e ? e.live.size : 0 };
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

export const splicePump: Pump = {
  kind: 'splice',
  start(client: Socket, backend: Socket, head: Buffer | null, done: PumpDone): PumpHandle {
    const counters = { bytesIn: 0, bytesOut: 0 };
    let finished = false;
    let nativeId = 0;
    let slot = -1;
    // Set when the sockets stopped being spliceable between canSplice() and the handoff.
    let jsHandle: PumpHandle | null = null;
    let aborted = false;
    const e = getEngine();

    const finish = (reason: PumpEndReason, bytesIn = counters.bytesIn, bytesOut = counters.bytesOut): void => {
      if (finished) return;
      finished = true;
      counters.bytesIn = bytesIn;
      counters.bytesOut = bytesOut;
      nativeId = 0;
      done(reason, bytesIn, bytesOut);
    };

    // Errors before the handoff (e.g. while `head` is written) must not crash.
    const preClientErr = (): void => {
      if (!handedOver) fail('client_reset', client);
    };
    const preBackendErr = (): void => {
      if (!handedOver) fail('backend_reset', backend);
    };
    let handedOver = false;
    client.on('error', preClientErr);
    backend.on('error', preBackendErr);
    const fail = (reason: PumpEndReason, errored: Socket | null): void => {
      handedOver = true;
      for (const s of [client, backend]) {
        if (s === errored || s.destroyed) s.destroy();
        else s.resetAndDestroy();
      }
      finish(reason);
    };

    const handOver = (): void => {
      if (finished || handedOver) return;
      if (aborted) {
        fail('aborted', null);
        return;
      }
      handedOver = true;
      client.off('error', preClientErr);
      backend.off('error', preBackendErr);
      if (e && e.freeSlots.length > 0 && socketReady(client) && socketReady(backend)) {
        const s = e.freeSlots.pop() as number;
        const id = e.addon.add(fdOf(client), fdOf(backend), s);
        if (id > 0) {
          slot = s;
          nativeId = id;
          e.live.set(id, { slot: s, finish: (r, bi, bo) => finish(r, bi, bo) });
          // libuv closes its fds; the dups keep the connections. No FIN, no RST.
          client.on('error', noop);
          backend.on('error', noop);
          client.destroy();
          backend.destroy();
          return;
        }
        e.freeSlots.push(s);
      }
      jsHandle = jsPump.start(client, backend, null, (r, bi, bo) => finish(r, bi, bo));
    };

    if (head && head.length > 0) {
      if (backend.destroyed || backend.writableEnded) {
        fail('backend_reset', null);
      } else {
        backend.write(head, (err) => {
          if (err) {
            if (!handedOver) fail('backend_reset', backend);
            return;
          }
          handOver();
        });
      }
    } else {
      handOver();
    }

    return {
      get bytesIn(): number {
        if (nativeId !== 0 && e && slot >= 0) return e.slab[slot * 2] ?? counters.bytesIn;
        return jsHandle !== null ? jsHandle.bytesIn : counters.bytesIn;
      },
      get bytesOut(): number {
        if (nativeId !== 0 && e && slot >= 0) return e.slab[slot * 2 + 1] ?? counters.bytesOut;
        return jsHandle !== null ? jsHandle.bytesOut : counters.bytesOut;
      },
      abort(): void {
        if (finished) return;
        aborted = true;
        if (nativeId !== 0 && e) e.addon.abort(nativeId);
        else if (jsHandle !== null) jsHandle.abort();
        else if (!handedOver) fail('aborted', null);
      },
    };
  },
};
