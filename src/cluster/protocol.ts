/**
 * Messages between the control plane (primary) and data-plane workers.
 * Sent over the cluster IPC channel with 'advanced' serialization (so Maps
 * and typed arrays in the configuration survive the trip).
 */
import type { Config } from '../config/schema';
import type { BackendState } from '../backend/backend';
import type { BackendSpec, ListenerBinding } from '../dataplane/dataplane';
import type { DataPlaneSnapshot } from '../stats/stats';
import type { ConnectionInfo, ConnectionQuery } from '../stats/connections';
import type { ToNew, ToOld } from '../upgrade/protocol';

export type ToWorker =
  | { t: 'apply'; id: number; config: Config; backends: [string, BackendSpec[]][]; fds: [string, number][] }
  /** A reload in two phases: bind new listeners (reply applied/apply-failed), then commit or cancel (reply done). */
  | { t: 'prepare'; id: number; config: Config; backends: [string, BackendSpec[]][]; fds: [string, number][] }
  | { t: 'commit'; id: number }
  | { t: 'cancel'; id: number }
  | { t: 'state'; pool: string; address: string; state: BackendState }
  | { t: 'weight'; pool: string; address: string; weight: number }
  | { t: 'pool'; pool: string; specs: BackendSpec[] }
  | { t: 'stop'; id: number }
  | { t: 'idle'; id: number }
  | { t: 'abort'; reason: 'drain_timeout' | 'shutdown' }
  | { t: 'exit' }
  | { t: 'shutdown-backend'; id: number; pool: string; address: string }
  | { t: 'connections'; id: number; query: ConnectionQuery }
  /** Upgrade, old side (src/cluster/upgrade-old.ts): send listening sockets; stop accepting; hand everything over; give up; accept again. */
  | { t: 'upgrade-listeners'; id: number }
  | { t: 'upgrade-pause'; id: number }
  | { t: 'upgrade-out'; id: number }
  | { t: 'upgrade-abort'; reason: string }
  | { t: 'upgrade-resume' }
  /** Upgrade, new side (src/cluster/upgrade-new.ts): held UDP datagrams go on. */
  | { t: 'upgrade-release' }
  /** Upgrade: a session or connection (+ handle) to take (new side), an acknowledgement (old side). */
  | Extract<ToNew, { t: 'udp' | 'tcp' | 'tcp-backend' }>
  | Extract<ToOld, { t: 'udp-ok' | 'tcp-ok' }>;

export type ToPrimary =
  | { t: 'applied'; id: number; bindings: ListenerBinding[] }
  | { t: 'apply-failed'; id: number; error: { message: string; code?: string; address?: string; port?: number; listener?: string } }
  | { t: 'done'; id: number }
  | { t: 'snapshot'; snap: DataPlaneSnapshot }
  | { t: 'connect-failure'; pool: string; address: string; kind: 'refused' | 'timeout' }
  | { t: 'closed'; id: number; n: number }
  | { t: 'connection-list'; id: number; list: ConnectionInfo[] }
  /** Upgrade: a worker's handover is over (`reason` when it failed; what was not acknowledged is back in it). */
  | { t: 'upgrade-result'; id: number; connections: number; sessions: number; leftBehind: number; maxPauseMs: number; reason: string | null }
  /** Upgrade: a worker took (ok) or closed a relayed session or connection. */
  | { t: 'adopted'; id: number; ok: boolean }
  /** Upgrade: what a worker hands over (+ handle), as one process to another. */
  | Extract<ToNew, { t: 'listener' | 'udp' | 'udp-done' | 'tcp' | 'tcp-backend' }>;

/** How often a worker pushes its counters to the primary (metrics may lag this much). */
export const SNAPSHOT_INTERVAL_MS = 250;
