/**
 * What every listener, TCP or UDP, does the same way: its configuration and
 * ACL, its counters and duration histogram, the coarse idle sweep, waiting
 * for its connections to end (drain, reload), and how an open connection is
 * reported — the connection log lines, the admin listing, live byte counts
 * and the status snapshot. tcp/listener.ts and udp/listener.ts add only how
 * they receive clients and move bytes.
 */
import type { ListenerConfig } from '../config/schema';
import type { Backend } from '../backend/backend';
import type { ListenerContext } from './context';
import { compileAcl } from '../net/cidr';
import { formatHostPort } from '../net/address';
import { LISTENER_COUNTERS, ListenerStats, type ListenerSnapshot } from '../stats/stats';
import { readCounters } from '../stats/counters';
import { matches, type ConnectionInfo, type ConnectionQuery } from '../stats/connections';
import type { Termination } from './termination';

/** What a listener reports of one open connection (TCP) or session (UDP). */
export interface OpenConnection {
  readonly clientAddr: string;
  readonly clientPort: number;
  /** Date.now() at accept (TCP) or at the first datagram (UDP). */
  readonly startedAt: number;
  /** Bytes client → backend and backend → client so far. */
  readonly bytesIn: number;
  readonly bytesOut: number;
  /** Null while a TCP connection has no backend yet. */
  readonly backend: Backend | null;
  /** Null while an SNI-routed TCP connection has not been routed yet. */
  readonly poolName: string | null;
  /** Milliseconds from accept to the backend connected; null for UDP and until connected. */
  readonly connectMs: number | null;
  readonly retries: number;
}

/** Connection-log fields of one connection (`connection closed`, `connection progress`). */
export type ConnectionFields = Record<string, unknown>;

export abstract class ListenerBase<S extends OpenConnection> {
  abstract readonly protocol: 'tcp' | 'udp';
  config: ListenerConfig;
  readonly ctx: ListenerContext;
  /** The counters (stats/stats.ts, LISTENER_COUNTERS); `stats.duration`: durations of finished connections (UDP: sessions), seconds. */
  readonly stats = new ListenerStats();
  /** False once a reload removed this listener; it lives until its connections end. */
  current = true;
  /** allow/deny (SPEC §2), compiled. */
  protected acl: (addr: string) => boolean;
  /** The address and port actually bound (port 0 in the configuration: the one the kernel chose). */
  boundAddress = '';
  boundPort = 0;
  private sweepTimer: NodeJS.Timeout | null = null;
  private emptyWaiters: (() => void)[] = [];

  constructor(config: ListenerConfig, ctx: ListenerContext) {
    this.config = config;
    this.ctx = ctx;
    this.acl = compileAcl(config.allow, config.deny);
  }

  get name(): string {
    return this.config.name;
  }

  /** The open connections (sessions): listings, progress lines, live bytes. */
  protected abstract open(): Iterable<S>;
  /** True when nothing is open or still being admitted: a drain is complete. */
  protected abstract idle(): boolean;
  /** True once the listening socket exists (the sweep runs only then). */
  protected abstract bound(): boolean;
  /** Ends the connections that have been idle for `idleMs` (called by the sweep). */
  protected abstract sweep(idleMs: number): void;
  /** Ends one connection at once, for the admin's shutdown-connections. */
  protected abstract shutdown(s: S): void;

  /** Takes a reloaded configuration of this kept listener (same bind). */
  protected reconfigure(config: ListenerConfig): void {
    this.config = config;
    this.acl = compileAcl(config.allow, config.deny);
    this.updateSweep();
  }

  /**
   * The idle sweep: one coarse timer per listener instead of one per
   * connection, every quarter of idle_timeout (10 ms .. 1 s).
   */
  protected updateSweep(): void {
    if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    const idle = this.config.idleTimeoutMs;
    if (idle <= 0 || !this.bound()) return;
    const every = Math.max(10, Math.min(1000, Math.floor(idle / 4)));
    this.sweepTimer = setInterval(() => this.sweep(idle), every);
    this.sweepTimer.unref();
  }

  /** Resolves once every connection has ended. */
  whenEmpty(): Promise<void> {
    if (this.idle()) return Promise.resolve();
    return new Promise((resolve) => this.emptyWaiters.push(resolve));
  }

  /** Wakes whenEmpty() waiters when the last connection is gone; call after each end. */
  protected notifyIfEmpty(): void {
    if (this.emptyWaiters.length === 0 || !this.idle()) return;
    const waiters = this.emptyWaiters;
    this.emptyWaiters = [];
    for (const w of waiters) w();
  }

  /** Stops the sweep; subclasses close their sockets too. */
  dispose(): void {
    if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
  }

