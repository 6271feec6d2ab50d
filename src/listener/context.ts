/**
 * What a listener, TCP or UDP, needs from the data plane around it. Both
 * listener kinds import it from here (neither imports the other); the TCP
 * listener's context adds the pump choice (tcp/listener.ts, TcpContext).
 */
import type { Logger } from '../log';
import type { Pool } from '../backend/pool';
import type { Backend } from '../backend/backend';

export interface ListenerContext {
  readonly log: Logger;
  connectionLog: boolean;
  /** A client connect to a backend failed (UDP: ICMP unreachable): passive health input. */
  onConnectFailure(pool: Pool, backend: Backend, kind: 'refused' | 'timeout'): void;
}
