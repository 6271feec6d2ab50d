/**
 * The data plane's once-a-second work: refusals are logged without
 * connection_log too — one `connections rejected` line per listener and
 * reason with the count since the last line, at most once a second (read
 * from the counters: nothing on the refusal path itself) — and, with
 * connection_log_interval, `connection progress` lines.
 */
import type { Logger } from '../log';
import type { ListenerBase, OpenConnection } from '../listener/base';

export class DataPlaneTicker {
  private timer: NodeJS.Timeout | null = null;
  private every = 0;
  private lastTick = Date.now();
  private lastRejectLog = 0;
  private progressIntervalMs = 0;
  /** Rejections already reported, per listener object and reason. */
  private readonly rejectsLogged = new WeakMap<object, Record<string, number>>();

  constructor(
    private readonly log: Logger,
    private readonly listeners: () => readonly ListenerBase<OpenConnection>[],
  ) {}

  /** (Re)starts the timer for this connection_log_interval (0: none). */
  start(progressIntervalMs: number): void {
    this.progressIntervalMs = progressIntervalMs;
    const every = progressIntervalMs > 0 ? Math.max(10, Math.min(1000, progressIntervalMs)) : 1000;
    if (this.timer !== null && every === this.every) return;
    if (this.timer !== null) clearInterval(this.timer);
    this.every = every;
    this.timer = setInterval(() => this.tick(), every);
    this.timer.unref();
  }

  /** Stops the timer after logging the last refusals. */
  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.tick();
  }

  private tick(): void {
    const now = Date.now();
    const prev = this.lastTick;
    this.lastTick = now;
    if (now - this.lastRejectLog >= 1000) {
      this.lastRejectLog = now;
      for (const l of this.listeners()) {
        let seen = this.rejectsLogged.get(l);
        if (seen === undefined) {
          seen = {};
          this.rejectsLogged.set(l, seen);
        }
        const rejected = l.stats.rejected as Record<string, number>;
        for (const reason of Object.keys(rejected)) {
          const n = rejected[reason] ?? 0;
          const before = seen[reason] ?? 0;
          if (n > before) this.log.warn({ listener: l.name, reason, count: n - before, total: n }, 'connections rejected');
          seen[reason] = n;
        }
      }
    }
    const every = this.progressIntervalMs;
    if (every > 0) for (const l of this.listeners()) l.logProgress(prev, now, every);
  }
}
