/**
 * `connections rejected` log lines (SPEC §8.4): refused connections are
 * logged at `warn` without `connection_log` too, at most once a second per
 * listener and reason, with how many were refused since the last line. A
 * flood costs a counter increment per refusal, not a log line.
 */
import type { Logger } from '../log';
import type { RejectReason } from './stats';

export class RejectLog {
  private readonly pending = new Map<RejectReason, number>();
  private readonly lastAt = new Map<RejectReason, number>();

  constructor(
    private readonly log: Logger,
    private readonly listener: string,
  ) {}

  /** One more refusal for `reason`; logs when a second has passed since the last line for it. */
  note(reason: RejectReason, fields?: Record<string, unknown>): void {
    const n = (this.pending.get(reason) ?? 0) + 1;
    const now = Date.now();
    if (now - (this.lastAt.get(reason) ?? 0) < 1000) {
      this.pending.set(reason, n);
      return;
    }
    this.lastAt.set(reason, now);
    this.pending.set(reason, 0);
    this.log.warn({ listener: this.listener, reason, count: n, ...fields }, 'connections rejected');
  }
}
