/**
 * A UDP listener on the native engine (see engine.ts): binding, deciding
 * new clients, counting ended sessions, the admin API and stats. The
 * upgrade's hand-over is added by EngineUdpListener (engine.ts).
 */
import type { ListenerConfig } from '../config/schema';
import type { Pool } from '../backend/pool';
import type { Backend } from '../backend/backend';
import type { ListenerContext } from '../listener/context';
import type { ListenerSnapshot } from '../stats/stats';
import { compileAcl } from '../net/cidr';
import { formatHostPort } from '../net/address';
import { fdBudget, LOCAL_ERRORS } from '../net/fd-budget';
import { udpTermination } from '../listener/termination';
import { matches, type ConnectionInfo, type ConnectionQuery } from '../stats/connections';
import { UdpListener } from './listener';
import { decideUdp } from './decide';
import type { Flow } from '../balancer/picker';
import cluster from 'node:cluster';
import dgram from 'node:dgram';
import { backendsById, errnoName, handleFd, idOf, listenersById, pump, releaseId, REASONS, R_ADMIN, R_GONE, SOCKET_BUFFER, type UdpEngineBinding } from './engine-binding';

export class EngineUdpListenerBase extends UdpListener {
  protected readonly engine: UdpEngineBinding;
  protected lid = -1;
  private eAcl: (addr: string) => boolean;
  private eAccepting = true;
  protected eSessions = 0;
  protected eClosed = false;
  private eAddress = '';
  private ePort = 0;
  private readonly eFlow: Flow = { protocol: 17, srcAddr: '', srcPort: 0, dstAddr: '', dstPort: 0 };
  /** Open sessions per backend id. */
  protected readonly perBackend = new Map<number, number>();
  protected eWaiters: (() => void)[] = [];
  private dropTimer: NodeJS.Timeout | null = null;
  private droppedLogged = { held: 0, send: 0 };

  constructor(config: ListenerConfig, pool: Pool, ctx: ListenerContext, engine: UdpEngineBinding) {
    super(config, pool, ctx);
    this.engine = engine;
    this.eAcl = compileAcl(config.allow, config.deny);
  }

