/**
 * slow_start as pure functions: a backend that becomes `up` after being
 * down, draining or absent ramps its effective weight linearly from near
 * zero to its configured weight over `slow_start`. The control plane pushes
 * the ramp in steps (every `rampStep`) because each push rebuilds the pool's
 * picker (a Maglev table for consistent-hash).
 */

/** The smallest effective weight during a ramp: pickers divide by it, so it must stay > 0. */
export const MIN_EFFECTIVE_WEIGHT = 1e-3;

/** Fraction of the weight a ramp starts from. */
export const RAMP_START_FRACTION = 0.01;

/** Minimum time between two weight pushes of one ramp. */
export const MIN_RAMP_STEP_MS = 100;

/**
 * Contract: the effective weight `elapsedMs` into a ramp of `slowStartMs`
 * for configured `weight` (> 0): linear from max(1% of weight, 1e-3) at 0 to
 * `weight` at slowStartMs and after; slowStartMs <= 0 gives `weight`. Always > 0.
 */
export function rampWeight(weight: number, elapsedMs: number, slowStartMs: number): number {
  if (slowStartMs <= 0 || elapsedMs >= slowStartMs) return weight;
  const floor = Math.max(weight * RAMP_START_FRACTION, MIN_EFFECTIVE_WEIGHT);
  const w = (weight * Math.max(0, elapsedMs)) / slowStartMs;
  return Math.min(weight, Math.max(floor, w));
}

/** Contract: time between weight pushes of a ramp: max(slow_start / 10, 100 ms). */
export function rampStep(slowStartMs: number): number {
  return Math.max(slowStartMs / 10, MIN_RAMP_STEP_MS);
}
