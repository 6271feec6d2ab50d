/**
 * Counters declared once. A table of `CounterDecl` (src/stats/stats.ts
 * holds the listener and backend tables) is the single place a counter is
 * named; everything else is derived from it here and in
 * src/metrics/metrics.ts:
 *
 * - the stats object the hot path increments (`statsClass`: one plain field
 *   per declaration, a number, a record of numbers by label value, or a
 *   `Histogram`), so an increment stays `stats.accepted++`;
 * - its copy in a snapshot (`readCounters`), the form workers send to the
 *   primary and the control plane reads;
 * - summing snapshots (`addCounters`), keeping the totals of what is gone
 *   (`totalsOf`), copying (`cloneCounters`), clearing (`zeroCounters`);
 * - the counter fields of the status document (`statusCounters`);
 * - the Prometheus metrics (`counterMetrics` in src/metrics/metrics.ts).
 *
 * How a declaration sums follows from its kind:
 * - `counter` and `histogram` (buckets are counters): summed over workers,
 *   and kept when their owner is gone (a listener removed by a reload, a
 *   backend that left its pool, a worker that exited), so they never go
 *   down (SPEC §8.4);
 * - `gauge`: summed over the live workers and listeners; 0 in kept totals.
 */
import { Histogram, addHistogram, type HistogramSnapshot } from './histogram';

export type CounterKind = 'counter' | 'gauge' | 'histogram';

export interface CounterDecl {
  /** The stats object's field, incremented on the hot path (camelCase). */
  readonly field: string;
  /** The snapshot's key (snake_case): what workers send and the control plane reads. */
  readonly key: string;
  readonly kind: CounterKind;
  /** The Prometheus metric. Several declarations may share one, told apart by `labels`. */
  readonly metric: string;
  readonly help: string;
  /** Fixed labels of this declaration's samples (e.g. `direction`). */
  readonly labels?: Readonly<Record<string, string>>;
  /** A family of numbers, one per value of a label (e.g. rejections by `reason`): the field is a record. */
  readonly by?: { readonly label: string; readonly values: readonly string[] };
  /** Histogram bucket bounds (kind `histogram`). */
  readonly buckets?: readonly number[];
  /** The name in the status document (SPEC §5), when shown there. */
  readonly status?: string;
  /** Listener metrics only: sampled for listeners of this protocol alone. */
  readonly only?: 'tcp' | 'udp';
}

type ByValues<D> = D extends { readonly by: { readonly values: readonly (infer V extends string)[] } } ? V : never;

/** The type of a declaration's field in the stats object. */
export type FieldOf<D extends CounterDecl> = D['kind'] extends 'histogram' ? Histogram : D extends { readonly by: object } ? Record<ByValues<D>, number> : number;

/** The type of a declaration's value in a snapshot. */
export type ValueOf<D extends CounterDecl> = D['kind'] extends 'histogram' ? HistogramSnapshot : D extends { readonly by: object } ? Record<ByValues<D>, number> : number;

/** The stats object of a table: one field per declaration. */
export type StatsOf<T extends readonly CounterDecl[]> = { [D in T[number] as D['field']]: FieldOf<D> };

/** The counter part of a snapshot of a table: one key per declaration. */
export type SnapshotOf<T extends readonly CounterDecl[]> = { [D in T[number] as D['key']]: ValueOf<D> };

type Loose = Record<string, unknown>;

/**
 * A class whose instances hold one field per declaration, all 0 (records
 * of 0, empty histograms), assigned in table order so that every instance
 * has the same shape. Extend it or instantiate it.
 */
export function statsClass<T extends readonly CounterDecl[]>(decls: T): new () => StatsOf<T> {
  class Stats {
    constructor() {
      const self = this as unknown as Loose;
      for (const d of decls) self[d.field] = d.kind === 'histogram' ? new Histogram(d.buckets ?? []) : d.by !== undefined ? zeroRecord(d.by.values) : 0;
    }
  }
  return Stats as unknown as new () => StatsOf<T>;
}

