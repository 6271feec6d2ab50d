/**
 * systemd notifications (sd_notify) over $NOTIFY_SOCKET.
 *
 * Node has no AF_UNIX datagram sockets, and the native addon is optional, so
 * messages go through systemd's own `systemd-notify` tool (present wherever
 * systemd is), with `--pid=<our pid>` so the message names l4lb as the main
 * process. The shipped unit sets `NotifyAccess=all`, which lets systemd
 * accept a message sent by that helper process. Messages are sent in order,
 * one at a time; a failure is logged once and never stops l4lb.
 */
import { execFile } from 'node:child_process';
import type { Logger } from '../log';

export class Notifier {
  private readonly socket: string | undefined;
  private readonly log: Logger;
  private chain: Promise<void> = Promise.resolve();
  private warned = false;
  private watchdog: NodeJS.Timeout | null = null;
  /** Messages sent so far (for tests and status). */
  sent = 0;

  constructor(log: Logger, env: NodeJS.ProcessEnv = process.env) {
    this.log = log;
    this.socket = env.NOTIFY_SOCKET || undefined;
    const usec = Number(env.WATCHDOG_USEC ?? '');
    const pid = env.WATCHDOG_PID;
    if (this.socket !== undefined && Number.isFinite(usec) && usec > 0 && (pid === undefined || pid === '' || Number(pid) === process.pid)) {
      const every = Math.max(10, Math.floor(usec / 2000));
      this.watchdog = setInterval(() => void this.send('WATCHDOG=1'), every);
      this.watchdog.unref();
    }
  }

  get enabled(): boolean {
    return this.socket !== undefined;
  }

  /** Sends `KEY=VALUE` lines; resolves when delivered (or given up). */
  send(...lines: string[]): Promise<void> {
    if (this.socket === undefined) return Promise.resolve();
    const socket = this.socket;
    this.chain = this.chain.then(
      () =>
        new Promise<void>((resolve) => {
          execFile('systemd-notify', [`--pid=${process.pid}`, ...lines], { env: { ...process.env, NOTIFY_SOCKET: socket }, timeout: 5000 }, (err) => {
            if (err && !this.warned) {
              this.warned = true;
              this.log.warn({ err: err.message }, 'systemd notification failed (is systemd-notify installed?)');
            }
            if (!err) this.sent++;
            resolve();
          });
        }),
    );
    return this.chain;
  }

  ready(): Promise<void> {
    return this.send('READY=1', 'STATUS=serving');
  }

  reloading(): Promise<void> {
    const usec = process.hrtime.bigint() / 1000n; // CLOCK_MONOTONIC, as systemd wants
    return this.send('RELOADING=1', `MONOTONIC_USEC=${usec}`);
  }

  stopping(): Promise<void> {
    return this.send('STOPPING=1');
  }

  close(): void {
    if (this.watchdog !== null) clearInterval(this.watchdog);
    this.watchdog = null;
  }
}
