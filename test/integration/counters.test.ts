/**
 * Counters never go down (SPEC §8.4): not when a worker is replaced, not
 * when a reload removes a listener or a backend.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type net from 'node:net';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { startEchoServer, connect, readBytes, readAll, waitFor, deadPort, withTimeout } from '../helpers/net';
import { L4lbProcess } from '../helpers/l4lb';
import { listenerToml, poolToml } from '../helpers/toml';
import { workerPids, ownerOf } from '../helpers/cluster';

async function metricsText(admin: number): Promise<string> {
  const get = async (): Promise<string> => (await fetch(`http://127.0.0.1:${admin}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
  // Once more on a kept-alive connection the server closed at that moment ("fetch failed").
  return get().catch(get);
}

/** Every sample of every l4lb_ counter: "name{labels}" → value. */
function counters(text: string): Map<string, number> {
  const types = new Map<string, string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) types.set(m[1]!, m[2]!);
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith('l4lb_')) continue;
    const name = line.slice(0, line.search(/[{ ]/));
    if (types.get(name) !== 'counter') continue;
    const sp = line.lastIndexOf(' ');
    out.set(line.slice(0, sp), Number(line.slice(sp + 1)));
  }
  return out;
}

function value(text: string, series: string): number | undefined {
  return counters(text).get(series) ?? gauge(text, series);
}

function gauge(text: string, series: string): number | undefined {
  const l = text.split('\n').find((x) => x.startsWith(`${series} `));
  return l === undefined ? undefined : Number(l.slice(series.length + 1));
}

/** Asserts every counter series of `before` is present in `after` with a value at least as high. */
function assertNoCounterWentDown(before: Map<string, number>, after: Map<string, number>, when: string): void {
  const down: string[] = [];
  for (const [series, v] of before) {
    const w = after.get(series);
    if (w === undefined || w < v) down.push(`${series}: ${v} -> ${w ?? 'missing'}`);
  }
  assert.deepEqual(down, [], `counters went down ${when}`);
}

async function udpEcho(): Promise<dgram.Socket> {
  const be = dgram.createSocket('udp4');
  be.on('message', (m, r) => be.send(m, r.port, r.address));
  be.bind(0, '127.0.0.1');
  await once(be, 'listening');
  return be;
}

