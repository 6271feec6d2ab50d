/**
 * A backend as the data plane sees it: one resolved address of a pool, its
 * state and its counters. Counters are plain numbers incremented on the hot
 * path and read at scrape time.
 */
import { BackendStats } from '../stats/stats';
import { formatHostPort } from '../net/address';

export type BackendState = 'up' | 'down' | 'draining';

/** Its counters (`active`, `total`, `connectFailures`, bytes, `connectTime`) are the fields declared in `BACKEND_COUNTERS`. */
export class Backend extends BackendStats {
  /** Resolved "ip:port" ("[v6]:port" for IPv6): the metrics label and API key. */
  readonly address: string;
  readonly host: string;
  readonly port: number;
  readonly family: 4 | 6;
  /** The configured name when this address came from DNS, else null. */
  readonly name: string | null;
  /** Configured weight (>= 1). */
  weight: number;
  /**
   * Weight used for picking: the configured weight, ramped during slow start.
   * Always > 0 while the backend is usable.
   */
  effectiveWeight: number;
  /** 0 = no limit. */
  maxConnections: number;
  backup: boolean;
  state: BackendState = 'up';
  /** False once the backend left its pool (reload, DNS); open connections go on. */
  member = true;

  constructor(init: {
    host: string;
    port: number;
    family: 4 | 6;
    name?: string | null;
    weight?: number;
    maxConnections?: number;
    backup?: boolean;
  }) {
    super();
    this.host = init.host;
    this.port = init.port;
    this.family = init.family;
    this.address = formatHostPort(init.host, init.port);
    this.name = init.name ?? null;
    this.weight = init.weight ?? 1;
    this.effectiveWeight = this.weight;
    this.maxConnections = init.maxConnections ?? 0;
    this.backup = init.backup ?? false;
  }

  /** True when the backend may take one more connection right now. */
  hasRoom(): boolean {
    return this.maxConnections === 0 || this.active < this.maxConnections;
  }
}
