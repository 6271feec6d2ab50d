/**
 * Who or what ended a connection: the `termination` field of `connection
 * closed` and `connection progress` lines (docs/reference.md, "Logs"),
 * derived from the session's end reason.
 */
import type { SessionEndReason, UdpEndReason } from './reasons';

export type Termination =
  | 'client_fin'
  | 'backend_fin'
  | 'client_reset'
  | 'backend_reset'
  | 'idle_timeout'
  | 'connect_failed'
  | 'drain_timeout'
  | 'admin_shutdown';

/**
 * Contract: a TCP session's termination. A clean close (FIN both ways) is
 * `backend_fin` when the backend sent the first FIN and `client_fin`
 * otherwise (also when the pump cannot tell, see docs/reference.md).
 */
export function tcpTermination(reason: SessionEndReason | string, firstFin: 'client' | 'backend' | null): Termination {
  switch (reason) {
    case 'closed':
      return firstFin === 'backend' ? 'backend_fin' : 'client_fin';
    case 'client_gone':
      return 'client_fin';
    case 'backend_reset':
      return 'backend_reset';
    case 'no_backend':
    case 'connect_failed':
    case 'resources': // no fd (or buffer) here to reach the backend
      return 'connect_failed';
    case 'idle_timeout':
      return 'idle_timeout';
    case 'drain_timeout':
    case 'shutdown':
      return 'drain_timeout';
    case 'admin_shutdown':
      return 'admin_shutdown';
    default:
      // client_reset, the pump's own 'aborted' (one side vanished), refusals of other stages.
      return 'client_reset';
  }
}

/** Contract: a UDP session's termination (UDP has no FIN: the mapping is documented in docs/reference.md). */
export function udpTermination(reason: UdpEndReason | string): Termination {
  switch (reason) {
    case 'idle_timeout':
      return 'idle_timeout';
    case 'responses':
      return 'backend_fin';
    case 'backend_refused':
      return 'connect_failed';
    case 'drain_timeout':
    case 'shutdown':
      return 'drain_timeout';
    case 'admin_shutdown':
      return 'admin_shutdown';
    default:
      // backend_gone (down or removed), socket errors
      return 'backend_reset';
  }
}
