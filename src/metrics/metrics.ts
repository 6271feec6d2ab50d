/**
 * Prometheus metrics (SPEC §6), read at scrape time from a data-plane
 * snapshot: the hot path only bumps plain numbers. The counters of
 * listeners and backends come from their declarations in
 * src/stats/stats.ts (`counterMetrics`); the few others are listed
 * here. With several workers the snapshot is the sum over workers, so
 * nothing here knows about workers.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics, type Metric } from 'prom-client';
import { addHistogram, type HistogramSnapshot } from '../stats/histogram';
import type { DataPlaneSnapshot } from '../stats/stats';
import { BACKEND_COUNTERS, LISTENER_COUNTERS } from '../stats/stats';
import type { CounterDecl } from '../stats/counters';

/** What the metrics read at each scrape. */
export interface MetricsSource {
  snapshot(): DataPlaneSnapshot;
  reloads: { success: number; failure: number };
  /** Active probe outcomes per backend (the health monitor runs in the primary, so no worker sum). */
  healthChecks?(): readonly { pool: string; backend: string; ok: number; failed: number }[];
}

type Labels = Record<string, string>;
type Sample = [Labels, number];

export interface ScalarDef {
  name: string;
  help: string;
  type: 'counter' | 'gauge';
  labels: string[];
  samples(s: DataPlaneSnapshot, src: MetricsSource): Sample[];
}

/** A histogram kept as plain bucket counts in the data plane (src/stats/histogram.ts). */
export interface HistogramDef {
  name: string;
  help: string;
  type: 'histogram';
  labels: string[];
  buckets: readonly number[];
  histograms(s: DataPlaneSnapshot): [Labels, HistogramSnapshot][];
}

export type MetricDef = ScalarDef | HistogramDef;

const BACKEND_STATES = ['up', 'down', 'draining', 'removed'] as const;

type ListenerEntry = DataPlaneSnapshot['listeners'][number];
type BackendEntry = DataPlaneSnapshot['pools'][number]['backends'][number];
type Loose = Record<string, unknown>;

/**
 * Listeners by name, summed: a listener removed by a reload may still be
 * finishing connections while a new one of the same name runs.
 */
function perListener<V>(listeners: readonly ListenerEntry[], f: (l: ListenerEntry) => V, add: (a: V, b: V) => V): Map<string, V> {
  const m = new Map<string, V>();
  for (const l of listeners) {
    const cur = m.get(l.name);
    m.set(l.name, cur === undefined ? f(l) : add(cur, f(l)));
  }
  return m;
}

/** Backends with their labels: the current ones, plus for counters and histograms the totals of retired ones (counters never go down). */
function backendEntries(s: DataPlaneSnapshot, withRetired: boolean): [Labels, BackendEntry][] {
  const out: [Labels, BackendEntry][] = [];
  for (const p of s.pools) for (const b of p.backends) out.push([{ pool: p.name, backend: b.address }, b]);
  if (withRetired) for (const b of s.retired_backends ?? []) out.push([{ pool: b.pool, backend: b.address }, b]);
  return out;
}

/** The samples of one declaration: per listener (summed by name) or per backend, one per `by` value. */
function declSamples(scope: 'listener' | 'backend', d: CounterDecl, s: DataPlaneSnapshot): Sample[] {
  const values = d.by?.values ?? [null];
  const read = (e: ListenerEntry | BackendEntry, v: string | null): number => {
    const x = (e as unknown as Loose)[d.key];
    return v === null ? (x as number) : ((x as Record<string, number>)[v] ?? 0);
  };
  const labels = (base: Labels, v: string | null): Labels => ({ ...base, ...d.labels, ...(v === null || d.by === undefined ? {} : { [d.by.label]: v }) });
  const out: Sample[] = [];
  for (const v of values) {
    if (scope === 'backend') {
      for (const [base, b] of backendEntries(s, d.kind !== 'gauge')) out.push([labels(base, v), read(b, v)]);
      continue;
    }
    const ls = d.only === undefined ? s.listeners : s.listeners.filter((l) => l.protocol === d.only);
    for (const [listener, n] of perListener(ls, (l) => read(l, v), (a, b) => a + b)) out.push([labels({ listener }, v), n]);
  }
  return out;
}

function declHistograms(scope: 'listener' | 'backend', d: CounterDecl, s: DataPlaneSnapshot): [Labels, HistogramSnapshot][] {
  const read = (e: ListenerEntry | BackendEntry): HistogramSnapshot => (e as unknown as Loose)[d.key] as HistogramSnapshot;
  if (scope === 'backend') return backendEntries(s, true).map(([labels, b]) => [{ ...labels, ...d.labels }, read(b)]);
  const copy = (h: HistogramSnapshot): HistogramSnapshot => ({ counts: [...h.counts], sum: h.sum, count: h.count });
  const ls = d.only === undefined ? s.listeners : s.listeners.filter((l) => l.protocol === d.only);
  return [...perListener(ls, (l) => copy(read(l)), addHistogram)].map(([listener, h]) => [{ listener, ...d.labels }, h]);
}

/**
 * The metrics of counter tables (src/stats/stats.ts), one per metric
 * name in table order; declarations sharing a name (told apart by their
 * fixed labels) make one metric.
 */
