/**
 * Typed, issue-collecting accessors over one parsed TOML table. Every
 * accessor records a ConfigIssue (with key path and position) on a bad value
 * and returns the default, so validation goes on and reports everything.
 */
import type { ConfigIssue } from '../errors';
import { joinKey, type Positions } from './positions';
import { describe, parseDuration, suggest } from './values';

export type Table = Record<string, unknown>;

/** Contract: true for a plain parsed TOML table (not an array, not a date). */
export function isTable(v: unknown): v is Table {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Date) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === null || proto === Object.prototype;
}

/** Collects issues for one file. */
export class IssueSink {
  readonly issues: ConfigIssue[] = [];
  constructor(readonly file: string, readonly positions: Positions) {}

  /** Contract: records an issue at the value of `path` (or its nearest known parent). */
  at(path: string, message: string): void {
    const p = this.positions.near(path);
    this.issues.push({ file: this.file, line: p.line, col: p.col, path, message });
  }

  /** Contract: records an issue at the key of `path` (for unknown keys). */
  atKey(path: string, message: string): void {
    let p = this.positions.key(path);
    if (p.line === 0) p = this.positions.near(path);
    this.issues.push({ file: this.file, line: p.line, col: p.col, path, message });
  }
}

export class Reader {
  constructor(readonly sink: IssueSink, readonly path: string, readonly table: Table) {}

  /** Contract: the path of key k in this table. */
  p(k: string): string { return joinKey(this.path, k); }
  has(k: string): boolean { return Object.prototype.hasOwnProperty.call(this.table, k); }
  get(k: string): unknown { return this.has(k) ? this.table[k] : undefined; }

  /** Contract: reports every key not in `known`, with a suggestion for near misses. */
  checkKeys(known: readonly string[]): void {
    for (const k of Object.keys(this.table)) {
      if (known.includes(k)) continue;
      const s = suggest(k, known);
      this.sink.atKey(this.p(k), `unknown key ${JSON.stringify(k)}${s ? ` (did you mean "${s}"?)` : ''}`);
    }
  }

  /** Contract: reports a missing required key at this table; returns false if missing. */
  require(k: string): boolean {
    if (this.has(k)) return true;
    this.sink.at(this.p(k), `required key ${JSON.stringify(k)} is missing`);
    return false;
  }

  /** Contract: a string value, or `def` when absent or wrong type (reported). */
  str(k: string, def: string): string {
    const v = this.get(k);
    if (v === undefined) return def;
    if (typeof v === 'string') return v;
    this.sink.at(this.p(k), `expected a string, got ${describe(v)}`);
    return def;
  }

  /** Contract: a boolean value, or `def`. */
  bool(k: string, def: boolean): boolean {
    const v = this.get(k);
    if (v === undefined) return def;
    if (typeof v === 'boolean') return v;
    this.sink.at(this.p(k), `expected true or false, got ${describe(v)}`);
    return def;
  }

  /** Contract: an integer in min..max (max may be Infinity), or `def`. */
  int(k: string, def: number, min: number, max = Infinity): number {
    const v = this.get(k);
    if (v === undefined) return def;
    const range = max === Infinity ? `>= ${min}` : `between ${min} and ${max}`;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      this.sink.at(this.p(k), `expected an integer ${range}, got ${describe(v)}`);
      return def;
    }
    return v;
  }

  /** Contract: one of `values`, or `def`. */
  oneOf<T extends string>(k: string, values: readonly T[], def: T): T {
    const v = this.get(k);
    if (v === undefined) return def;
    if (typeof v === 'string' && (values as readonly string[]).includes(v)) return v as T;
    this.sink.at(this.p(k), `expected one of ${values.map((x) => JSON.stringify(x)).join(', ')}, got ${describe(v)}`);
    return def;
  }

  /** Contract: a duration in ms (>= minMs), or the default's value in ms. */
  duration(k: string, def: string, minMs = 0): number {
    const defMs = parseDuration(def) ?? 0;
    const v = this.get(k);
    if (v === undefined) return defMs;
    const ms = typeof v === 'string' ? parseDuration(v) : null;
    if (ms === null) {
      this.sink.at(this.p(k), `expected a duration string with a unit ("250ms", "2s", "1.5m", "1h"), got ${describe(v)}`);
      return defMs;
    }
    if (ms < minMs) {
      this.sink.at(this.p(k), `expected a duration of at least ${minMs}ms, got ${describe(v)}`);
      return defMs;
    }
    return ms;
  }

  /** Contract: a sub-table Reader, null when absent; reports a non-table. */
  sub(k: string): Reader | null {
    const v = this.get(k);
    if (v === undefined) return null;
    if (!isTable(v)) {
      this.sink.at(this.p(k), `expected a table, got ${describe(v)}`);
      return null;
    }
    return new Reader(this.sink, this.p(k), v);
  }
}