  /** Whether a connection is far enough along to be logged and listed (TCP: connected). */
  protected established(_s: S): boolean {
    return true;
  }

  /** Protocol-specific fields of the connection log lines (TCP: pump, sni). */
  protected extraFields(_s: S, _fields: ConnectionFields): void {}

  /** The fields of `connection closed` and `connection progress` lines. */
  protected connectionFields(s: S, now: number, bytesIn: number, bytesOut: number): ConnectionFields {
    const fields: ConnectionFields = {
      listener: this.name,
      client: formatHostPort(s.clientAddr, s.clientPort),
      backend: s.backend?.address ?? null,
      bytes_in: bytesIn,
      bytes_out: bytesOut,
      duration_ms: now - s.startedAt,
      connect_ms: s.connectMs === null ? null : Math.round(s.connectMs * 1000) / 1000,
      retries: s.retries,
    };
    this.extraFields(s, fields);
    return fields;
  }

  /**
   * Books a finished connection: its duration (when it got a backend), its
   * bytes on its backend, and `connection closed` when the log is on.
   */
  protected recordEnd(s: S, now: number, bytesIn: number, bytesOut: number, reason: string, termination: Termination): void {
    const backend = s.backend;
    if (backend !== null) {
      backend.bytesIn += bytesIn;
      backend.bytesOut += bytesOut;
    }
    if (this.established(s)) this.stats.duration.observe((now - s.startedAt) / 1000);
    if (this.ctx.connectionLog) {
      const fields = this.connectionFields(s, now, bytesIn, bytesOut);
      fields.reason = reason;
      fields.termination = termination;
      this.ctx.log.info(fields, 'connection closed');
    }
  }

  /**
   * `connection progress` for every connection that became another
   * `intervalMs` old since the last call (`prev`): one line per connection
   * and interval, bytes so far.
   */
  logProgress(prev: number, now: number, intervalMs: number): void {
    for (const s of this.open()) {
      const age = now - s.startedAt;
      if (age < intervalMs || !this.established(s)) continue;
      if (Math.floor(age / intervalMs) === Math.floor((prev - s.startedAt) / intervalMs)) continue;
      this.ctx.log.info(this.connectionFields(s, now, s.bytesIn, s.bytesOut), 'connection progress');
    }
  }

  /** Appends the open connections matching `q` to `out` (GET /api/v1/connections). */
  listConnections(q: ConnectionQuery, now: number, out: ConnectionInfo[]): void {
    for (const s of this.open()) {
      const b = s.backend;
      const pool = s.poolName;
      if (b === null || pool === null || !matches(q, this.name, pool, b.address)) continue;
      const info: ConnectionInfo = {
        listener: this.name,
        protocol: this.protocol,
        pool,
        client: formatHostPort(s.clientAddr, s.clientPort),
        backend: b.address,
        age_ms: now - s.startedAt,
        bytes_in: s.bytesIn,
        bytes_out: s.bytesOut,
      };
      this.extraInfo(s, info);
      out.push(info);
    }
  }

  /** Protocol-specific fields of a listed connection (TCP: sni). */
  protected extraInfo(_s: S, _info: ConnectionInfo): void {}

  /** Ends every open connection to backend `address` of pool `pool` (admin); returns how many. */
  shutdownBackend(pool: string, address: string): number {
    let n = 0;
    for (const s of [...this.open()]) {
      if (s.backend === null || s.backend.address !== address || s.poolName !== pool) continue;
      this.shutdown(s);
      n++;
    }
    return n;
  }

  /** Adds the bytes of open connections to their backend's entry of `into` (per-backend byte counters). */
  addLiveBackendBytes(into: Map<Backend, [number, number]>): void {
    for (const s of this.open()) {
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

  /** Bytes of open connections so far (for metrics and status). */
  liveBytes(): { bytesIn: number; bytesOut: number } {
    let i = 0;
    let o = 0;
    for (const s of this.open()) {
      i += s.bytesIn;
      o += s.bytesOut;
    }
    return { bytesIn: i, bytesOut: o };
  }

  /** The listener's entry of the status document and of /metrics. */
  snapshot(): ListenerSnapshot {
    const live = this.liveBytes();
    const counters = readCounters(LISTENER_COUNTERS, this.stats);
    counters.bytes_in += live.bytesIn;
    counters.bytes_out += live.bytesOut;
    return {
      ...counters,
      name: this.name,
      protocol: this.protocol,
      bind: this.config.bindText,
      address: this.boundAddress,
      port: this.boundPort,
      pool: this.config.pool,
      ...(this.protocol === 'tcp' ? { route_by: this.config.routeBy, routes: this.config.routes.map((r) => ({ sni: r.sni, pool: r.pool })) } : {}),
      current: this.current,
    };
  }
}
