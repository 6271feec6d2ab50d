/**
 * Who accepts on one TCP listener's socket: node:net (a net.Server that
 * pauses each connection until a backend is chosen) or the native engine
 * (src/tcp/engine.ts), where it can take the listener. The socket moves
 * between the two without being closed, so no connection in its queue is
 * lost: a reload that changes whether the engine may take it, an upgrade
 * that hands node:net's server to a new process.
 */
import cluster from 'node:cluster';
import { closeSync } from 'node:fs';
import net from 'node:net';
import { attachEngine, detachEngine, detachEngineToFd, engineCanTake, type EngineHost } from './engine';

const KEEPALIVE_DELAY_MS = 60_000;

export class TcpAcceptor {
  private server: net.Server | null = null;
  /** The engine's id of the socket while the engine accepts on it (null: node:net accepts). */
  private engineId: number | null = null;

  /**
   * `host`: the listener (its configuration, and what the engine reports
   * to; its onServerError takes node:net's accept errors too). `useEngine`:
   * the data plane runs the engine. `onConnection`: each client node:net
   * accepts, paused.
   */
  constructor(
    private readonly host: EngineHost,
    private readonly useEngine: boolean,
    private readonly onConnection: (socket: net.Socket) => void,
  ) {}

  /** True once listen() was called. */
  get created(): boolean {
    return this.server !== null;
  }

  /**
   * Binds (or adopts an inherited listening socket `fd`, for systemd
   * socket activation); `bound` gets the address actually bound, within
   * the 'listening' event.
   */
  listen(fd: number | undefined, bound: (address: string, port: number) => void): Promise<void> {
    const server = this.createServer();
    this.server = server;
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      server.once('error', onError);
      const done = (): void => {
        server.removeListener('error', onError);
        server.on('error', this.onServerError);
        const a = server.address();
        if (a !== null && typeof a === 'object') bound(a.address, a.port);
        // The native engine accepts where it can; node:net otherwise. After
        // this 'listening' event's other listeners (a cluster worker's asks
        // the handle for its address).
        if (this.wantEngine()) {
          process.nextTick(() => {
            if (this.server === server && server.listening && this.engineId === null) this.engineId = attachEngine(this.host, server);
          });
        }
        resolve();
      };
      const bind = this.host.config.bind;
      if (fd !== undefined) server.listen({ fd }, done);
      else server.listen({ host: bind.host, port: bind.port, backlog: 4096 }, done);
    });
  }

  /**
   * The listener's configuration changed (reload): the socket moves to the
   * engine or back to node:net when whether the engine may take it changed
   * (accept_proxy_protocol, route_by).
   */
  reconsider(): void {
    const server = this.server;
    if (server === null || !server.listening) return;
    const want = this.wantEngine();
    if (want && this.engineId === null) this.engineId = attachEngine(this.host, server);
    else if (!want && this.engineId !== null) this.acceptWithNode();
  }

  /**
   * Upgrade: what holds the listening socket, to hand to a new process (null
   * before listen()), and whether the caller destroys it once sent. The
   * engine gives the socket back first: node:net accepts on it until the
   * new process has it; but a cluster worker's listen on an fd asks its
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

  /**
   * Stops accepting; open connections go on. Idempotent. `handedOver`: the
   * socket lives on in a new process (upgrade), so the engine lets go of it
   * without the shutdown that would stop it listening there too.
   */
  stop(handedOver = false): void {
    if (this.engineId !== null && handedOver) {
      const fd = detachEngineToFd(this.engineId);
      if (fd !== null) closeSync(fd);
    } else if (this.engineId !== null) detachEngine(this.engineId);
    this.engineId = null;
    const server = this.server;
    // server.close()'s callback waits for every open connection; the
    // listening socket itself is closed at once, which is all we need.
    if (server !== null && server.listening) server.close();
  }

  private wantEngine(): boolean {
    return this.useEngine && engineCanTake(this.host.config);
  }

  private readonly onServerError = (err: NodeJS.ErrnoException): void => this.host.onServerError(err);

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

  /** The engine gives the socket back and node:net accepts on it again. */
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
}
