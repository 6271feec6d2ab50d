/**
 * Maglev table build time and pick rate (including the flow hash).
 *   npm run build && node dist/bench/maglev.js
 */
import { buildMaglevTable, createMaglev } from '../src/balancer/maglev';
import { Backend } from '../src/backend/backend';
import type { Flow } from '../src/balancer/picker';
import type { PoolConfig } from '../src/config/schema';

const M = 65537;
const keys = (n: number): string[] => Array.from({ length: n }, (_, i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:5432`);

for (const n of [10, 100, 1000]) {
  const k = keys(n);
  const w = new Array<number>(n).fill(1);
  for (let i = 0; i < 3; i++) buildMaglevTable(k, w, M); // warm up
  const runs = 20;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < runs; i++) buildMaglevTable(k, w, M);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6 / runs;
  console.log(`build  N=${String(n).padEnd(5)} M=${M}: ${ms.toFixed(2)} ms`);
}

const backends = Array.from({ length: 100 }, (_, i) => new Backend({ host: `10.0.${i >> 8}.${i & 255}`, port: 80, family: 4 }));
const picker = createMaglev(backends, { tableSize: M, hashKey: '5-tuple', hashBalanceFactor: 0 } as PoolConfig);
for (const [label, src, dst] of [
  ['IPv4', '192.0.2.', '10.0.0.1'],
  ['IPv6', '2001:db8::', '2001:db8::1'],
] as const) {
  const flows: Flow[] = Array.from({ length: 1024 }, (_, i) => ({ protocol: 6, srcAddr: `${src}${(i % 250) + 1}`, srcPort: 1024 + i, dstAddr: dst, dstPort: 443 }));
  let sink = 0;
  const n = 5_000_000;
  for (let i = 0; i < 200_000; i++) sink += picker.pick(flows[i & 1023] as Flow, null)!.port;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) sink += picker.pick(flows[i & 1023] as Flow, null)!.port;
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(`pick   ${label} 5-tuple, 100 backends: ${(n / s / 1e6).toFixed(1)} M picks/s (${sink > 0 ? 'ok' : ''})`);
}
