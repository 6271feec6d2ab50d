/**
 * Probe scheduling with jitter. Each backend gets its own timer whose first
 * shot lands at a random phase within one interval, so the probes of many
 * backends do not fire together, and whose later shots are one interval
 * apart (from probe start to probe start) with a small jitter so phases do
 * not line up again over time. A probe never overlaps the previous one.
 *
 * Every timer is unref'd: probing never keeps the process alive.
 */

/** Fraction of the interval by which a later probe may move either way. */
export const JITTER = 0.05;

/**
 * Contract: delay before a backend's first probe, uniform in [0, interval)
 * given `rnd()` in [0, 1). interval <= 0 gives 0.
 */
export function firstDelay(intervalMs: number, rnd: () => number): number {
  if (intervalMs <= 0) return 0;
  return Math.floor(rnd() * intervalMs);
}

/**
 * Contract: delay from one probe's start to the next one's, uniform in
 * interval × [1 − JITTER, 1 + JITTER] given `rnd()` in [0, 1); never below 1 ms.
 */
export function nextDelay(intervalMs: number, rnd: () => number): number {
  const d = intervalMs * (1 + JITTER * (2 * rnd() - 1));
  return Math.max(1, Math.round(d));
}

/**
 * Runs `run` on the schedule above until `stop()`. `run` receives a `done`
 * callback to call once the probe finished; the next probe is scheduled then
 * (at the next slot after the previous start, or at once if the probe took
 * longer than that).
 */
export class ProbeTimer {
  private timer: NodeJS.Timeout | null = null;
  private stopped = true;
  private startedAt = 0;
  /** Bumped on start/stop so a `done` from an older round is ignored. */
  private round = 0;

  constructor(
    private readonly intervalMs: number,
    private readonly run: (done: () => void) => void,
    private readonly rnd: () => number = Math.random,
    private readonly now: () => number = Date.now,
  ) {}

  /** Contract: starts probing (first probe at a random phase). Idempotent while running. */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.round++;
    this.arm(firstDelay(this.intervalMs, this.rnd));
  }

  /** Contract: clears the timer; a probe in flight may still call done, which is ignored. Idempotent. */
  stop(): void {
    this.stopped = true;
    this.round++;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  get running(): boolean {
    return !this.stopped;
  }

  private arm(delay: number): void {
    const round = this.round;
    this.timer = setTimeout(() => this.fire(round), delay);
    this.timer.unref();
  }

  private fire(round: number): void {
    this.timer = null;
    if (this.stopped || round !== this.round) return;
    this.startedAt = this.now();
    let called = false;
    const done = (): void => {
      if (called || this.stopped || round !== this.round) return;
      called = true;
      const wait = this.startedAt + nextDelay(this.intervalMs, this.rnd) - this.now();
      this.arm(Math.max(0, wait));
    };
    this.run(done);
  }
}
