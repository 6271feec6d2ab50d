/**
 * A histogram as plain numbers, for the data path: `observe()` is a short
 * loop over fixed bucket bounds, nothing is allocated; prom-client reads the
 * counts at scrape time (src/metrics/metrics.ts). Counts are per bucket (not
 * cumulative) so that worker snapshots can be summed element by element.
 */

/** Backend connect time, in seconds: LAN databases (sub-millisecond) to WAN backends (seconds). */
export const CONNECT_BUCKETS: readonly number[] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** Connection duration, in seconds: a query (milliseconds) to pooled database and WAN sessions (hours). */
export const DURATION_BUCKETS: readonly number[] = [0.001, 0.005, 0.025, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 1800, 3600, 14400, 86400];

/** What a snapshot carries of one histogram: counts per bucket (the last one is +Inf), sum, count. */
export interface HistogramSnapshot {
  counts: number[];
  sum: number;
  count: number;
}

export class Histogram {
  readonly bounds: readonly number[];
  /** counts[i] for value <= bounds[i] (and > bounds[i-1]); counts[bounds.length] for above all. */
  readonly counts: number[];
  sum = 0;
  count = 0;

  constructor(bounds: readonly number[]) {
    this.bounds = bounds;
    this.counts = new Array<number>(bounds.length + 1).fill(0);
  }

  observe(v: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > (b[i] as number)) i++;
    this.counts[i] = (this.counts[i] as number) + 1;
    this.sum += v;
    this.count++;
  }

  snapshot(): HistogramSnapshot {
    return { counts: [...this.counts], sum: this.sum, count: this.count };
  }
}

/** Adds `b` into `a` (same bounds); returns `a`. */
export function addHistogram(a: HistogramSnapshot, b: HistogramSnapshot): HistogramSnapshot {
  for (let i = 0; i < a.counts.length; i++) a.counts[i] = (a.counts[i] as number) + (b.counts[i] ?? 0);
  a.sum += b.sum;
  a.count += b.count;
  return a;
}

export function emptyHistogram(bounds: readonly number[]): HistogramSnapshot {
  return { counts: new Array<number>(bounds.length + 1).fill(0), sum: 0, count: 0 };
}
