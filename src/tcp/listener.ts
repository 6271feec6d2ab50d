/**
 * A TCP listener: accepts clients, applies ACL and limits in SPEC order, and
 * starts a TcpSession for each admitted client.
 *
 * Accept path (hot): remoteAddress → ACL → per-source limit → listener limit
 * → session.start() (pick + connect). Nothing here allocates beyond the
 * session object itself and Node's socket; nothing is logged per connection
 * unless `connection_log` is on.
 */
import net from 'node:net';
import type { ListenerConfig } from '../config/schema';
import type { Pool } from '../backend/pool';
import type { Backend } from '../backend/backend';
import type { Flow } from '../balancer/picker';
import { compileAcl } from '../net/cidr';
import { ListenerStats, type ListenerSnapshot } from '../dataplane/stats';
import { TcpSession, type PeerAddresses, type SessionEndReason } from './session';
import { readProxyHeader } from './proxy-accept';
import { fdBudget } from '../net/fd-budget';
import { formatHostPort } from '../net/address';
import type { ListenerContext } from '../listener/context';
import { SniRouter } from '../tls/sni-routes';
import { DURATION_BUCKETS, Histogram } from '../dataplane/histogram';
import { tcpTermination } from '../dataplane/termination';
import { matches, type ConnectionInfo, type ConnectionQuery } from '../dataplane/connections';

/** What a listener needs from the data plane around it (shared with UDP listeners). */
export type TcpContext = ListenerContext;

const KEEPALIVE_DELAY_MS = 60_000;

export class TcpListener {
  config: ListenerConfig;
  /** The listener's pool; with route_by = "sni" the fallback, null when there is none. */
  pool: Pool | null;
  /** route_by = "sni": the routes, to pools (set by setRoutes()); null otherwise. */
  private router: SniRouter<Pool> | null = null;
  readonly ctx: TcpContext;
  readonly stats = new ListenerStats();
  readonly sessions = new Set<TcpSession>();
  /** Durations of finished connections, seconds. */
  readonly duration = new Histogram(DURATION_BUCKETS);
  /** False once a reload removed this listener; it lives until its sessions end. */
  current = true;
  private server: net.Server | null = null;
  private acl: (addr: string) => boolean;
  /** Peers that may send PROXY headers (trusted_proxies); null = any. */
  private trusted: ((addr: string) => boolean) | null;
  private perSource = new Map<string, number>();
  /** Sessions that hold a place in `perSource` (admitted while the per-source limit was on). */
  private readonly sourceCounted = new Set<TcpSession>();
  private readonly flow: Flow = { protocol: 6, srcAddr: '', srcPort: 0, dstAddr: '', dstPort: 0 };
  private boundAddress = '';
  private boundPort = 0;
  private sweepTimer: NodeJS.Timeout | null = null;
  private emptyWaiters: (() => void)[] = [];
  acceptErrors = 0;

  constructor(config: ListenerConfig, pool: Pool | null, ctx: TcpContext) {
    this.config = config;
    this.pool = pool;
    this.ctx = ctx;
    this.acl = compileAcl(config.allow, config.deny);
    this.trusted = config.trustedProxies === null ? null : compileAcl(config.trustedProxies, []);
  }

  get name(): string {
    return this.config.name;
  }

