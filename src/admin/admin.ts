/**
 * The admin API (SPEC §5) on `admin.bind`, with node:http. Control plane
 * only: nothing here is on the data path.
 *
 *   GET  /healthz                                   200 "ok" / 503 while draining
 *   GET  /metrics                                   Prometheus text
 *   GET  /api/v1/status                             JSON status
 *   POST /api/v1/pools/{pool}/backends/{addr}/drain  200 backend JSON / 404
 *   POST /api/v1/pools/{pool}/backends/{addr}/enable 200 backend JSON / 404
 *   POST /api/v1/reload                             200 {config_generation} / 422 {errors}
 *   GET  /                                          HTML status page
 *
 * Every POST needs `Authorization: Bearer <token>` when a token is set
 * (compared in constant time; never logged). Browser guards (guard.ts): a
 * `Host` that is not an IP literal, `localhost` or the bind host gets 421;
 * a POST a page of another origin could send gets 403, token or not. Errors are JSON
 * `{"error": "..."}`; 404 for unknown paths, 405 (with Allow) for a known
 * path with the wrong method, 401 (with WWW-Authenticate) without the token.
 */
import http from 'node:http';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Registry } from 'prom-client';
import type { AdminConfig } from '../config/schema';
import { renderStatusPage } from './status-page';
import { crossSiteReason, hostAllowed } from './guard';

/** How long close() lets open requests finish before it cuts them. */
const CLOSE_GRACE_MS = 1000;
import { CONNECTIONS_LIMIT_DEFAULT, CONNECTIONS_LIMIT_MAX, type ConnectionInfo, type ConnectionQuery } from '../stats/connections';

/** Largest request body read (the weight endpoint's JSON). */
const MAX_BODY = 4096;

/** What the admin API needs from the control plane. */
export interface AdminTarget {
  draining: boolean;
  status(): Record<string, unknown>;
  setDrain(pool: string, address: string, drain: boolean): Record<string, unknown> | null;
  reload(): Promise<{ ok: true; generation: number } | { ok: false; errors: string[] }>;
  /** SPEC §8.5: hands everything to a new process; resolves with the outcome (this process exits after a success). */
  upgrade(): Promise<{ ok: true; pid: number; listeners: number; connections: number; sessions: number } | { ok: false; reason: string }>;
  setWeight(pool: string, address: string, weight: number): Record<string, unknown> | null;
  shutdownConnections(pool: string, address: string): Promise<number | null>;
  connections(q: ConnectionQuery): Promise<ConnectionInfo[]>;
}

/** One admin endpoint: method, path template (`{name}` = one percent-encoded segment), handler. */
export interface Route {
  readonly method: 'GET' | 'POST';
  readonly path: string;
  /** POST routes that read a JSON body; the others have theirs discarded. */
  readonly body?: boolean;
  readonly handle: (x: RouteContext) => Promise<void> | void;
}

export interface RouteContext {
  readonly req: http.IncomingMessage;
  readonly res: http.ServerResponse;
  readonly url: URL;
  /** Decoded path parameters by name. */
  readonly params: Readonly<Record<string, string>>;
  readonly target: AdminTarget;
  readonly registry: Registry;
}

