/**
 * A TCP listener: accepts clients, applies ACL and limits in SPEC order, and
 * starts a TcpSession for each admitted client.
 *
 * Accept path (hot): remoteAddress → ACL → per-source limit → listener limit
 * → session.start() (pick + connect). Nothing here allocates beyond the
 * session object itself and Node's socket; nothing is logged per connection
 * unless `connection_log` is on.
 */
import cluster from 'node:cluster';
import { closeSync } from 'node:fs';
import net from 'node:net';
import type { ListenerConfig } from '../config/schema';
import type { Pool } from '../backend/pool';
import type { Backend } from '../backend/backend';
import type { Flow } from '../balancer/picker';
import { compileAcl } from '../net/cidr';
import { TcpSession, type SessionHost } from './session';
import type { PeerAddresses, SessionEndReason } from '../listener/reasons';
import { readProxyHeader } from './proxy-accept';
import { fdBudget } from '../net/fd-budget';
import type { ListenerContext } from '../listener/context';
import { ListenerBase, type ConnectionFields } from '../listener/base';
import { SniRouter } from '../tls/sni-routes';
import { tcpTermination } from '../listener/termination';
import type { ConnectionInfo } from '../stats/connections';
import type { Pump } from './pump';
import { attachEngine, detachEngine, detachEngineToFd, engineCanTake, forgetEngineListener, type EngineHost, type EngineSession } from './engine';

/** What a TCP listener needs from the data plane around it: the shared context and the pump choice. */
export interface TcpContext extends ListenerContext {
  /** The pump that will carry this TCP connection (splice when possible, else JS). */
  pumpFor(client: net.Socket, backend: net.Socket): Pump;
  /** The native engine accepts and connects where it can (src/tcp/engine.ts). */
  tcpEngine?: boolean;
}

/** A connection of a TCP listener: carried through node:net (TcpSession) or by the native engine. */
export type AnySession = TcpSession | EngineSession;

const KEEPALIVE_DELAY_MS = 60_000;

export class TcpListener extends ListenerBase<AnySession> implements SessionHost, EngineHost {
  readonly protocol = 'tcp';
  declare readonly ctx: TcpContext;
  /** The listener's pool; with route_by = "sni" the fallback, null when there is none. */
  pool: Pool | null;
  /** route_by = "sni": the routes, to pools (set by setRoutes()); null otherwise. */
  private router: SniRouter<Pool> | null = null;
  readonly sessions = new Set<AnySession>();
  private server: net.Server | null = null;
  /** Peers that may send PROXY headers (trusted_proxies); null = any. */
  private trusted: ((addr: string) => boolean) | null;
  private perSource = new Map<string, number>();
  /** Sessions that hold a place in `perSource` (admitted while the per-source limit was on). */
  private readonly sourceCounted = new Set<AnySession>();
  private readonly flow: Flow = { protocol: 6, srcAddr: '', srcPort: 0, dstAddr: '', dstPort: 0 };
  acceptErrors = 0;
  /** The native TCP engine's id of this listener's socket while the engine accepts on it (null: node:net accepts). */
  private engineId: number | null = null;

  constructor(config: ListenerConfig, pool: Pool | null, ctx: TcpContext) {
    super(config, ctx);
    this.pool = pool;
    this.trusted = config.trustedProxies === null ? null : compileAcl(config.trustedProxies, []);
  }

  protected open(): Iterable<AnySession> {
    return this.sessions;
  }

  protected idle(): boolean {
    return this.sessions.size === 0 && this.awaitingHeader.size === 0;
  }

