/**
 * Why a connection or session ended, and who its peer is: the vocabulary the
 * listeners, the pumps and the connection log share. It lives below tcp/ and
 * udp/ so that neither they nor dataplane/ need to import each other for it.
 */

/** How a byte pump finished (tcp/pump.ts). */
export type PumpEndReason =
  | 'closed'        // both directions finished with FIN
  | 'client_reset'  // client reset or errored
  | 'backend_reset' // backend reset or errored
  | 'aborted';      // abort() was called (idle timeout, drain deadline, shutdown)

/** Why a TCP session ended (the `reason` field of `connection closed`). */
export type SessionEndReason =
  | PumpEndReason
  | 'no_backend'        // no backend could take it (after retries)
  | 'connect_failed'    // every attempt failed
  | 'resources'         // this process ran out of fds (or buffers) to connect the backend
  | 'client_gone'       // the client went away while connecting
  | 'idle_timeout'
  | 'drain_timeout'
  | 'admin_shutdown'    // POST .../shutdown-connections
  | 'shutdown'
  | 'no_route'          // route_by = "sni": no route matched and there is no fallback pool
  | 'bad_client_hello'; // route_by = "sni": not a ClientHello, malformed, too large, or not complete in time

/** Why a UDP session ended. */
export type UdpEndReason = 'idle_timeout' | 'responses' | 'backend_refused' | 'backend_gone' | 'shutdown' | 'drain_timeout' | 'admin_shutdown' | 'error';

/** Who the client is and what it connected to: the socket's own, or what a PROXY header said. */
export interface PeerAddresses {
  srcAddr: string;
  srcPort: number;
  dstAddr: string;
  dstPort: number;
}