/** Every admin endpoint, in one list (docs/reference.md documents each; a test keeps them in step). */
export const ROUTES: readonly Route[] = [
  {
    method: 'GET',
    path: '/healthz',
    handle: ({ res, target }) => text(res, target.draining ? 503 : 200, target.draining ? 'draining\n' : 'ok\n', 'text/plain; charset=utf-8'),
  },
  { method: 'GET', path: '/metrics', handle: async ({ res, registry }) => text(res, 200, await registry.metrics(), registry.contentType) },
  { method: 'GET', path: '/api/v1/status', handle: ({ res, target }) => json(res, 200, target.status()) },
  { method: 'GET', path: '/', handle: ({ res, target }) => text(res, 200, renderStatusPage(target.status()), 'text/html; charset=utf-8') },
  {
    method: 'POST',
    path: '/api/v1/reload',
    handle: async ({ res, target }) => {
      const r = await target.reload();
      if (r.ok) json(res, 200, { config_generation: r.generation });
      else json(res, 422, { errors: r.errors });
    },
  },
  {
    method: 'POST',
    path: '/api/v1/upgrade',
    handle: async ({ res, target }) => {
      const r = await target.upgrade();
      // This process exits now: the client's next request goes on a new connection, to the new process.
      if (r.ok) res.shouldKeepAlive = false;
      if (r.ok) json(res, 200, { pid: r.pid, listeners: r.listeners, connections: r.connections, sessions: r.sessions });
      else json(res, 500, { error: `upgrade failed: ${r.reason}` });
    },
  },
  { method: 'POST', path: '/api/v1/pools/{pool}/backends/{address}/drain', handle: (x) => drainOrEnable(x, true) },
  { method: 'POST', path: '/api/v1/pools/{pool}/backends/{address}/enable', handle: (x) => drainOrEnable(x, false) },
  {
    method: 'POST',
    path: '/api/v1/pools/{pool}/backends/{address}/weight',
    body: true,
    handle: async ({ req, res, params, target }) => {
      const body = await readJson(req);
      const w = (body as { weight?: unknown } | null)?.weight;
      if (typeof w !== 'number' || !Number.isInteger(w) || w < 0 || w > 1000) {
        return json(res, 400, { error: 'expected a JSON body {"weight": N} with N an integer from 0 to 1000' });
      }
      const b = target.setWeight(params.pool as string, params.address as string, w);
      if (b === null) return json(res, 404, { error: `no backend ${params.address} in pool ${params.pool}` });
      return json(res, 200, b);
    },
  },
  {
    method: 'POST',
    path: '/api/v1/pools/{pool}/backends/{address}/shutdown-connections',
    handle: async ({ res, params, target }) => {
      const n = await target.shutdownConnections(params.pool as string, params.address as string);
      if (n === null) return json(res, 404, { error: `no backend ${params.address} in pool ${params.pool}` });
      return json(res, 200, { closed: n });
    },
  },
  {
    method: 'GET',
    path: '/api/v1/connections',
    handle: async ({ res, url, target }) => {
      const q = url.searchParams;
      const limitText = q.get('limit');
      const limit = limitText === null ? CONNECTIONS_LIMIT_DEFAULT : Number(limitText);
      if (!Number.isInteger(limit) || limit < 1 || limit > CONNECTIONS_LIMIT_MAX) {
        return json(res, 400, { error: `limit: expected an integer from 1 to ${CONNECTIONS_LIMIT_MAX}` });
      }
      const list = await target.connections({ listener: q.get('listener') || null, pool: q.get('pool') || null, backend: q.get('backend') || null, limit });
      return json(res, 200, { connections: list });
    },
  },
];

/** Reads a small JSON body; null when it is empty, too large or not JSON. */
function readJson(req: http.IncomingMessage): Promise<unknown> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (v: unknown): void => {
      if (done) return;
      done = true;
      resolve(v);
    };
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        req.resume();
        return finish(null);
      }
      chunks.push(c);
    });
    req.on('end', () => {
      try {
        finish(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch {
        finish(null);
      }
    });
    req.on('error', () => finish(null));
  });
}

function drainOrEnable({ res, params, target }: RouteContext, drain: boolean): void {
  const pool = params.pool as string;
  const address = params.address as string;
  const b = target.setDrain(pool, address, drain);
  if (b === null) return json(res, 404, { error: `no backend ${address} in pool ${pool}` });
  return json(res, 200, b);
}

interface CompiledRoute {
  route: Route;
  re: RegExp;
  names: string[];
}

const COMPILED: readonly CompiledRoute[] = ROUTES.map((route) => {
  const names: string[] = [];
  const re = new RegExp(
    `^${route.path.replace(/\{([a-z_]+)\}|[^{}]+/g, (m: string, name: string | undefined) => {
      if (name === undefined) return m.replace(/[.*+?^$()|[\]\\]/g, '\\$&');
      names.push(name);
      return '([^/]+)';
    })}$`,
  );
  return { route, re, names };
});

export class AdminServer {
  private readonly server: http.Server;
  private readonly target: AdminTarget;
  /** Set once an upgrade handed the endpoint to a new process: every answer closes its connection. */
  private retired = false;
  private readonly registry: Registry;
  private tokenHash: Buffer | null;
  config: AdminConfig;
  address = '';
  port = 0;

