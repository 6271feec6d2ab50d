/**
 * The health monitor (control plane): one record per (pool, backend
 * address), whatever the number of data-plane workers. It runs the active
 * probes, takes passive failures (failed client connects) from the data
 * plane, applies rise/fall hysteresis, combines health with the admin drain
 * flag into the backend's state, and pushes every state and slow-start
 * weight change to the data plane through the two callbacks it was given.
 *
 * Life: Server.start → sync(config, backends, initial) → probes … → reload →
 * sync(...) again (kept backends keep their record, new ones start probing,
 * removed ones stop) → stop() on drain.
 */
import { LOCAL_ERRORS } from '../net/fd-budget';
import type { Config } from '../config/schema';
import { formatHostPort } from '../net/address';
import { INITIAL_HEALTH, observe } from './hysteresis';
import { ProbeTimer } from './schedule';
import type { ProbeFn, ProbeHandle, ProbeResult } from './probe';
import type { BackendState } from '../backend/backend';
import { createProbe, probesOverUdp } from './checks';
import type { HealthCounter } from './hysteresis';
import { rampStep, rampWeight } from './slow-start';
import { isUdpOnlyPool, sameProbe, type CheckCount, type CheckRecord, type Failure, type HealthBackendSpec, type HealthMonitorOptions, type Target, type TransitionReason } from './monitor-types';

export { isUdpOnlyPool, sameProbe } from './monitor-types';
export type { CheckCount, CheckRecord, HealthBackendSpec, HealthMonitorOptions, TransitionReason } from './monitor-types';

/** One backend's health as an upgrade carries it to the new process. */
export interface HealthExport {
  pool: string;
  address: string;
  counter: HealthCounter;
  drain: boolean;
  stateSince: number;
  last: CheckRecord | null;
  /** Probe outcomes so far (`l4lb_health_checks_total` goes on from them). */
  checks?: { ok: number; failed: number };
}

export class HealthMonitor {
  /** Probes not judged because this process was out of fds or buffers. */
  localSkips = 0;
  private lastLocalSkipLog = 0;
  private readonly opts: HealthMonitorOptions;
  /** The injected probe, or null: each backend uses the probe of its health_check.type. */
  private readonly probeFn: ProbeFn | null;
  private readonly random: () => number;
  /** pool name → address → record. */
  private readonly pools = new Map<string, Map<string, Target>>();
  /** pool + "\n" + address → probe outcomes; kept after a backend goes (counters never go down). */
  private readonly counts = new Map<string, CheckCount>();
  private stopped = false;

  constructor(opts: HealthMonitorOptions) {
    this.opts = opts;
    this.probeFn = opts.probe ?? null;
    this.random = opts.random ?? Math.random;
  }

