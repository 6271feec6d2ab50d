/**
 * One client connection through l4lb: connect to a backend (with retries on
 * other backends), then hand both sockets to the pump until it is done.
 *
 * Life: TcpListener.onConnection → new TcpSession → connectNext() → onConnected
 * → pump.start() → onPumpDone → finish(). See docs/data-path.md.
 *
 * The client socket arrives paused (pauseOnConnect), so bytes it sends before
 * the backend is connected wait in the kernel: held, not lost.
 */
import net from 'node:net';
import type { Backend } from '../backend/backend';
import type { Pool } from '../backend/pool';
import type { PumpHandle, PumpHandover } from './pump';
import type { PeerAddresses, PumpEndReason, SessionEndReason } from '../listener/reasons';
import type { ListenerConfig } from '../config/schema';
import type { Flow } from '../balancer/picker';
import type { ListenerStats } from '../stats/stats';
import type { Pump } from './pump';
import { classifyConnectFailure, countConnectFailure, mayRetry, proxyHeader, takeBackend } from './decide';
import { readClientHello } from './sni-accept';

export type { PeerAddresses, SessionEndReason };

/**
 * What a session needs from its listener, and all it may touch: the
 * listener's configuration and counters, routing and hashing, the pump
 * choice and passive-health input, and the end report.
 */
export interface SessionHost {
  readonly config: ListenerConfig;
  readonly stats: ListenerStats;
  readonly ctx: {
    pumpFor(client: net.Socket, backend: net.Socket): Pump;
    onConnectFailure(pool: Pool, backend: Backend, kind: 'refused' | 'timeout'): void;
  };
  /** route_by = "sni": the pool for this server name, or null (no route, no fallback). */
  routeFor(sni: string | null): Pool | null;
  /** The session's flow (5-tuple) for hashing, in a reused object. */
  flowFor(session: TcpSession): Flow;
  /** Called exactly once when the session is over. */
  onSessionEnd(session: TcpSession, reason: SessionEndReason, bytesIn: number, bytesOut: number): void;
  /** Upgrade: the session went to a new process; it no longer counts here. */
  forgetSession(session: TcpSession): void;
}

export class TcpSession {
  readonly listener: SessionHost;
  /** The client socket until the pump owns it (then null: an idle spliced connection keeps no socket object). */
  private client: net.Socket | null;
  /** Client address as used for limits, logs and hashing (PROXY-aware). */
  clientAddr: string;
  clientPort: number;
  /** The address the client connected to (PROXY-aware): hashing and the PROXY header sent on. */
  dstAddr: string;
  dstPort: number;
  readonly startedAt: number;
  /** Null only while an SNI-routed session without a fallback pool has not been routed yet. */
  pool: Pool | null;
  backend: Backend | null = null;
  /** Backends tried and failed for this session (null until the first failure). */
  private tried: Backend[] | null = null;
  private attempts = 0;
  private upstream: net.Socket | null = null;
  private pump: PumpHandle | null = null;
  /** Which pump carries this session's bytes, once started. */
  pumpKind: 'js' | 'splice' | null = null;
  /** Bytes seen by the idle sweep last time, and when they last changed. */
  idleBytes = 0;
  idleSince: number;
  private endReason: SessionEndReason | null = null;
  /** Set when the client left or the session was aborted before the pump started: no more retries. */
  private stopping = false;
  private finished = false;
  /** Bytes to send to the backend before any client byte (PROXY header). */
  head: Buffer | null = null;
  /** route_by = "sni": the server name the ClientHello carried (lower-case), null when none or not routed by SNI. */
  private sniName: string | null = null;
  /** route_by = "sni": the ClientHello was read and the pool chosen from it. */
  sniRouted = false;
  /** Client bytes read before the pump (the ClientHello): sent after `head`, counted in bytesIn. */
  private early: Buffer | null = null;
  private earlyBytes = 0;
  /** performance.now() at accept and at the current connect attempt; ms from accept to connected (null until then). */
  private readonly startedHr = performance.now();
  private attemptAt = 0;
  connectMs: number | null = null;

  constructor(listener: SessionHost, client: net.Socket, pool: Pool | null, peer: PeerAddresses, now: number) {
    this.listener = listener;
    this.client = client;
    this.pool = pool;
    this.clientAddr = peer.srcAddr;
    this.clientPort = peer.srcPort;
    this.dstAddr = peer.dstAddr;
    this.dstPort = peer.dstPort;
    this.startedAt = now;
    this.idleSince = now;
  }

  get bytesIn(): number {
    return (this.pump === null ? 0 : this.pump.bytesIn) + this.earlyBytes;
  }

  /** The TLS server name this session was routed by (route_by = "sni"), lower-case; null otherwise or when none was sent. */
  get sni(): string | null {
    return this.sniName;
  }

  /** The name of the pool the backend is picked from (null until routed). */
  get poolName(): string | null {
    return this.pool === null ? null : this.pool.name;
  }

  get bytesOut(): number {
    return (this.pump === null ? 0 : this.pump.bytesOut) + this.carriedOut;
  }

