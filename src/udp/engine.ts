/**
 * The UDP data path on the native engine (native/src/udp_*.cc): the
 * engine owns the listening socket and every session's upstream socket and
 * moves the datagrams itself; TypeScript decides who gets a session (the
 * same `decideUdp` as the JavaScript listener), counts, logs and answers
 * the admin API. Used when the addon is loaded and `splice` is not "off";
 * otherwise the JavaScript `UdpListener` runs. See docs/data-path.md.
 *
 * Per session TypeScript keeps no object: the engine's fixed record holds
 * the client, the upstream fd, the counters and the idle-list links; here
 * only per-backend session counts and the listener's totals live.
 */
import type { ListenerConfig } from '../config/schema';
import type { Pool } from '../backend/pool';
import type { Backend } from '../backend/backend';
import type { ListenerContext } from '../listener/context';
import type { ListenerSnapshot } from '../stats/stats';
import { loadSpliceAddon } from '../native/addon';
import { compileAcl } from '../net/cidr';
import { formatHostPort } from '../net/address';
import { fdBudget, LOCAL_ERRORS } from '../net/fd-budget';
import { udpTermination } from '../listener/termination';
import { matches, type ConnectionInfo, type ConnectionQuery } from '../stats/connections';
import { UdpListener, type UdpEndReason } from './listener';
import { decideUdp } from './decide';
import type { Flow } from '../balancer/picker';
import { constants as osConstants } from 'node:os';
import cluster from 'node:cluster';
import dgram from 'node:dgram';
import { closeSync } from 'node:fs';
import { stopReceiving } from '../upgrade/handles';

/** The engine's functions on the addon (native/README.md, "UDP engine"). */
export interface UdpEngineBinding {
  udpInit(onReady: () => void): boolean;
  udpListen(family: 4 | 6, host: string, port: number, fd: number, bufferBytes: number, dupFd?: boolean): [number, string, number] | number;
  udpConfigure(id: number, idleMs: number, responses: number, accepting: boolean): boolean;
  udpWantClients(on: boolean): void;
  udpTake(): [unknown[] | null, Float64Array | null, string[] | null] | undefined;
  udpOpen(id: number, family: 4 | 6, host: string, port: number, backend: number): number;
  udpReject(id: number): number;
  udpEnd(listener: number, backend: number, reason: number): number;
  udpSessions(listener: number): unknown[];
  udpBackendBytes(listener: number): Float64Array;
  udpCounters(listener: number): Float64Array;
  udpClose(listener: number): boolean;
  udpInfo(): { sessionBytes: number; open: number; pending: number; slots: number; listeners: number; heldBytes: number };
  readonly udpReasons: readonly string[];
  udpListenerFd(listener: number): number;
  udpPause(listener: number, paused: boolean): boolean;
  udpExport(listener: number): unknown[];
  udpImport(listener: number, family: 4 | 6, clientAddr: string, clientPort: number, backend: number, fd: number, startedMs: number, bytesIn: number, bytesOut: number): number;
}

/** Upgrade: an engine session taken out of the engine (udpExport) for a new process; `socket` wraps the dup of its upstream socket. */
export interface EngineHandover {
  listener: EngineUdpListener;
  clientAddr: string;
  clientPort: number;
  pool: string;
  backend: Backend;
  bid: number;
  startedAt: number;
  bytesIn: number;
  bytesOut: number;
  socket: dgram.Socket;
}

const SOCKET_BUFFER = 4 * 1024 * 1024;
const REASONS: readonly UdpEndReason[] = ['idle_timeout', 'responses', 'backend_refused', 'backend_gone', 'shutdown', 'drain_timeout', 'admin_shutdown', 'error'];
const R_GONE = 3;
const R_ADMIN = 6;

let binding: UdpEngineBinding | null | undefined;

/** The engine's functions when the addon has them and its thread started, else null. */
export function udpEngine(): UdpEngineBinding | null {
  if (binding !== undefined) return binding;
  binding = null;
  const { addon } = loadSpliceAddon();
  const b = addon as unknown as Partial<UdpEngineBinding> | null;
  if (b === null || typeof b.udpInit !== 'function' || !Array.isArray(b.udpReasons) || b.udpReasons.join() !== REASONS.join()) return null;
  try {
    if (b.udpInit(pump)) binding = b as UdpEngineBinding;
  } catch {
    binding = null;
  }
  return binding;
}

