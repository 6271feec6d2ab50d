/**
 * A UDP listener: one session per client address and port, each with its
 * own connected upstream socket, so replies come back to the right client
 * from the listener's own address. Datagrams are forwarded whole and
 * unchanged (up to 65,507 bytes).
 *
 * Hot path (`onMessage`): two Map lookups in the flow table (flows.ts:
 * address string, then port number: no key string is built per
 * datagram), one send, plain counters.
 * Expiry is one coarse sweep per listener over last-activity stamps, not a
 * timer per session (SPEC: idle_timeout, default 30 s for UDP).
 *
 * A session ends on idle_timeout, after `udp_responses` backend datagrams,
 * on ICMP port unreachable from the backend (ECONNREFUSED on the connected
 * socket: a passive health failure), when its backend goes down or leaves
 * the pool (the client's next datagram opens a session on a healthy
 * backend), or on shutdown. Draining a backend leaves its sessions alone.
 *
 * Drain (SIGTERM) and removal by reload: no new sessions are opened; the
 * listening socket stays open so open sessions can still answer, until they
 * end or the drain deadline resets them.
 */
import dgram from 'node:dgram';
import type { ListenerConfig } from '../config/schema';
import type { Pool } from '../backend/pool';
import type { Backend } from '../backend/backend';
import type { Flow } from '../balancer/picker';
import type { ListenerContext } from '../listener/context';
import { ListenerBase, type ConnectionFields } from '../listener/base';
import type { UdpEndReason } from '../listener/reasons';
import { fdBudget, isLocalError } from '../net/fd-budget';
import { udpTermination } from '../listener/termination';
import { decideUdp } from './decide';
import { FlowTable, UdpSession } from './flows';

const SOCKET_BUFFER = 4 * 1024 * 1024;

export type { UdpEndReason };
export type { UdpSession };

/**
 * Upgrade: what a UDP session brings from the process that handed it over.
 * `localAddr` (with `ifindex`) is the address its client sent to on a
 * wildcard bind ("" when not known: the JavaScript path does not see it).
 */
export interface CarriedUdp {
  startedAt: number;
  bytesIn: number;
  bytesOut: number;
  /** Backend datagrams so far, towards `udp_responses`. */
  responses: number;
  localAddr: string;
  ifindex: number;
}

export class UdpListener extends ListenerBase<UdpSession> {
  readonly protocol = 'udp';
  pool: Pool;
  private socket: dgram.Socket | null = null;
  private readonly sessions = new FlowTable();
  private readonly flow: Flow = { protocol: 17, srcAddr: '', srcPort: 0, dstAddr: '', dstPort: 0 };
  private accepting = true;
  private closed = false;

  constructor(config: ListenerConfig, pool: Pool, ctx: ListenerContext) {
    super(config, ctx);
    this.pool = pool;
  }

  protected open(): Iterable<UdpSession> {
    return this.sessions;
  }

  protected idle(): boolean {
    return this.sessions.size === 0;
  }

  protected bound(): boolean {
    return this.socket !== null;
  }

  protected shutdown(s: UdpSession): void {
    this.end(s, 'admin_shutdown');
  }

  protected override extraFields(_s: UdpSession, fields: ConnectionFields): void {
    fields.pump = 'js';
  }

