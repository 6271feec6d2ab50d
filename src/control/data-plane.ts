/**
 * The one data-plane factory of the control plane: the byte pump and, with
 * `workers` > 1, the worker processes (cluster/primary.ts) or else a data
 * plane in this process (dataplane/local.ts, which workers use too).
 */
import type { Config } from '../config/schema';
import type { Logger } from '../log';
import type { DataPlaneApi } from '../dataplane/api';
import { choosePump, createLocalDataPlane } from '../dataplane/local';
import { ClusterDataPlane } from '../cluster/primary';

export interface DataPlaneHooks {
  /** Passive health input: a client connect to this backend failed. */
  onConnectFailure(pool: string, address: string, kind: 'refused' | 'timeout'): void;
  /** A listener is bound. */
  onListening(listener: string, address: string, port: number): void;
}

/** Builds the data plane for `config` and logs the `byte pump` line (and the workers). Throws ERR_L4LB_NATIVE for splice = "on" without the addon. */
export function createDataPlane(config: Config, log: Logger, hooks: DataPlaneHooks): DataPlaneApi {
  const workers = config.global.workers;
  const pump = choosePump(config.global.splice, workers);
  const engine = { tcp_engine: pump.tcpEngine.ok ? 'native' : 'off', tcp_engine_reason: pump.tcpEngine.reason };
  if (workers > 1) {
    log.info({ pump: pump.kind, reason: pump.reason, malloc_tuned: false, ...engine }, 'byte pump');
    log.info({ workers }, 'data plane in worker processes');
    return new ClusterDataPlane({ log, workers, splice: pump.kind === 'splice' ? config.global.splice : 'off', ...hooks });
  }
  const { dataPlane, mallocTuned } = createLocalDataPlane(pump, { log, ...hooks });
  log.info({ pump: pump.kind, reason: pump.reason, malloc_tuned: mallocTuned, ...engine }, 'byte pump');
  return dataPlane;
}