/** A UDP listener on the engine when `native` and the engine is available, else the JavaScript one. */
export function createUdpListener(config: ListenerConfig, pool: Pool, ctx: ListenerContext, native: boolean): UdpListener {
  // A scoped IPv6 bind (fe80::1%eth0) stays on dgram, which resolves the zone.
  const e = native && !config.bind.host.includes('%') ? udpEngine() : null;
  return e === null ? new UdpListener(config, pool, ctx) : new EngineUdpListener(config, pool, ctx, e);
}

/** Backends as small integers for the engine's records (ids live while sessions to them are open). */
const backendIds = new Map<Backend, number>();
const backendsById = new Map<number, { backend: Backend; pool: string; sessions: number }>();
let nextBackendId = 1;

const listenersById = new Map<number, EngineUdpListener>();

/** Reason string of an errno returned by the engine. */
function errnoName(neg: number): string {
  for (const [k, v] of Object.entries(osConstants.errno)) if (v === -neg) return k;
  return `errno ${-neg}`;
}

let pumping = false;
let again = false;

/** Takes what the engine has for TypeScript (ended sessions, then new clients) until it has nothing. */
function pump(): void {
  const b = binding;
  if (b === null || b === undefined) return;
  if (pumping) {
    again = true;
    return;
  }
  pumping = true;
  try {
    let want = false;
    for (const l of listenersById.values()) if (l.ctx.connectionLog) want = true;
    b.udpWantClients(want);
    for (let round = 0; round < 64; round++) {
      again = false;
      const r = b.udpTake();
      if (r === undefined) {
        if (!again) break;
        continue;
      }
      const [news, ends, clients] = r;
      if (ends !== null) {
        for (let i = 0, k = 0; i < ends.length; i += 7, k++) {
          const l = listenersById.get(ends[i] as number);
          if (l !== undefined) l.onEnded(ends, i, clients === null ? null : (clients[k] ?? null));
        }
      }
      if (news !== null) {
        for (let i = 0; i < news.length; i += 5) {
          const id = news[i] as number;
          const l = listenersById.get(news[i + 1] as number);
          if (l === undefined) b.udpReject(id);
          else l.onNewClient(id, news[i + 2] as string, news[i + 3] as number, news[i + 4] as string);
        }
      }
    }
  } finally {
    pumping = false;
  }
}

export class EngineUdpListener extends UdpListener {
  private readonly engine: UdpEngineBinding;
  private lid = -1;
  private eAcl: (addr: string) => boolean;
  private eAccepting = true;
  private eSessions = 0;
  private eClosed = false;
  private eAddress = '';
  private ePort = 0;
  private readonly eFlow: Flow = { protocol: 17, srcAddr: '', srcPort: 0, dstAddr: '', dstPort: 0 };
  /** Open sessions per backend id. */
  private readonly perBackend = new Map<number, number>();
  private eWaiters: (() => void)[] = [];
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
  private deferred = new Map<string, [number, string, number, string]>();

  override releaseHeld(): void {
    const d = [...this.deferred.values()];
    this.deferred.clear();
    for (const [id, addr, port, local] of d) this.onNewClient(id, addr, port, local);
  }

  /** A dgram socket over a dup of the engine's listening socket, not read here (for the channel to send; the caller closes it). */
  async handoverSocket(): Promise<dgram.Socket | null> {
    if (this.lid < 0 || this.eClosed) return null;
    const fd = this.engine.udpListenerFd(this.lid);
    if (fd < 0) return null;
    return quietSocket(this.config.bind.family === 6 ? 6 : 4, fd);
  }

