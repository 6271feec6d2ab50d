/**
 * A reload that fails to bind changes nothing (SPEC §4): pools, weights and
 * listeners stay as they were, with one process and with workers.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type net from 'node:net';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { startTaggedServer, startServer, connect, readLine, waitFor, deadPort, type TestServer } from '../helpers/net';
import { L4lbProcess } from '../helpers/l4lb';
import { listenerToml, poolToml } from '../helpers/toml';

interface Status {
  config_generation: number;
  listeners: { name: string; active_connections: number }[];
  pools: { name: string; backends: { address: string; weight: number }[] }[];
}

async function getStatus(admin: number): Promise<Status> {
  const r = await fetch(`http://127.0.0.1:${admin}/api/v1/status`, { signal: AbortSignal.timeout(5000) });
  return (await r.json()) as Status;
}

/** Opens `n` connections one after the other and counts the backends' tags. */
async function distribution(port: number, n: number): Promise<Record<string, number>> {
  const seen: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const c = await connect(port);
    try {
      const tag = await readLine(c);
      seen[tag] = (seen[tag] ?? 0) + 1;
    } finally {
      c.destroy();
    }
  }
  return seen;
}

/** Binds `port` on 127.0.0.1 and closes it again; rejects (EADDRINUSE) while something holds it. */
async function canBind(port: number): Promise<void> {
  const { createServer } = await import('node:net');
  const s = createServer();
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.listen(port, '127.0.0.1', () => resolve());
  });
  await new Promise<void>((r) => s.close(() => r()));
}

function config(a: TestServer, b: TestServer, wa: number, wb: number, extraListener = ''): string {
  return (
    `[admin]\nbind = "127.0.0.1:0"\n` +
    listenerToml('main', 'p') +
    extraListener +
    poolToml('p', 'round-robin', [`{ address = "127.0.0.1:${a.port}", weight = ${wa} }`, `{ address = "127.0.0.1:${b.port}", weight = ${wb} }`])
  );
}

for (const workers of [1, 2]) {
  describe(`reload that cannot bind, workers = ${workers}`, () => {
    test('a failed bind keeps the old weights, pools and listeners', async () => {
      const a = await startTaggedServer('A');
      const b = await startTaggedServer('B');
      // A port held by the test: the reload's new listener cannot bind it.
      const held = await startServer(() => {});
      const lb = new L4lbProcess(`[global]\nworkers = ${workers}\n` + config(a, b, 1, 1));
      try {
        const admin = (await lb.waitForLog((l) => l.msg === 'admin listening', 10000, 'admin listening')).port as number;
        const port = await lb.port('main');
        const before = await getStatus(admin);
        assert.deepEqual(
          before.pools[0]?.backends.map((x) => x.weight),
          [1, 1],
        );

        // "fresh" binds (on a free port) before "clash" fails: it must be closed again.
        const free = await deadPort();
        lb.writeConfig(
          `[global]\nworkers = ${workers}\n` +
            config(a, b, 9, 1, `[[listeners]]\nname = "fresh"\nbind = "127.0.0.1:${free}"\npool = "p"\n[[listeners]]\nname = "clash"\nbind = "127.0.0.1:${held.port}"\npool = "p"\n`),
        );
        const r = await fetch(`http://127.0.0.1:${admin}/api/v1/reload`, { method: 'POST', signal: AbortSignal.timeout(10000) });
        assert.equal(r.status, 422, await r.text());
        await lb.waitForLog((l) => l.msg === 'config reload failed', 5000, 'config reload failed');

        const after = await getStatus(admin);
        assert.equal(after.config_generation, before.config_generation);
        assert.deepEqual(
          after.pools[0]?.backends.map((x) => x.weight),
          [1, 1],
          'status weights unchanged',
        );
        assert.deepEqual(
          after.listeners.map((l) => l.name),
          ['main'],
        );
        // The listener the failed attempt had bound is closed: the test can bind its port.
        await canBind(free);
        // Equal weights: round robin alternates on each worker, so over 40
        // connections the two backends differ by at most one per worker.
        // The rejected 9:1 would give about 36:4.
        const seen = await distribution(port, 40);
        const na = seen.A ?? 0;
        const nb = seen.B ?? 0;
        assert.equal(na + nb, 40, JSON.stringify(seen));
        assert.ok(Math.abs(na - nb) <= 2 * workers, `traffic still split 1:1, got ${JSON.stringify(seen)}`);

        // The old configuration still reloads fine afterwards: a valid reload applies.
        lb.writeConfig(`[global]\nworkers = ${workers}\n` + config(a, b, 3, 1));
        const ok = await fetch(`http://127.0.0.1:${admin}/api/v1/reload`, { method: 'POST', signal: AbortSignal.timeout(10000) });
        assert.equal(ok.status, 200, await ok.text());
        const later = await getStatus(admin);
        assert.deepEqual(
          later.pools[0]?.backends.map((x) => x.weight),
          [3, 1],
        );
        const seen2 = await distribution(port, 40);
        assert.ok((seen2.A ?? 0) >= 26, `3:1 after a good reload, got ${JSON.stringify(seen2)}`);
      } finally {
        await lb.stop();
        await held.close();
        await a.close();
        await b.close();
      }
    });
  });
}

