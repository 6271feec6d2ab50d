/**
 * Backends given by name (SPEC §2): one PoolResolver per pool turns the
 * pool's configured backends into BackendSpecs, one per resolved address, and
 * re-resolves its names every `resolve_interval` with the system resolver
 * (`dns.lookup` with `all: true`: /etc/hosts, nsswitch and the host's DNS).
 *
 * Rules:
 * - Order is stable: configured order; a name's addresses sorted (IPv4 first,
 *   numerically), duplicates dropped.
 * - A failed (or empty) lookup keeps the name's last good addresses, counts
 *   one failure, and is logged at warn once per change of outcome.
 * - At most one lookup per name is in flight: a tick that finds one still
 *   running skips that name. Lookups run off the data path (libuv pool).
 * - The timer is unref'd; stop() ends it and discards later results.
 */
import dns from 'node:dns';
import type { PoolConfig } from '../config/schema';
import type { Logger } from '../log';
import type { BackendSpec } from '../dataplane/api';
import { compareIp } from './order';

export interface LookupAddress {
  address: string;
  family: number;
}

/** Resolves a host name to all its addresses; rejects with an errno-style error (`code`). */
export type LookupFn = (host: string) => Promise<readonly LookupAddress[]>;

/** Contract: the system resolver (getaddrinfo through libuv's pool), A and AAAA, in the order it returns them. */
export const systemLookup: LookupFn = (host) => dns.promises.lookup(host, { all: true, verbatim: true });

interface ResolvedAddress {
  host: string;
  family: 4 | 6;
}

/** What is known about one name; shared with the next resolver of the pool across a reload. */
interface NameState {
  readonly host: string;
  /** Last good addresses (sorted, unique), or null while it never resolved. */
  addrs: ResolvedAddress[] | null;
  /** The lookup in flight, if any. */
  inFlight: Promise<void> | null;
  /** 'ok', or the error code of the last failed lookup; null before the first lookup. */
  outcome: string | null;
}

export interface PoolResolverOptions {
  pool: PoolConfig;
  log: Logger;
  /** Defaults to `systemLookup`. */
  lookup?: LookupFn;
  /**
   * Called when a timer-driven lookup changed the pool's backend list (not
   * for `refresh()`, whose caller applies the result itself).
   */
  onChange?: (pool: string, specs: BackendSpec[]) => void;
  /**
   * The resolver this one replaces (reload): names it knows keep their last
   * good addresses, logged outcome and lookup in flight; the failure counter
   * continues.
   */
  previous?: PoolResolver | null;
}

export class PoolResolver {
  readonly pool: string;
  readonly config: PoolConfig;
  private readonly log: Logger;
  private readonly lookup: LookupFn;
  private readonly onChange: ((pool: string, specs: BackendSpec[]) => void) | null;
  /** By host name; several backends may share one name (other ports). */
  private readonly names = new Map<string, NameState>();
  private readonly counters: { failures: number; lookups: number };
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  /** Key of the backend list last handed out (refresh, onChange). */
  private publishedKey: string;

  /** Contract: builds the resolver; resolves nothing until refresh(), tick() or start(). */
  constructor(opts: PoolResolverOptions) {
    this.pool = opts.pool.name;
    this.config = opts.pool;
    this.log = opts.log;
    this.lookup = opts.lookup ?? systemLookup;
    this.onChange = opts.onChange ?? null;
    const prev = opts.previous ?? null;
    this.counters = prev !== null ? prev.counters : { failures: 0, lookups: 0 };
    for (const b of opts.pool.backends) {
      if (b.family !== 0 || this.names.has(b.host)) continue;
      const old = prev?.names.get(b.host);
      this.names.set(b.host, old ?? { host: b.host, addrs: null, inFlight: null, outcome: null });
    }
    this.publishedKey = specsKey(this.specs());
  }

  /** Contract: failed (or empty) lookups of this pool so far, across reloads. */
  get failures(): number {
    return this.counters.failures;
  }

  /** Contract: lookups started for this pool so far, across reloads. */
  get lookups(): number {
    return this.counters.lookups;
  }

  /** Contract: true when at least one backend of the pool is a name. */
  hasNames(): boolean {
    return this.names.size > 0;
  }

  /**
   * Contract: the pool's backends now: configured order, IP literals as
   * written, each name expanded to its last good addresses (none while it
   * never resolved), each with the configured weight, limits and backup flag.
   */
  specs(): BackendSpec[] {
    const out: BackendSpec[] = [];
    for (const b of this.config.backends) {
      const base = { port: b.port, weight: b.weight, maxConnections: b.maxConnections, backup: b.backup };
      if (b.family !== 0) {
        out.push({ ...base, host: b.host, family: b.family, name: null });
        continue;
      }
      const addrs = this.names.get(b.host)?.addrs ?? [];
      for (const a of addrs) out.push({ ...base, host: a.host, family: a.family, name: b.address });
    }
    return out;
  }

