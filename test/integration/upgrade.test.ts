/**
 * Upgrade without cutting anything (SPEC §8.5, docs/upgrade.md), through
 * the real CLI on loopback: long-lived echo connections, bulk streams in
 * mid-transfer (sha256 both ways) and UDP sessions go on across SIGUSR2
 * with the JS pump and with the splice pump; the new process lists the same
 * connections; the old pid is gone at once.
 */
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import type net from 'node:net';
import { connect, startEchoServer, waitFor, type TestServer } from '../helpers/net';
import { listenerToml, poolToml } from '../helpers/toml';
import { sample } from '../helpers/admin';
import { BulkStream, Pinger, UpgradingL4lb, udpEchoBackend, udpPinger } from '../helpers/upgrade';
import { spliceAvailable } from '../../src/native/addon';

interface Conn {
  protocol: string;
  client: string;
}

async function connections(admin: number): Promise<Conn[]> {
  const r = await fetch(`http://127.0.0.1:${admin}/api/v1/connections?limit=10000`);
  assert.equal(r.status, 200);
  return ((await r.json()) as { connections: Conn[] }).connections;
}

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
      const lb = new UpgradingL4lb(
        `[global]\nsplice = "${splice}"\ndrain_timeout = "1s"\n[admin]\nbind = "127.0.0.1:0"\n` +
          listenerToml('tcp', 'echo') +
          `[[listeners]]\nname = "udp"\nprotocol = "udp"\nbind = "127.0.0.1:0"\npool = "uecho"\n` +
          poolToml('echo', 'round-robin', [`{ address = "127.0.0.1:${echo.port}" }`]) +
          poolToml('uecho', 'round-robin', [`{ address = "127.0.0.1:${uecho.port}" }`]),
      );
      cleanup.push(() => lb.stop());
      const port = await lb.proc.port('tcp');
      const uport = await lb.proc.port('udp');
      const admin = (await lb.log((l) => l.msg === 'admin listening')).port as number;

      // 200 long-lived connections, a few of them pinging all the time.
      const pingers: Pinger[] = [];
      const idle: net.Socket[] = [];
      for (let i = 0; i < LONG; i++) {
        const s = await connect(port);
        cleanup.push(() => void s.destroy());
        if (i < 10) pingers.push(new Pinger(s, i, 5));
        else idle.push(s);
      }
      const idleLine = async (s: net.Socket, text: string): Promise<void> => {
        const got = new Promise<string>((resolve, reject) => {
          let buf = '';
          const onData = (d: Buffer): void => {
            buf += d.toString();
            if (buf.length >= text.length) {
              s.removeListener('data', onData);
              resolve(buf);
            }
          };
          s.on('data', onData);
          s.once('close', () => reject(new Error('closed')));
        });
        s.write(text);
        assert.equal(await got, text);
      };
      await Promise.all(idle.map((s, i) => idleLine(s, `hello ${i}\n`)));
      const udp = await Promise.all(Array.from({ length: UDP_SESSIONS }, () => udpPinger(uport)));
      cleanup.push(() => udp.forEach((u) => u.close()));
      for (const [i, u] of udp.entries()) assert.equal(await u.ask(`u${i} a`), `u${i} a`);
      const udpSources = new Set(uecho.sources);

      // 20 bulk streams, each some way into its transfer.
      const bulks: BulkStream[] = [];
      for (let i = 0; i < BULK; i++) {
        const s = await connect(port);
        cleanup.push(() => void s.destroy());
        bulks.push(new BulkStream(s, 1000 + i));
      }
      await waitFor(() => bulks.every((b) => b.received > 64 * 1024), 20000, 'bulk streams under way');
      const before = await connections(admin);
      assert.equal(before.filter((c) => c.protocol === 'tcp').length, LONG + BULK);
      const metricsBefore = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();

      const oldPid = lb.pid;
      // With the JS pump the upgrade is asked for through the admin API (as `l4lb --upgrade`), which answers once it is done.
      const viaApi = async (): Promise<void> => {
        const r = await fetch(`http://127.0.0.1:${admin}/api/v1/upgrade`, { method: 'POST' });
        const text = await r.text();
        assert.equal(r.status, 200, text);
        assert.equal((JSON.parse(text) as { connections: number }).connections, LONG + BULK);
      };
      const { line, ms } = await lb.upgrade(20000, splice === 'off' ? viaApi : undefined);
      const handedAt = Date.now();
      assert.equal(line.listeners, 2);
      assert.equal(line.sessions, UDP_SESSIONS);
      await lb.waitGone(oldPid, 2000, 'old pid gone within 2 s of the handover');
      const goneMs = Date.now() - handedAt;

      // Everything goes on in the new process, unchanged, and it lists the same connections.
      const at = bulks.map((b) => b.received);
      await waitFor(() => bulks.every((b, i) => b.received > (at[i] as number) + 256 * 1024), 20000, 'bulk streams going on after the upgrade');
      // Counters go on from the old process's totals (SPEC §8.4: they never go down).
      const metricsAfter = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
      for (const [name, labels] of [
        ['l4lb_connections_total', { listener: 'tcp' }],
        ['l4lb_connections_total', { listener: 'udp' }],
        ['l4lb_bytes_total', { listener: 'tcp', direction: 'client_to_backend' }],
        ['l4lb_udp_datagrams_total', { listener: 'udp', direction: 'backend_to_client' }],
        ['l4lb_backend_connections_total', { pool: 'echo', backend: `127.0.0.1:${echo.port}` }],
      ] as const) {
        const was = sample(metricsBefore, name, labels);
        const now = sample(metricsAfter, name, labels);
        assert.ok(was !== undefined && was > 0, `${name} ${JSON.stringify(labels)} before the upgrade: ${was}`);
        assert.ok(now !== undefined && now >= was, `${name} ${JSON.stringify(labels)}: ${was} before the upgrade, ${now} after`);
      }
      const key = (c: Conn): string => `${c.protocol} ${c.client}`;
      const listed = new Set((await connections(admin)).map(key));
      for (const c of before) assert.ok(listed.has(key(c)), `${key(c)} listed by the new process`);
      for (const b of bulks) b.stop();
      const results = await Promise.all(bulks.map((b) => b.finished));
      for (const [i, r] of results.entries()) {
        assert.equal(r.error, null, `bulk ${i}: ${r.error}`);
        assert.equal(r.got, r.sent, `bulk ${i}: sha256 of the echo differs from what was sent`);
      }
      await Promise.all(idle.map((s, i) => idleLine(s, `again ${i}\n`)));
      for (const [i, u] of udp.entries()) assert.equal(await u.ask(`u${i} b`), `u${i} b`);
      // The same upstream sockets: the backend saw no new source port.
      assert.deepEqual([...uecho.sources].sort(), [...udpSources].sort());
      const maxGap = Math.max(...pingers.map((p) => p.maxGapMs));
      t.diagnostic(`ping waits: ${pingers.map((p) => `${p.maxGapMs} ms at ${p.maxGapAt - handedAt}`).join(', ')} (ms relative to handed over)`);
      for (const p of pingers) assert.equal(p.error, null);
      await Promise.all(pingers.map((p) => p.stop()));
      t.diagnostic(`splice=${splice}: upgrade ${ms} ms (request to handed over), old pid gone ${goneMs} ms after; longest ping wait ${maxGap} ms; handed over ${JSON.stringify({ listeners: line.listeners, connections: line.connections, sessions: line.sessions, left_behind: line.left_behind, duration_ms: line.duration_ms, handover_ms: line.handover_ms, max_pause_ms: line.max_pause_ms })}`);
      assert.ok(maxGap < 1000, `a pinging connection waited ${maxGap} ms`);
      assert.equal(lb.count('upgrade failed'), 0);
    });
  });
}
