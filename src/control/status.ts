/**
 * The status document of SPEC §5 (`GET /api/v1/status`, the console, the
 * backend JSON the admin API answers with), built from the data plane's
 * snapshot and what the control plane knows (generation, checks, DNS).
 */
import { VERSION } from '../version';
import { BACKEND_COUNTERS, LISTENER_COUNTERS, type DataPlaneSnapshot } from '../stats/stats';
import { statusCounters } from '../stats/counters';

export interface StatusInputs {
  readonly snapshot: DataPlaneSnapshot;
  readonly startedAt: number;
  readonly generation: number;
  readonly draining: boolean;
  resolveFailures(pool: string): number;
  /** The last probe and since when the state holds; null for a backend the health monitor does not know. */
  checkStatus(pool: string, address: string): { check: unknown; state_since: string | null } | null;
}

export function statusDocument(x: StatusInputs): Record<string, unknown> {
  const snap = x.snapshot;
  // SPEC §8.1 per backend: `check` (the last probe, null before the first or
  // when not probed) and `state_since` (ISO; null for a backend the health
  // monitor does not know, such as one removed by a reload).
  const checkFields = (pool: string, address: string): { check: unknown; state_since: string | null } => {
    const c = x.checkStatus(pool, address);
    return { check: c?.check ?? null, state_since: c?.state_since ?? null };
  };
  return {
    version: VERSION,
    uptime_seconds: Math.floor((Date.now() - x.startedAt) / 1000),
    config_generation: x.generation,
    draining: x.draining,
    listeners: snap.listeners
      .filter((l) => l.current)
      .map((l) => ({
        name: l.name,
        protocol: l.protocol,
        bind: l.bind,
        address: l.address,
        port: l.port,
        pool: l.pool,
        ...statusCounters(LISTENER_COUNTERS, l),
        ...(l.route_by !== undefined ? { route_by: l.route_by, routes: l.routes ?? [] } : {}),
        ...(l.route_by === 'sni' && l.pool === '' ? { pool: null } : {}),
      })),
    pools: snap.pools.map((p) => ({
      name: p.name,
      algorithm: p.algorithm,
      resolve_failures: x.resolveFailures(p.name),
      backends: p.backends.map((b) => ({
        address: b.address,
        ...(b.name !== null ? { name: b.name } : {}),
        state: b.state,
        weight: b.weight,
        backup: b.backup,
        ...statusCounters(BACKEND_COUNTERS, b),
        ...checkFields(p.name, b.address),
      })),
    })),
  };
}

/** One backend of a status document (the admin API's backend JSON), or null. */
export function backendOf(status: Record<string, unknown>, pool: string, address: string): Record<string, unknown> | null {
  const pools = status.pools as { name: string; backends: Record<string, unknown>[] }[];
  return pools.find((p) => p.name === pool)?.backends.find((b) => b.address === address) ?? null;
}
