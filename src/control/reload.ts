/**
 * The reload sequence (SIGHUP, admin API): read and validate the file off
 * the main thread, plan the change (config/diff.ts), resolve the pools,
 * apply the plan to the data plane in two phases (a bind failure changes
 * nothing), sync health checks, then hand the new configuration to the
 * server (commit) and report what changed. Reloads and upgrades are
 * serialised: one runs at a time, in the order asked.
 */
import type { Config } from '../config/schema';
import { loadConfigFileOffThread } from '../config/load-off-thread';
import { planReload } from '../config/diff';
import { ConfigError, formatConfigIssue } from '../errors';
import type { Logger } from '../log';
import type { DataPlaneApi, ListenerBinding } from '../dataplane/api';
import type { HealthMonitor } from '../health/monitor';
import type { Notifier } from '../systemd/notify';
import type { PoolResolver } from '../dns/resolver';
import type { PoolMembership } from './pools';
import { bindError } from './bind-error';
import { describeReload } from './reload-report';

export type ReloadResult = { ok: true; generation: number } | { ok: false; errors: string[] };

export interface ReloadDeps {
  readonly log: Logger;
  readonly configPath: string;
  readonly dataPlane: DataPlaneApi;
  readonly membership: PoolMembership;
  readonly health: HealthMonitor;
  readonly notifier: Notifier;
  /** The configuration in effect. */
  config(): Config;
  /** True once the process drains: a reload is refused. */
  draining(): boolean;
  /**
   * `next` is applied (data plane, pools, checks): it becomes the
   * configuration in effect and the rest of the control plane follows it.
   * Resolves with its generation.
   */
  commit(next: Config, bindings: ListenerBinding[]): Promise<number>;
}

export class Reloader {
  /** Outcomes so far (`l4lb_config_reloads_total`, read at scrape time). */
  readonly counts = { success: 0, failure: 0 };
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly deps: ReloadDeps) {}

  /** Runs `job` once every reload or upgrade asked for before it has finished. */
  serialise<T>(job: () => Promise<T>): Promise<T> {
    const p = this.chain.then(job, job);
    this.chain = p;
    return p;
  }

  /**
   * Invalid file: logs every error, counts a failure and changes nothing.
   * Valid: applies it as one new generation.
   */
  reload(): Promise<ReloadResult> {
    return this.serialise(() => this.run());
  }

  private async run(): Promise<ReloadResult> {
    const { deps } = this;
    if (deps.draining()) return this.failed(['draining: reload refused (the process is shutting down)']);
    let next: Config;
    try {
      // A large file is validated on a worker thread (SPEC §8.6).
      next = await loadConfigFileOffThread(deps.configPath);
    } catch (err) {
      const errors = err instanceof ConfigError ? err.issues.map(formatConfigIssue) : [String((err as Error).message ?? err)];
      return this.failed(errors);
    }
    const prev = deps.config();
    const plan = planReload(prev, next);
    const { membership, dataPlane } = deps;
    membership.reloading = true;
    void deps.notifier.reloading();
    const before = dataPlane.snapshot();
    let resolvers: Map<string, PoolResolver> | null = null;
    let bindings: ListenerBinding[];
    try {
      const resolved = await membership.resolveAll(next, plan.poolsChanged);
      resolvers = resolved.resolvers;
      bindings = await dataPlane.apply(next, resolved.backends);
      deps.health.sync(next, resolved.backends, false);
    } catch (err) {
      membership.reloading = false;
      membership.discard(resolvers);
      void deps.notifier.ready();
      return this.failed([bindError(err).message]);
    }
    membership.reloading = false;
    membership.install(resolvers);
    this.counts.success++;
    const generation = await deps.commit(next, bindings);
    const { changes, restartRequired } = describeReload(plan, prev, next, before, dataPlane.snapshot());
    membership.logRemovedBackends(before, 'config_reload');
    membership.checkPools();
    deps.log.info({ config_generation: generation, changes, restart_required: restartRequired }, 'config reloaded');
    if (restartRequired.length > 0) deps.log.warn({ restart_required: restartRequired }, 'restart required');
    void deps.notifier.ready();
    return { ok: true, generation };
  }

  private failed(errors: string[]): ReloadResult {
    this.counts.failure++;
    this.deps.log.error({ errors }, 'config reload failed');
    return { ok: false, errors };
  }
}