describe('reload that cannot bind on one worker only, workers = 2', () => {
  test('a UDP port in use (worker 0 only) leaves every worker in the old configuration', async () => {
    const a = await startTaggedServer('A');
    const b = await startTaggedServer('B');
    // A UDP port held by the test: only worker 0 runs UDP listeners, so only it fails.
    const held = dgram.createSocket('udp4');
    held.bind(0, '127.0.0.1');
    await once(held, 'listening');
    const lb = new L4lbProcess(`[global]\nworkers = 2\n` + config(a, b, 1, 1, listenerToml('x', 'p')));
    const conns: net.Socket[] = [];
    try {
      const admin = (await lb.waitForLog((l) => l.msg === 'admin listening', 10000, 'admin listening')).port as number;
      const port = await lb.port('main');
      const xport = await lb.port('x');
      // Connections on "x" spread over both workers.
      for (let i = 0; i < 40; i++) conns.push(await connect(xport));
      await Promise.all(conns.map((c) => readLine(c)));
      const activeX = async (): Promise<number | undefined> => {
        const st = await getStatus(admin);
        return st.listeners.find((l) => l.name === 'x')?.active_connections;
      };
      await waitFor(async () => (await activeX()) === 40, 5000, 'status shows 40 open on x');

      // The failed reload would remove "x", change the weights and add a UDP listener on the held port.
      lb.writeConfig(
        `[global]\nworkers = 2\n` + config(a, b, 9, 1, `[[listeners]]\nname = "u"\nprotocol = "udp"\nbind = "127.0.0.1:${held.address().port}"\npool = "p"\n`),
      );
      const r = await fetch(`http://127.0.0.1:${admin}/api/v1/reload`, { method: 'POST', signal: AbortSignal.timeout(10000) });
      assert.equal(r.status, 422, await r.text());
      // Workers push snapshots every 250 ms: x must stay at 40 over several pushes.
      for (let i = 0; i < 12; i++) {
        assert.equal(await activeX(), 40, 'x is still the current listener on every worker');
        await new Promise((res) => setTimeout(res, 50));
      }
      const seen = await distribution(port, 40);
      assert.ok(Math.abs((seen.A ?? 0) - (seen.B ?? 0)) <= 4, `traffic still split 1:1, got ${JSON.stringify(seen)}`);
      const c = await connect(xport);
      assert.match(await readLine(c), /^[AB]$/, 'x still accepts');
      c.destroy();
    } finally {
      for (const c of conns) c.destroy();
      held.close();
      await lb.stop();
      await a.close();
      await b.close();
    }
  });
});

describe('reload right after a worker died, workers = 2', () => {
  test('the replacement applies the old generation, then the reload: no listener is bound twice', async () => {
    const a = await startTaggedServer('A');
    const b = await startTaggedServer('B');
    // A fixed port: a worker listening twice on it would fail with EADDRINUSE.
    const fixed = await deadPort();
    const cfg = (wa: number): string =>
      `[global]\nworkers = 2\n[admin]\nbind = "127.0.0.1:0"\n[[listeners]]\nname = "main"\nbind = "127.0.0.1:${fixed}"\npool = "p"\n` +
      poolToml('p', 'round-robin', [`{ address = "127.0.0.1:${a.port}", weight = ${wa} }`, `{ address = "127.0.0.1:${b.port}", weight = 1 }`]);
    const lb = new L4lbProcess(cfg(1));
    try {
      const admin = (await lb.waitForLog((l) => l.msg === 'admin listening', 10000, 'admin listening')).port as number;
      await lb.port('main');
      const { workerPids } = await import('../helpers/cluster');
      await waitFor(() => workerPids(lb.child.pid!).length === 2, 10000, 'two workers');
      process.kill(workerPids(lb.child.pid!)[0]!, 'SIGKILL');
      await lb.waitForLog((l) => l.msg === 'worker exited', 5000, 'worker exited');
      // At once: the replacement gets its first apply and the reload's prepare together.
      lb.writeConfig(cfg(3));
      const r = await fetch(`http://127.0.0.1:${admin}/api/v1/reload`, { method: 'POST', signal: AbortSignal.timeout(10000) });
      assert.equal(r.status, 200, await r.text());
      const st = await getStatus(admin);
      assert.deepEqual(
        st.pools[0]?.backends.map((x) => x.weight),
        [3, 1],
      );
      await waitFor(() => workerPids(lb.child.pid!).length === 2, 10000, 'worker replaced');
      const seen = await distribution(fixed, 40);
      assert.equal((seen.A ?? 0) + (seen.B ?? 0), 40, JSON.stringify(seen));
    } finally {
      await lb.stop();
      await a.close();
      await b.close();
    }
  });
});