  /**
   * Binds (or adopts an inherited listening socket `fd`, for systemd socket
   * activation) and resolves with the address actually bound.
   */
  listen(fd?: number): Promise<{ address: string; port: number }> {
    const server = net.createServer(
      {
        pauseOnConnect: true,
        allowHalfOpen: true,
        noDelay: true,
        keepAlive: true,
        keepAliveInitialDelay: KEEPALIVE_DELAY_MS,
      },
      this.onConnection,
    );
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
        resolve({ address: this.boundAddress, port: this.boundPort });
      };
      if (fd !== undefined) server.listen({ fd }, done);
      else server.listen({ host: this.config.bind.host, port: this.config.bind.port, backlog: 4096 }, done);
    });
  }

  /** Accept errors (EMFILE, ENFILE, ...) are counted and logged; they never crash. */
  private readonly onServerError = (err: NodeJS.ErrnoException): void => {
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
    this.config = config;
    this.pool = pool;
    this.acl = compileAcl(config.allow, config.deny);
    this.trusted = config.trustedProxies === null ? null : compileAcl(config.trustedProxies, []);
    this.updateSweep();
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
    const stats = this.stats;
    const cfg = this.config;
    const addr = peer.srcAddr;
    if (!this.acl(addr)) return this.reject(socket, 'acl');
    if (cfg.maxConnectionsPerSource > 0) {
      const n = this.perSource.get(addr) ?? 0;
      if (n >= cfg.maxConnectionsPerSource) return this.reject(socket, 'source_limit');
      this.perSource.set(addr, n + 1);
    }
    if (cfg.maxConnections > 0 && stats.active >= cfg.maxConnections) {
      this.releaseSource(addr);
      return this.reject(socket, 'limit');
    }
    stats.active++;
    fdBudget.add(1); // the backend connection's
    const session = new TcpSession(this, socket, this.pool, peer, Date.now());
    this.sessions.add(session);
    if (cfg.maxConnectionsPerSource > 0) this.sourceCounted.add(session);
    session.start();
  }

  /** Upgrade: the listening socket, to hand to a new process (null before listen()). */
  get netServer(): net.Server | null {
    return this.server;
  }

  /** Upgrade: a session handed to a new process: it no longer counts here (no report, no totals). */
  forgetSession(session: TcpSession): void {
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
    this.stats.rejected[reason]++;
    if (reason !== 'resources') fdBudget.add(-1);
    socket.destroy();
  }

  private releaseSource(addr: string): void {
    const n = this.perSource.get(addr);
    if (n === undefined) return;
    if (n <= 1) this.perSource.delete(addr);
    else this.perSource.set(addr, n - 1);
  }

  /** The flow of a session, in the listener's reused Flow object. */
  flowFor(session: TcpSession): Flow {
    const f = this.flow;
    f.srcAddr = session.clientAddr;
    f.srcPort = session.clientPort;
    f.dstAddr = session.dstAddr;
    f.dstPort = session.dstPort;
    return f;
  }

  onSessionEnd(session: TcpSession, reason: SessionEndReason, bytesIn: number, bytesOut: number): void {
    this.sessions.delete(session);
    this.stats.active--;
    fdBudget.add(-2);
    if (this.sourceCounted.delete(session)) this.releaseSource(session.clientAddr);
    if (reason === 'no_backend' || reason === 'connect_failed') this.stats.rejected.no_backend++;
    else if (reason === 'resources' || reason === 'no_route' || reason === 'bad_client_hello') this.stats.rejected[reason]++;
    const now = Date.now();
    const backend = session.backend;
    if (backend !== null) {
      backend.bytesIn += bytesIn;
      backend.bytesOut += bytesOut;
    }
    if (session.connectMs !== null) this.duration.observe((now - session.startedAt) / 1000);
    if (this.ctx.connectionLog) {
      const fields = this.connectionFields(session, now, bytesIn, bytesOut);
      fields.reason = reason;
      fields.termination = tcpTermination(reason, session.firstFin);
      this.ctx.log.info(fields, 'connection closed');
    }
    this.notifyIfEmpty();
  }

  private notifyIfEmpty(): void {
    if (this.sessions.size === 0 && this.awaitingHeader.size === 0 && this.emptyWaiters.length > 0) {
      const waiters = this.emptyWaiters;
      this.emptyWaiters = [];
      for (const w of waiters) w();
    }
  }

  /**
   * The idle sweep: one coarse timer per listener instead of one per
   * connection. A session whose byte count has not changed for idle_timeout
   * is aborted. Runs every quarter of the timeout (at most once a second).
   */
  private updateSweep(): void {
    if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    const idle = this.config.idleTimeoutMs;
    if (idle <= 0 || this.server === null) return;
    const every = Math.max(10, Math.min(1000, Math.floor(idle / 4)));
    this.sweepTimer = setInterval(() => this.sweep(idle), every);
    this.sweepTimer.unref();
  }

  private sweep(idle: number): void {
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

  /** Stops accepting; open connections go on. Idempotent. */
  stopAccepting(): Promise<void> {
    const server = this.server;
    // server.close()'s callback waits for every open connection; the
    // listening socket itself is closed at once, which is all we need.
    if (server !== null && server.listening) server.close();
    return Promise.resolve();
  }

  /** Resolves once every session has ended. */
  whenEmpty(): Promise<void> {
    if (this.sessions.size === 0 && this.awaitingHeader.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.emptyWaiters.push(resolve));
  }

  /** Resets every open connection (drain deadline, shutdown). */
  abortAll(reason: SessionEndReason): void {
    for (const s of [...this.sessions]) s.abort(reason);
    for (const socket of [...this.awaitingHeader.keys()]) socket.destroy(); // its reader completes (not ok)
  }

  /** Stops timers; call after the last session ended. */
  dispose(): void {
    if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
  }

  /** The fields of `connection closed` and `connection progress` lines. */
  private connectionFields(s: TcpSession, now: number, bytesIn: number, bytesOut: number): Record<string, unknown> {
    return {
      listener: this.name,
      client: formatHostPort(s.clientAddr, s.clientPort),
      backend: s.backend?.address ?? null,
      bytes_in: bytesIn,
      bytes_out: bytesOut,
      duration_ms: now - s.startedAt,
      connect_ms: s.connectMs === null ? null : Math.round(s.connectMs * 1000) / 1000,
      retries: s.retries,
      pump: s.pumpKind,
      ...(s.sniRouted ? { sni: s.sni } : {}),
    };
  }

  /**
   * `connection progress` for every connection that became another
   * `intervalMs` old since the last call (`prev`): one line per connection
   * and interval, bytes so far.
   */
  logProgress(prev: number, now: number, intervalMs: number): void {
    for (const s of this.sessions) {
      const age = now - s.startedAt;
      if (age < intervalMs || s.connectMs === null) continue;
      if (Math.floor(age / intervalMs) === Math.floor((prev - s.startedAt) / intervalMs)) continue;
      this.ctx.log.info(this.connectionFields(s, now, s.bytesIn, s.bytesOut), 'connection progress');
    }
  }

  /** Appends the open connections matching `q` to `out`. */
  listConnections(q: ConnectionQuery, now: number, out: ConnectionInfo[]): void {
    for (const s of this.sessions) {
      const b = s.backend;
      const pool = s.pool;
      if (b === null || pool === null || !matches(q, this.name, pool.name, b.address)) continue;
      out.push({
        listener: this.name,
        protocol: 'tcp',
        pool: pool.name,
        client: formatHostPort(s.clientAddr, s.clientPort),
        backend: b.address,
        age_ms: now - s.startedAt,
        bytes_in: s.bytesIn,
        bytes_out: s.bytesOut,
        ...(s.sniRouted ? { sni: s.sni } : {}),
      });
    }
  }

  /** Resets every open connection to backend `address` of pool `pool` (admin); returns how many. */
  shutdownBackend(pool: string, address: string): number {
    let n = 0;
    for (const s of [...this.sessions]) {
      if (s.backend === null || s.backend.address !== address || s.pool?.name !== pool) continue;
      s.abort('admin_shutdown');
      n++;
    }
    return n;
  }

  /** Adds the bytes of open connections to their backend's entry of `into` (per-backend byte counters). */
  addLiveBackendBytes(into: Map<Backend, [number, number]>): void {
    for (const s of this.sessions) {
      const b = s.backend;
      if (b === null) continue;
      const e = into.get(b);
      if (e === undefined) into.set(b, [s.bytesIn, s.bytesOut]);
      else {
        e[0] += s.bytesIn;
        e[1] += s.bytesOut;
      }
    }
  }

  /** Bytes of open connections, read from their pumps (for metrics and status). */
  liveBytes(): { bytesIn: number; bytesOut: number } {
    let i = 0;
    let o = 0;
    for (const s of this.sessions) {
      i += s.bytesIn;
      o += s.bytesOut;
    }
    return { bytesIn: i, bytesOut: o };
  }

  snapshot(): ListenerSnapshot {
    const live = this.liveBytes();
    const st = this.stats;
    return {
      name: this.name,
      protocol: 'tcp',
      bind: this.config.bindText,
      address: this.boundAddress,
      port: this.boundPort,
      pool: this.config.pool,
      route_by: this.config.routeBy,
      routes: this.config.routes.map((r) => ({ sni: r.sni, pool: r.pool })),
      current: this.current,
      active_connections: st.active,
      connections_total: st.connectionsTotal,
      rejected: { ...st.rejected },
      bytes_in: st.bytesIn + live.bytesIn,
      bytes_out: st.bytesOut + live.bytesOut,
      udp_sessions_active: 0,
      datagrams_in: 0,
      datagrams_out: 0,
      duration: this.duration.snapshot(),
    };
  }
}

function noop(): void {}
