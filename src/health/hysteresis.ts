/**
 * Rise/fall hysteresis as a pure function: a backend's health changes only
 * after `fall` consecutive failed checks (up → down) or `rise` consecutive
 * successful ones (down → up). A backend that alternates faster than that
 * never changes state, so a flapping backend cannot flap the pool's picker.
 *
 * Active probes and passive failures (a client connect that failed) are both
 * checks; passive successes are not reported (a connection that works says
 * little once a probe runs anyway).
 */

export type Health = 'up' | 'down';

/** The hysteresis state of one backend. Immutable: `observe` returns a new one. */
export interface HealthCounter {
  readonly health: Health;
  /** Consecutive successful checks while down (reset by a failure). */
  readonly successes: number;
  /** Consecutive failed checks while up (reset by a success). */
  readonly failures: number;
}

/** Backends start up (SPEC §2 "Backend states"), with no check counted yet. */
export const INITIAL_HEALTH: HealthCounter = Object.freeze({ health: 'up', successes: 0, failures: 0 });

/**
 * Contract: takes the current counter, one check result and the pool's
 * rise/fall (integers >= 1; smaller values are treated as 1) and returns the
 * next counter. `health` changes only when the run of equal results reaches
 * rise (down → up) or fall (up → down); the counters restart at 0 after a
 * change. Pure: no clock, no I/O.
 */
export function observe(c: HealthCounter, ok: boolean, rise: number, fall: number): HealthCounter {
  if (c.health === 'up') {
    if (ok) return c.failures === 0 ? c : { health: 'up', successes: 0, failures: 0 };
    const failures = c.failures + 1;
    if (failures >= Math.max(1, fall)) return { health: 'down', successes: 0, failures: 0 };
    return { health: 'up', successes: 0, failures };
  }
  if (!ok) return c.successes === 0 ? c : { health: 'down', successes: 0, failures: 0 };
  const successes = c.successes + 1;
  if (successes >= Math.max(1, rise)) return { health: 'up', successes: 0, failures: 0 };
  return { health: 'down', successes, failures: 0 };
}
