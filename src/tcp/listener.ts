/**
 * A TCP listener: accepts clients, applies ACL and limits in SPEC order, and
 * starts a TcpSession for each admitted client.
 *
 * Accept path (hot): remoteAddress → ACL → per-source limit → listener limit
 * → session.start() (pick + connect). Nothing here allocates beyond the
 * session object itself and Node's socket; nothing is logged per connection
 * unless `connection_log` is on.
 *
 * Its parts: acceptor.ts (node:net or the native engine accepts on the
 * socket), source-limit.ts (max_connections_per_source), proxy-wait.ts
 * (connections waiting for a PROXY header).
 */
import net from 'node:net';
import type { ListenerConfig } from '../config/schema';
import type { Pool } from '../backend/pool';
import type { Backend } from '../backend/backend';
import type { Flow } from '../balancer/picker';
import { TcpSession, type SessionHost } from './session';
import type { PeerAddresses, SessionEndReason } from '../listener/reasons';
import { ProxyHeaderWait } from './proxy-wait';
import { SourceLimit } from './source-limit';
import { fdBudget } from '../net/fd-budget';
import type { ListenerContext } from '../listener/context';
import { ListenerBase, type ConnectionFields } from '../listener/base';
import { SniRouter } from '../tls/sni-routes';
import { tcpTermination } from '../listener/termination';
import type { ConnectionInfo } from '../stats/connections';
import type { Pump } from './pump';
import { forgetEngineListener, type EngineHost, type EngineSession } from './engine';
import { TcpAcceptor } from './acceptor';

/** What a TCP listener needs from the data plane around it: the shared context and the pump choice. */
export interface TcpContext extends ListenerContext {
  /** The pump that will carry this TCP connection (splice when possible, else JS). */
  pumpFor(client: net.Socket, backend: net.Socket): Pump;
  /** The native engine accepts and connects where it can (src/tcp/engine.ts). */
  tcpEngine?: boolean;
}

/** A connection of a TCP listener: carried through node:net (TcpSession) or by the native engine. */
export type AnySession = TcpSession | EngineSession;

export class TcpListener extends ListenerBase<AnySession> implements SessionHost, EngineHost {
  readonly protocol = 'tcp';
  declare readonly ctx: TcpContext;
  /** The listener's pool; with route_by = "sni" the fallback, null when there is none. */
  pool: Pool | null;
  /** route_by = "sni": the routes, to pools (set by setRoutes()); null otherwise. */
  private router: SniRouter<Pool> | null = null;
  readonly sessions = new Set<AnySession>();
  /** node:net or the native engine accepts on the socket. */
  private readonly acceptor: TcpAcceptor;
  /** max_connections_per_source: places by client address, and the sessions holding one. */
  private readonly sources = new SourceLimit<AnySession>();
  /** accept_proxy_protocol: connections waiting for their header. */
  private readonly headers: ProxyHeaderWait;
  private readonly flow: Flow = { protocol: 6, srcAddr: '', srcPort: 0, dstAddr: '', dstPort: 0 };
  acceptErrors = 0;

  constructor(config: ListenerConfig, pool: Pool | null, ctx: TcpContext) {
    super(config, ctx);
    this.pool = pool;
    this.acceptor = new TcpAcceptor(this, ctx.tcpEngine === true, this.onConnection);
    this.headers = new ProxyHeaderWait({
      config: () => this.config,
      stats: this.stats,
      sources: this.sources,
      refuse: (socket, reason) => this.reject(socket, reason),
      admit: (socket, peer) => this.admit(socket, peer),
      settled: () => this.notifyIfEmpty(),
    });
  }

  protected open(): Iterable<AnySession> {
    return this.sessions;
  }

  protected idle(): boolean {
    return this.sessions.size === 0 && this.headers.size === 0;
  }

  protected bound(): boolean {
    return this.acceptor.created;
  }

  protected shutdown(s: AnySession): void {
    s.abort('admin_shutdown');
  }

  /** Stops the sweep and lets the engine forget this listener. */
  override dispose(): void {
    super.dispose();
    forgetEngineListener(this);
  }

  protected override established(s: AnySession): boolean {
    return s.connectMs !== null;
  }

  protected override extraFields(s: AnySession, fields: ConnectionFields): void {
    fields.pump = s.pumpKind;
    if (s.sniRouted) fields.sni = s.sni;
  }

  protected override extraInfo(s: AnySession, info: ConnectionInfo): void {
    if (s.sniRouted) info.sni = s.sni;
  }

