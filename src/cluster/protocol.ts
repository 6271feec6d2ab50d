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
  | { t: 'connections'; id: number; query: ConnectionQuery };

export type ToPrimary =
  | { t: 'applied'; id: number; bindings: ListenerBinding[] }
  | { t: 'apply-failed'; id: number; error: { message: string; code?: string; address?: string; port?: number; listener?: string } }
  | { t: 'done'; id: number }
  | { t: 'snapshot'; snap: DataPlaneSnapshot }
  | { t: 'connect-failure'; pool: string; address: string; kind: 'refused' | 'timeout' }
  | { t: 'closed'; id: number; n: number }
  | { t: 'connection-list'; id: number; list: ConnectionInfo[] };

/** How often a worker pushes its counters to the primary (metrics may lag this much). */
export const SNAPSHOT_INTERVAL_MS = 250;