  constructor(config: AdminConfig, target: AdminTarget, registry: Registry) {
    this.config = config;
    this.target = target;
    this.registry = registry;
    this.tokenHash = tokenHashOf(config.token);
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) json(res, 500, { error: `internal error: ${String((err as Error)?.message ?? err)}` });
        else res.destroy();
      });
    });
    this.server.keepAliveTimeout = 5000;
    this.server.headersTimeout = 10000;
    this.server.requestTimeout = 30000;
  }

  /** Upgrade: the listening socket, to hand to a new process. */
  get netServer(): http.Server {
    return this.server;
  }

  /** Binds `admin.bind` (or adopts `fd`, a socket an upgrade handed over); rejects on a bind error. */
  listen(fd?: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.server.once('error', onError);
      this.server.listen(fd !== undefined ? { fd } : { host: this.config.bind.host, port: this.config.bind.port }, () => {
        this.server.removeListener('error', onError);
        this.server.on('error', () => {});
        const a = this.server.address();
        if (a !== null && typeof a === 'object') {
          this.address = a.address;
          this.port = a.port;
        }
        resolve();
      });
    });
  }

  /** A reload that keeps the bind address: the new token applies to the next request. */
  setConfig(config: AdminConfig): void {
    this.config = config;
    this.tokenHash = tokenHashOf(config.token);
  }

  /**
   * Stops listening, closes idle keep-alive connections, and cuts requests
   * still open after a second (a client trickling a body cannot hold the
   * endpoint or the next reload). Idempotent.
   */
  close(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.server.listening) return resolve();
      const cut = setTimeout(() => this.server.closeAllConnections(), CLOSE_GRACE_MS);
      cut.unref();
      this.server.close(() => {
        clearTimeout(cut);
        resolve();
      });
      this.server.closeIdleConnections();
    });
  }

  /**
   * Upgrade: a new process serves this endpoint now. Idle keep-alive
   * connections close at once and every answer still given here says
   * `Connection: close`, so that clients' next requests (a scraper's
   * pooled connection) reach the new process rather than meet this one
   * exiting.
   */
  retire(): void {
    this.retired = true;
    this.server.closeIdleConnections();
  }

  private authorized(req: http.IncomingMessage): boolean {
    if (this.tokenHash === null) return true;
    const h = req.headers.authorization ?? '';
    const m = /^Bearer\s+(.+)$/i.exec(h);
    if (m === null) return false;
    return timingSafeEqual(sha256((m[1] as string).trim()), this.tokenHash);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    if (this.retired) res.shouldKeepAlive = false;
    const url = new URL(req.url ?? '/', 'http://admin');
    const path = url.pathname;
    const method = req.method === 'HEAD' ? 'GET' : (req.method ?? 'GET');
    if (!hostAllowed(req.headers.host, this.config.bind.host)) {
      req.resume();
      return json(res, 421, { error: `Host ${JSON.stringify(req.headers.host)} is not this admin endpoint (use an IP address or localhost)` });
    }
    const allowed: string[] = [];
    for (const c of COMPILED) {
      const m = c.re.exec(path);
      if (m === null) continue;
      if (c.route.method !== method) {
        allowed.push(c.route.method === 'GET' ? 'GET, HEAD' : c.route.method);
        continue;
      }
      const params: Record<string, string> = {};
      try {
        c.names.forEach((n, i) => (params[n] = decodeURIComponent(m[i + 1] as string)));
      } catch {
        return json(res, 400, { error: 'bad percent-encoding in the path' });
      }
      if (method === 'POST') {
        const crossSite = crossSiteReason(req.headers);
        if (crossSite !== null) {
          req.resume();
          return json(res, 403, { error: `refused: ${crossSite}` });
        }
      }
      if (method === 'POST' && !this.authorized(req)) {
        req.resume();
        res.setHeader('WWW-Authenticate', 'Bearer realm="l4lb"');
        return json(res, 401, { error: 'missing or wrong bearer token' });
      }
      if (c.route.body !== true) req.resume();
      return c.route.handle({ req, res, url, params, target: this.target, registry: this.registry });
    }
    if (allowed.length > 0) return methodNotAllowed(res, allowed.join(', '));
    return json(res, 404, { error: `no such endpoint: ${path}` });
  }
}

/** Surrounding spaces of the configured token are not part of it (the header's are not either). */
function tokenHashOf(token: string | null): Buffer | null {
  return token === null ? null : sha256(token.trim());
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

function methodNotAllowed(res: http.ServerResponse, allow: string): void {
  res.setHeader('Allow', allow);
  json(res, 405, { error: `method not allowed; use ${allow}` });
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  text(res, status, `${JSON.stringify(body)}\n`, 'application/json');
}

function text(res: http.ServerResponse, status: number, body: string, type: string): void {
  res.statusCode = status;
  res.setHeader('Content-Type', type);
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
