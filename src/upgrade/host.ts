/**
 * What an upgrade needs of the running server (src/server.ts implements
 * it), so that src/upgrade/ does not import the server it is called by.
 */
import type { Config } from '../config/schema';
import type { Logger } from '../log';
import type { AdminServer } from '../admin/admin';
import type { DataPlaneApi } from '../dataplane/api';
import type { HealthMonitor } from '../health/monitor';
import type { Notifier } from '../systemd/notify';
import type { PoolResolver } from '../dns/resolver';
import type { RuntimeState } from '../state/runtime-state';

export interface UpgradeHost {
  readonly log: Logger;
  readonly config: Config;
  readonly dataPlane: DataPlaneApi;
  admin: AdminServer | null;
  readonly draining: boolean;
  readonly health: HealthMonitor;
  readonly notifier: Notifier;
  readonly resolvers: ReadonlyMap<string, PoolResolver>;
  runtime: RuntimeState;
  /** Configuration reloads so far, by result. */
  readonly reloadCounts: { readonly success: number; readonly failure: number };
}