  protected bound(): boolean {
    return this.server !== null;
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
  listen(fd?: number): Promise<{ address: string; port: number }> {
    const server = this.createServer();
    this.server = server;
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      server.once('error', onError);
      const done = (): void => {
        server.removeListener('error', onError);
        server.on('error', this.onServerError);
        const a = server.address();
        if (a !== null && typeof a === 'object') {
          this.boundAddress = a.address;
          this.boundPort = a.port;
        }
        this.updateSweep();
        // The native engine accepts where it can (src/tcp/engine.ts); node:net
        // otherwise. After this 'listening' event's other listeners (a cluster
        // worker's asks the handle for its address).
        if (this.ctx.tcpEngine === true && engineCanTake(this.config)) {
          process.nextTick(() => {
            if (this.server === server && server.listening && this.engineId === null) this.engineId = attachEngine(this, server);
          });
        }
        resolve({ address: this.boundAddress, port: this.boundPort });
      };
      if (fd !== undefined) server.listen({ fd }, done);
      else server.listen({ host: this.config.bind.host, port: this.config.bind.port, backlog: 4096 }, done);
    });
  }

  private createServer(): net.Server {
    return net.createServer(
      {
        pauseOnConnect: true,
        allowHalfOpen: true,
        noDelay: true,
        keepAlive: true,
        keepAliveInitialDelay: KEEPALIVE_DELAY_MS,
      },
      this.onConnection,
    );
  }

  /**
   * A reload changed whether the engine may take this kept listener
   * (accept_proxy_protocol, route_by): the socket moves between the engine
   * and node:net without being closed (no connection in its queue is lost).
   */
  private switchAcceptor(): void {
    const server = this.server;
    if (server === null || !server.listening) return;
    const want = this.ctx.tcpEngine === true && engineCanTake(this.config);
    if (want && this.engineId === null) this.engineId = attachEngine(this, server);
    else if (!want && this.engineId !== null) this.acceptWithNode();
  }

  /** The engine gives this listener's socket back and node:net accepts on it again. */
  private acceptWithNode(): void {
    if (this.engineId === null) return;
    const fd = detachEngineToFd(this.engineId);
    this.engineId = null;
    if (fd === null) return;
    // The old server's handle is closed already; it is dropped without
    // close() so that a cluster primary keeps its shared socket.
    const next = this.createServer();
    next.on('error', this.onServerError);
    next.listen({ fd, exclusive: true });
    this.server = next;
  }

  /** Accept errors (EMFILE, ENFILE, ...) are counted and logged; they never crash. */
  readonly onServerError = (err: NodeJS.ErrnoException): void => {
    this.acceptErrors++;
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
      // Limit turned on: the connections already open count against it.
      this.perSource.clear();
      this.sourceCounted.clear();
      for (const s of this.sessions) {
        this.perSource.set(s.clientAddr, (this.perSource.get(s.clientAddr) ?? 0) + 1);
        this.sourceCounted.add(s);
      }
      // Connections still waiting for a PROXY header count by their real peer.
      for (const [socket, w] of this.awaitingHeader) {
        this.perSource.set(w.real, (this.perSource.get(w.real) ?? 0) + 1);
        this.awaitingHeader.set(socket, { real: w.real, counted: true });
      }
    } else if (was > 0 && config.maxConnectionsPerSource === 0) {
      this.perSource.clear();
      this.sourceCounted.clear();
      for (const [socket, w] of this.awaitingHeader) this.awaitingHeader.set(socket, { real: w.real, counted: false });
    }
    this.pool = pool;
    this.trusted = config.trustedProxies === null ? null : compileAcl(config.trustedProxies, []);
    this.reconfigure(config);
    this.switchAcceptor();
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
    if (this.config.acceptProxyProtocol) this.awaitHeader(socket, peer);
    else this.admit(socket, peer);
  };

  /**
   * accept_proxy_protocol (SPEC §8.6): only trusted peers may send a header
   * at all; a connection waiting for its header already counts against
   * max_connections and, by its real peer address, against
   * max_connections_per_source; the header has an absolute deadline.
   */
  private awaitHeader(socket: net.Socket, peer: PeerAddresses): void {
    const cfg = this.config;
    const real = peer.srcAddr;
    if (this.trusted !== null && !this.trusted(real)) return this.reject(socket, 'acl');
    if (cfg.maxConnectionsPerSource > 0) {
      const n = this.perSource.get(real) ?? 0;
      if (n >= cfg.maxConnectionsPerSource) return this.reject(socket, 'source_limit');
      this.perSource.set(real, n + 1);
    }
    if (cfg.maxConnections > 0 && this.stats.active >= cfg.maxConnections) {
      this.releaseSource(real);
      return this.reject(socket, 'limit');
    }
    this.stats.active++;
    this.awaitingHeader.set(socket, { real, counted: cfg.maxConnectionsPerSource > 0 });
    readProxyHeader(socket, peer, (ok) => {
      // The header is in (or not): the waiting connection's counts are
      // released, and admit() counts it again under the claimed address.
      const w = this.awaitingHeader.get(socket);
      this.awaitingHeader.delete(socket);
      this.stats.active--;
      if (w?.counted === true) this.releaseSource(real);
      if (!ok) this.reject(socket, 'proxy_protocol');
      else if (!socket.destroyed) this.admit(socket, peer);
      else fdBudget.add(-1);
      this.notifyIfEmpty();
    });
  }
  /** Connections still waiting for their PROXY header (counted in stats.active), with their real peer and whether it holds a per-source place. */
  private readonly awaitingHeader = new Map<net.Socket, { real: string; counted: boolean }>();

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
    if (cfg.maxConnectionsPerSource > 0) {
      const n = this.perSource.get(addr) ?? 0;
      if (n >= cfg.maxConnectionsPerSource) return 'source_limit';
      this.perSource.set(addr, n + 1);
    }
    if (cfg.maxConnections > 0 && this.stats.active >= cfg.maxConnections) {
      this.releaseSource(addr);
      return 'limit';
    }
    this.stats.active++;
    fdBudget.add(1); // the backend connection's
    return null;
  }

  /** An admitted session joins the listener (its per-source place is released at its end). */
  addSession(session: AnySession): void {
    this.sessions.add(session);
    if (this.config.maxConnectionsPerSource > 0) this.sourceCounted.add(session);
  }

  /**
   * Upgrade: what holds the listening socket, to hand to a new process (null
   * before listen()), and whether the caller destroys it once sent. The
   * native engine gives its socket back first: node:net accepts on it until
   * the new process has it; but a cluster worker's listen on an fd asks its
   * primary, so there the engine's socket goes, unread, in a net.Socket and
   * this worker accepts no more (the others and the new process do).
   */
  upgradeSocket(): { socket: net.Server; own: false } | { socket: net.Socket; own: true } | null {
    if (this.engineId !== null && cluster.isWorker) {
      const fd = detachEngineToFd(this.engineId);
      this.engineId = null;
      return fd === null ? null : { socket: new net.Socket({ fd, readable: false, writable: false }), own: true };
    }
    if (this.engineId !== null) this.acceptWithNode();
    return this.server === null ? null : { socket: this.server, own: false };
  }

  /** Upgrade: a session handed to a new process: it no longer counts here (no report, no totals). */
  forgetSession(session: AnySession): void {
    if (!this.sessions.delete(session)) return;
    this.stats.active--;
    fdBudget.add(-2);
    if (this.sourceCounted.delete(session)) this.releaseSource(session.clientAddr);
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
    if (this.config.maxConnectionsPerSource > 0) this.perSource.set(peer.srcAddr, (this.perSource.get(peer.srcAddr) ?? 0) + 1);
    const session = new TcpSession(this, client, pool, peer, startedAt);
    this.sessions.add(session);
    if (this.config.maxConnectionsPerSource > 0) this.sourceCounted.add(session);
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

  private releaseSource(addr: string): void {
    const n = this.perSource.get(addr);
    if (n === undefined) return;
    if (n <= 1) this.perSource.delete(addr);
    else this.perSource.set(addr, n - 1);
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
    if (this.sourceCounted.delete(session)) this.releaseSource(session.clientAddr);
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

  /**
   * Stops accepting; open connections go on. Idempotent. `handedOver`: the
   * socket lives on in a new process (upgrade), so the engine lets go of it
   * without the shutdown that would stop it listening there too.
   */
  stopAccepting(handedOver = false): Promise<void> {
    if (this.engineId !== null && handedOver) {
      const fd = detachEngineToFd(this.engineId);
      if (fd !== null) closeSync(fd);
    } else if (this.engineId !== null) detachEngine(this.engineId);
    this.engineId = null;
    const server = this.server;
    // server.close()'s callback waits for every open connection; the
    // listening socket itself is closed at once, which is all we need.
    if (server !== null && server.listening) server.close();
    return Promise.resolve();
  }

  /** Resets every open connection (drain deadline, shutdown). */
  abortAll(reason: SessionEndReason): void {
    for (const s of [...this.sessions]) s.abort(reason);
    for (const socket of [...this.awaitingHeader.keys()]) socket.destroy(); // its reader completes (not ok)
  }
}

function noop(): void {}
