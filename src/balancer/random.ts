/**
 * Weighted random: draw a point in [0, total weight) over the prefix sums of
 * the candidates' effective weights (binary search). When the drawn backend
 * is not usable (excluded, no room), fall back to a weighted draw over the
 * usable ones only.
 */
import type { Backend } from '../backend/backend';
import { type Picker, type PickerFactory, usable } from './picker';

export class RandomPicker implements Picker {
  private readonly backends: readonly Backend[];
  private readonly prefix: Float64Array;
  private readonly random: () => number;

  constructor(candidates: readonly Backend[], random: () => number = Math.random) {
    this.backends = candidates;
    this.random = random;
    this.prefix = new Float64Array(candidates.length);
    let sum = 0;
    for (let i = 0; i < candidates.length; i++) {
      sum += (candidates[i] as Backend).effectiveWeight;
      this.prefix[i] = sum;
    }
  }

  pick(_flow: unknown, exclude: readonly Backend[] | null): Backend | null {
    const n = this.backends.length;
    if (n === 0) return null;
    const total = this.prefix[n - 1] as number;
    const x = this.random() * total;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((this.prefix[mid] as number) > x) hi = mid;
      else lo = mid + 1;
    }
    const b = this.backends[lo] as Backend;
    if (usable(b, exclude)) return b;
    return this.fallback(exclude);
  }

  /** Weighted draw over the usable candidates only (rare: something was excluded or full). */
  private fallback(exclude: readonly Backend[] | null): Backend | null {
    let total = 0;
    for (const b of this.backends) if (usable(b, exclude)) total += b.effectiveWeight;
    if (total === 0) return null;
    let x = this.random() * total;
    let last: Backend | null = null;
    for (const b of this.backends) {
      if (!usable(b, exclude)) continue;
      last = b;
      x -= b.effectiveWeight;
      if (x < 0) return b;
    }
    return last;
  }
}

export const createRandom: PickerFactory = (candidates) => new RandomPicker(candidates);
