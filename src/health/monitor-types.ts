/**
 * What the health monitor (src/health/monitor.ts) keeps and tells: its
 * options, the record per (pool, backend address), the last check and the
 * probe counts, and which configuration changes need a new probe.
 */
import type { Config, HealthCheckConfig } from '../config/schema';
import type { BackendState } from '../backend/backend';
import type { Logger } from '../log';
import type { HealthCounter } from './hysteresis';
import type { ProbeTimer } from './schedule';
import type { FailReason, ProbeFn, ProbeHandle } from './probe';

/** What the monitor needs to know of one resolved backend (a BackendSpec fits). */
export interface HealthBackendSpec {
  host: string;
  port: number;
  family: 4 | 6;
  weight: number;
}

export interface HealthMonitorOptions {
  log: Logger;
  /** Pushes a state to the data plane (DataPlane.setBackendState). */
  setState(pool: string, address: string, state: BackendState): void;
  /** Pushes an effective weight to the data plane (slow start). */
  setWeight(pool: string, address: string, effectiveWeight: number): void;
  /** The probe for every backend (tests inject one); default: the one `health_check.type` names. */
  probe?: ProbeFn;
  /** Random source for probe jitter; tests may seed one. */
  random?: () => number;
}

/** Why a state changed: the `reason` field of `backend state changed`. */
export type TransitionReason = FailReason | 'connect_failed' | 'probe_ok' | 'admin_drain' | 'admin_enable' | 'health_check_disabled';

/** The last probe of a backend, as the status API shows it (SPEC §8.1 `check`). */
export interface CheckRecord {
  readonly result: 'ok' | 'failed';
  /** null when ok. */
  readonly reason: FailReason | null;
  readonly latency_ms: number;
  /** ISO time the probe finished. */
  readonly at: string;
}

/** Probe outcomes of one backend so far (`l4lb_health_checks_total`). */
export interface CheckCount {
  readonly pool: string;
  readonly backend: string;
  ok: number;
  failed: number;
}

/** What a failed check left for the transition log: the errno code and what was seen. */
export interface Failure {
  error?: string;
  detail?: string;
}

export interface Target {
  readonly pool: string;
  readonly address: string;
  host: string;
  port: number;
  family: 4 | 6;
  weight: number;
  slowStartMs: number;
  hc: HealthCheckConfig;
  /** Health checking counts at all (enabled); passive failures count only then. */
  checking: boolean;
  /** Active probes run (enabled, and for UDP-only pools a port or a UDP probe). */
  probing: boolean;
  /** The probe for `hc`, built when probing starts. */
  probeFn: ProbeFn | null;
  /** The last probe's outcome; null before the first. */
  last: CheckRecord | null;
  /** Date.now() of the last state change (or of the record's creation). */
  stateSince: number;
  counter: HealthCounter;
  drain: boolean;
  /** The state last pushed to the data plane. */
  state: BackendState;
  timer: ProbeTimer | null;
  probe: ProbeHandle | null;
  ramp: { startedAt: number; timer: NodeJS.Timeout | null } | null;
  /** Last check failure, for the transition log. */
  lastFailure: Failure | null;
}

/** A pool is UDP-only when listeners use it and all of them are UDP (SPEC §2: probe only with a port). */
export function isUdpOnlyPool(config: Config, pool: string): boolean {
  const users = config.listeners.filter((l) => l.pool === pool || (l.routes ?? []).some((r) => r.pool === pool));
  return users.length > 0 && users.every((l) => l.protocol === 'udp');
}

/** Contract: true when two health checks probe the same way (rise / fall may differ: they need no new probe). */
export function sameProbe(a: HealthCheckConfig, b: HealthCheckConfig): boolean {
  const probeOf = ({ rise: _r, fall: _f, ...rest }: HealthCheckConfig): string => JSON.stringify(rest);
  return probeOf(a) === probeOf(b);
}
