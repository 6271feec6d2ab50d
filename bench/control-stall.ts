/**
 * How long control work stalls the data plane's event loop (issue: "Control
 * work stalls the data path"). A consistent-hash pool with a 1,000,003-entry
 * table, one backend flapping every 50 ms for --seconds, while the event
 * loop's delay is sampled (perf_hooks.monitorEventLoopDelay, 10 ms
 * resolution): once with the table built in place on every change (the old
 * behaviour), once through Pool (built on the worker thread). The delay is
 * what a new connection waits for before l4lb even sees it.
 *
 *   npm run build && node dist/bench/control-stall.js [--seconds 3]
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Pool } from '../src/backend/pool';
import { Backend } from '../src/backend/backend';
import { buildMaglevTable } from '../src/balancer/maglev';
import { parseConfig } from '../src/config/load';
import type { PoolConfig } from '../src/config/schema';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const SECONDS = arg('seconds', 3);
const M = 1_000_003;

const cfg = parseConfig(
  `[[listeners]]\nname = "a"\nbind = "127.0.0.1:0"\npool = "p"\n[pools.p]\nalgorithm = "consistent-hash"\ntable_size = ${M}\nbackends = [{ address = "10.0.0.1:1" }]\n`,
  'bench.toml',
).pools[0] as PoolConfig;
const backends = (): Backend[] =>
  Array.from({ length: 8 }, (_, i) => new Backend({ host: `10.0.0.${i + 1}`, port: 80, family: 4, name: null, weight: 1, maxConnections: 0, backup: false }));

async function run(mode: 'in-place' | 'off-thread'): Promise<{ p50: number; p99: number; max: number; flaps: number }> {
  const bs = backends();
  const pool = new Pool(cfg, bs);
  const h = monitorEventLoopDelay({ resolution: 10 });
  h.enable();
  let flaps = 0;
  const end = Date.now() + SECONDS * 1000;
  await new Promise<void>((resolve) => {
    const t = setInterval(() => {
      if (Date.now() >= end) {
        clearInterval(t);
        resolve();
        return;
      }
      const b = bs[3] as Backend;
      const next = b.state === 'up' ? 'down' : 'up';
      flaps++;
      if (mode === 'off-thread') pool.setState(b, next);
      else {
        b.state = next;
        const c = bs.filter((x) => x.state === 'up');
        buildMaglevTable(c.map((x) => x.address), c.map((x) => x.effectiveWeight), M);
      }
    }, 50);
  });
  await pool.whenBuilt();
  h.disable();
  const ms = (ns: number): number => Math.round(ns / 1e5) / 10;
  return { p50: ms(h.percentile(50)), p99: ms(h.percentile(99)), max: ms(h.max), flaps };
}

void (async () => {
  for (const mode of ['in-place', 'off-thread'] as const) {
    const r = await run(mode);
    console.log(`${mode.padEnd(10)} flaps ${r.flaps}  event-loop delay p50 ${r.p50} ms  p99 ${r.p99} ms  max ${r.max} ms`);
  }
})();
