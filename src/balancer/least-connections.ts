/**
 * Least connections: the usable candidate with the fewest active connections
 * (UDP: sessions) divided by its effective weight; ties are broken at random
 * (reservoir sampling over the tied ones, so no allocation).
 */
import type { Backend } from '../backend/backend';
import { type Picker, type PickerFactory, usable } from './picker';

export class LeastConnectionsPicker implements Picker {
  private readonly backends: readonly Backend[];
  private readonly random: () => number;

  constructor(candidates: readonly Backend[], random: () => number = Math.random) {
    this.backends = candidates;
    this.random = random;
  }

  pick(_flow: unknown, exclude: readonly Backend[] | null): Backend | null {
    let best: Backend | null = null;
    let bestLoad = Infinity;
    let ties = 0;
    for (const b of this.backends) {
      if (!usable(b, exclude)) continue;
      const load = b.active / b.effectiveWeight;
      if (load < bestLoad) {
        best = b;
        bestLoad = load;
        ties = 1;
      } else if (load === bestLoad) {
        ties++;
        if (this.random() * ties < 1) best = b;
      }
    }
    return best;
  }
}

export const createLeastConnections: PickerFactory = (candidates) => new LeastConnectionsPicker(candidates);
