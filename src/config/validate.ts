/**
 * From a parsed TOML document to a deeply frozen Config (SPEC §2). Every
 * problem is collected with its key path and position; if there is any, one
 * ConfigError carrying all of them is thrown. Each section has its file:
 * validate-global.ts ([global], [admin]), validate-listeners.ts,
 * validate-pools.ts (pools and backends), validate-health-check.ts, and
 * validate-common.ts (addresses, CIDR lists).
 */
import { availableParallelism } from 'node:os';
import { ConfigError } from '../errors';
import type { Positions } from './positions';
import { IssueSink, Reader, isTable } from './reader';
import type { Config } from './schema';
import { ADMIN_KEYS, GLOBAL_KEYS, readAdmin, readGlobal } from './validate-global';
import { LISTENER_KEYS, ROUTE_KEYS, readListeners } from './validate-listeners';
import { BACKEND_KEYS, POOL_KEYS, readPools } from './validate-pools';
import { HEALTH_KEYS } from './validate-health-check';

export { TABLE_SIZE_MAX, TABLE_SIZE_MIN, WEIGHT_MAX } from './validate-pools';

export interface ValidateOptions {
  /** CPU count used to resolve `workers = "auto"` (default: os.availableParallelism()). */
  cpuCount?: number;
}

const TOP_KEYS = ['global', 'admin', 'listeners', 'pools'];

/**
 * Contract: freezes `o` and everything reachable from it (typed arrays such
 * as Cidr.bytes cannot be frozen and are left as they are). Returns `o`.
 */
export function deepFreeze<T>(o: T): T {
  if (typeof o !== 'object' || o === null || ArrayBuffer.isView(o) || Object.isFrozen(o)) return o;
  for (const v of Object.values(o as object)) deepFreeze(v);
  return Object.freeze(o);
}

/**
 * Contract: validates a parsed TOML document against SPEC §2 and returns a
 * deeply frozen Config. Throws ConfigError (code ERR_L4LB_CONFIG) listing
 * every issue found, sorted by position (issues without one last).
 */
export function validateConfig(doc: unknown, file: string, positions: Positions, opts: ValidateOptions = {}): Config {
  const sink = new IssueSink(file, positions);
  if (!isTable(doc)) throw new ConfigError([{ file, line: 0, col: 0, path: '', message: 'expected a TOML document' }]);
  const root = new Reader(sink, '', doc);
  root.checkKeys(TOP_KEYS);
  const cpuCount = opts.cpuCount ?? availableParallelism();
  const global = readGlobal(root.sub('global'), cpuCount);
  const admin = readAdmin(root.sub('admin'));
  const poolsValid = root.get('pools') === undefined || isTable(root.get('pools'));
  const pools = readPools(sink, root);
  const listeners = readListeners(sink, root, pools, poolsValid);
  if (sink.issues.length > 0) {
    const rank = (line: number): number => (line > 0 ? line : Number.MAX_SAFE_INTEGER);
    const sorted = sink.issues
      .map((issue, n) => ({ issue, n }))
      .sort((a, b) => rank(a.issue.line) - rank(b.issue.line) || a.issue.col - b.issue.col || a.n - b.n)
      .map((x) => x.issue);
    throw new ConfigError(sorted);
  }
  return deepFreeze({ file, global, admin, listeners, pools });
}

/** Every configuration key by table, as validation accepts them (docs/reference.md documents each; a test keeps them in step). */
export const CONFIG_KEYS: Readonly<Record<string, readonly string[]>> = {
  top: TOP_KEYS,
  global: GLOBAL_KEYS,
  admin: ADMIN_KEYS,
  listeners: LISTENER_KEYS,
  routes: ROUTE_KEYS,
  pools: POOL_KEYS,
  backends: BACKEND_KEYS,
  health_check: HEALTH_KEYS,
};