  /** Connect attempts after the first (other backends tried). */
  get retries(): number {
    return this.attempts > 0 ? this.attempts - 1 : 0;
  }

  /** Which side sent the first FIN, where the pump knows it. */
  get firstFin(): 'client' | 'backend' | null {
    return this.carriedFin ?? this.pump?.firstFin ?? null;
  }

  /** Upgrade: bytes backend → client and the first FIN from the process this session was handed over by. */
  private carriedOut = 0;
  private carriedFin: 'client' | 'backend' | null = null;

  /**
   * Upgrade (src/upgrade/): takes this connection out of its pump to hand it
   * to a new process. The session ends here without a report (it goes on
   * there). Null when it cannot be handed over now; it then goes on here.
   */
  async handover(): Promise<(PumpHandover & { session: TcpSession }) | null> {
    const pump = this.pump;
    if (pump === null || this.finished || pump.handover === undefined) return null;
    const parts = await pump.handover();
    if (parts === null) return null;
    this.finished = true;
    if (this.backend !== null) this.backend.active--;
    this.listener.forgetSession(this);
    return { ...parts, bytesIn: parts.bytesIn + this.earlyBytes, bytesOut: parts.bytesOut + this.carriedOut, firstFin: this.carriedFin ?? parts.firstFin, session: this };
  }

  /**
   * Upgrade: this session continues a connection handed over by the
   * previous process: `upstream` is its connected backend socket. The
   * bytes in flight go first, then the pump carries on; byte counts and
   * the first FIN carry on from the previous process's.
   */
  adopt(upstream: net.Socket, backend: Backend, c: { bytesIn: number; bytesOut: number; toBackend: Buffer; toClient: Buffer; firstFin: 'client' | 'backend' | null; connectMs: number | null; sni: string | null; sniRouted: boolean }): void {
    const client = this.client as net.Socket;
    this.backend = backend;
    backend.active++;
    this.attempts = 1;
    this.connectMs = c.connectMs ?? 0;
    this.earlyBytes = c.bytesIn;
    this.carriedOut = c.bytesOut;
    this.carriedFin = c.firstFin;
    this.sniName = c.sni;
    this.sniRouted = c.sniRouted;
    if (c.toClient.length > 0) client.write(c.toClient);
    const pump = this.listener.ctx.pumpFor(client, upstream);
    this.pumpKind = pump.kind;
    this.pump = pump.start(client, upstream, c.toBackend.length > 0 ? c.toBackend : null, this.onPumpDone);
    this.client = null;
  }

  /** Starts the first connect attempt (after reading the ClientHello with route_by = "sni"). Returns false when no backend is available at all. */
  start(): boolean {
    const cfg = this.listener.config;
    if (cfg.routeBy === 'sni') {
      readClientHello(this.client as net.Socket, cfg.clientHelloTimeoutMs, this);
      return true;
    }
    return this.connectFirst();
  }

  /** route_by = "sni": the ClientHello is complete; pick the pool by its server name and go on. */
  routed(sni: string | null, bytes: Buffer): void {
    if (this.finished) return;
    this.sniName = sni;
    this.sniRouted = true;
    this.early = bytes;
    this.earlyBytes = bytes.length;
    const pool = this.listener.routeFor(sni);
    if (pool === null) return this.refuse('no_route');
    this.pool = pool;
    this.connectFirst();
  }

  /** Ends the session before any backend was chosen (SNI routing). */
  refuse(reason: 'no_route' | 'bad_client_hello' | 'client_gone'): void {
    if (this.finished) return;
    if (this.endReason === null) this.endReason = reason;
    this.earlyBytes = 0;
    this.early = null;
    this.client?.destroy();
    this.finish();
  }

  private connectFirst(): boolean {
    this.head = proxyHeader(this.listener.config.proxyProtocol, this.clientAddr, this.clientPort, this.dstAddr, this.dstPort);
    if (this.early !== null) this.head = this.head === null ? this.early : Buffer.concat([this.head, this.early]);
    this.early = null;
    // Until the pump owns it, the client must never crash us or linger.
    const client = this.client as net.Socket;
    client.on('error', this.onClientEarlyClose);
    client.on('close', this.onClientEarlyClose);
    return this.connectNext();
  }

  private readonly onClientEarlyClose = (): void => {
    if (this.pump !== null || this.finished) return;
    this.stopping = true;
    if (this.endReason === null) this.endReason = 'client_gone';
    if (this.upstream !== null) this.upstream.destroy();
    else this.finish();
  };

