/**
 * Prometheus metrics (SPEC §6), every one declared in the list below and
 * read at scrape time from a data-plane snapshot: the hot path only bumps
 * plain numbers. With several workers the snapshot is the sum over workers,
 * so nothing here knows about workers.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics, type Metric } from 'prom-client';
import { CONNECT_BUCKETS, DURATION_BUCKETS, type HistogramSnapshot } from '../dataplane/histogram';
import type { DataPlaneSnapshot } from '../dataplane/stats';
import { REJECT_REASONS } from '../dataplane/stats';

/** What the metrics read at each scrape. */
export interface MetricsSource {
  snapshot(): DataPlaneSnapshot;
  reloads: { success: number; failure: number };
  /** Active probe outcomes per backend (the health monitor runs in the primary, so no worker sum). */
  healthChecks?(): readonly { pool: string; backend: string; ok: number; failed: number }[];
}

type Labels = Record<string, string>;
type Sample = [Labels, number];

interface ScalarDef {
  name: string;
  help: string;
  type: 'counter' | 'gauge';
  labels: string[];
  samples(s: DataPlaneSnapshot, src: MetricsSource): Sample[];
}

/** A histogram kept as plain bucket counts in the data plane (src/dataplane/histogram.ts). */
interface HistogramDef {
  name: string;
  help: string;
  type: 'histogram';
  labels: string[];
  buckets: readonly number[];
  histograms(s: DataPlaneSnapshot): [Labels, HistogramSnapshot][];
}

type MetricDef = ScalarDef | HistogramDef;

const BACKEND_STATES = ['up', 'down', 'draining', 'removed'] as const;

/**
 * Listeners by name, summed: a listener removed by a reload may still be
 * finishing connections while a new one of the same name runs.
 */
function perListener(s: DataPlaneSnapshot, f: (l: DataPlaneSnapshot['listeners'][number]) => number): Map<string, number> {
  const m = new Map<string, number>();
  for (const l of s.listeners) m.set(l.name, (m.get(l.name) ?? 0) + f(l));
  return m;
}

function listenerSamples(s: DataPlaneSnapshot, f: (l: DataPlaneSnapshot['listeners'][number]) => number, extra: Labels = {}): Sample[] {
  return [...perListener(s, f)].map(([listener, v]) => [{ listener, ...extra }, v]);
}

function backendSamples(s: DataPlaneSnapshot, f: (b: DataPlaneSnapshot['pools'][number]['backends'][number]) => number): Sample[] {
  const out: Sample[] = [];
  for (const p of s.pools) for (const b of p.backends) out.push([{ pool: p.name, backend: b.address }, f(b)]);
  return out;
}

/** For counters: the current backends plus the totals of retired ones (counters never go down). */
function backendCounterSamples(s: DataPlaneSnapshot, f: (b: DataPlaneSnapshot['pools'][number]['backends'][number]) => number): Sample[] {
  const out = backendSamples(s, f);
  for (const b of s.retired_backends ?? []) out.push([{ pool: b.pool, backend: b.address }, f(b)]);
  return out;
}

const TCP_ONLY = (l: DataPlaneSnapshot['listeners'][number]): boolean => l.protocol === 'tcp';