  /** Binds (or adopts an inherited socket `fd`) and resolves with the bound address. */
  listen(fd?: number): Promise<{ address: string; port: number }> {
    const type = this.config.bind.family === 6 ? 'udp6' : 'udp4';
    const socket = dgram.createSocket({ type, recvBufferSize: SOCKET_BUFFER, sendBufferSize: SOCKET_BUFFER });
    this.socket = socket;
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => {
        socket.close();
        reject(err);
      };
      socket.once('error', onError);
      socket.on('message', this.onMessage);
      const done = (): void => {
        socket.removeListener('error', onError);
        socket.on('error', (err: NodeJS.ErrnoException) => this.ctx.log.warn({ listener: this.name, err: err.code ?? err.message }, 'udp socket error'));
        const a = socket.address();
        this.boundAddress = a.address;
        this.boundPort = a.port;
        this.flow.dstAddr = a.address;
        this.flow.dstPort = a.port;
        this.updateSweep();
        resolve({ address: a.address, port: a.port });
      };
      if (fd !== undefined) socket.bind({ fd }, done);
      else socket.bind({ address: this.config.bind.host, port: this.config.bind.port, exclusive: true }, done);
    });
  }

  update(config: ListenerConfig, pool: Pool): void {
    this.pool = pool;
    this.reconfigure(config);
  }

  private readonly onMessage = (msg: Buffer, rinfo: dgram.RemoteInfo): void => {
    const byPort = this.sessions.ports(rinfo.address);
    const s = byPort?.get(rinfo.port);
    if (s !== undefined) {
      this.toBackend(s, msg);
      return;
    }
    if (UdpListener.holding) {
      // Upgrade: the previous process may still hand this client's session over.
      if (this.held.length < 4096) this.held.push([msg, rinfo]);
      return;
    }
    this.newSession(msg, rinfo.address, rinfo.port, byPort);
  };

  /**
   * Upgrade (src/upgrade/): while true, a datagram of a client without a
   * session here is held (up to 4096 per listener) instead of opening one,
   * until the previous process has handed its sessions over.
   */
  static holding = false;
  private held: [Buffer, dgram.RemoteInfo][] = [];

  /** Upgrade: the held datagrams go on (to the sessions handed over meanwhile, or new ones). */
  releaseHeld(): void {
    const held = this.held;
    this.held = [];
    for (const [msg, rinfo] of held) this.onMessage(msg, rinfo);
  }

  /** Upgrade: the listening socket, to hand to a new process. */
  get dgramSocket(): dgram.Socket | null {
    return this.socket;
  }

  /** Upgrade: the open sessions. */
  openSessions(): UdpSession[] {
    return this.sessions.list().filter((s) => !s.ended);
  }

  /** Upgrade: a session handed to a new process: forgotten here without a report; the caller closes its socket. */
  forgetSession(s: UdpSession): void {
    if (s.ended) return;
    s.ended = true;
    s.upstream.removeAllListeners('message');
    this.unlink(s);
    s.backend.active--;
    if (this.sessions.size === 0) this.notifyEmpty();
  }

  /** Upgrade: a session the previous process handed over; `upstream` is its (connected) socket. */
  adoptSession(upstream: dgram.Socket, clientAddr: string, clientPort: number, backend: Backend, carried: CarriedUdp, connected: boolean): void {
    fdBudget.add(1);
    const s = new UdpSession(clientAddr, clientPort, backend, this.pool.name, upstream, carried.startedAt);
    s.bytesIn = carried.bytesIn;
    s.bytesOut = carried.bytesOut;
    s.responses = carried.responses;
    s.lastActive = Date.now();
    this.sessions.add(s);
    this.stats.active++;
    this.stats.udpSessionsActive++;
    backend.active++;
    s.connected = connected;
    this.wire(s, backend, !connected);
  }

  /** `s` leaves the table and its counts (its fd, the active gauges). */
  private unlink(s: UdpSession): void {
    this.sessions.delete(s);
    fdBudget.add(-1);
    this.stats.active--;
    this.stats.udpSessionsActive--;
  }

  /** The last session is gone: drain waiters wake, and a removed listener's socket closes. */
  private notifyEmpty(): void {
    this.notifyIfEmpty();
    if (!this.accepting && !this.current) this.closeSocket();
  }

  private toBackend(s: UdpSession, msg: Buffer): void {
    s.lastActive = Date.now();
    if (!s.connected) {
      // Held until the upstream socket is connected; beyond 64 the datagram
      // is dropped, and neither it nor its bytes count as forwarded.
      if (s.pending === null) s.pending = [];
      if (s.pending.length < 64) s.pending.push(msg);
      return;
    }
    this.forward(s, msg);
  }

  /** Sends one datagram to the backend and counts it (datagrams and bytes in). */
  private forward(s: UdpSession, msg: Buffer): void {
    s.bytesIn += msg.length;
    this.stats.datagramsIn++;
    s.upstream.send(msg);
  }

  /** A datagram from a client without a session: ACL, limits, pick, then a session. */
  private newSession(msg: Buffer, addr: string, port: number, byPort: Map<number, UdpSession> | undefined): void {
    const stats = this.stats;
    if (!this.accepting) return;
    const backend = decideUdp({ config: this.config, pool: this.pool, acl: this.acl, sessions: this.sessions.size, flow: this.flow }, addr, port);
    if (typeof backend === 'string') {
      stats.rejected[backend]++;
      return;
    }
    fdBudget.add(1);
    const upstream = dgram.createSocket({ type: backend.family === 6 ? 'udp6' : 'udp4' });
    const s = new UdpSession(addr, port, backend, this.pool.name, upstream, Date.now());
    this.sessions.add(s, byPort);
    stats.connectionsTotal++;
    stats.active++;
    stats.udpSessionsActive++;
    backend.active++;
    backend.total++;

    this.wire(s, backend);
    this.toBackend(s, msg);
  }

  /** Replies to the client, errors, and the connect (until which datagrams wait in `pending`). */
  private wire(s: UdpSession, backend: Backend, connect = true): void {
    const upstream = s.upstream;
    upstream.on('message', (reply: Buffer) => this.toClient(s, reply));
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      if (isLocalError(err)) {
        this.stats.rejected.resources++;
        this.end(s, 'error');
      } else if (err.code === 'ECONNREFUSED') {
        // ICMP port unreachable: the backend is not there. Passive failure.
        this.end(s, 'backend_refused');
        backend.connectFailures++;
        this.ctx.onConnectFailure(this.pool, backend, 'refused');
      } else this.end(s, 'error');
    });
    if (!connect) return;
    upstream.connect(backend.port, backend.host, () => {
      if (s.ended) return;
      s.connected = true;
      const q = s.pending;
      s.pending = null;
      if (q !== null) for (const m of q) this.forward(s, m);
    });
  }

  private toClient(s: UdpSession, reply: Buffer): void {
    if (s.ended || this.socket === null) return;
    s.lastActive = Date.now();
    s.bytesOut += reply.length;
    this.stats.datagramsOut++;
    this.socket.send(reply, s.clientPort, s.clientAddr);
    if (this.config.udpResponses > 0 && ++s.responses >= this.config.udpResponses) this.end(s, 'responses');
  }

  /** Ends one session: closes its upstream socket, releases counts, logs it when asked. */
  private end(s: UdpSession, reason: UdpEndReason): void {
    if (s.ended) return;
    s.ended = true;
    try {
      s.upstream.close();
    } catch {
      /* already closed */
    }
    this.unlink(s);
    this.stats.bytesIn += s.bytesIn;
    this.stats.bytesOut += s.bytesOut;
    s.backend.active--;
    this.recordEnd(s, Date.now(), s.bytesIn, s.bytesOut, reason, udpTermination(reason));
    if (this.sessions.size === 0) this.notifyEmpty();
  }

  /**
   * Ends the sessions of backends that can no longer take them: down, or no
   * longer in the pool. Called by the data plane after a state or pool change.
   */
  endSessionsOfGoneBackends(): void {
    for (const s of this.sessions.ofBackends((b) => b.state === 'down' || !b.member)) this.end(s, 'backend_gone');
  }

  protected sweep(idle: number): void {
    const now = Date.now();
    for (const s of this.sessions.list()) if (now - s.lastActive >= idle) this.end(s, 'idle_timeout');
  }

  stopAccepting(): Promise<void> {
    this.accepting = false;
    if (this.sessions.size === 0 && !this.current) this.closeSocket();
    return Promise.resolve();
  }

  abortAll(reason: 'drain_timeout' | 'shutdown'): void {
    for (const s of this.sessions.list()) this.end(s, reason);
  }

  private closeSocket(): void {
    if (this.closed || this.socket === null) return;
    this.closed = true;
    try {
      this.socket.close();
    } catch {
      /* already closed */
    }
  }

  override dispose(): void {
    super.dispose();
    this.abortAll('shutdown');
    this.closeSocket();
  }
}