  /**
   * Contract: makes the records follow a configuration generation just
   * applied to the data plane with these resolved backends. Kept backends
   * keep their health, drain flag and state (the data plane kept its Backend
   * objects too); a changed probe setting restarts their probe timer. New
   * backends start `up` and are probed; unless `initial` (start-up: full
   * weight) they ramp by slow_start. Removed backends stop being probed at
   * once. Does nothing after stop().
   */
  sync(config: Config, backends: ReadonlyMap<string, readonly HealthBackendSpec[]>, initial: boolean): void {
    if (this.stopped) return;
    const seenPools = new Set<string>();
    for (const pc of config.pools) {
      seenPools.add(pc.name);
      let records = this.pools.get(pc.name);
      if (records === undefined) {
        records = new Map();
        this.pools.set(pc.name, records);
      }
      const udpOnly = isUdpOnlyPool(config, pc.name);
      const checking = pc.healthCheck.enabled;
      const probing = checking && (!udpOnly || pc.healthCheck.port !== null || probesOverUdp(pc.healthCheck));
      const wanted = new Set<string>();
      for (const spec of backends.get(pc.name) ?? []) {
        const address = formatHostPort(spec.host, spec.port);
        if (wanted.has(address)) continue; // the data plane keeps the first one too
        wanted.add(address);
        let t = records.get(address);
        if (t === undefined) {
          t = {
            pool: pc.name,
            address,
            host: spec.host,
            port: spec.port,
            family: spec.family,
            weight: spec.weight,
            slowStartMs: pc.slowStartMs,
            hc: pc.healthCheck,
            checking,
            probing,
            probeFn: null,
            last: null,
            stateSince: Date.now(),
            counter: INITIAL_HEALTH,
            drain: false,
            state: 'up',
            timer: null,
            probe: null,
            ramp: null,
            lastFailure: null,
          };
          records.set(address, t);
          if (!initial && t.slowStartMs > 0) this.startRamp(t);
          if (probing) this.startProbing(t);
          continue;
        }
        const probeChanged = t.probing !== probing || !sameProbe(t.hc, pc.healthCheck);
        t.weight = spec.weight;
        t.slowStartMs = pc.slowStartMs;
        t.hc = pc.healthCheck;
        t.checking = checking;
        t.probing = probing;
        if (probeChanged) {
          this.stopProbing(t);
          if (probing) this.startProbing(t);
          else t.last = null; // not probed any more: no last check to show
        }
        if (!checking && t.counter.health === 'down') {
          t.counter = INITIAL_HEALTH;
          this.update(t, 'health_check_disabled');
        }
        // The data plane reset the effective weight to the configured one.
        if (t.ramp !== null) {
          if (t.slowStartMs > 0) this.pushRampWeight(t);
          else this.stopRamp(t);
        }
      }
      for (const [address, t] of records) {
        if (!wanted.has(address)) {
          this.forget(t);
          records.delete(address);
        }
      }
    }
    for (const [name, records] of this.pools) {
      if (seenPools.has(name)) continue;
      for (const t of records.values()) this.forget(t);
      this.pools.delete(name);
    }
  }

  /** Upgrade (src/upgrade/): every backend's health record, for a new process to start where this one is. */
  exportStates(): HealthExport[] {
    const out: HealthExport[] = [];
    for (const records of this.pools.values())
      for (const t of records.values()) {
        const c = this.counts.get(`${t.pool}\n${t.address}`);
        out.push({ pool: t.pool, address: t.address, counter: { ...t.counter }, drain: t.drain, stateSince: t.stateSince, last: t.last, checks: { ok: c?.ok ?? 0, failed: c?.failed ?? 0 } });
      }
    return out;
  }

  /**
   * Upgrade: takes over the health a previous process exported, for the
   * backends known here. The state it gives is pushed to the data plane
   * without a `backend state changed` line: for the operator nothing changed.
   */
  importStates(list: readonly HealthExport[]): void {
    for (const x of list) {
      const t = this.pools.get(x.pool)?.get(x.address);
      if (t === undefined) continue;
      t.counter = x.counter;
      t.drain = x.drain;
      t.last = x.last;
      t.stateSince = x.stateSince;
      if (x.checks !== undefined) {
        // Counters go on from the old process's (probes here may have run already).
        const key = `${x.pool}\n${x.address}`;
        const c = this.counts.get(key) ?? { pool: x.pool, backend: x.address, ok: 0, failed: 0 };
        c.ok += x.checks.ok;
        c.failed += x.checks.failed;
        this.counts.set(key, c);
      }
      const to: BackendState = t.drain ? 'draining' : t.counter.health;
      if (to === t.state) continue;
      t.state = to;
      if (to !== 'up') this.stopRamp(t);
      this.opts.setState(t.pool, t.address, to);
    }
  }

  /**
   * Contract: passive health input from the data plane: a client connect to
   * this backend failed (refused or timed out). Counts as one failed check
   * when health checking is enabled for its pool; unknown backends (removed
   * by a reload meanwhile) are ignored.
   */
  onConnectFailure(pool: string, address: string, kind: 'refused' | 'timeout'): void {
    const t = this.pools.get(pool)?.get(address);
    if (t === undefined || !t.checking || this.stopped) return;
    this.record(t, false, { error: kind }, 'connect_failed');
  }