/** Every l4lb metric, in one list. */
export const METRICS: readonly MetricDef[] = [
  {
    name: 'l4lb_connections_total',
    help: 'Client connections accepted (UDP: sessions created), by listener',
    type: 'counter',
    labels: ['listener'],
    samples: (s) => listenerSamples(s, (l) => l.connections_total),
  },
  {
    name: 'l4lb_connections_active',
    help: 'Client connections open now (UDP: sessions), by listener',
    type: 'gauge',
    labels: ['listener'],
    samples: (s) => listenerSamples(s, (l) => l.active_connections),
  },
  {
    name: 'l4lb_connections_rejected_total',
    help: 'Client connections (UDP: datagrams of new clients) refused, by listener and reason',
    type: 'counter',
    labels: ['listener', 'reason'],
    samples: (s) => REJECT_REASONS.flatMap((reason) => listenerSamples(s, (l) => l.rejected[reason], { reason })),
  },
  {
    name: 'l4lb_bytes_total',
    help: 'Bytes carried, by listener and direction (open connections included, at most 5 s behind)',
    type: 'counter',
    labels: ['listener', 'direction'],
    samples: (s) => [
      ...listenerSamples(s, (l) => l.bytes_in, { direction: 'client_to_backend' }),
      ...listenerSamples(s, (l) => l.bytes_out, { direction: 'backend_to_client' }),
    ],
  },
  {
    name: 'l4lb_backend_connections_total',
    help: 'Connections (UDP: sessions) sent to a backend',
    type: 'counter',
    labels: ['pool', 'backend'],
    samples: (s) => backendCounterSamples(s, (b) => b.total_connections),
  },
  {
    name: 'l4lb_backend_connections_active',
    help: 'Connections (UDP: sessions) open to a backend now',
    type: 'gauge',
    labels: ['pool', 'backend'],
    samples: (s) => backendSamples(s, (b) => b.active_connections),
  },
  {
    name: 'l4lb_backend_connect_failures_total',
    help: 'Client connects to a backend that failed or timed out (health probes not included)',
    type: 'counter',
    labels: ['pool', 'backend'],
    samples: (s) => backendCounterSamples(s, (b) => b.connect_failures),
  },
  {
    name: 'l4lb_backend_up',
    help: '1 when the backend is up (takes new connections), 0 when down or draining',
    type: 'gauge',
    labels: ['pool', 'backend'],
    samples: (s) => backendSamples(s, (b) => (b.state === 'up' ? 1 : 0)),
  },
  {
    name: 'l4lb_udp_sessions_active',
    help: 'UDP sessions open now, by listener',
    type: 'gauge',
    labels: ['listener'],
    samples: (s) => listenerSamples({ ...s, listeners: s.listeners.filter((l) => !TCP_ONLY(l)) }, (l) => l.udp_sessions_active),
  },
  {
    name: 'l4lb_udp_datagrams_total',
    help: 'UDP datagrams forwarded, by listener and direction',
    type: 'counter',
    labels: ['listener', 'direction'],
    samples: (s) => {
      const udp = { ...s, listeners: s.listeners.filter((l) => !TCP_ONLY(l)) };
      return [
        ...listenerSamples(udp, (l) => l.datagrams_in, { direction: 'client_to_backend' }),
        ...listenerSamples(udp, (l) => l.datagrams_out, { direction: 'backend_to_client' }),
      ];
    },
  },
  {
    name: 'l4lb_backend_state',
    help: 'The backend state: 1 for the current state (up, down, draining, removed), 0 for the others',
    type: 'gauge',
    labels: ['pool', 'backend', 'state'],
    samples: (s) => BACKEND_STATES.flatMap((state) => backendSamples(s, (b) => (b.state === state ? 1 : 0)).map(([l, v]): Sample => [{ ...l, state }, v])),
  },
  {
    name: 'l4lb_backend_bytes_total',
    help: 'Bytes carried to and from a backend, by direction (open connections included)',
    type: 'counter',
    labels: ['pool', 'backend', 'direction'],
    samples: (s) => [
      ...backendCounterSamples(s, (b) => b.bytes_in).map(([l, v]): Sample => [{ ...l, direction: 'client_to_backend' }, v]),
      ...backendCounterSamples(s, (b) => b.bytes_out).map(([l, v]): Sample => [{ ...l, direction: 'backend_to_client' }, v]),
    ],
  },
  {
    name: 'l4lb_backend_connect_duration_seconds',
    help: 'Time to establish a TCP connection to the backend (successful attempts)',
    type: 'histogram',
    labels: ['pool', 'backend'],
    buckets: CONNECT_BUCKETS,
    // Retired backends keep their observations too (a histogram's buckets are counters).
    histograms: (s) => [
      ...s.pools.flatMap((p) => p.backends.map((b): [Labels, HistogramSnapshot] => [{ pool: p.name, backend: b.address }, b.connect_time])),
      ...(s.retired_backends ?? []).map((b): [Labels, HistogramSnapshot] => [{ pool: b.pool, backend: b.address }, b.connect_time]),
    ],
  },
  {
    name: 'l4lb_connection_duration_seconds',
    help: 'Duration of finished client connections (UDP: sessions) that reached a backend, by listener',
    type: 'histogram',
    labels: ['listener'],
    buckets: DURATION_BUCKETS,
    histograms: (s) => {
      const m = new Map<string, HistogramSnapshot>();
      for (const l of s.listeners) {
        const cur = m.get(l.name);
        if (cur === undefined) m.set(l.name, { counts: [...l.duration.counts], sum: l.duration.sum, count: l.duration.count });
        else {
          l.duration.counts.forEach((c, i) => (cur.counts[i] = (cur.counts[i] ?? 0) + c));
          cur.sum += l.duration.sum;
          cur.count += l.duration.count;
        }
      }
      return [...m].map(([listener, h]): [Labels, HistogramSnapshot] => [{ listener }, h]);
    },
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

/**
 * A registry with every metric of METRICS plus prom-client's default
 * process and Node.js metrics. One snapshot is taken per scrape, shared by
 * all metrics of that scrape.
 */
export function createRegistry(src: MetricsSource): Registry {
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
  for (const def of METRICS) {
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
