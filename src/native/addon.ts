/**
 * Loads the optional splice(2) addon (native/build/Release/l4lb_splice.node).
 * Never throws: when the addon cannot be used, `addon` is null and `reason`
 * says why (the caller then uses the JavaScript pump).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The raw binding; see native/README.md. */
export interface SpliceBinding {
  /** Starts the epoll threads once per process. `slab[slot*2 + 0|1]` holds live bytes in/out. */
  init(
    onDone: (id: number, reason: number, bytesIn: number, bytesOut: number) => void,
    slots: number,
    threads: number,
  ): { slab: Float64Array; threads: number };
  /**
   * dup()s both fds and starts splicing; `head` is written to the backend
   * before any client byte. Returns an id > 0, or -errno (nothing taken over).
   */
  add(clientFd: number, backendFd: number, slot: number, head?: Buffer): number;
  /** Resets both sides; the completion report follows. */
  abort(id: number): void;
  /**
   * Upgrade: stops these connections and hands back their fds (open, no
   * longer the engine's) and the bytes in flight; no completion report
   * follows for those detached (`ok`). See native/src/detach.h.
   */
  detach?(ids: number[]): DetachedConn[];
  /** Connections not yet reported, epoll threads, and empty pipes kept for reuse (2 fds each). */
  stats(): { active: number; threads: number; pooledPipes: number };
  /** The socket's pending error (errno; 0 for none), read and cleared with SO_ERROR; -errno when it cannot be asked. */
  socketError?(fd: number): number;
  /** glibc: a fixed 128 MiB trim threshold (see native/src/malloc_tune.cc); false when not applied. */
  tuneMalloc?(): boolean;
  readonly reasons: readonly string[];
  /** Native TCP engine (native/src/engine_tcp.cc): where its reports go, 6 numbers per record and 2 address strings per accept (see src/tcp/engine.ts). */
  engineStart?(onEvents: (records: Float64Array, addresses: string[]) => void): void;
  /** dup()s a bound, listening socket and accepts on it; returns a listener id (> 0) or -errno. */
  engineListen?(fd: number, address: string, port: number): number;
  /** Stops accepting on an engine listener (its accepted connections go on). */
  engineUnlisten?(id: number): void;
  /** A new fd of an engine listener's socket for node:net, after which the engine stops accepting on it; or -errno. */
  engineDetach?(id: number): number;
  /** Connects an accepted connection to a backend (numeric host); `head` is written first. 0 or -errno. */
  engineConnect?(id: number, host: string, port: number, timeoutMs: number, slot: number, head?: Buffer): number;
  /** Closes an accepted connection JS will not carry (no report follows). */
  engineRefuse?(id: number): void;
}

export type DetachedConn =
  | { ok: false }
  | {
      ok: true;
      clientFd: number;
      backendFd: number;
      toBackend: Buffer;
      toClient: Buffer;
      clientEof: boolean;
      backendEof: boolean;
      firstFin: 'client' | 'backend' | null;
      bytesIn: number;
      bytesOut: number;
    };

export interface AddonLoad {
  addon: SpliceBinding | null;
  reason: string;
}

/** dist/src/native/addon.js → <root>/native/build/Release/l4lb_splice.node */
export const ADDON_PATH = join(__dirname, '..', '..', '..', 'native', 'build', 'Release', 'l4lb_splice.node');

/** The script that builds the addon where l4lb is installed (a checkout, install.sh, npm -g, .deb). */
export const BUILD_SCRIPT = join(__dirname, '..', '..', '..', 'scripts', 'build-native.js');

/** Written by scripts/build-native.js when it could not build the addon: why. */
export const NOT_BUILT_NOTE = join(__dirname, '..', '..', '..', 'native', 'build', 'not-built.txt');

/** Why the addon is missing (when the build script said) and how to build it. */
export function notBuiltReason(): string {
  const tools = 'it needs a C++ compiler, make and python3';
  let why = '';
  try {
    const first = readFileSync(NOT_BUILT_NOTE, 'utf8').split('\n')[0]?.trim();
    if (first) why = `at install: ${first}; `;
  } catch {
    // no note: never attempted, or the tree was copied without it
  }
  if (existsSync(BUILD_SCRIPT)) {
    return `native addon not built (${why}build it with \`${process.execPath} ${BUILD_SCRIPT}\`; ${tools})`;
  }
  return `native addon not built (${why}${ADDON_PATH} is missing; reinstall l4lb where ${tools})`;
}

let cached: AddonLoad | undefined;

function load(): AddonLoad {
  if (process.env.L4LB_NO_NATIVE === '1') return { addon: null, reason: 'disabled by L4LB_NO_NATIVE=1' };
  if (process.platform !== 'linux') return { addon: null, reason: `platform ${process.platform} has no splice(2)` };
  try {
    // L4LB_NATIVE_ADDON: another build of the same addon (the sanitizer
    // builds the test suite makes); not for production use.
    const mod = require(process.env.L4LB_NATIVE_ADDON || ADDON_PATH) as Partial<SpliceBinding>;
    if (typeof mod.init !== 'function' || typeof mod.add !== 'function' || typeof mod.abort !== 'function') {
      return { addon: null, reason: `${ADDON_PATH} is not a usable l4lb_splice build` };
    }
    return { addon: mod as SpliceBinding, reason: 'loaded' };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e && e.code === 'MODULE_NOT_FOUND') {
      return { addon: null, reason: notBuiltReason() };
    }
    return { addon: null, reason: `native addon failed to load: ${e && e.message ? e.message.split('\n')[0] : String(err)}` };
  }
}

/** Memoised: loads the addon at most once per process. */
export function loadSpliceAddon(): AddonLoad {
  if (cached === undefined) cached = load();
  return cached;
}

/** Whether the splice pump can be used in this process, and why not. */
export function spliceAvailable(): { ok: boolean; reason: string } {
  const r = loadSpliceAddon();
  return { ok: r.addon !== null, reason: r.reason };
}


/**
 * Keeps glibc from returning freed read buffers to the kernel after every
 * read (see native/src/malloc_tune.cc): called once at start when
 * the JS pump carries the bytes and the addon is available (L4LB_NO_NATIVE
 * disables it too). Returns whether it was applied.
 */
export function tuneMalloc(): boolean {
  const { addon } = loadSpliceAddon();
  if (addon === null || typeof addon.tuneMalloc !== 'function') return false;
  try {
    return addon.tuneMalloc();
  } catch {
    return false;
  }
}

/**
 * Whether a socket that just reported EOF was in fact reset: libuv turns a
 * reset arriving together with the last bytes into EOF (a short read plus
 * EPOLLHUP), so the JS pump asks the kernel once at EOF. Null when the addon
 * cannot tell (not loaded, or no fd); then EOF is taken as EOF.
 */
export function wasReset(fd: number): boolean | null {
  const { addon } = loadSpliceAddon();
  if (addon === null || typeof addon.socketError !== 'function' || fd < 0) return null;
  const e = addon.socketError(fd);
  return e < 0 ? null : e !== 0;
}