function zeroRecord(values: readonly string[]): Record<string, number> {
  const r: Record<string, number> = {};
  for (const v of values) r[v] = 0;
  return r;
}

/** The snapshot values of a stats object (copies: later increments do not show in them). */
export function readCounters<T extends readonly CounterDecl[]>(decls: T, stats: StatsOf<T>): SnapshotOf<T> {
  const from = stats as unknown as Loose;
  const out: Loose = {};
  for (const d of decls) {
    const v = from[d.field];
    out[d.key] = d.kind === 'histogram' ? (v as Histogram).snapshot() : d.by !== undefined ? { ...(v as Record<string, number>) } : v;
  }
  return out as SnapshotOf<T>;
}

/**
 * Adds the values of `from` into `into`: counters and histograms always,
 * gauges when `gauges` is true (a sum over live workers or listeners; not
 * for kept totals).
 */
export function addCounters<T extends readonly CounterDecl[]>(decls: T, into: SnapshotOf<T>, from: SnapshotOf<T>, gauges = false): void {
  const a = into as unknown as Loose;
  const b = from as unknown as Loose;
  for (const d of decls) {
    if (d.kind === 'gauge' && !gauges) continue;
    if (d.kind === 'histogram') addHistogram(a[d.key] as HistogramSnapshot, b[d.key] as HistogramSnapshot);
    else if (d.by !== undefined) {
      const ra = a[d.key] as Record<string, number>;
      const rb = b[d.key] as Record<string, number>;
      for (const v of d.by.values) ra[v] = (ra[v] ?? 0) + (rb[v] ?? 0);
    } else a[d.key] = (a[d.key] as number) + (b[d.key] as number);
  }
}

/** A copy of `s` that summing into may change (records and histograms copied); other fields shared. */
export function cloneCounters<T extends readonly CounterDecl[], S extends SnapshotOf<T>>(decls: T, s: S): S {
  const out: Loose = { ...(s as unknown as Loose) };
  for (const d of decls) {
    const v = out[d.key];
    if (d.kind === 'histogram') out[d.key] = cloneHistogram(v as HistogramSnapshot);
    else if (d.by !== undefined) out[d.key] = { ...(v as Record<string, number>) };
  }
  return out as S;
}

/** A copy of `s` keeping its counters only: gauges 0 (what is kept of a listener, backend or worker that is gone). */
export function totalsOf<T extends readonly CounterDecl[], S extends SnapshotOf<T>>(decls: T, s: S): S {
  const out = cloneCounters(decls, s) as unknown as Loose;
  for (const d of decls) if (d.kind === 'gauge') out[d.key] = d.by !== undefined ? zeroRecord(d.by.values) : 0;
  return out as S;
}

/** Sets every value of `s` to 0 (gauges too; histograms emptied), in place. */
export function zeroCounters<T extends readonly CounterDecl[]>(decls: T, s: SnapshotOf<T>): void {
  const out = s as unknown as Loose;
  for (const d of decls) {
    if (d.kind === 'histogram') {
      const h = out[d.key] as HistogramSnapshot;
      out[d.key] = { counts: h.counts.map(() => 0), sum: 0, count: 0 };
    } else out[d.key] = d.by !== undefined ? zeroRecord(d.by.values) : 0;
  }
}

/** The fields of the status document (SPEC §5) that come from counters, by their status names, in table order. */
export function statusCounters<T extends readonly CounterDecl[]>(decls: T, s: SnapshotOf<T>): Record<string, unknown> {
  const from = s as unknown as Loose;
  const out: Loose = {};
  for (const d of decls) if (d.status !== undefined) out[d.status] = from[d.key];
  return out;
}

function cloneHistogram(h: HistogramSnapshot): HistogramSnapshot {
  return { counts: [...h.counts], sum: h.sum, count: h.count };
}
