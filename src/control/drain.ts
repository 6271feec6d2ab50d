/**
 * The data plane's part of a graceful drain (SIGTERM): stop accepting, let
 * open connections finish for up to drain_timeout, reset the rest, stop.
 */
import type { Logger } from '../log';
import type { DataPlaneApi } from '../dataplane/api';

export async function drainDataPlane(dp: DataPlaneApi, log: Logger, drainTimeoutMs: number): Promise<void> {
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
