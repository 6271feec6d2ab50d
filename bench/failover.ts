/**
 * Failover time of the two scale-out setups of docs/scale-out.md, measured
 * in the network-namespace lab of the tests (test/support/netns-lab.ts,
 * configs/keepalived and configs/bird as shipped). Needs root, iproute2,
 * keepalived, bird2 and curl.
 *
 *   npm run build && node dist/bench/failover.js [--runs 5]
 *
 * The client opens one connection after another (ephemeral ports, 250 ms
 * connect-and-answer timeout, 20 ms apart) across each failure; the
 * failover time is from the failure to the first successful connection
 * after the last failed one. Prints the median, min and max of the runs.
 */
import {
  ADDR,
  Lab,
  WATCH,
  birdHostConfig,
  birdRouterConfig,
  failoverOf,
  l4lbConfig,
  labUnavailable,
  median,
  startBird,
  startKeepalived,
  startWatcher,
  until,
  type Host,
} from '../test/support/netns-lab';
import type { L4lbProcess } from '../test/helpers/l4lb';

const runsArg = process.argv.indexOf('--runs');
const RUNS = runsArg > 0 ? Math.max(1, Math.min(50, Number(process.argv[runsArg + 1]) || 5)) : 5;

interface Row {
  setup: string;
  event: string;
  /** Client-seen: from the failure to the first success after the last failed connection (0 when none failed). */
  ms: number[];
  /** From the failure until the virtual IP is on the other host / the router's route lost the failed host. */
  moved: number[];
  failed: number[];
}

function fmt(r: Row): string {
  const range = (xs: number[]): string => `${Math.round(median(xs))} ms (${Math.round(Math.min(...xs))}–${Math.round(Math.max(...xs))})`;
  return `| ${r.setup} | ${r.event} | ${range(r.moved)} | ${r.event.startsWith('SIGTERM') ? '—' : range(r.ms)} | ${median(r.failed)} (${Math.min(...r.failed)}–${Math.max(...r.failed)}) |`;
}

async function vrrp(lab: Lab): Promise<Row[]> {
  const kill: Row = { setup: 'VRRP (keepalived, advert_int 0.2 s, check interval 1 s)', event: 'SIGKILL of the active l4lb', ms: [], moved: [], failed: [] };
  const drain: Row = { setup: 'VRRP (same, `shutdown_delay = "3s"`)', event: 'SIGTERM (drain) of the active l4lb', ms: [], moved: [], failed: [] };
  const cfg = l4lbConfig(`${ADDR.vrrpVip}:80`, 'shutdown_delay = "3s"');
  let lb1 = lab.l4lb('lb1', cfg);
  const lb2 = lab.l4lb('lb2', cfg);
  await lb1.port('web');
  await lb2.port('web');
  const ka = [startKeepalived(lab, 'lb1'), startKeepalived(lab, 'lb2')];
  let port = 43000;
  // lb1 (priority 150) holds the address and serves before each run.
  const lb1Serves = (): Promise<number> =>
    until('lb1 to serve the virtual IP', async () => {
      if (!(await lab.hasAddress('lb1', ADDR.vrrpVip))) return false;
      const r = await lab.batch(ADDR.vrrpVip, 80, [port++]);
      return r[0]?.ok === true && r[0].reply?.endsWith(ADDR.lb1) === true;
    }, 20_000, 100);
  for (let i = 0; i < RUNS; i++) {
    for (const row of [kill, drain]) {
      await lb1Serves();
      const loop = lab.loop(ADDR.vrrpVip, 80, 4000);
      const t0 = Date.now();
      if (row === kill) lb1.child.kill('SIGKILL');
      else lb1.signal('SIGTERM');
      const moved = await until('lb2 to hold the virtual IP', () => lab.hasAddress('lb2', ADDR.vrrpVip), 10_000, 10);
      const f = failoverOf(await loop, t0);
      row.ms.push(f.ms);
      row.moved.push(moved);
      row.failed.push(f.failures);
      process.stderr.write(`vrrp ${row === kill ? 'kill' : 'drain'} run ${i + 1}: address moved after ${moved} ms, clients failed for ${f.ms} ms, ${f.failures} failed\n`);
      await lb1.waitExit(10_000);
      lb1 = lab.l4lb('lb1', cfg);
      await lb1.port('web');
    }
  }
  for (const k of ka) k.kill('SIGTERM');
  await Promise.all(ka.map((k) => Promise.race([k.exited, new Promise((r) => setTimeout(r, 3000))])));
  await lb1.stop();
  await lb2.stop();
  return [kill, drain];
}

