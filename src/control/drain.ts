/**
 * Graceful drain (SIGTERM): after shutdown_delay (listeners still accept,
 * /healthz already answers 503, so keepalived / BGP in front can move the
 * traffic away first) the control plane stops, the data plane stops
 * accepting and lets open connections finish for up to drain_timeout,
 * then resets the rest; the admin endpoint closes last.
 */
import type { Config } from '../config/schema';
import type { Logger } from '../log';
import type { DataPlaneApi } from '../dataplane/api';
import type { AdminServer } from '../admin/admin';
import type { Notifier } from '../systemd/notify';

export interface DrainParts {
  readonly log: Logger;
  readonly dataPlane: DataPlaneApi;
  readonly notifier: Notifier;
  /** The configuration in effect (shutdown_delay, drain_timeout). */
  config(): Config;
  /** The admin endpoint in effect. */
  admin(): AdminServer | null;
  /** Stops the control plane's timers (health, DNS, watchdog). */
  stopControlPlane(): void;
}

/** The whole drain, once; the caller makes it idempotent and answers 503 meanwhile. */
export async function drainProcess(p: DrainParts): Promise<void> {
  const delay = p.config().global.shutdownDelayMs;
  if (delay > 0) {
    p.log.info({ shutdown_delay_ms: delay }, 'shutdown delay');
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
  p.stopControlPlane();
  await drainDataPlane(p.dataPlane, p.log, p.config().global.drainTimeoutMs);
  const admin = p.admin();
  if (admin !== null) await admin.close();
  await p.notifier.send(); // let queued notifications go out
  p.log.info('stopped');
}

/** The data plane's part: stop accepting, let open connections finish for up to drain_timeout, reset the rest, stop. */
async function drainDataPlane(dp: DataPlaneApi, log: Logger, drainTimeoutMs: number): Promise<void> {
  await dp.stopAccepting();
  log.info({ active_connections: dp.activeConnections(), drain_timeout_ms: drainTimeoutMs }, 'draining');
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), drainTimeoutMs);
  });
  const outcome = await Promise.race([dp.whenIdle().then(() => 'idle' as const), deadline]);
  clearTimeout(timer);
  if (outcome === 'timeout') {
    log.warn({ active_connections: dp.activeConnections() }, 'drain timeout: closing open connections');
    dp.abortAll('drain_timeout');
    await dp.whenIdle();
  }
  await dp.dispose();
}