export function counterMetrics(listener: readonly CounterDecl[], backend: readonly CounterDecl[]): MetricDef[] {
  const groups = new Map<string, { scope: 'listener' | 'backend'; decls: CounterDecl[] }>();
  for (const [scope, decls] of [['listener', listener], ['backend', backend]] as const) {
    for (const d of decls) {
      const g = groups.get(d.metric);
      if (g === undefined) groups.set(d.metric, { scope, decls: [d] });
      else g.decls.push(d);
    }
  }
  return [...groups].map(([name, { scope, decls }]): MetricDef => {
    const first = decls[0] as CounterDecl;
    const base = scope === 'listener' ? ['listener'] : ['pool', 'backend'];
    const labels = [...base, ...Object.keys(first.labels ?? {}), ...(first.by !== undefined ? [first.by.label] : [])];
    if (first.kind === 'histogram') {
      return { name, help: first.help, type: 'histogram', labels, buckets: first.buckets ?? [], histograms: (s) => decls.flatMap((d) => declHistograms(scope, d, s)) };
    }
    return { name, help: first.help, type: first.kind, labels, samples: (s) => decls.flatMap((d) => declSamples(scope, d, s)) };
  });
}

/** Metrics that are not data-plane counters: backend states, reloads, health probes. */
const OTHER_METRICS: readonly MetricDef[] = [
  {
    name: 'l4lb_backend_up',
    help: '1 when the backend is up (takes new connections), 0 when down or draining',
    type: 'gauge',
    labels: ['pool', 'backend'],
    samples: (s) => backendEntries(s, false).map(([l, b]): Sample => [l, b.state === 'up' ? 1 : 0]),
  },
  {
    name: 'l4lb_backend_state',
    help: 'The backend state: 1 for the current state (up, down, draining, removed), 0 for the others',
    type: 'gauge',
    labels: ['pool', 'backend', 'state'],
    samples: (s) => BACKEND_STATES.flatMap((state) => backendEntries(s, false).map(([l, b]): Sample => [{ ...l, state }, b.state === state ? 1 : 0])),
  },
  {
    name: 'l4lb_config_reloads_total',
    help: 'Configuration reloads, by result',
    type: 'counter',
    labels: ['result'],
    samples: (_s, src) => [
      [{ result: 'success' }, src.reloads.success],
      [{ result: 'failure' }, src.reloads.failure],
    ],
  },
  {
    name: 'l4lb_health_checks_total',
    help: 'Active health probes of a backend, by result (passive failures not included)',
    type: 'counter',
    labels: ['pool', 'backend', 'result'],
    samples: (_s, src) =>
      (src.healthChecks?.() ?? []).flatMap((c): Sample[] => [
        [{ pool: c.pool, backend: c.backend, result: 'ok' }, c.ok],
        [{ pool: c.pool, backend: c.backend, result: 'failed' }, c.failed],
      ]),
  },
];

/** Every l4lb metric: those of the counter tables, then the others. */
export const METRICS: readonly MetricDef[] = [...counterMetrics(LISTENER_COUNTERS, BACKEND_COUNTERS), ...OTHER_METRICS];

/**
 * A registry with every metric of METRICS plus prom-client's default
 * process and Node.js metrics. One snapshot is taken per scrape, shared by
 * all metrics of that scrape.
 */
export function createRegistry(src: MetricsSource, defs: readonly MetricDef[] = METRICS): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  let snap: DataPlaneSnapshot | null = null;
  const current = (): DataPlaneSnapshot => {
    // The collect() calls of one scrape run within one turn of the event
    // loop (microtasks): share one snapshot, dropped before the next turn.
    if (snap === null) {
      snap = src.snapshot();
      setImmediate(() => {
        snap = null;
      });
    }
    return snap;
  };
  for (const def of defs) {
    if (def.type === 'histogram') {
      registry.registerMetric(histogramMetric(def, current));
      continue;
    }
    const opts = { name: def.name, help: def.help, labelNames: def.labels, registers: [registry] };
    if (def.type === 'counter') {
      new Counter({
        ...opts,
        collect() {
          this.reset();
          for (const [labels, v] of def.samples(current(), src)) this.inc(labels, v);
        },
      });
    } else {
      new Gauge({
        ...opts,
        collect() {
          this.reset();
          for (const [labels, v] of def.samples(current(), src)) this.set(labels, v);
        },
      });
    }
  }
  return registry;
}

/**
 * A histogram read at scrape time from plain bucket counts: prom-client's
 * Histogram can only observe, so this object gives the registry the
 * `_bucket` (cumulative, with `le`), `_sum` and `_count` samples itself.
 */
function histogramMetric(def: HistogramDef, current: () => DataPlaneSnapshot): Metric {
  const le = [...def.buckets.map((b) => String(b)), '+Inf'];
  const metric = {
    name: def.name,
    help: def.help,
    type: 'histogram',
    aggregator: 'sum',
    labelNames: def.labels,
    get() {
      const values: { value: number; labels: Labels; metricName: string }[] = [];
      for (const [labels, h] of def.histograms(current())) {
        let acc = 0;
        le.forEach((bound, i) => {
          acc += h.counts[i] ?? 0;
          values.push({ value: acc, labels: { ...labels, le: bound }, metricName: `${def.name}_bucket` });
        });
        values.push({ value: h.sum, labels, metricName: `${def.name}_sum` });
        values.push({ value: h.count, labels, metricName: `${def.name}_count` });
      }
      return { name: def.name, help: def.help, type: 'histogram', aggregator: 'sum', values };
    },
    reset() {},
  };
  return metric as unknown as Metric;
}