  /**
   * Contract: sets or clears the admin drain flag. Draining: state
   * `draining` at once (no new connections), probes go on and the health is
   * remembered; enabling: state returns to what the checks say (`up` or
   * `down`). Returns false for an unknown pool or backend.
   */
  setDrain(pool: string, address: string, drain: boolean): boolean {
    const t = this.pools.get(pool)?.get(address);
    if (t === undefined) return false;
    if (t.drain === drain) return true;
    t.drain = drain;
    this.update(t, drain ? 'admin_drain' : 'admin_enable');
    return true;
  }

  /** Contract: the health (not the state) the checks give a backend, or null if unknown. For status and tests. */
  health(pool: string, address: string): 'up' | 'down' | null {
    return this.pools.get(pool)?.get(address)?.counter.health ?? null;
  }

  /**
   * Contract: what the status API shows of a backend's checks (SPEC §8.1):
   * the last probe (null before the first) and the ISO time of its last
   * state change (start-up, or when it was added, before any). Null for an
   * unknown pool or backend.
   */
  checkStatus(pool: string, address: string): { check: CheckRecord | null; state_since: string } | null {
    const t = this.pools.get(pool)?.get(address);
    if (t === undefined) return null;
    return { check: t.last, state_since: new Date(t.stateSince).toISOString() };
  }

  /** Contract: probe outcomes per backend ever probed (for `l4lb_health_checks_total`); read at scrape time. */
  checkCounts(): readonly CheckCount[] {
    return [...this.counts.values()];
  }

  /** Contract: stops every probe timer, in-flight probe and ramp; later calls do nothing. Idempotent. */
  stop(): void {
    this.stopped = true;
    for (const records of this.pools.values()) for (const t of records.values()) this.forget(t);
    this.pools.clear();
  }

  private startProbing(t: Target): void {
    t.probeFn = this.probeFn ?? createProbe(t.hc);
    const timer = new ProbeTimer(t.hc.intervalMs, (done) => this.runProbe(t, timer, done), this.random);
    t.timer = timer;
    timer.start();
  }

  private stopProbing(t: Target): void {
    if (t.timer !== null) t.timer.stop();
    t.timer = null;
    if (t.probe !== null) t.probe.cancel();
    t.probe = null;
  }

  private forget(t: Target): void {
    this.stopProbing(t);
    this.stopRamp(t);
  }

  /** Contract: runs one probe for `t` and calls `done` after; a stale timer's probe result is dropped. */
  private runProbe(t: Target, timer: ProbeTimer, done: () => void): void {
    const target = { host: t.host, port: t.hc.port ?? t.port, family: t.family };
    let handle: ProbeHandle | null = null;
    const started = performance.now();
    const onResult = (r: ProbeResult): void => {
      if (t.probe === handle) t.probe = null;
      if (t.timer !== timer || this.stopped) return;
      if (!r.ok && r.error !== undefined && LOCAL_ERRORS.has(r.error)) {
        // Out of fds or buffers here (SPEC §8.6): that says nothing about the
        // backend, so it neither counts against it nor replaces its last check.
        this.localSkips++;
        const now = Date.now();
        if (now - this.lastLocalSkipLog >= 1000) {
          this.lastLocalSkipLog = now;
          this.opts.log.warn({ pool: t.pool, backend: t.address, error: r.error, skipped: this.localSkips }, 'health check skipped: local resources exhausted');
        }
        done();
        return;
      }
      try {
        const latency = Math.round((performance.now() - started) * 100) / 100;
        t.last = { result: r.ok ? 'ok' : 'failed', reason: r.ok ? null : r.reason, latency_ms: latency, at: new Date().toISOString() };
        this.count(t, r.ok);
        if (r.ok) this.record(t, true, null, 'probe_ok');
        else this.record(t, false, { ...(r.error !== undefined ? { error: r.error } : {}), ...(r.detail !== undefined ? { detail: r.detail } : {}) }, r.reason);
      } catch (err) {
        this.opts.log.error({ pool: t.pool, backend: t.address, err: String(err) }, 'health check update failed');
      }
      done();
    };
    try {
      handle = (t.probeFn ?? createProbe(t.hc))(target, t.hc.timeoutMs, onResult);
      t.probe = handle;
    } catch (err) {
      // A probe must never crash the process: count it as failed.
      onResult({ ok: false, reason: 'error', error: String((err as Error)?.message ?? err) });
    }
  }

