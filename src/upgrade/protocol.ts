/**
 * The upgrade handover (SPEC §8.5, docs/upgrade.md): the messages the old
 * and the new process exchange over the IPC channel the old one opened when
 * it started the new one (a Unix socket; every handle goes with a message,
 * as SCM_RIGHTS). JSON messages; bytes in flight as base64.
 *
 *   new → old  hello                      config file read and valid
 *   old → new  state                      runtime drains/weights, health
 *   old → new  listener (+ handle) ...    every listening socket, admin too
 *   old → new  listeners-done
 *   new → old  ready                      everything bound; accepting
 *   old        stops accepting; stops reading its UDP listening sockets
 *   old → new  udp (+ socket) ...         ← udp-ok per session
 *   old → new  udp-done
 *   old → new  tcp (+ client), tcp-backend (+ backend) ...  ← tcp-ok
 *   old → new  done                       with the counter totals so far
 *   new → old  confirmed                  old exits 0
 *   new → old  error                      (any time) old keeps serving
 *
 * With workers, each side's primary relays: old workers send their
 * listeners, sessions and connections (the same messages) to the old
 * primary over the cluster IPC channel, and new workers take them from the
 * new primary (src/cluster/upgrade-old.ts, upgrade-new.ts, upgrade-worker.ts).
 */
import type { BackendOverride } from '../state/runtime-state';
import type { HealthExport } from '../health/monitor';
import type { DataPlaneSnapshot } from '../stats/stats';

/** Set in the new process's environment: the old process's pid. */
export const UPGRADE_ENV = 'L4LB_UPGRADE_FROM';
/**
 * Test-only: runs this executable instead of process.execPath (same
 * arguments), to see how a new process that cannot start is handled.
 */
export const UPGRADE_EXEC_ENV = 'L4LB_UPGRADE_EXEC';
/**
 * Set by the new process until every UDP session is in, so that workers it
 * starts meanwhile hold the datagrams of clients whose sessions are still
 * to come (as UdpListener.holding does in one process).
 */
export const UPGRADE_HOLD_UDP_ENV = 'L4LB_UPGRADE_HOLD_UDP';

export interface InheritedListener {
  name: string;
  kind: 'tcp' | 'udp' | 'admin';
  /** The listener's `bind` as configured (a listener whose bind changed binds anew). */
  bind: string;
}

export interface TcpMeta {
  id: number;
  listener: string;
  pool: string;
  backend: string;
  srcAddr: string;
  srcPort: number;
  dstAddr: string;
  dstPort: number;
  startedAt: number;
  bytesIn: number;
  bytesOut: number;
  toBackend: string;
  toClient: string;
  firstFin: 'client' | 'backend' | null;
  connectMs: number | null;
  sni: string | null;
  sniRouted: boolean;
  /** With workers: the index of the old worker that carried it (the new primary picks a worker by it). */
  worker?: number;
}

export interface UdpMeta {
  id: number;
  listener: string;
  pool: string;
  backend: string;
  clientAddr: string;
  clientPort: number;
  startedAt: number;
  bytesIn: number;
  bytesOut: number;
  // Absent when the old process is of an earlier version.
  /** Backend datagrams so far (towards udp_responses). */
  responses?: number;
  /** The address the client sent to on a wildcard bind, "" when not known; with its interface. */
  localAddr?: string;
  ifindex?: number;
}

export type ToNew =
  | { t: 'state'; runtime: BackendOverride[]; health: HealthExport[]; reloads?: ReloadCounts }
  | ({ t: 'listener' } & InheritedListener)
  | { t: 'listeners-done' }
  | ({ t: 'udp' } & UdpMeta)
  | { t: 'udp-done' }
  | ({ t: 'tcp' } & TcpMeta)
  | { t: 'tcp-backend'; id: number }
  | { t: 'done'; listeners: number; connections: number; sessions: number; totals: DataPlaneSnapshot };

export type ToOld =
  | { t: 'hello'; pid: number }
  | { t: 'ready' }
  | { t: 'tcp-ok'; id: number }
  | { t: 'udp-ok'; id: number }
  | { t: 'confirmed'; connections: number; sessions: number }
  | { t: 'error'; reason: string };

/** What the new process starts from (ServerOptions.inherited). */
/** Configuration reloads so far (`l4lb_config_reloads_total` goes on from them). */
export interface ReloadCounts {
  success: number;
  failure: number;
}

export interface Inherited {
  runtime: BackendOverride[];
  health: HealthExport[];
  reloads: ReloadCounts;
  /** Listener name → inherited listening socket (only those whose bind and protocol are unchanged). */
  fds: Map<string, number>;
  /** The admin endpoint's listening socket, when its bind is unchanged. */
  adminFd: number | null;
}

/**
 * Test-only: the new process exits (status 1) once it has taken this many
 * TCP connections, to see how a handover that fails half-way is handled.
 */
export const UPGRADE_TEST_EXIT_ENV = 'L4LB_UPGRADE_TEST_EXIT_AFTER';
/** Test-only: the same once it has taken this many UDP sessions (before acknowledging the last). */
export const UPGRADE_TEST_EXIT_UDP_ENV = 'L4LB_UPGRADE_TEST_EXIT_AFTER_UDP';

/** Bounds of the handover steps (ms). */
export const HELLO_TIMEOUT_MS = 15_000;
export const READY_TIMEOUT_MS = 15_000;
export const ACK_TIMEOUT_MS = 5_000;
/** How long connections still connecting to their backend are waited for, to hand them over too. */
export const CONNECTING_WAIT_MS = 3_000;
/** Connections handed over at the same time (each is paused only while it moves). */
export const TCP_WINDOW = 8;
