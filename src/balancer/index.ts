/**
 * Algorithm name → picker factory. Each algorithm lives in its own file.
 */
import type { Algorithm, PoolConfig } from '../config/schema';
import type { Backend } from '../backend/backend';
import type { Picker, PickerFactory } from './picker';
import { createRoundRobin } from './round-robin';
import { createLeastConnections } from './least-connections';
import { createRandom } from './random';
import { createMaglev } from './maglev';

const FACTORIES: Record<Algorithm, PickerFactory> = {
  'consistent-hash': createMaglev,
  'least-connections': createLeastConnections,
  'round-robin': createRoundRobin,
  random: createRandom,
};

export function createPicker(algorithm: Algorithm, candidates: readonly Backend[], pool: PoolConfig): Picker {
  return FACTORIES[algorithm](candidates, pool);
}
