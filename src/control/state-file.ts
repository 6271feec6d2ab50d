/**
 * `state_file`: drain and weight set through the admin API, kept across
 * restarts (src/state/runtime-state.ts holds the format).
 */
import type { Config } from '../config/schema';
import type { Logger } from '../log';
import { RuntimeState, stateFilePath } from '../state/runtime-state';

/** Reads `state_file` (start); an unreadable file is logged at warn and ignored. Empty state without one. */
export function readStateFile(config: Config, log: Logger): RuntimeState {
  const file = config.global.stateFile;
  if (file === null) return new RuntimeState();
  const path = stateFilePath(config.file, file);
  const { state, error } = RuntimeState.read(path);
  if (error !== null) log.warn({ state_file: path, err: error }, 'state file ignored');
  else log.info({ state_file: path, backends: state.all().length }, 'state file read');
  return state;
}

/** Rewrites `state_file` (atomically) after a runtime change; a failure is logged, the change stays in effect. */
export function writeStateFile(config: Config, runtime: RuntimeState, log: Logger): void {
  const file = config.global.stateFile;
  if (file === null) return;
  const path = stateFilePath(config.file, file);
  try {
    runtime.write(path);
  } catch (err) {
    log.error({ state_file: path, err: (err as Error).message }, 'state file write failed');
  }
}
