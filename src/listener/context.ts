/**
 * What a listener, TCP or UDP, needs from the data plane around it. Both
 * listener kinds import it from here (neither imports the other).
 */
import type net from 'node:net';
import type { Logger } from '../log';
import type { Pool } from '../backend/pool';
import type { Backend } from '../backend/backend';
import type { Pump } from '../tcp/pump';

export interface ListenerContext {
  readonly log: Logger;
  connectionLog: boolean;
  /** The pump that will carry this TCP connection (splice when possible, else JS). */
  pumpFor(client: net.Socket, backend: net.Socket): Pump;
  /** TCP: the native engine accepts and connects where it can (src/tcp/engine.ts). */
  tcpEngine?: boolean;
  /** A client connect to a backend failed (UDP: ICMP unreachable): passive health input. */
  onConnectFailure(pool: Pool, backend: Backend, kind: 'refused' | 'timeout'): void;
}
