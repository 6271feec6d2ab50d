/**
 * Upgrade without cutting anything (SPEC §8.5, docs/upgrade.md), through
 * the real CLI on loopback: long-lived echo connections, bulk streams in
 * mid-transfer (sha256 both ways) and UDP sessions go on across SIGUSR2
 * with the JS pump and with the splice pump; the new process lists the same
 * connections; the old pid is gone at once.
 */
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startEchoServer, waitFor, type TestServer } from '../helpers/net';
import { listenerToml, poolToml } from '../helpers/toml';
import { sample } from '../helpers/admin';
import { UpgradeTraffic, UpgradingL4lb, udpEchoBackend } from '../helpers/upgrade';
import { spliceAvailable } from '../../src/native/addon';


const LONG = 200;
const BULK = 20;
const UDP_SESSIONS = 10;

for (const splice of ['off', 'on'] as const) {
  describe(`upgrade with splice = "${splice}"`, () => {
    const cleanup: (() => Promise<void> | void)[] = [];
    after(async () => {
      for (const c of cleanup.reverse()) await c();
    });

    test('connections, bulk streams and UDP sessions go on across SIGUSR2; the old pid is gone; the new one lists them', async (t) => {
      if (splice === 'on' && !spliceAvailable().ok) return t.skip(`native splice addon not available: ${spliceAvailable().reason}`);
      const echo: TestServer = await startEchoServer();
      cleanup.push(() => echo.close());
      const uecho = await udpEchoBackend();
      cleanup.push(() => uecho.close());
      const config = (interval: string): string =>
        `[global]\nsplice = "${splice}"\ndrain_timeout = "1s"\n[admin]\nbind = "127.0.0.1:0"\n` +
        listenerToml('tcp', 'echo') +
        `[[listeners]]\nname = "udp"\nprotocol = "udp"\nbind = "127.0.0.1:0"\npool = "uecho"\n` +
        poolToml('echo', 'round-robin', [`{ address = "127.0.0.1:${echo.port}" }`], '', `enabled = true\ninterval = "${interval}"`) +
        poolToml('uecho', 'round-robin', [`{ address = "127.0.0.1:${uecho.port}" }`]);
      const lb = new UpgradingL4lb(config('100ms'));
      cleanup.push(() => lb.stop());
      const port = await lb.proc.port('tcp');
      const uport = await lb.proc.port('udp');
      const admin = (await lb.log((l) => l.msg === 'admin listening')).port as number;

      // 200 long-lived connections (a few of them pinging all the time), 20 bulk streams, 10 UDP sessions.
      const traffic = await UpgradeTraffic.start({ port, uport, admin, uecho, long: LONG, bulk: BULK, udp: UDP_SESSIONS, seed: 1000, cleanup });
      // Some probes and a reload first: their counters go on too. The
      // reload sets a 1 h interval, so the new process alone counts no probe
      // (its first comes at a random point of that hour).
      const probed = { pool: 'echo', backend: `127.0.0.1:${echo.port}`, result: 'ok' };
      await waitFor(async () => (sample(await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text(), 'l4lb_health_checks_total', probed) ?? 0) >= 3, 10000, 'three probes counted');
      lb.proc.writeConfig(config('1h'));
      lb.proc.signal('SIGHUP');
      await lb.log((l) => l.msg === 'config reloaded', 10000, 'config reloaded');
      const metricsBefore = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();

      const oldPid = lb.pid;
      // With the JS pump the upgrade is asked for through the admin API (as `l4lb --upgrade`), which answers once it is done.
      const viaApi = async (): Promise<void> => {
        const r = await fetch(`http://127.0.0.1:${admin}/api/v1/upgrade`, { method: 'POST' });
        const text = await r.text();
        assert.equal(r.status, 200, text);
        assert.equal((JSON.parse(text) as { connections: number }).connections, LONG + BULK);
        // The process answering is about to exit: the client's next request goes to a new connection (the new process).
        assert.equal(r.headers.get('connection'), 'close');
      };
      const { line, ms } = await lb.upgrade(20000, splice === 'off' ? viaApi : undefined);
      const handedAt = Date.now();
      assert.equal(line.listeners, 2);
      assert.equal(line.sessions, UDP_SESSIONS);
      await lb.waitGone(oldPid, 2000, 'old pid gone within 2 s of the handover');
      const goneMs = Date.now() - handedAt;

      // Counters go on from the old process's totals (SPEC §8.4: they never go down).
      // (Asked at once: the old process closed the client's pooled admin connections when it handed over.)
      const metricsAfter = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
      for (const [name, labels] of [
        ['l4lb_connections_total', { listener: 'tcp' }],
        ['l4lb_connections_total', { listener: 'udp' }],
        ['l4lb_bytes_total', { listener: 'tcp', direction: 'client_to_backend' }],
        ['l4lb_udp_datagrams_total', { listener: 'udp', direction: 'backend_to_client' }],
        ['l4lb_backend_connections_total', { pool: 'echo', backend: `127.0.0.1:${echo.port}` }],
        ['l4lb_health_checks_total', probed],
        ['l4lb_config_reloads_total', { result: 'success' }],
      ] as const) {
        const was = sample(metricsBefore, name, labels);
        const now = sample(metricsAfter, name, labels);
        assert.ok(was !== undefined && was > 0, `${name} ${JSON.stringify(labels)} before the upgrade: ${was}`);
        assert.ok(now !== undefined && now >= was, `${name} ${JSON.stringify(labels)}: ${was} before the upgrade, ${now} after`);
      }
      // Everything goes on in the new process, unchanged, and it lists the same connections.
      const maxGap = await traffic.verify(admin);
      t.diagnostic(`ping waits: ${traffic.pingers.map((p) => `${p.maxGapMs} ms at ${p.maxGapAt - handedAt}`).join(', ')} (ms relative to handed over)`);
      t.diagnostic(`splice=${splice}: upgrade ${ms} ms (request to handed over), old pid gone ${goneMs} ms after; longest ping wait ${maxGap} ms; handed over ${JSON.stringify({ listeners: line.listeners, connections: line.connections, sessions: line.sessions, left_behind: line.left_behind, duration_ms: line.duration_ms, handover_ms: line.handover_ms, max_pause_ms: line.max_pause_ms })}`);
      assert.ok(maxGap < 1000, `a pinging connection waited ${maxGap} ms`);
      assert.equal(lb.count('upgrade failed'), 0);
    });
  });
}
