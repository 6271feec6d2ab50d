/**
 * Runtime changes an operator made through the admin API (drain, weight),
 * by pool and backend address. They outlive a reload for every backend
 * whose pool and address stay, and with `[global] state_file` a restart:
 * the file is rewritten atomically (temporary file, fsync, rename) on each
 * change and read at start. Control plane only.
 *
 * File format (JSON, version 1):
 *   {"version":1,"backends":[{"pool":"pg","address":"10.0.0.11:5432","drain":true,"weight":null}]}
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';

export interface BackendOverride {
  readonly pool: string;
  readonly address: string;
  /** Drained through the admin API. */
  drain: boolean;
  /** Weight set through the admin API (0-1000), or null: the configured one. */
  weight: number | null;
}

export const STATE_FILE_VERSION = 1;

export class RuntimeState {
  private readonly map = new Map<string, BackendOverride>();

  get(pool: string, address: string): BackendOverride | undefined {
    return this.map.get(key(pool, address));
  }

  all(): BackendOverride[] {
    return [...this.map.values()];
  }

  /** Contract: records a drain flag; returns true when something changed. */
  setDrain(pool: string, address: string, drain: boolean): boolean {
    const e = this.entry(pool, address);
    if (e.drain === drain) return false;
    e.drain = drain;
    this.tidy(e);
    return true;
  }

  /** Contract: records a weight (null = back to the configured one); returns true when something changed. */
  setWeight(pool: string, address: string, weight: number | null): boolean {
    const e = this.entry(pool, address);
    if (e.weight === weight) return false;
    e.weight = weight;
    this.tidy(e);
    return true;
  }

  /** Contract: forgets entries whose backend `present` says is gone; returns true when something was forgotten. */
  retain(present: (pool: string, address: string) => boolean): boolean {
    let changed = false;
    for (const [k, e] of this.map) {
      if (present(e.pool, e.address)) continue;
      this.map.delete(k);
      changed = true;
    }
    return changed;
  }

  toJSON(): { version: number; backends: BackendOverride[] } {
    return { version: STATE_FILE_VERSION, backends: this.all() };
  }

  /**
   * Contract: writes the state to `path` atomically: a temporary file in the
   * same directory, fsync, rename over `path`. Throws on an I/O error.
   */
  write(path: string): void {
    const tmp = `${path}.${process.pid}.tmp`;
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(fd, `${JSON.stringify(this.toJSON())}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  }

  /**
   * Contract: reads a state file. A missing file is an empty state (first
   * start); an unreadable or malformed one gives an empty state and the
   * reason in `error`. Malformed entries are skipped.
   */
  static read(path: string): { state: RuntimeState; error: string | null } {
    const state = new RuntimeState();
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'ENOENT') return { state, error: null };
      return { state, error: e.message };
    }
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (err) {
      return { state, error: `not JSON: ${(err as Error).message}` };
    }
    const list = (doc as { backends?: unknown } | null)?.backends;
    if (typeof doc !== 'object' || doc === null || !Array.isArray(list)) return { state, error: 'expected {"version":1,"backends":[...]}' };
    for (const item of list as unknown[]) {
      if (typeof item !== 'object' || item === null) continue;
      const { pool, address, drain, weight } = item as Record<string, unknown>;
      if (typeof pool !== 'string' || typeof address !== 'string') continue;
      if (drain === true) state.setDrain(pool, address, true);
      if (typeof weight === 'number' && Number.isInteger(weight) && weight >= 0 && weight <= 1000) state.setWeight(pool, address, weight);
    }
    return { state, error: null };
  }

  private entry(pool: string, address: string): BackendOverride {
    const k = key(pool, address);
    let e = this.map.get(k);
    if (e === undefined) {
      e = { pool, address, drain: false, weight: null };
      this.map.set(k, e);
    }
    return e;
  }

  private tidy(e: BackendOverride): void {
    if (!e.drain && e.weight === null) this.map.delete(key(e.pool, e.address));
  }
}

/** Contract: `state_file` as written, resolved against the configuration file's directory when relative. */
export function stateFilePath(configFile: string, stateFile: string): string {
  return isAbsolute(stateFile) ? stateFile : resolve(join(dirname(configFile), stateFile));
}

function key(pool: string, address: string): string {
  return `${pool}\u0000${address}`;
}
