/**
 * The process's file descriptors as a budget (SPEC §8.6): new client
 * connections and UDP sessions may use fds only while a reserve stays free
 * for what must keep working when clients flood — health probes (a probe
 * that fails for lack of an fd would mark a healthy backend down), the admin
 * endpoint, the connection to a backend of an already accepted client.
 *
 * How many are open is sampled from /proc/self/fd (Linux) — every 2 s while
 * usage is low, every 250 ms above half the limit — and between samples the
 * data plane says what it opens and closes, so the hot path costs a few
 * additions. Where the limit or the count cannot be read, the budget is
 * unlimited (the EMFILE paths still count refusals).
 */
import { readFileSync, readdirSync } from 'node:fs';

/** The soft RLIMIT_NOFILE, or Infinity when unknown or unlimited. */
export function readNofileLimit(): number {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (m === null || m[1] === 'unlimited') return Infinity;
    return Number(m[1]);
  } catch {
    return Infinity;
  }
}

/** Open fds from /proc/self/fd; -1 when unknown; Infinity when the read itself ran out of fds. */
function countOpenFds(): number {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch (err) {
    // Out of fds is the one answer this count exists for: no room at all.
    return isLocalError(err) ? Number.POSITIVE_INFINITY : -1;
  }
}

/** Errors that say this process (not a backend) ran out of something. */
export const LOCAL_ERRORS: ReadonlySet<string> = new Set(['EMFILE', 'ENFILE', 'ENOBUFS', 'ENOMEM', 'EADDRNOTAVAIL']);

/** True when a socket error is local exhaustion rather than the peer's doing. */
export function isLocalError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null | undefined)?.code;
  return code !== undefined && LOCAL_ERRORS.has(code);
}

export class FdBudget {
  /** The soft fd limit as last read (re-read at every sample: `prlimit` can change it at run time). */
  limit: number;
  /** Kept free for probes, the admin endpoint and backend connects. */
  reserve: number;
  private sampled = 0;
  private delta = 0;
  private sampledAt = Number.NEGATIVE_INFINITY;
  private readonly readLimit: () => number;
  private readonly count: () => number;

  constructor(readLimit: () => number = readNofileLimit, count: () => number = countOpenFds) {
    this.readLimit = readLimit;
    this.count = count;
    this.limit = readLimit();
    this.reserve = reserveFor(this.limit);
  }

  /** True when `n` more fds leave the reserve free. `now` in ms (Date.now()). */
  has(n: number, now: number): boolean {
    const every = this.sampled + this.delta > this.limit / 2 ? 250 : 2000;
    if (now - this.sampledAt >= every) {
      this.sampledAt = now;
      this.limit = this.readLimit();
      this.reserve = reserveFor(this.limit);
      const c = Number.isFinite(this.limit) ? this.count() : -1;
      this.sampled = c < 0 ? 0 : c;
      this.delta = 0;
      if (c < 0) this.limit = Number.POSITIVE_INFINITY;
      // Out of fds even to count them: ask again at the next call, so that
      // service resumes as soon as fds are back (a failed read costs little).
      if (c === Number.POSITIVE_INFINITY) this.sampledAt = Number.NEGATIVE_INFINITY;
    }
    if (!Number.isFinite(this.limit)) return true;
    return this.sampled + this.delta + n <= this.limit - this.reserve;
  }

  /** The data plane opened `n` fds (negative: closed). */
  add(n: number): void {
    this.delta += n;
  }
}

/** 1/16 of the limit, at least 32 and at most 1024 fds. */
function reserveFor(limit: number): number {
  return Number.isFinite(limit) ? Math.min(1024, Math.max(32, Math.floor(limit / 16))) : 0;
}

/** One budget per process. */
export const fdBudget = new FdBudget();
