/**
 * `accept_proxy_protocol` (SPEC §8.6): the connections of one TCP listener
 * that wait for their PROXY header. Only trusted peers (`trusted_proxies`)
 * may send one at all; a waiting connection already counts against
 * max_connections and, by its real peer address, against
 * max_connections_per_source. When the header is in (or not), those counts
 * are released and the listener admits the connection again under the
 * claimed address (readProxyHeader bounds the wait: proxy-accept.ts).
 */
import type net from 'node:net';
import type { ListenerConfig } from '../config/schema';
import type { ListenerStats } from '../stats/stats';
import type { PeerAddresses } from '../listener/reasons';
import { compileAcl } from '../net/cidr';
import { fdBudget } from '../net/fd-budget';
import { readProxyHeader } from './proxy-accept';
import type { SourcePlaces } from './source-limit';

export interface ProxyWaitDeps {
  /** The listener's configuration in effect (its limits). */
  config(): ListenerConfig;
  readonly stats: ListenerStats;
  readonly sources: SourcePlaces;
  /** Counts the refusal and closes the socket. */
  refuse(socket: net.Socket, reason: 'acl' | 'source_limit' | 'limit' | 'proxy_protocol'): void;
  /** The header is in: ACL, limits and a session under the claimed addresses. */
  admit(socket: net.Socket, peer: PeerAddresses): void;
  /** A waiting connection is settled (admitted, refused or gone): drain waiters may wake. */
  settled(): void;
}

export class ProxyHeaderWait {
  /** Peers that may send PROXY headers (trusted_proxies); null = any. */
  private trusted: ((addr: string) => boolean) | null = null;
  /** Each waiting connection (counted in stats.active), with its real peer and whether it holds a per-source place. */
  private readonly waiting = new Map<net.Socket, { real: string; counted: boolean }>();

  constructor(private readonly deps: ProxyWaitDeps) {
    this.configure(deps.config());
  }

  /** Connections waiting now. */
  get size(): number {
    return this.waiting.size;
  }

  /** Takes `trusted_proxies` of a (re)loaded configuration. */
  configure(config: ListenerConfig): void {
    this.trusted = config.trustedProxies === null ? null : compileAcl(config.trustedProxies, []);
  }

  /** A new connection (its fd counted in the budget) waits for its header, or is refused at once. */
  start(socket: net.Socket, peer: PeerAddresses): void {
    const { deps } = this;
    const cfg = deps.config();
    const real = peer.srcAddr;
    if (this.trusted !== null && !this.trusted(real)) return deps.refuse(socket, 'acl');
    if (!deps.sources.take(real, cfg.maxConnectionsPerSource)) return deps.refuse(socket, 'source_limit');
    if (cfg.maxConnections > 0 && deps.stats.active >= cfg.maxConnections) {
      deps.sources.release(real);
      return deps.refuse(socket, 'limit');
    }
    deps.stats.active++;
    this.waiting.set(socket, { real, counted: cfg.maxConnectionsPerSource > 0 });
    readProxyHeader(socket, peer, (ok) => {
      // The waiting connection's counts are released; admit() counts it
      // again under the claimed address.
      const w = this.waiting.get(socket);
      this.waiting.delete(socket);
      deps.stats.active--;
      if (w?.counted === true) deps.sources.release(real);
      if (!ok) deps.refuse(socket, 'proxy_protocol');
      else if (!socket.destroyed) deps.admit(socket, peer);
      else fdBudget.add(-1);
      deps.settled();
    });
  }

  /**
   * The per-source limit was turned on (each waiting connection now holds
   * a place by its real peer) or off (none does).
   */
  countSources(on: boolean): void {
    for (const [socket, w] of this.waiting) {
      if (on) this.deps.sources.add(w.real);
      this.waiting.set(socket, { real: w.real, counted: on });
    }
  }

  /** Resets every waiting connection; each one's reader completes (not ok). */
  destroyAll(): void {
    for (const socket of [...this.waiting.keys()]) socket.destroy();
  }
}