  /** Picks a backend not tried yet and connects to it. */
  private connectNext(): boolean {
    const flow = this.listener.flowFor(this);
    const backend = takeBackend(this.pool as Pool, flow, this.tried);
    if (backend === null) {
      this.endReason = this.attempts === 0 ? 'no_backend' : 'connect_failed';
      this.client?.destroy();
      this.finish();
      return false;
    }
    this.attempts++;
    this.attemptAt = performance.now();
    this.backend = backend;
    const cfg = this.listener.config;
    const up = net.connect({
      host: backend.host,
      port: backend.port,
      allowHalfOpen: true,
      noDelay: true,
      keepAlive: true,
      keepAliveInitialDelay: 60_000,
    });
    // Keep the upstream unread until the pump starts (the splice pump needs
    // sockets libuv has never read from).
    up.pause();
    this.upstream = up;
    if (cfg.connectTimeoutMs > 0) up.setTimeout(cfg.connectTimeoutMs, () => up.destroy(CONNECT_TIMEOUT));
    up.once('connect', this.onConnected);
    up.on('error', this.onUpstreamError);
    up.on('close', this.onUpstreamEarlyClose);
    return true;
  }

  private readonly onUpstreamError = (): void => {
    // Handled in onUpstreamEarlyClose (close always follows error).
  };

  private readonly onUpstreamEarlyClose = (): void => {
    if (this.pump !== null) return;
    const backend = this.backend;
    const up = this.upstream;
    this.upstream = null;
    if (backend !== null) {
      backend.active--;
      this.backend = null;
    }
    if (this.stopping || this.finished) {
      this.finish();
      return;
    }
    const failure = classifyConnectFailure((up?.errored as NodeJS.ErrnoException | null | undefined)?.code, up !== null && up.errored === CONNECT_TIMEOUT);
    if (failure === 'resources') {
      // EMFILE, ENOBUFS, EADDRNOTAVAIL...: this process's shortage, not the
      // backend's failure. Not passive health, not retried (it would fail
      // the same way); refused with reason `resources`.
      this.endReason = 'resources';
      this.client?.destroy();
      this.finish();
      return;
    }
    if (failure === 'backend_reset') {
      // The backend accepted and reset before libuv reported the connect
      // (libuv then fails the connect and closes the fd, so whatever the
      // backend wrote first is lost with it). Not a connect failure: the
      // backend answered. Its reset is passed on, not retried elsewhere.
      this.endReason = 'backend_reset';
      this.client?.resetAndDestroy();
      this.finish();
      return;
    }
    if (backend !== null) {
      // A failed client connect counts as a failed check (passive health).
      countConnectFailure(this.listener.ctx, this.pool as Pool, backend, failure);
      if (this.tried === null) this.tried = [];
      this.tried.push(backend);
    }
    if (mayRetry(this.pool as Pool, this.attempts)) this.connectNext();
    else {
      this.endReason = 'connect_failed';
      this.client?.destroy();
      this.finish();
    }
  };

  private readonly onConnected = (): void => {
    const up = this.upstream;
    if (up === null) return;
    up.setTimeout(0);
    up.removeListener('error', this.onUpstreamError);
    up.removeListener('close', this.onUpstreamEarlyClose);
    // Set until the pump starts, and the pump starts only here.
    const client = this.client as net.Socket;
    client.removeListener('error', this.onClientEarlyClose);
    client.removeListener('close', this.onClientEarlyClose);
    if (client.destroyed) {
      // Client left while we connected.
      this.endReason = 'client_gone';
      up.destroy();
      if (this.backend !== null) this.backend.active--;
      this.backend = null;
      this.finish();
      return;
    }
    const now = performance.now();
    this.connectMs = now - this.startedHr;
    if (this.backend !== null) this.backend.connectTime.observe((now - this.attemptAt) / 1000);
    const pump = this.listener.ctx.pumpFor(client, up);
    this.pumpKind = pump.kind;
    this.pump = pump.start(client, up, this.head, this.onPumpDone);
    // The pump owns both sockets now; drop ours so nothing keeps them alive.
    this.upstream = null;
    this.client = null;
    this.head = null;
  };

  private readonly onPumpDone = (reason: PumpEndReason, bytesIn: number, pumpOut: number): void => {
    const bytesOut = pumpOut + this.carriedOut;
    this.carriedOut = 0;
    if (this.endReason === null) this.endReason = reason;
    if (this.backend !== null) this.backend.active--;
    const stats = this.listener.stats;
    const total = bytesIn + this.earlyBytes;
    this.earlyBytes = 0;
    stats.bytesIn += total;
    stats.bytesOut += bytesOut;
    this.finish(total, bytesOut);
  };

  /** Ends the session now with a reset of both sides (idle, drain deadline, shutdown). */
  abort(reason: SessionEndReason): void {
    if (this.finished) return;
    if (this.endReason === null) this.endReason = reason;
    if (this.pump !== null) this.pump.abort();
    else {
      this.stopping = true;
      this.client?.destroy();
      // The upstream's 'close' completes the session; without one, finish now.
      if (this.upstream !== null) this.upstream.destroy();
      else this.finish();
    }
  }

  private finish(bytesIn = 0, bytesOut = 0): void {
    if (this.finished) return;
    this.finished = true;
    this.listener.onSessionEnd(this, this.endReason ?? 'closed', bytesIn, bytesOut);
  }
}

/** Marker error for a connect that timed out (errored === CONNECT_TIMEOUT). */
const CONNECT_TIMEOUT = Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' });