  /**
   * Binds (or adopts an inherited listening socket `fd`, for systemd socket
   * activation) and resolves with the address actually bound.
   */
  async listen(fd?: number): Promise<{ address: string; port: number }> {
    await this.acceptor.listen(fd, (address, port) => {
      this.boundAddress = address;
      this.boundPort = port;
      this.updateSweep();
    });
    return { address: this.boundAddress, port: this.boundPort };
  }

  /** Accept errors (EMFILE, ENFILE, ...) are counted and logged; they never crash. */
  readonly onServerError = (err: NodeJS.ErrnoException): void => {
    this.acceptErrors++;
    // SPEC §8.6: an accept that failed for lack of fds is a `resources`
    // refusal (node:net: libuv accepted and closed the connection; the
    // engine: it waits in the backlog while accepting pauses).
    if (err.code === 'EMFILE' || err.code === 'ENFILE') this.stats.rejected.resources++;
    // At most one line per second: an fd exhaustion storm must not flood the log.
    const now = Date.now();
    if (now - this.lastAcceptErrorLog >= 1000) {
      this.lastAcceptErrorLog = now;
      this.ctx.log.error({ listener: this.name, err: err.code ?? err.message, accept_errors: this.acceptErrors }, 'accept failed');
    }
  };
  private lastAcceptErrorLog = 0;

  /** Applies a reloaded configuration of this kept listener (same bind). */
  update(config: ListenerConfig, pool: Pool | null): void {
    const was = this.config.maxConnectionsPerSource;
    if (was === 0 && config.maxConnectionsPerSource > 0) {
      // Limit turned on: the connections already open count against it,
      // those still waiting for a PROXY header by their real peer.
      this.sources.recount(this.sessions);
      this.headers.countSources(true);
    } else if (was > 0 && config.maxConnectionsPerSource === 0) {
      this.sources.clear();
      this.headers.countSources(false);
    }
    this.pool = pool;
    this.headers.configure(config);
    this.reconfigure(config);
    this.acceptor.reconsider();
  }

  /**
   * route_by = "sni": (re)builds the route table from the configuration and
   * the current pools (construction, reload). Sessions already routed keep
   * their pool; sessions still reading a ClientHello use the new table.
   */
  setRoutes(pools: ReadonlyMap<string, Pool>): void {
    const cfg = this.config;
    if (cfg.routeBy !== 'sni') {
      this.router = null;
      return;
    }
    const routes: { sni: string; target: Pool }[] = [];
    for (const r of cfg.routes) {
      const p = pools.get(r.pool);
      if (p !== undefined) routes.push({ sni: r.sni, target: p });
    }
    this.router = new SniRouter(routes);
  }

  /** A pool object was replaced outside a reload (DNS): routes to it follow. */
  replacePool(old: Pool, next: Pool): void {
    if (this.router !== null) this.router = this.router.map((p) => (p === old ? next : p));
  }

  /** route_by = "sni": the pool for this server name (a route, else the fallback), or null (refused: no_route). */
  routeFor(sni: string | null): Pool | null {
    const r = this.router === null ? undefined : this.router.match(sni);
    return r ?? this.pool;
  }

  private readonly onConnection = (socket: net.Socket): void => {
    const stats = this.stats;
    stats.connectionsTotal++;
    const addr = socket.remoteAddress;
    if (addr === undefined) {
      // Already gone (reset before we got here).
      socket.destroy();
      return;
    }
    socket.on('error', noop);
    // The reserve of fds stays free for probes, the admin endpoint and the
    // backend connects of clients already accepted.
    if (!fdBudget.has(1, Date.now())) return this.reject(socket, 'resources');
    fdBudget.add(1);
    const peer: PeerAddresses = {
      srcAddr: addr,
      srcPort: socket.remotePort ?? 0,
      dstAddr: socket.localAddress ?? this.boundAddress,
      dstPort: socket.localPort ?? this.boundPort,
    };
    if (this.config.acceptProxyProtocol) this.headers.start(socket, peer);
    else this.admit(socket, peer);
  };

  /**
   * ACL and limits for a client whose address is known (the socket's own, or
   * the one a PROXY header gave), then the session. SPEC order: ACL, per
   * source, listener limit.
   */
  admit(socket: net.Socket, peer: PeerAddresses): void {
    const refused = this.admission(peer.srcAddr);
    if (refused !== null) return this.reject(socket, refused);
    const session = new TcpSession(this, socket, this.pool, peer, Date.now());
    this.addSession(session);
    session.start();
  }

