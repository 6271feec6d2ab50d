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
import type { BackendSnapshot } from '../dataplane/stats';
import { renderStatusPage } from './status-page';
import { crossSiteReason, hostAllowed } from './guard';

/** How long close() lets open requests finish before it cuts them. */
const CLOSE_GRACE_MS = 1000;

/** What the admin API needs from the control plane. */
export interface AdminTarget {
  draining: boolean;
  status(): Record<string, unknown>;
  setDrain(pool: string, address: string, drain: boolean): BackendSnapshot | null;
  reload(): Promise<{ ok: true; generation: number } | { ok: false; errors: string[] }>;
}

const BACKEND_ACTION = /^\/api\/v1\/pools\/([^/]+)\/backends\/([^/]+)\/(drain|enable)$/;

export class AdminServer {
  private readonly server: http.Server;
  private readonly target: AdminTarget;
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

  /** Binds `admin.bind`; rejects on a bind error. */
  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.server.once('error', onError);
      this.server.listen({ host: this.config.bind.host, port: this.config.bind.port }, () => {
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

  private authorized(req: http.IncomingMessage): boolean {
    if (this.tokenHash === null) return true;
    const h = req.headers.authorization ?? '';
    const m = /^Bearer\s+(.+)$/i.exec(h);
    if (m === null) return false;
    return timingSafeEqual(sha256((m[1] as string).trim()), this.tokenHash);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    const path = url.pathname;
    const method = req.method ?? 'GET';
    const t = this.target;
    if (!hostAllowed(req.headers.host, this.config.bind.host)) {
      return json(res, 421, { error: `Host ${JSON.stringify(req.headers.host)} is not this admin endpoint (use an IP address or localhost)` });
    }

    const get = (fn: () => Promise<void> | void): Promise<void> | void =>
      method === 'GET' || method === 'HEAD' ? fn() : methodNotAllowed(res, 'GET, HEAD');
    const post = async (fn: () => Promise<void> | void): Promise<void> => {
      if (method !== 'POST') return methodNotAllowed(res, 'POST');
      req.resume(); // bodies are not used
      const crossSite = crossSiteReason(req.headers);
      if (crossSite !== null) return json(res, 403, { error: `refused: ${crossSite}` });
      if (!this.authorized(req)) {
        res.setHeader('WWW-Authenticate', 'Bearer realm="l4lb"');
        return json(res, 401, { error: 'missing or wrong bearer token' });
      }
      return fn();
    };

    if (path === '/healthz') {
      return get(() => text(res, t.draining ? 503 : 200, t.draining ? 'draining\n' : 'ok\n', 'text/plain; charset=utf-8'));
    }
    if (path === '/metrics') {
      return get(async () => text(res, 200, await this.registry.metrics(), this.registry.contentType));
    }
    if (path === '/api/v1/status') return get(() => json(res, 200, t.status()));
    if (path === '/') return get(() => text(res, 200, renderStatusPage(t.status()), 'text/html; charset=utf-8'));
    if (path === '/api/v1/reload') {
      return post(async () => {
        const r = await t.reload();
        if (r.ok) json(res, 200, { config_generation: r.generation });
        else json(res, 422, { errors: r.errors });
      });
    }
    const m = BACKEND_ACTION.exec(path);
    if (m !== null) {
      return post(() => {
        let pool: string;
        let address: string;
        try {
          pool = decodeURIComponent(m[1] as string);
          address = decodeURIComponent(m[2] as string);
        } catch {
          return json(res, 400, { error: 'bad percent-encoding in the path' });
        }
        const b = t.setDrain(pool, address, m[3] === 'drain');
        if (b === null) return json(res, 404, { error: `no backend ${address} in pool ${pool}` });
        return json(res, 200, b);
      });
    }
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