  /**
   * Once every engine listener is paused: waits (up to `maxMs`) until no
   * client waits for a decision, so that a client whose first datagrams
   * came just before the pause has its session here, handed over with the
   * others, instead of one left behind in this process.
   */
  static async settlePending(maxMs = 500): Promise<void> {
    const b = binding;
    if (b === null || b === undefined) return;
    const end = Date.now() + maxMs;
    while (b.udpInfo().pending > 0 && Date.now() < end) {
      pump();
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** Stops (true) or resumes (false) reading the listening socket; open sessions go on. */
  pauseForUpgrade(paused: boolean): void {
    if (this.lid >= 0 && !this.eClosed) this.engine.udpPause(this.lid, paused);
  }

  /**
   * Takes the open sessions out of the engine for a new process: each with
   * a socket over a dup of its connected upstream socket. Until
   * forgetExported() they still count here; takeBackExported() puts one
   * back into the engine.
   */
  async exportSessions(): Promise<EngineHandover[]> {
    if (this.lid < 0 || this.eClosed) return [];
    const a = this.engine.udpExport(this.lid);
    const out: EngineHandover[] = [];
    for (let i = 0; i < a.length; i += 8) {
      const bid = a[i + 2] as number;
      const fd = a[i + 6] as number;
      const e = backendsById.get(bid);
      let socket: dgram.Socket;
      try {
        socket = await quietSocket(a[i + 7] === 6 ? 6 : 4, fd);
      } catch {
        // Not a socket any more: nothing to hand over; it ends here without a report.
        this.countEnded(bid, e?.backend);
        releaseId(bid, 1);
        continue;
      }
      if (e === undefined) {
        socket.close();
        this.countEnded(bid, undefined);
        continue;
      }
      out.push({ listener: this, clientAddr: a[i] as string, clientPort: a[i + 1] as number, pool: e.pool, backend: e.backend, bid, startedAt: a[i + 3] as number, bytesIn: a[i + 4] as number, bytesOut: a[i + 5] as number, socket });
    }
    return out;
  }

  /** A session the new process acknowledged: no longer counted here (no end report); its socket closes. */
  forgetExported(h: EngineHandover): void {
    h.socket.close();
    this.countEnded(h.bid, h.backend);
    releaseId(h.bid, 1);
    if (this.eSessions === 0) {
      const w = this.eWaiters;
      this.eWaiters = [];
      for (const fn of w) fn();
    }
  }

  /** A session whose handover failed goes on in this engine. False (and it ends) when the engine refuses it. */
  takeBackExported(h: EngineHandover): boolean {
    const fd = handleFd(h.socket);
    const rc = this.lid < 0 || this.eClosed || fd < 0 ? -1 : this.engine.udpImport(this.lid, h.clientAddr.includes(':') ? 6 : 4, h.clientAddr, h.clientPort, h.bid, fd, h.startedAt, h.bytesIn, h.bytesOut);
    h.socket.close();
    if (rc === 0) return true;
    this.forgetExported(h);
    return false;
  }

  /** A session the previous process handed over: the engine serves it on with the same (connected) upstream socket. */
  adoptEngineSession(sock: dgram.Socket, clientAddr: string, clientPort: number, backend: Backend, startedAt: number, bytesIn: number, bytesOut: number): boolean {
    const fd = handleFd(sock);
    if (this.lid < 0 || this.eClosed || fd < 0) {
      sock.close();
      return false;
    }
    const bid = idOf(backend, this.pool.name);
    const rc = this.engine.udpImport(this.lid, clientAddr.includes(':') ? 6 : 4, clientAddr, clientPort, bid, fd, startedAt, bytesIn, bytesOut);
    sock.close();
    if (rc !== 0) {
      releaseId(bid, 0);
      return false;
    }
    this.deferred.delete(`${clientAddr}|${clientPort}`);
    fdBudget.add(1);
    const e = backendsById.get(bid);
    if (e !== undefined) e.sessions++;
    this.perBackend.set(bid, (this.perBackend.get(bid) ?? 0) + 1);
    this.eSessions++;
    this.stats.active++;
    this.stats.udpSessionsActive++;
    backend.active++;
    return true;
  }

  private countEnded(bid: number, backend: Backend | undefined): void {
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

/**
 * A dgram socket over `fd` (which it owns from then on) that does not read:
 * dgram starts reading when it binds, it is stopped in the same turn.
 */
async function quietSocket(family: 4 | 6, fd: number): Promise<dgram.Socket> {
  const s = dgram.createSocket({ type: family === 6 ? 'udp6' : 'udp4' });
  const bound = new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.once('listening', () => {
      stopReceiving(s);
      resolve();
    });
  });
  try {
    s.bind({ fd });
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  stopReceiving(s);
  await bound;
  s.on('error', () => {});
  return s;
}

/** The fd of a bound dgram socket (libuv's handle; -1 when it has none). */
function handleFd(s: dgram.Socket): number {
  // Not `s._handle` (deprecated, warns): the same handle under dgram's state symbol.
  const sym = Object.getOwnPropertySymbols(s).find((x) => x.description === 'state symbol');
  const state = sym === undefined ? undefined : (s as unknown as Record<symbol, { handle?: { fd?: number } } | undefined>)[sym];
  return state?.handle?.fd ?? -1;
}

function idOf(backend: Backend, pool: string): number {
  let id = backendIds.get(backend);
  if (id === undefined) {
    id = nextBackendId++;
    backendIds.set(backend, id);
    backendsById.set(id, { backend, pool, sessions: 0 });
  }
  return id;
}

/** Forgets a backend's id once no session uses it (`ended`: sessions that just ended). */
function releaseId(id: number, ended: number): void {
  const e = backendsById.get(id);
  if (e === undefined) return;
  e.sessions -= ended;
  if (e.sessions <= 0) {
    backendsById.delete(id);
    backendIds.delete(e.backend);
  }
}