  /**
   * The admission decision of both data paths (node:net and the native
   * engine), SPEC order: ACL, per source, listener limit. Null when
   * admitted (then counted: active, its source, the backend's fd).
   */
  admission(addr: string): 'acl' | 'source_limit' | 'limit' | null {
    const cfg = this.config;
    if (!this.acl(addr)) return 'acl';
    if (!this.sources.take(addr, cfg.maxConnectionsPerSource)) return 'source_limit';
    if (cfg.maxConnections > 0 && this.stats.active >= cfg.maxConnections) {
      this.sources.release(addr);
      return 'limit';
    }
    this.stats.active++;
    fdBudget.add(1); // the backend connection's
    return null;
  }

  /** An admitted session joins the listener (its per-source place is released at its end). */
  addSession(session: AnySession): void {
    this.sessions.add(session);
    if (this.config.maxConnectionsPerSource > 0) this.sources.hold(session);
  }

  /** Upgrade: what holds the listening socket, to hand to a new process (see TcpAcceptor.upgradeSocket). */
  upgradeSocket(): ReturnType<TcpAcceptor['upgradeSocket']> {
    return this.acceptor.upgradeSocket();
  }

  /** Upgrade: a session handed to a new process: it no longer counts here (no report, no totals). */
  forgetSession(session: AnySession): void {
    if (!this.sessions.delete(session)) return;
    this.stats.active--;
    fdBudget.add(-2);
    this.sources.drop(session);
    this.notifyIfEmpty();
  }

  /**
   * Upgrade: a connection the previous process handed over: admitted as it
   * was there (no ACL or limit refuses it now), then continued by a pump.
   */
  adoptSession(client: net.Socket, upstream: net.Socket, peer: PeerAddresses, pool: Pool, backend: Backend, startedAt: number, carried: Parameters<TcpSession['adopt']>[2]): TcpSession {
    client.on('error', noop);
    this.stats.active++;
    fdBudget.add(2);
    const session = new TcpSession(this, client, pool, peer, startedAt);
    this.sessions.add(session);
    if (this.config.maxConnectionsPerSource > 0) {
      this.sources.add(peer.srcAddr);
      this.sources.hold(session);
    }
    session.adopt(upstream, backend, carried);
    return session;
  }

  reject(socket: net.Socket, reason: 'acl' | 'limit' | 'source_limit' | 'proxy_protocol' | 'resources'): void {
    this.countReject(reason);
    socket.destroy();
  }

  /** A refusal counted (the caller closes the connection). */
  countReject(reason: 'acl' | 'limit' | 'source_limit' | 'proxy_protocol' | 'resources'): void {
    this.stats.rejected[reason]++;
    if (reason !== 'resources') fdBudget.add(-1);
  }

  /** The flow of a session, in the listener's reused Flow object. */
  flowFor(session: { clientAddr: string; clientPort: number; dstAddr: string; dstPort: number }): Flow {
    const f = this.flow;
    f.srcAddr = session.clientAddr;
    f.srcPort = session.clientPort;
    f.dstAddr = session.dstAddr;
    f.dstPort = session.dstPort;
    return f;
  }

  onSessionEnd(session: AnySession, reason: SessionEndReason, bytesIn: number, bytesOut: number): void {
    this.sessions.delete(session);
    this.stats.active--;
    fdBudget.add(-2);
    this.sources.drop(session);
    if (reason === 'no_backend' || reason === 'connect_failed') this.stats.rejected.no_backend++;
    else if (reason === 'resources' || reason === 'no_route' || reason === 'bad_client_hello') this.stats.rejected[reason]++;
    this.recordEnd(session, Date.now(), bytesIn, bytesOut, reason, tcpTermination(reason, session.firstFin));
    this.notifyIfEmpty();
  }

  /** A session whose byte count has not changed for idle_timeout is aborted. */
  protected sweep(idle: number): void {
    const now = Date.now();
    for (const s of this.sessions) {
      const bytes = s.bytesIn + s.bytesOut;
      if (bytes !== s.idleBytes) {
        s.idleBytes = bytes;
        s.idleSince = now;
      } else if (now - s.idleSince >= idle) {
        s.abort('idle_timeout');
      }
    }
  }

  /** Stops accepting; open connections go on. Idempotent. `handedOver`: the socket lives on in a new process (see TcpAcceptor.stop). */
  stopAccepting(handedOver = false): Promise<void> {
    this.acceptor.stop(handedOver);
    return Promise.resolve();
  }

  /** Resets every open connection (drain deadline, shutdown). */
  abortAll(reason: SessionEndReason): void {
    for (const s of [...this.sessions]) s.abort(reason);
    this.headers.destroyAll();
  }
}

function noop(): void {}