  /**
   * Binds in the engine (or hands it the inherited socket `fd`). In a
   * cluster worker an inherited fd is not this process's: dgram gets the
   * socket from the primary (as on the JS path) and the engine takes a dup.
   */
  override async listen(fd?: number): Promise<{ address: string; port: number }> {
    if (fd !== undefined && cluster.isWorker) {
      const s = dgram.createSocket({ type: this.config.bind.family === 6 ? 'udp6' : 'udp4' });
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.bind({ fd }, () => resolve());
      });
      try {
        return this.bindEngine(handleFd(s), true);
      } finally {
        s.close();
      }
    }
    return this.bindEngine(fd ?? -1, false);
  }

  private bindEngine(fd: number, dup: boolean): { address: string; port: number } {
    const c = this.config.bind;
    const r = this.engine.udpListen(c.family === 6 ? 6 : 4, c.host, c.port, fd, SOCKET_BUFFER, dup);
    if (typeof r === 'number') {
      const code = errnoName(r);
      const err = new Error(`bind ${code} ${formatHostPort(c.host, c.port)}`) as NodeJS.ErrnoException;
      err.code = code;
      err.errno = r;
      err.syscall = 'bind';
      throw err;
    }
    [this.lid, this.eAddress, this.ePort] = r;
    this.eFlow.dstAddr = this.eAddress;
    this.eFlow.dstPort = this.ePort;
    listenersById.set(this.lid, this);
    this.configure();
    this.dropTimer = setInterval(() => this.logDropped(), 1000);
    this.dropTimer.unref();
    return { address: this.eAddress, port: this.ePort };
  }

  private configure(): void {
    if (this.lid < 0 || this.eClosed) return;
    this.engine.udpConfigure(this.lid, Math.max(0, this.config.idleTimeoutMs), Math.max(0, this.config.udpResponses), this.eAccepting);
  }

  override update(config: ListenerConfig, pool: Pool): void {
    this.config = config;
    this.pool = pool;
    this.eAcl = compileAcl(config.allow, config.deny);
    this.configure();
  }

  /** A client without a session: decide as the JavaScript path does; the engine then opens the session or drops what it held. */
  onNewClient(id: number, addr: string, port: number, local: string): void {
    const stats = this.stats;
    if (UdpListener.holding && this.eAccepting) {
      // Upgrade: the previous process may still hand this client's session
      // over; the engine holds its datagrams (up to 64) until releaseHeld().
      this.deferred.set(`${addr}|${port}`, [id, addr, port, local]);
      return;
    }
    if (!this.eAccepting) {
      this.engine.udpReject(id);
      return;
    }
    const d = decideUdp({ config: this.config, pool: this.pool, acl: this.eAcl, sessions: this.eSessions, flow: this.eFlow }, addr, port, local);
    if (typeof d === 'string') {
      // Every datagram it sent meanwhile is a refused one, as on the JS path.
      stats.rejected[d] += Math.max(1, this.engine.udpReject(id));
      return;
    }
    const bid = idOf(d, this.pool.name);
    fdBudget.add(1);
    const rc = this.engine.udpOpen(id, d.family, d.host, d.port, bid);
    if (rc < 0) {
      fdBudget.add(-1);
      const held = this.engine.udpReject(id);
      const name = errnoName(rc);
      // Out of fds or buffers: refused for resources. Any other connect
      // failure (no route) leaves the client's datagrams unanswered, as a
      // session ended by `error` does on the JS path; counted the same way.
      if (LOCAL_ERRORS.has(name)) stats.rejected.resources += Math.max(1, held);
      else this.ctx.log.warn({ listener: this.name, backend: d.address, err: name }, 'udp session failed');
      releaseId(bid, 0);
      return;
    }
    const e = backendsById.get(bid);
    if (e !== undefined) e.sessions++;
    this.perBackend.set(bid, (this.perBackend.get(bid) ?? 0) + 1);
    this.eSessions++;
    stats.connectionsTotal++;
    stats.active++;
    stats.udpSessionsActive++;
    d.active++;
    d.total++;
  }

  /** An ended session's record `f[i..i+7)`: listener, backend, reason, bytes in, bytes out, duration, client port. */
  onEnded(f: Float64Array, i: number, client: string | null): void {
    const bid = f[i + 1] as number;
    const reason = REASONS[f[i + 2] as number] ?? 'error';
    const bytesIn = f[i + 3] as number;
    const bytesOut = f[i + 4] as number;
    const durationMs = f[i + 5] as number;
    const e = backendsById.get(bid);
    this.eSessions--;
    const left = (this.perBackend.get(bid) ?? 1) - 1;
    if (left > 0) this.perBackend.set(bid, left);
    else this.perBackend.delete(bid);
    fdBudget.add(-1);
    const stats = this.stats;
    stats.active--;
    stats.udpSessionsActive--;
    stats.bytesIn += bytesIn;
    stats.bytesOut += bytesOut;
    this.stats.duration.observe(durationMs / 1000);
    if (e !== undefined) {
      const backend = e.backend;
      backend.active--;
      backend.bytesIn += bytesIn;
      backend.bytesOut += bytesOut;
      if (this.ctx.connectionLog) {
        this.ctx.log.info(
          {
            listener: this.name,
            client: client === null ? null : formatHostPort(client, f[i + 6] as number),
            backend: backend.address,
            bytes_in: bytesIn,
            bytes_out: bytesOut,
            duration_ms: durationMs,
            connect_ms: null,
            retries: 0,
            pump: 'engine',
            reason,
            termination: udpTermination(reason),
          },
          'connection closed',
        );
      }
      if (reason === 'backend_refused') {
        // ICMP port unreachable: the backend is not there. Passive failure.
        backend.connectFailures++;
        this.ctx.onConnectFailure(this.pool, backend, 'refused');
      }
      releaseId(bid, 1);
    }
    if (this.eSessions === 0) {
      const w = this.eWaiters;
      this.eWaiters = [];
      for (const fn of w) fn();
      if (!this.eAccepting && !this.current) this.closeEngineSocket();
    }
  }

  private rows(): { client: string; backend: { backend: Backend; pool: string } | undefined; started: number; bytesIn: number; bytesOut: number }[] {
    if (this.lid < 0 || this.eClosed) return [];
    const a = this.engine.udpSessions(this.lid);
    const out = [];
    for (let i = 0; i < a.length; i += 6) {
      out.push({
        client: formatHostPort(a[i] as string, a[i + 1] as number),
        backend: backendsById.get(a[i + 2] as number),
        started: a[i + 3] as number,
        bytesIn: a[i + 4] as number,
        bytesOut: a[i + 5] as number,
      });
    }
    return out;
  }

  override logProgress(prev: number, now: number, intervalMs: number): void {
    if (this.eSessions === 0) return;
    for (const r of this.rows()) {
      const age = now - r.started;
      if (age < intervalMs || Math.floor(age / intervalMs) === Math.floor((prev - r.started) / intervalMs)) continue;
      this.ctx.log.info(
        { listener: this.name, client: r.client, backend: r.backend?.backend.address ?? null, bytes_in: r.bytesIn, bytes_out: r.bytesOut, duration_ms: age, connect_ms: null, retries: 0, pump: 'engine' },
        'connection progress',
      );
    }
  }

  override listConnections(q: ConnectionQuery, now: number, out: ConnectionInfo[]): void {
    for (const r of this.rows()) {
      if (r.backend === undefined || !matches(q, this.name, r.backend.pool, r.backend.backend.address)) continue;
      out.push({ listener: this.name, protocol: 'udp', pool: r.backend.pool, client: r.client, backend: r.backend.backend.address, age_ms: now - r.started, bytes_in: r.bytesIn, bytes_out: r.bytesOut });
    }
  }

  /** Ends the sessions to the backends `which` selects; their records are handled before this returns. */
  private endWhere(which: (e: { backend: Backend; pool: string }) => boolean, reason: number): number {
    if (this.lid < 0 || this.eClosed) return 0;
    let n = 0;
    for (const bid of [...this.perBackend.keys()]) {
      const e = backendsById.get(bid);
      if (e !== undefined && which(e)) n += this.engine.udpEnd(this.lid, bid, reason);
    }
    if (n > 0) pump();
    return n;
  }

  override shutdownBackend(pool: string, address: string): number {
    return this.endWhere((e) => e.pool === pool && e.backend.address === address, R_ADMIN);
  }

  override endSessionsOfGoneBackends(): void {
    this.endWhere((e) => e.backend.state === 'down' || !e.backend.member, R_GONE);
  }

  override addLiveBackendBytes(into: Map<Backend, [number, number]>): void {
    if (this.lid < 0 || this.eClosed || this.eSessions === 0) return;
    const f = this.engine.udpBackendBytes(this.lid);
    for (let i = 0; i < f.length; i += 3) {
      const e = backendsById.get(f[i] as number);
      if (e === undefined) continue;
      const cur = into.get(e.backend);
      if (cur === undefined) into.set(e.backend, [f[i + 1] as number, f[i + 2] as number]);
      else {
        cur[0] += f[i + 1] as number;
        cur[1] += f[i + 2] as number;
      }
    }
  }

  override stopAccepting(): Promise<void> {
    this.eAccepting = false;
    this.configure();
    if (this.eSessions === 0 && !this.current) this.closeEngineSocket();
    return Promise.resolve();
  }

  override whenEmpty(): Promise<void> {
    if (this.eSessions === 0) return Promise.resolve();
    return new Promise((resolve) => this.eWaiters.push(resolve));
  }

  override abortAll(reason: 'drain_timeout' | 'shutdown'): void {
    if (this.lid < 0 || this.eClosed) return;
    if (this.engine.udpEnd(this.lid, -1, REASONS.indexOf(reason)) > 0) pump();
  }

  /** `udp datagrams dropped` (warn), at most once a second: what the engine dropped since the last line. */
  private logDropped(): void {
    const d = this.dropped();
    const held = d.held - this.droppedLogged.held;
    const send = d.send - this.droppedLogged.send;
    if (held <= 0 && send <= 0) return;
    this.droppedLogged = d;
    this.ctx.log.warn({ listener: this.name, held, send }, 'udp datagrams dropped');
  }

  private closeEngineSocket(): void {
    if (this.eClosed || this.lid < 0) return;
    if (this.dropTimer !== null) clearInterval(this.dropTimer);
    this.dropTimer = null;
    this.logDropped();
    // Final counters first: the listener's slot in the engine goes away.
    this.readCounters();
    this.engine.udpClose(this.lid);
    this.eClosed = true;
    pump();
    listenersById.delete(this.lid);
  }

  override dispose(): void {
    this.abortAll('shutdown');
    this.closeEngineSocket();
  }

  private liveIn = 0;
  private liveOut = 0;

  /** Datagram totals and live bytes from the engine (kept as last read once the socket is closed). */
  private readCounters(): void {
    if (this.lid < 0 || this.eClosed) return;
    const c = this.engine.udpCounters(this.lid);
    this.stats.datagramsIn = c[0] as number;
    this.stats.datagramsOut = c[1] as number;
    this.liveIn = c[2] as number;
    this.liveOut = c[3] as number;
  }

  override snapshot(): ListenerSnapshot {
    this.readCounters();
    const st = this.stats;
    const live = this.eClosed ? [0, 0] : [this.liveIn, this.liveOut];
    return {
      name: this.name,
      protocol: 'udp',
      bind: this.config.bindText,
      address: this.eAddress,
      port: this.ePort,
      pool: this.config.pool,
      current: this.current,
      active_connections: st.active,
      connections_total: st.connectionsTotal,
      rejected: { ...st.rejected },
      bytes_in: st.bytesIn + (live[0] as number),
      bytes_out: st.bytesOut + (live[1] as number),
      udp_sessions_active: st.udpSessionsActive,
      datagrams_in: st.datagramsIn,
      datagrams_out: st.datagramsOut,
      duration: this.stats.duration.snapshot(),
    };
  }

  // ---- Upgrade (src/upgrade/, docs/upgrade.md)

  /** New clients that came while UdpListener.holding: decided by releaseHeld(). */
  protected deferred = new Map<string, [number, string, number, string]>();

  override releaseHeld(): void {
    const d = [...this.deferred.values()];
    this.deferred.clear();
    for (const [id, addr, port, local] of d) this.onNewClient(id, addr, port, local);
  }

  /** A dgram socket over a dup of the engine's listening socket, not read here (for the channel to send; the caller closes it). */

  protected countEnded(bid: number, backend: Backend | undefined): void {
    this.eSessions--;
    const left = (this.perBackend.get(bid) ?? 1) - 1;
    if (left > 0) this.perBackend.set(bid, left);
    else this.perBackend.delete(bid);
    fdBudget.add(-1);
    this.stats.active--;
    this.stats.udpSessionsActive--;
    if (backend !== undefined) backend.active--;
  }

  /** Datagrams the engine dropped: beyond 64 held for a new client, and sends the kernel refused (buffers full). */
  dropped(): { held: number; send: number } {
    if (this.lid < 0 || this.eClosed) return { held: 0, send: 0 };
    const c = this.engine.udpCounters(this.lid);
    return { held: c[4] as number, send: c[5] as number };
  }
}
