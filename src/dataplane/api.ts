/**
 * The data plane's contract with the control plane: what a generation is
 * made of (resolved backends, inherited sockets) and what may be asked of a
 * data plane — the in-process DataPlane (dataplane.ts) or the worker
 * processes behind src/cluster/primary.ts.
 */
import type net from 'node:net';
import type { Config } from '../config/schema';
import type { Logger } from '../log';
import type { BackendState } from '../backend/backend';
import type { Pool } from '../backend/pool';
import type { Pump } from '../tcp/pump';
import type { DataPlaneSnapshot } from '../stats/stats';
import type { ConnectionInfo, ConnectionQuery } from '../stats/connections';

/** A backend after name resolution: one per address. */
export interface BackendSpec {
  host: string;
  port: number;
  family: 4 | 6;
  /** The configured name when resolved from DNS. */
  name: string | null;
  weight: number;
  maxConnections: number;
  backup: boolean;
}

export interface DataPlaneOptions {
  log: Logger;
  /** The pump to use when the connection can be spliced, or null for JS only. */
  splice: { pump: Pump; canSplice(client: net.Socket, backend: net.Socket): boolean } | null;
  /** The native TCP engine accepts and connects where it can (src/tcp/engine.ts); only with `splice`. */
  tcpEngine?: boolean;
  /** Passive health input: a client connect to this backend failed. */
  onConnectFailure?: (pool: string, address: string, kind: 'refused' | 'timeout') => void;
  /** A listener is bound (for the `listening` log line and systemd). */
  onListening?: (listener: string, address: string, port: number) => void;
  /**
   * False for a data plane that never carries traffic (the primary's shadow
   * of its workers' pools): its pools build no picker (see `Pool`).
   */
  pickers?: boolean;
}

export interface ListenerBinding {
  name: string;
  address: string;
  port: number;
}

/** What the control plane may ask of a data plane. */
export interface DataPlaneApi {
  readonly pools: ReadonlyMap<string, Pool>;
  apply(config: Config, backends: ReadonlyMap<string, readonly BackendSpec[]>, fds?: ReadonlyMap<string, number>): Promise<ListenerBinding[]>;
  setBackendState(pool: string, address: string, state: BackendState): BackendState | null;
  setBackendWeight(pool: string, address: string, effectiveWeight: number): boolean;
  setPoolBackends(pool: string, specs: readonly BackendSpec[]): boolean;
  stopAccepting(): Promise<void>;
  whenIdle(): Promise<void>;
  abortAll(reason: 'drain_timeout' | 'shutdown'): void;
  activeConnections(): number;
  dispose(): void | Promise<void>;
  snapshot(): DataPlaneSnapshot;
  /** Resets every open connection and UDP session of one backend (admin); resolves with how many. */
  shutdownBackend(pool: string, address: string): Promise<number>;
  /** Open connections and UDP sessions matching the query, oldest first, at most `limit`. */
  connections(q: ConnectionQuery): Promise<ConnectionInfo[]>;
}