async function ecmp(lab: Lab): Promise<Row[]> {
  const cfg = l4lbConfig(`${ADDR.ecmpVip}:80`, 'shutdown_delay = "1s"');
  const lbs: Partial<Record<Host, L4lbProcess>> = {};
  const start = async (h: Host): Promise<void> => {
    lbs[h] = lab.l4lb(h, cfg);
    await lbs[h]!.port('web');
  };
  const both = (): Promise<number> => until('both hosts announced', async () => (await lab.nexthops(ADDR.ecmpVip)).length === 2, 20_000);
  for (const h of ['lb1', 'lb2'] as const) await lab.addLoopback(h, `${ADDR.ecmpVip}/32`);
  startBird(lab, 'rt', birdRouterConfig(lab));
  const hostConf = birdHostConfig(lab);
  for (const h of ['lb1', 'lb2'] as const) {
    startBird(lab, h, hostConf);
    await start(h);
    startWatcher(lab, h);
  }
  const timers = `watcher every ${WATCH.INTERVAL} s, fall ${WATCH.FALL}`;
  const kill: Row = { setup: `ECMP (BIRD, ${timers})`, event: 'SIGKILL of one l4lb', ms: [], moved: [], failed: [] };
  const drain: Row = { setup: `ECMP (BIRD, ${timers}, shutdown_delay 1 s)`, event: 'SIGTERM (drain) of one l4lb', ms: [], moved: [], failed: [] };
  const host: Row = { setup: 'ECMP (BIRD, BFD 3 x 100 ms)', event: 'host lost (its link goes down)', ms: [], moved: [], failed: [] };
  for (let i = 0; i < RUNS; i++) {
    await both();
    let loop = lab.loop(ADDR.ecmpVip, 80, 2500);
    let t0 = Date.now();
    lbs.lb1!.child.kill('SIGKILL');
    let moved = await until('lb1 withdrawn', async () => (await lab.nexthops(ADDR.ecmpVip)).join() === ADDR.lb2, 5000, 10);
    let f = failoverOf(await loop, t0);
    kill.ms.push(f.ms);
    kill.moved.push(moved);
    kill.failed.push(f.failures);
    process.stderr.write(`ecmp kill run ${i + 1}: route withdrawn after ${moved} ms, clients failed for ${f.ms} ms, ${f.failures} failed\n`);
    await start('lb1');

    await both();
    loop = lab.loop(ADDR.ecmpVip, 80, 2500);
    t0 = Date.now();
    lbs.lb1!.signal('SIGTERM');
    // The route is gone when the router's kernel no longer lists lb1.
    moved = await until('lb1 withdrawn', async () => (await lab.nexthops(ADDR.ecmpVip)).join() === ADDR.lb2, 5000, 10);
    f = failoverOf(await loop, t0);
    drain.ms.push(f.ms);
    drain.moved.push(moved);
    drain.failed.push(f.failures);
    process.stderr.write(`ecmp drain run ${i + 1}: route withdrawn after ${moved} ms, ${f.failures} failed\n`);
    await lbs.lb1!.waitExit(10_000);
    await start('lb1');

    await both();
    loop = lab.loop(ADDR.ecmpVip, 80, 2500);
    t0 = Date.now();
    await lab.setLink('lb2', 'down');
    moved = await until('lb2 removed', async () => (await lab.nexthops(ADDR.ecmpVip)).join() === ADDR.lb1, 5000, 10);
    f = failoverOf(await loop, t0);
    host.ms.push(f.ms);
    host.moved.push(moved);
    host.failed.push(f.failures);
    process.stderr.write(`ecmp host run ${i + 1}: route removed after ${moved} ms, clients failed for ${f.ms} ms, ${f.failures} failed\n`);
    await lab.setLink('lb2', 'up');
  }
  return [kill, drain, host];
}

async function main(): Promise<void> {
  const reason = await labUnavailable(['keepalived', 'bird', 'birdc', 'curl']);
  if (reason !== null) {
    console.error(`failover bench cannot run: ${reason}`);
    process.exit(2);
  }
  const lab = new Lab();
  const stop = (): void => {
    void lab.teardown().then(() => process.exit(130));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  try {
    await lab.up();
    await lab.startPeers();
    const rows = [...(await vrrp(lab)), ...(await ecmp(lab))];
    console.log(`\nFailover, ${RUNS} runs each (${new Date().toISOString().slice(0, 10)}):\n`);
    console.log('| setup | event | address / route moved after: median (min–max) | clients fail for: median (min–max) | failed connections: median (min–max) |');
    console.log('|---|---|---|---|---|');
    for (const r of rows) console.log(fmt(r));
    console.log('\n"clients fail for": from the event to the first successful connection after the last failed one (0 when none failed).');
  } catch (err) {
    console.error(`failover bench failed: ${(err as Error).message}\n${lab.diagnostics()}`);
    process.exitCode = 1;
  } finally {
    await lab.teardown();
  }
}

void main();