describe('counters never go down', () => {
  test('workers = 2: a worker killed with SIGKILL keeps its totals; gauges drop its share', async () => {
    const echo = await startEchoServer();
    const ube = await udpEcho();
    const dead = await deadPort();
    // A fixed UDP port: a replacement worker 0 binds the same one again (port 0 would give a new port).
    const probe = dgram.createSocket('udp4');
    probe.bind(0, '127.0.0.1');
    await once(probe, 'listening');
    const udpPort = probe.address().port;
    probe.close();
    const lb = new L4lbProcess(
      `[global]\nworkers = 2\ndrain_timeout = "1s"\n[admin]\nbind = "127.0.0.1:0"\n` +
        listenerToml('e', 'p') +
        listenerToml('f', 'gone') +
        listenerToml('d', 'p', 'deny = ["127.0.0.0/8"]') +
        `[[listeners]]\nname = "u"\nprotocol = "udp"\nbind = "127.0.0.1:${udpPort}"\npool = "up"\n` +
        poolToml('p', 'round-robin', [`{ address = "127.0.0.1:${echo.port}" }`]) +
        poolToml('gone', 'round-robin', [`{ address = "127.0.0.1:${dead}" }`], 'retries = 0') +
        poolToml('up', 'round-robin', [`{ address = "127.0.0.1:${ube.address().port}" }`]),
    );
    const open: net.Socket[] = [];
    const uc = dgram.createSocket('udp4');
    try {
      const admin = (await lb.waitForLog((l) => l.msg === 'admin listening', 10000, 'admin listening')).port as number;
      const [pe, pf, pd, pu] = [await lb.port('e'), await lb.port('f'), await lb.port('d'), await lb.port('u')];
      await waitFor(() => workerPids(lb.child.pid!).length === 2, 10000, 'two workers');
      uc.bind(0, '127.0.0.1');
      await once(uc, 'listening');

      // Traffic of every kind, on both workers: finished and open connections,
      // bytes, connect failures (no_backend), ACL rejections, UDP datagrams.
      const traffic = async (): Promise<void> => {
        await Promise.all(
          Array.from({ length: 30 }, async () => {
            const c = await connect(pe);
            c.end('0123456789');
            await readAll(c);
          }),
        );
        for (let i = 0; i < 6; i++) {
          const c = await connect(pf);
          await readAll(c, 5000, true);
          const d = await connect(pd);
          await readAll(d, 5000, true);
        }
        // Five datagrams answered (a replacement worker 0 may still be binding: resend).
        for (let i = 0; i < 5; i++) {
          for (let attempt = 0; ; attempt++) {
            uc.send(`dgram${i}`, pu, '127.0.0.1');
            const got = await withTimeout(once(uc, 'message'), 300, 'udp reply').then(
              () => true,
              () => false,
            );
            if (got) break;
            assert.ok(attempt < 30, 'no UDP reply within 30 attempts');
          }
        }
        for (let i = 0; i < 20; i++) {
          const c = await connect(pe);
          c.write('x');
          await readBytes(c, 1);
          open.push(c);
        }
      };

      let lastAfter: Map<string, number> | null = null;
      for (let round = 0; round < 2; round++) {
        await traffic();
        const pids = workerPids(lb.child.pid!);
        assert.equal(pids.length, 2);
        const owners = open.map((c) => ownerOf(c, pe, pids)).filter((o) => o !== undefined);
        // Kill each worker in turn: the one with UDP and the other.
        const victim = pids[round % 2]!;
        const survivorsOpen = owners.filter((o) => o !== victim).length;
        // Wait until the metrics show all the traffic (workers report every 250 ms).
        let before = '';
        await waitFor(
          async () => {
            before = await metricsText(admin);
            return gauge(before, 'l4lb_connections_active{listener="e"}') === owners.length && (value(before, 'l4lb_udp_datagrams_total{listener="u",direction="backend_to_client"}') ?? 0) >= 5 * (round + 1);
          },
          5000,
          'metrics show the traffic',
        );
        assert.ok((value(before, 'l4lb_backend_connect_failures_total{pool="gone",backend="127.0.0.1:' + dead + '"}') ?? 0) > 0, 'connect failures counted');
        assert.ok((value(before, 'l4lb_connections_rejected_total{listener="d",reason="acl"}') ?? 0) > 0, 'acl rejections counted');

        const exits = lb.logs.filter((l) => l.msg === 'worker exited').length;
        process.kill(victim, 'SIGKILL');
        await lb.waitForLog(() => lb.logs.filter((l) => l.msg === 'worker exited').length > exits, 5000, 'worker exited');
        await waitFor(() => workerPids(lb.child.pid!).length === 2 && !workerPids(lb.child.pid!).includes(victim), 10000, 'worker replaced');
        // The dead worker's open connections no longer count as active.
        let after = '';
        await waitFor(
          async () => {
            after = await metricsText(admin);
            return gauge(after, 'l4lb_connections_active{listener="e"}') === survivorsOpen;
          },
          5000,
          `active gauge drops to the survivor's ${survivorsOpen}`,
        );
        assertNoCounterWentDown(counters(before), counters(after), `after SIGKILL of worker ${victim}`);
        if (lastAfter !== null) assertNoCounterWentDown(lastAfter, counters(before), 'with the replacement worker serving');
        lastAfter = counters(after);
      }
    } finally {
      for (const c of open) c.destroy();
      uc.close();
      ube.close();
      await lb.stop();
      await echo.close();
    }
  });

  for (const workers of [1, 2]) {
  test(`workers = ${workers}: a listener or backend removed by a reload keeps its totals`, async () => {
    const a = await startEchoServer();
    const b = await startEchoServer();
    const cfg = (withR: boolean, backends: string[]): string =>
      `[global]\nworkers = ${workers}\n[admin]\nbind = "127.0.0.1:0"\n` + listenerToml('main', 'p') + (withR ? listenerToml('r', 'p') : '') + poolToml('p', 'round-robin', backends);
    const A = `{ address = "127.0.0.1:${a.port}" }`;
    const B = `{ address = "127.0.0.1:${b.port}" }`;
    const lb = new L4lbProcess(cfg(true, [A, B]));
    try {
      const admin = (await lb.waitForLog((l) => l.msg === 'admin listening', 10000, 'admin listening')).port as number;
      const pr = await lb.port('r');
      for (let i = 0; i < 6; i++) {
        const c = await connect(pr);
        c.end('abcd');
        await readAll(c);
      }
      const rTotal = 'l4lb_connections_total{listener="r"}';
      const rBytes = 'l4lb_bytes_total{listener="r",direction="client_to_backend"}';
      const bTotal = `l4lb_backend_connections_total{pool="p",backend="127.0.0.1:${b.port}"}`;
      let before = '';
      await waitFor(async () => value((before = await metricsText(admin)), rTotal) === 6, 5000, 'r counted');
      assert.equal(value(before, rBytes), 24);
      const bBefore = value(before, bTotal) ?? 0;
      assert.ok(bBefore > 0, 'B took connections');

      const reload = async (): Promise<void> => {
        const r = await fetch(`http://127.0.0.1:${admin}/api/v1/reload`, { method: 'POST', signal: AbortSignal.timeout(10000) });
        assert.equal(r.status, 200, await r.text());
      };
      // Remove listener r and backend B.
      lb.writeConfig(cfg(false, [A]));
      await reload();
      // Workers report every 250 ms: the totals must stay over several reports.
      let after = '';
      for (let i = 0; i < 8; i++) {
        after = await metricsText(admin);
        assert.equal(value(after, rTotal), 6, 'a removed listener keeps l4lb_connections_total');
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(value(after, rBytes), 24, 'and its bytes');
      assert.equal(value(after, bTotal), bBefore, 'a removed backend keeps its total');
      assertNoCounterWentDown(counters(before), counters(after), 'after the reload');
      const st = (await (await fetch(`http://127.0.0.1:${admin}/api/v1/status`)).json()) as { listeners: { name: string }[] };
      assert.deepEqual(
        st.listeners.map((l) => l.name),
        ['main'],
        'status lists only current listeners',
      );

      // Back again: the totals go on from where they were.
      const listenedR = lb.logs.filter((l) => l.msg === 'listening' && l.listener === 'r').length;
      lb.writeConfig(cfg(true, [A, B]));
      await reload();
      const pr2 = (await lb.waitForLog(() => lb.logs.filter((l) => l.msg === 'listening' && l.listener === 'r').length > listenedR, 5000, 'r listening again')) && (lb.logs.filter((l) => l.msg === 'listening' && l.listener === 'r').at(-1)!.port as number);
      const c = await connect(pr2);
      c.end('xy');
      await readAll(c);
      await waitFor(async () => value(await metricsText(admin), rTotal) === 7, 5000, 'r goes on from 6');
      const again = await metricsText(admin);
      assert.equal(value(again, rBytes), 26);
      assert.ok((value(again, bTotal) ?? 0) >= bBefore, 'B goes on from where it was');
      const st2 = (await (await fetch(`http://127.0.0.1:${admin}/api/v1/status`)).json()) as { pools: { backends: { address: string; total_connections: number }[] }[] };
      assert.ok((st2.pools[0]?.backends.find((x) => x.address === `127.0.0.1:${b.port}`)?.total_connections ?? 0) >= bBefore, 'status total_connections goes on too');
    } finally {
      await lb.stop();
      await a.close();
      await b.close();
    }
  });
  }
});
