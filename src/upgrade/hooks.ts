/**
 * Upgrade: the small pieces the Server calls (kept here so server.ts only
 * has one-line hooks).
 */
import type { UpgradeHost } from './host';
import { RuntimeState } from '../state/runtime-state';
import type { Inherited } from './protocol';

/** The new process: drains and weights set at run time come from the old process (newer than any state file). */
export function inheritRuntime(server: UpgradeHost, inherited: Inherited): void {
  const r = new RuntimeState();
  for (const e of inherited.runtime) {
    if (e.drain) r.setDrain(e.pool, e.address, true);
    if (e.weight !== null) r.setWeight(e.pool, e.address, e.weight);
  }
  server.runtime = r;
}

/**
 * The old process after a handover: exits 0 at once (after 100 ms, so an
 * admin API answer goes out). Connections that could not be handed over
 * (their peer read nothing for a second) finish here first, up to
 * drain_timeout; nothing is sent to systemd any more (the new process is
 * the service's main process now).
 */
export function leaveAfterUpgrade(server: UpgradeHost, leftBehind: number): void {
  server.notifier.close();
  server.admin?.retire();
  server.health.stop();
  for (const r of server.resolvers.values()) r.stop();
  const exit = (): void => {
    setTimeout(() => process.exit(0), 100);
  };
  if (leftBehind === 0) return exit();
  const dp = server.dataPlane;
  server.log.info({ active_connections: dp.activeConnections(), drain_timeout_ms: server.config.global.drainTimeoutMs }, 'upgrade: finishing connections not handed over');
  const timer = setTimeout(() => {
    dp.abortAll('drain_timeout');
    exit();
  }, server.config.global.drainTimeoutMs);
  void dp.whenIdle().then(() => {
    clearTimeout(timer);
    exit();
  });
}