  /** Contract: counts one probe outcome of `t` for the metric. */
  private count(t: Target, ok: boolean): void {
    const key = `${t.pool}\n${t.address}`;
    let c = this.counts.get(key);
    if (c === undefined) {
      c = { pool: t.pool, backend: t.address, ok: 0, failed: 0 };
      this.counts.set(key, c);
    }
    if (ok) c.ok++;
    else c.failed++;
  }

  /** Contract: feeds one check result through the hysteresis and pushes a resulting state change. */
  private record(t: Target, ok: boolean, failure: Failure | null, reason: TransitionReason): void {
    if (!ok) t.lastFailure = failure;
    const before = t.counter.health;
    t.counter = observe(t.counter, ok, t.hc.rise, t.hc.fall);
    if (t.counter.health === before) return;
    if (t.drain) {
      this.opts.log.info({ pool: t.pool, backend: t.address, health: t.counter.health, reason }, 'draining backend health changed');
      return;
    }
    this.update(t, reason);
  }

  /**
   * Contract: recomputes the state from drain flag and health; when it
   * changed, logs `backend state changed`, starts or stops the slow-start
   * ramp, and pushes the state (weight first, so the first picker that
   * includes a returning backend already sees its low weight).
   */
  private update(t: Target, reason: TransitionReason): void {
    const to: BackendState = t.drain ? 'draining' : t.counter.health;
    const from = t.state;
    if (to === from) return;
    t.state = to;
    t.stateSince = Date.now();
    const fields: Record<string, unknown> = { pool: t.pool, backend: t.address, from, to, reason };
    if (to === 'down' && t.lastFailure !== null) {
      if (t.lastFailure.error !== undefined) fields.error = t.lastFailure.error;
      if (t.lastFailure.detail !== undefined) fields.detail = t.lastFailure.detail;
    }
    this.opts.log[to === 'down' ? 'warn' : 'info'](fields, 'backend state changed');
    if (to === 'up') {
      if (t.slowStartMs > 0) this.startRamp(t);
      this.opts.setState(t.pool, t.address, to);
    } else {
      this.opts.setState(t.pool, t.address, to);
      this.stopRamp(t);
    }
  }

  /** Contract: (re)starts a slow-start ramp at its lowest weight and pushes a new weight every rampStep. */
  private startRamp(t: Target): void {
    this.stopRamp(t);
    t.ramp = { startedAt: Date.now(), timer: null };
    this.pushRampWeight(t);
  }

  /** Contract: pushes the ramp's current weight; schedules the next step, or ends the ramp at full weight. */
  private pushRampWeight(t: Target): void {
    const ramp = t.ramp;
    if (ramp === null) return;
    if (ramp.timer !== null) clearTimeout(ramp.timer);
    ramp.timer = null;
    const elapsed = Date.now() - ramp.startedAt;
    const w = rampWeight(t.weight, elapsed, t.slowStartMs);
    this.opts.setWeight(t.pool, t.address, w);
    if (w >= t.weight) {
      t.ramp = null;
      this.opts.log.info({ pool: t.pool, backend: t.address, weight: t.weight }, 'backend slow start done');
      return;
    }
    this.opts.log.debug({ pool: t.pool, backend: t.address, effective_weight: w }, 'backend slow start');
    const step = Math.min(rampStep(t.slowStartMs), Math.max(1, t.slowStartMs - elapsed));
    ramp.timer = setTimeout(() => this.pushRampWeight(t), step);
    ramp.timer.unref();
  }

  /** Contract: ends a ramp; the effective weight goes back to the configured weight. */
  private stopRamp(t: Target): void {
    const ramp = t.ramp;
    if (ramp === null) return;
    if (ramp.timer !== null) clearTimeout(ramp.timer);
    t.ramp = null;
    if (!this.stopped) this.opts.setWeight(t.pool, t.address, t.weight);
  }
}
