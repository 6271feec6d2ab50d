/**
 * Smooth weighted round robin (nginx's algorithm, ngx_http_upstream_round_robin.c):
 * each pick adds every candidate's effective weight to its current weight,
 * takes the largest, and subtracts the total from it. Weights 5:1:1 give
 * a a b a c a a — spread out, not bursts. Usable candidates only: one that
 * is excluded or has no room sits the round out.
 */
import type { Backend } from '../backend/backend';
import { type Picker, type PickerFactory, usable } from './picker';

class RoundRobinPicker implements Picker {
  private readonly backends: readonly Backend[];
  private readonly current: Float64Array;

  constructor(candidates: readonly Backend[]) {
    this.backends = candidates;
    this.current = new Float64Array(candidates.length);
  }

  pick(_flow: unknown, exclude: readonly Backend[] | null): Backend | null {
    const bs = this.backends;
    const cur = this.current;
    let best = -1;
    let total = 0;
    for (let i = 0; i < bs.length; i++) {
      const b = bs[i] as Backend;
      if (!usable(b, exclude)) continue;
      const w = b.effectiveWeight;
      cur[i] = (cur[i] as number) + w;
      total += w;
      if (best < 0 || (cur[i] as number) > (cur[best] as number)) best = i;
    }
    if (best < 0) return null;
    cur[best] = (cur[best] as number) - total;
    return bs[best] as Backend;
  }
}

export const createRoundRobin: PickerFactory = (candidates) => new RoundRobinPicker(candidates);
