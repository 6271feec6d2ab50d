/** Admin API helpers for tests: HTTP requests with bounded time, Prometheus samples. */
import type { L4lbProcess } from './l4lb';

export interface Reply {
  status: number;
  headers: Headers;
  body: string;
}

/** One admin request; `body` is sent as JSON when given. */
export async function adminHttp(port: number, method: string, path: string, opts: { token?: string; body?: unknown } = {}): Promise<Reply> {
  const headers: Record<string, string> = {};
  if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  const r = await fetch(`http://127.0.0.1:${port}${path}`, {
    method,
    headers,
    body: opts.body === undefined ? undefined : typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body),
    signal: AbortSignal.timeout(10000),
  });
  return { status: r.status, headers: r.headers, body: await r.text() };
}

export async function adminJson<T>(port: number, method: string, path: string, opts: { token?: string; body?: unknown } = {}): Promise<T> {
  const r = await adminHttp(port, method, path, opts);
  if (r.status !== 200) throw new Error(`${method} ${path}: ${r.status} ${r.body}`);
  return JSON.parse(r.body) as T;
}

/** Value of one sample in Prometheus text (labels in any order), or undefined. */
export function sample(metrics: string, name: string, labels: Record<string, string>): number | undefined {
  const want = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort();
  for (const line of metrics.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const inner = line.slice(name.length + 1, line.indexOf('}'));
    const got = inner.split(',').filter(Boolean).sort();
    if (got.length === want.length && got.every((x, i) => x === want[i])) return Number(line.slice(line.indexOf('}') + 1).trim());
  }
  return undefined;
}

/** The admin port from the `admin listening` log line. */
export async function adminPortOf(lb: L4lbProcess): Promise<number> {
  const l = await lb.waitForLog((x) => x.msg === 'admin listening', 10000, 'admin listening');
  return l.port as number;
}

export interface StatusBackend {
  address: string;
  state: string;
  weight: number;
  active_connections: number;
  total_connections: number;
  bytes_in: number;
  bytes_out: number;
}

export interface Status {
  config_generation: number;
  listeners: { name: string; active_connections: number; total_connections: number; rejected: Record<string, number> }[];
  pools: { name: string; backends: StatusBackend[] }[];
}

export async function backendOf(port: number, pool: string, address: string): Promise<StatusBackend | undefined> {
  const s = await adminJson<Status>(port, 'GET', '/api/v1/status');
  return s.pools.find((p) => p.name === pool)?.backends.find((b) => b.address === address);
}
