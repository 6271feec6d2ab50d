/**
 * Upgrade: one end of the IPC channel between the old and the new process,
 * with waits that end on the expected message, on the other side's exit or
 * disconnect, or at a deadline (never unbounded).
 */
import type { ChildProcess } from 'node:child_process';
import type { RawHandle } from './handles';

type Endpoint = ChildProcess | NodeJS.Process;

interface Waiter<M> {
  pred: (m: M) => boolean;
  resolve: (x: { msg: M; handle: RawHandle | null }) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export class Channel<In extends { t: string }, Out extends { t: string }> {
  private readonly ep: Endpoint;
  private readonly queue: { msg: In; handle: RawHandle | null }[] = [];
  private waiters: Waiter<In>[] = [];
  /** Set once the other side is gone (exit, disconnect): why. */
  closed: string | null = null;
  /** Called for each message no waiter takes (streamed messages). */
  onMessage: ((msg: In, handle: RawHandle | null) => void) | null = null;

  constructor(ep: Endpoint) {
    this.ep = ep;
    ep.on('message', this.onRaw);
    // A process that exits closes its channel first: its exit, reported
    // right after, says more than the closed channel.
    ep.on('disconnect', () => setTimeout(() => this.close('the IPC channel closed'), 200).unref());
  }

  private readonly onRaw = (msg: unknown, handle: unknown): void => {
    if (msg === null || typeof msg !== 'object' || typeof (msg as { t?: unknown }).t !== 'string') return;
    const m = msg as In;
    const h = (handle ?? null) as RawHandle | null;
    const w = this.waiters.find((x) => x.pred(m));
    if (w !== undefined) {
      this.waiters = this.waiters.filter((x) => x !== w);
      clearTimeout(w.timer);
      w.resolve({ msg: m, handle: h });
      return;
    }
    if (this.onMessage !== null) this.onMessage(m, h);
    else this.queue.push({ msg: m, handle: h });
  };

  /** Sends not yet written: Node drops their callbacks when the channel closes. */
  private readonly sending = new Set<(err: Error) => void>();

  /** The other side is gone: every wait and unfinished send fails with `why`. */
  close(why: string): void {
    if (this.closed !== null) return;
    this.closed = why;
    for (const fail of [...this.sending]) fail(new Error(why));
    this.sending.clear();
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) {
      clearTimeout(w.timer);
      w.reject(new Error(why));
    }
  }

  /** The first message (queued or to come) matching `pred`, within `timeoutMs`. */
  wait(pred: (m: In) => boolean, timeoutMs: number, what: string): Promise<{ msg: In; handle: RawHandle | null }> {
    const i = this.queue.findIndex((x) => pred(x.msg));
    if (i >= 0) return Promise.resolve(this.queue.splice(i, 1)[0] as { msg: In; handle: RawHandle | null });
    if (this.closed !== null) return Promise.reject(new Error(this.closed));
    return new Promise((resolve, reject) => {
      const w: Waiter<In> = {
        pred,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((x) => x !== w);
          reject(new Error(`no ${what} within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      this.waiters.push(w);
    });
  }

  /** Takes the messages queued so far (for a streaming handler set later). */
  drainQueue(): { msg: In; handle: RawHandle | null }[] {
    return this.queue.splice(0);
  }

  /** Sends one message (with at most one handle); resolves once written to the channel. */
  send(msg: Out, handle?: RawHandle | object | null): Promise<void> {
    if (this.closed !== null) return Promise.reject(new Error(this.closed));
    return new Promise((resolve, reject) => {
      // Until written, a send keeps the process alive and fails if the channel closes.
      const keep = setTimeout(() => undefined, 3600_000);
      const fail = (err: Error): void => {
        clearTimeout(keep);
        this.sending.delete(fail);
        reject(err);
      };
      this.sending.add(fail);
      const cb = (err: Error | null): void => {
        clearTimeout(keep);
        this.sending.delete(fail);
        if (err) reject(err);
        else resolve();
      };
      const send = this.ep.send as ((m: unknown, h: unknown, o: unknown, cb: (err: Error | null) => void) => boolean) | undefined;
      if (send === undefined) return fail(new Error('no IPC channel'));
      try {
        send.call(this.ep, msg, handle ?? undefined, {}, cb);
      } catch (err) {
        fail(err as Error);
      }
    });
  }

  detach(): void {
    this.ep.removeListener('message', this.onRaw);
  }
}