  /**
   * Contract: resolves every name now (joining a lookup already in flight
   * instead of starting another) and returns the resulting backend list.
   * Never rejects; does not call onChange.
   */
  async refresh(): Promise<BackendSpec[]> {
    await Promise.all([...this.names.values()].map((st) => st.inFlight ?? this.resolveName(st)));
    const specs = this.specs();
    this.publishedKey = specsKey(specs);
    return specs;
  }

  /**
   * Contract: one re-resolution round: starts a lookup for every name that
   * has none in flight (a slow one is skipped, not stacked) and calls
   * onChange once a finished lookup changed the backend list. Resolves when
   * the lookups this round started are done. No-op after stop().
   */
  async tick(): Promise<void> {
    if (this.stopped) return;
    const started: Promise<void>[] = [];
    for (const st of this.names.values()) {
      if (st.inFlight !== null) continue;
      started.push(this.resolveName(st).then(() => this.publishIfChanged()));
    }
    await Promise.all(started);
  }

  /** Contract: starts re-resolving every resolve_interval (unref'd timer); idempotent; no-op without names or after stop(). */
  start(): void {
    if (this.stopped || this.timer !== null || !this.hasNames() || this.config.resolveIntervalMs <= 0) return;
    this.timer = setInterval(() => void this.tick(), this.config.resolveIntervalMs);
    this.timer.unref();
  }

  /** Contract: stops the timer for good; lookups still in flight finish but change nothing published. Idempotent. */
  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** Contract: true between start() (with names) and stop(). */
  get running(): boolean {
    return this.timer !== null;
  }

  /** Contract: calls onChange when the backend list differs from the one last handed out; not after stop(). */
  private publishIfChanged(): void {
    if (this.stopped) return;
    const specs = this.specs();
    const key = specsKey(specs);
    if (key === this.publishedKey) return;
    this.publishedKey = key;
    if (this.onChange !== null) this.onChange(this.pool, specs);
  }

  /**
   * Contract: looks `st.host` up once, recording the promise in
   * `st.inFlight` until done. Success replaces the name's addresses (sorted,
   * unique); failure or an empty answer keeps them and counts a failure.
   * Logs at warn when a failure differs from the previous outcome, at info
   * when the name resolves again or its addresses change. Never rejects.
   */
  private resolveName(st: NameState): Promise<void> {
    this.counters.lookups++;
    const run = async (): Promise<void> => {
      let result: readonly LookupAddress[] | null = null;
      let code = '';
      try {
        result = await this.lookup(st.host);
        if (result.length === 0) code = 'ENODATA';
      } catch (err) {
        const e = err as NodeJS.ErrnoException | null;
        code = e?.code ?? String(e?.message ?? err);
      }
      if (code !== '' || result === null) {
        this.counters.failures++;
        if (st.outcome !== code) {
          const keeping = (st.addrs ?? []).map((a) => a.host);
          this.log.warn({ pool: this.pool, name: st.host, err: code, keeping, resolve_failures: this.counters.failures }, 'backend name did not resolve');
        }
        st.outcome = code;
        return;
      }
      const next = normalise(result);
      const before = st.addrs;
      const changed = before === null || before.length !== next.length || before.some((a, i) => a.host !== next[i]?.host);
      const recovered = st.outcome !== null && st.outcome !== 'ok';
      st.addrs = next;
      st.outcome = 'ok';
      if (changed || recovered) {
        const prev = new Set((before ?? []).map((a) => a.host));
        const now = new Set(next.map((a) => a.host));
        this.log.info(
          {
            pool: this.pool,
            name: st.host,
            addresses: [...now],
            added: [...now].filter((a) => !prev.has(a)),
            removed: [...prev].filter((a) => !now.has(a)),
          },
          recovered ? 'backend name resolves again' : 'backend name resolved',
        );
      }
    };
    const p = run().finally(() => {
      if (st.inFlight === p) st.inFlight = null;
    });
    st.inFlight = p;
    return p;
  }
}

/** Contract: the lookup answer as unique addresses, IPv4 first, in numeric order. */
function normalise(addrs: readonly LookupAddress[]): ResolvedAddress[] {
  const seen = new Set<string>();
  const out: ResolvedAddress[] = [];
  for (const a of addrs) {
    if (seen.has(a.address)) continue;
    seen.add(a.address);
    out.push({ host: a.address, family: a.family === 6 ? 6 : 4 });
  }
  out.sort((x, y) => compareIp(x.host, y.host));
  return out;
}

/** Contract: a string equal for two backend lists exactly when they have the same addresses, ports and names in the same order. */
function specsKey(specs: readonly BackendSpec[]): string {
  return specs.map((s) => `${s.family}/${s.host}/${s.port}/${s.name ?? ''}`).join(',');
}
