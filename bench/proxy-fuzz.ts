/**
 * Standalone PROXY parser fuzz harness.
 * Usage: node dist/bench/proxy-fuzz.js [iterations=100000] [seed=1]
 * Runs the same seeded generator and property checks as the unit test and
 * prints iterations/s; exits 1 on the first property violation.
 */
import { runFuzz } from '../test/support/proxy-fuzz';

/** Contract: parse argv, run the fuzzer, print a one-line summary plus counts. */
function main(): void {
  const n = Number(process.argv[2] ?? 100000);
  const seed = Number(process.argv[3] ?? 1);
  if (!Number.isInteger(n) || n <= 0 || !Number.isInteger(seed)) {
    console.error('usage: node dist/bench/proxy-fuzz.js [iterations>0] [seed]');
    process.exit(64);
  }
  const t0 = process.hrtime.bigint();
  const stats = runFuzz(seed, n);
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(`proxy-fuzz: ${n} iterations (seed ${seed}) in ${secs.toFixed(2)} s = ${Math.round(n / secs)} iterations/s, ${stats.pushes} pushes`);
  console.log(JSON.stringify({ done: stats.done, needMore: stats.needMore, errors: stats.errors, maxBuffered: stats.maxBuffered }));
}

main();
