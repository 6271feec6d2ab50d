/** The [global] and [admin] tables (SPEC §2, §8.5, §8.6). */
import { isLoopback } from '../net/address';
import type { Reader } from './reader';
import { describe } from './values';
import { DEFAULTS, type AdminConfig, type GlobalConfig, type LogLevel, type SpliceMode } from './schema';
import { readHostPort } from './validate-common';

const LOG_LEVELS: readonly LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error'];
const SPLICE: readonly SpliceMode[] = ['auto', 'on', 'off'];
/** A process each: more than this is a typo, not a machine (SPEC §8.6). */
const MAX_WORKERS = 256;
export const GLOBAL_KEYS = ['log_level', 'connection_log', 'workers', 'splice', 'drain_timeout', 'shutdown_delay', 'state_file', 'connection_log_interval'];
export const ADMIN_KEYS = ['bind', 'token'];

/** Contract: validates [global]; absent table = all defaults. */
export function readGlobal(r: Reader | null, cpuCount: number): GlobalConfig {
  const d = DEFAULTS.global;
  if (r === null) {
    return { logLevel: d.log_level, connectionLog: d.connection_log, workers: d.workers, splice: d.splice, drainTimeoutMs: 30_000, shutdownDelayMs: 0, stateFile: null, connectionLogIntervalMs: 0 };
  }
  r.checkKeys(GLOBAL_KEYS);
  let workers: number = d.workers;
  const w = r.get('workers');
  if (w === 'auto') workers = Math.min(MAX_WORKERS, Math.max(1, cpuCount));
  else if (w !== undefined) {
    if (typeof w === 'number' && Number.isInteger(w) && w >= 1 && w <= MAX_WORKERS) workers = w;
    else r.sink.at(r.p('workers'), `expected an integer from 1 to ${MAX_WORKERS} or "auto", got ${describe(w)}`);
  }
  return {
    logLevel: r.oneOf('log_level', LOG_LEVELS, d.log_level),
    connectionLog: r.bool('connection_log', d.connection_log),
    workers,
    splice: r.oneOf('splice', SPLICE, d.splice),
    drainTimeoutMs: r.duration('drain_timeout', d.drain_timeout),
    shutdownDelayMs: r.duration('shutdown_delay', d.shutdown_delay),
    stateFile: readStateFile(r),
    connectionLogIntervalMs: readProgressInterval(r),
  };
}

/** Contract: reads [global] state_file: a non-empty path string, or null when absent. */
function readStateFile(r: Reader): string | null {
  if (!r.has('state_file')) return null;
  const v = r.str('state_file', '');
  if (v === '' && typeof r.get('state_file') === 'string') r.sink.at(r.p('state_file'), 'expected a file path, got ""');
  return v === '' ? null : v;
}

/** Contract: reads [global] connection_log_interval: "0s" (off) or at least 100 ms (a shorter one would flood the log). */
function readProgressInterval(r: Reader): number {
  const ms = r.duration('connection_log_interval', DEFAULTS.global.connection_log_interval);
  if (ms > 0 && ms < 100) {
    r.sink.at(r.p('connection_log_interval'), `expected "0s" (off) or at least "100ms", got ${describe(r.get('connection_log_interval'))}`);
    return 0;
  }
  return ms;
}

/** Contract: validates [admin]; null when absent. */
export function readAdmin(r: Reader | null): AdminConfig | null {
  if (r === null) return null;
  r.checkKeys(ADMIN_KEYS);
  r.require('bind');
  const bind = readHostPort(r, 'bind', 0, true);
  let token: string | null = null;
  if (r.has('token')) {
    token = r.str('token', '');
    if (token === '') {
      if (typeof r.get('token') === 'string') r.sink.at(r.p('token'), 'expected a non-empty token, got ""');
      token = null;
    }
  }
  if (bind !== null && token === null && !isLoopback(bind.hp.host)) {
    r.sink.at(r.p('bind'), `binding the admin endpoint to non-loopback ${JSON.stringify(bind.text)} requires admin.token`);
  }
  return { bind: bind?.hp ?? { host: '127.0.0.1', port: 0, family: 4 }, token };
}

