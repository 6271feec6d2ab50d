/** The [pools.<name>] tables and their backends (SPEC §2). */
import { joinIndex, joinKey } from './positions';
import { IssueSink, Reader, isTable } from './reader';
import { describe, isPrime } from './values';
import { DEFAULTS, type Algorithm, type BackendConfig, type HashKey, type PoolConfig } from './schema';
import { addressKey, readHostPort } from './validate-common';
import { readHealth } from './validate-health-check';

const ALGORITHMS: readonly Algorithm[] = ['consistent-hash', 'least-connections', 'round-robin', 'random'];
const HASH_KEYS: readonly HashKey[] = ['5-tuple', 'source-ip'];
export const TABLE_SIZE_MIN = 7;
export const TABLE_SIZE_MAX = 1_000_003;
export const WEIGHT_MAX = 1000;
export const POOL_KEYS = [
  'algorithm', 'hash_key', 'hash_balance_factor', 'table_size', 'retries', 'slow_start', 'backends',
  'resolve_interval', 'health_check',
];
export const BACKEND_KEYS = ['address', 'weight', 'max_connections', 'backup'];

/** Contract: validates one [pools.<name>] table. */
function readPool(name: string, r: Reader): PoolConfig {
  const d = DEFAULTS.pool;
  r.checkKeys(POOL_KEYS);
  const backends: BackendConfig[] = [];
  if (r.require('backends')) {
    const list = r.get('backends');
    if (!Array.isArray(list)) {
      r.sink.at(r.p('backends'), `expected an array of backend tables, got ${describe(list)}`);
    } else if (list.length === 0) {
      r.sink.at(r.p('backends'), 'expected at least one backend, got an empty array');
    } else {
      const seen = new Map<string, number>();
      list.forEach((item: unknown, i: number) => {
        const path = joinIndex(r.p('backends'), i);
        const b = readBackend(r.sink, path, item);
        if (b === null) return;
        const key = addressKey(b);
        const first = seen.get(key);
        if (first !== undefined) {
          r.sink.at(joinKey(path, 'address'), `duplicate backend address ${JSON.stringify(b.address)} (also backends[${first}])`);
        } else {
          seen.set(key, i);
        }
        backends.push(b);
      });
    }
  }
  const algorithm = r.oneOf('algorithm', ALGORITHMS, d.algorithm);
  let hashBalanceFactor = r.int('hash_balance_factor', d.hash_balance_factor, 0);
  if (hashBalanceFactor > 0 && hashBalanceFactor < 100) {
    r.sink.at(r.p('hash_balance_factor'), `expected 0 (off) or a percentage >= 100, got ${hashBalanceFactor}`);
    hashBalanceFactor = d.hash_balance_factor;
  }
  let tableSize = r.int('table_size', d.table_size, 0);
  if (r.has('table_size')) {
    if (!isPrime(tableSize) || tableSize < TABLE_SIZE_MIN || tableSize > TABLE_SIZE_MAX) {
      r.sink.at(r.p('table_size'), `expected a prime between ${TABLE_SIZE_MIN} and ${TABLE_SIZE_MAX}, got ${tableSize}`);
      tableSize = d.table_size;
    }
  }
  if (algorithm === 'consistent-hash' && tableSize < backends.length) {
    r.sink.at(r.p('table_size'), `expected a table_size >= the number of backends (${backends.length}), got ${tableSize}`);
  }
  return {
    name,
    algorithm,
    hashKey: r.oneOf('hash_key', HASH_KEYS, d.hash_key),
    hashBalanceFactor,
    tableSize,
    retries: r.int('retries', d.retries, 0),
    slowStartMs: r.duration('slow_start', d.slow_start),
    backends,
    resolveIntervalMs: r.duration('resolve_interval', d.resolve_interval, 1),
    healthCheck: readHealth(r.sub('health_check')),
  };
}

/** Contract: validates [pools]; returns the pools in file order. */
export function readPools(sink: IssueSink, root: Reader): PoolConfig[] {
  const v = root.get('pools');
  if (v === undefined) return [];
  if (!isTable(v)) {
    sink.at('pools', `expected tables [pools.<name>], got ${describe(v)}`);
    return [];
  }
  const out: PoolConfig[] = [];
  for (const [name, t] of Object.entries(v)) {
    const path = joinKey('pools', name);
    if (!isTable(t)) {
      sink.at(path, `expected a table [pools.${name}], got ${describe(t)}`);
      continue;
    }
    out.push(readPool(name, new Reader(sink, path, t)));
  }
  return out;
}

/** Contract: validates one backend entry of a pool; null when unusable. */
function readBackend(sink: IssueSink, path: string, v: unknown): BackendConfig | null {
  if (!isTable(v)) {
    sink.at(path, `expected a table such as { address = "10.0.0.1:80" }, got ${describe(v)}`);
    return null;
  }
  const r = new Reader(sink, path, v);
  const d = DEFAULTS.backend;
  r.checkKeys(BACKEND_KEYS);
  r.require('address');
  const addr = readHostPort(r, 'address', 1, false);
  const weight = r.int('weight', d.weight, 1, WEIGHT_MAX);
  const maxConnections = r.int('max_connections', d.max_connections, 0);
  const backup = r.bool('backup', d.backup);
  if (addr === null) return null;
  return { address: addr.text, host: addr.hp.host, port: addr.hp.port, family: addr.hp.family, weight, maxConnections, backup };
}
