import type { Backend } from '../backend/backend';
import { type Picker, type PickerFactory, usable } from './picker';

// Placeholder until the algorithm lands: first usable candidate.
export const createLeastConnections: PickerFactory = (candidates: readonly Backend[]): Picker => ({
  pick(_flow, exclude) {
    for (const b of candidates) if (usable(b, exclude)) return b;
    return null;
  },
});
