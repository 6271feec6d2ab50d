/**
 * Upgrade (SPEC §8.5, docs/upgrade.md) with UDP on the native engine: the
 * engine's sessions move to the new process's engine with their upstream
 * sockets (the backend sees the same source port), keep exchanging
 * datagrams while they move and carry their byte counts; a new process that
 * dies half-way leaves the sessions it had not acknowledged to the old one.
 */
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { waitFor, withTimeout } from '../helpers/net';
import { poolToml } from '../helpers/toml';
import { UpgradingL4lb, alive } from '../helpers/upgrade';
import { spliceAvailable } from '../../src/native/addon';

/** A UDP backend answering `<datagram>|<source port it came from>`. */
async function portEcho(): Promise<{ port: number; close(): void }> {
  const s = dgram.createSocket('udp4');
  s.on('message', (m, r) => s.send(`${m.toString()}|${r.port}`, r.port, r.address));
  s.bind(0, '127.0.0.1');
  await once(s, 'listening');
  return { port: s.address().port, close: () => s.close() };
}

/** One client (one session): ask() sends a datagram and resolves with the echo's text and the backend-side source port. */
async function client(port: number): Promise<{ ask(msg: string): Promise<number>; sent: number; got: number; local: string; close(): void }> {
  const s = dgram.createSocket('udp4');
  s.bind(0, '127.0.0.1');
  await once(s, 'listening');
  const waiting: ((b: string) => void)[] = [];
  s.on('message', (m) => waiting.shift()?.(m.toString()));
  const c = {
    local: `127.0.0.1:${s.address().port}`,
    sent: 0,
    got: 0,
    async ask(msg: string): Promise<number> {
      const reply = await withTimeout(
        new Promise<string>((resolve) => {
          waiting.push(resolve);
          s.send(msg, port, '127.0.0.1');
          c.sent += Buffer.byteLength(msg);
        }),
        3000,
        `udp echo of ${msg}`,
      );
      c.got += Buffer.byteLength(reply);
      const bar = reply.lastIndexOf('|');
      assert.equal(reply.slice(0, bar), msg);
      return Number(reply.slice(bar + 1));
    },
    close: () => s.close(),
  };
  return c;
}

/** Clients asking without a pause (the next datagram as soon as the echo is back), until stop(). */
function streaming(clients: Awaited<ReturnType<typeof client>>[]): { ports: Set<number>[]; counts: number[]; maxGap(): number; stop(): Promise<void> } {
  const ports: Set<number>[] = clients.map(() => new Set());
  const counts = clients.map(() => 0);
  let gap = 0;
  let stopped = false;
  const loops = clients.map(async (c, i) => {
    let last = Date.now();
    for (let seq = 0; !stopped && seq < 100_000; seq++) {
      ports[i]?.add(await c.ask(`c${i} ${seq}`));
      counts[i] = seq + 1;
      const now = Date.now();
      gap = Math.max(gap, now - last);
      last = now;
    }
  });
  const all = Promise.all(loops);
  all.catch(() => undefined); // awaited by stop()
  return {
    ports,
    counts,
    maxGap: () => gap,
    stop: async () => {
      stopped = true;
      await all;
    },
  };
}

function config(backend: number, idle = '30s', splice = 'on'): string {
  return (
    `[global]\nsplice = "${splice}"\nconnection_log = true\ndrain_timeout = "1s"\n[admin]\nbind = "127.0.0.1:0"\n` +
    `[[listeners]]\nname = "udp"\nprotocol = "udp"\nbind = "127.0.0.1:0"\npool = "u"\nidle_timeout = "${idle}"\n` +
    poolToml('u', 'round-robin', [`{ address = "127.0.0.1:${backend}" }`])
  );
}

describe('upgrade with UDP on the native engine', () => {
  const cleanup: (() => Promise<void> | void)[] = [];
  after(async () => {
    for (const c of cleanup.reverse()) await c();
  });

  test('engine sessions exchange datagrams without a pause through SIGUSR2: same backend source port, none lost, byte counts carried', async (t) => {
    if (!spliceAvailable().ok) return t.skip(`native addon not available: ${spliceAvailable().reason}`);
    const backend = await portEcho();
    cleanup.push(() => backend.close());
    const lb = new UpgradingL4lb(config(backend.port, '2s'));
    cleanup.push(() => lb.stop());
    const uport = await lb.proc.port('udp');
    const admin = (await lb.log((l) => l.msg === 'admin listening')).port as number;

    // 4 clients, each asking without a pause.
    const N = 4;
    const clients = await Promise.all(Array.from({ length: N }, () => client(uport)));
    cleanup.push(() => clients.forEach((c) => c.close()));
    const st = streaming(clients);
    const counts = st.counts;
    let handoverMs = 0;
    try {
      await waitFor(() => counts.every((n) => n >= 20), 10000, 'every client under way');
      const oldPid = lb.pid;
      const { line } = await lb.upgrade(20000);
      handoverMs = line.handover_ms as number;
      assert.equal(line.listeners, 1);
      assert.equal(line.sessions, N);
      assert.equal(line.left_behind, 0);
      const at = [...counts];
      await waitFor(() => counts.every((n, i) => n >= (at[i] as number) + 50), 10000, 'every client going on after the upgrade');
      await lb.waitGone(oldPid, 3000, 'old pid gone');
      await waitFor(() => counts.every((n, i) => n >= (at[i] as number) + 100), 10000, 'every client going on after the old process left');
    } finally {
      await st.stop();
    }
    const ports = st.ports;
    const maxGap = st.maxGap();
    // The same upstream socket all along: one backend-side source port per client, four different ones.
    for (const [i, p] of ports.entries()) assert.equal(p.size, 1, `client ${i} reached the backend from ${[...p].join(', ')}`);
    assert.equal(new Set(ports.map((p) => [...p][0])).size, N);

    // The new process lists the sessions with the bytes from before the upgrade.
    const r = await fetch(`http://127.0.0.1:${admin}/api/v1/connections?limit=100`);
    const listed = ((await r.json()) as { connections: { protocol: string; bytes_in: number; bytes_out: number; age_ms: number }[] }).connections.filter((c) => c.protocol === 'udp');
    assert.equal(listed.length, N);
    // Once idle (2 s), each session ends in the new process's engine with every byte it carried, before and after.
    const closed = await waitFor(
      () => lb.proc.logs.filter((l) => l.msg === 'connection closed' && l.pump === 'engine').length >= N,
      10000,
      'the sessions end (idle) in the new engine',
    ).then(() => lb.proc.logs.filter((l) => l.msg === 'connection closed' && l.pump === 'engine'));
    assert.equal(closed.length, N, 'no session ended in the old process');
    for (const c of clients) {
      const mine = closed.filter((l) => l.client === c.local);
      assert.equal(mine.length, 1, `a closed line for ${c.local}: ${JSON.stringify(closed)}`);
      assert.equal(mine[0]?.bytes_in, c.sent);
      assert.equal(mine[0]?.bytes_out, c.got);
      assert.equal(mine[0]?.reason, 'idle_timeout');
    }
    assert.equal(lb.count('upgrade failed'), 0);
    t.diagnostic(`engine UDP upgrade: longest wait for an echo ${maxGap} ms; exchanges ${counts.join(', ')}; handover_ms ${handoverMs}`);
  });

  test('a new process that dies after taking 2 engine sessions (test-only knob): the old one takes the others back on their upstream socket, reads its listener again', async (t) => {
    if (!spliceAvailable().ok) return t.skip(`native addon not available: ${spliceAvailable().reason}`);
    const backend = await portEcho();
    cleanup.push(() => backend.close());
    const lb = new UpgradingL4lb(config(backend.port), { L4LB_UPGRADE_TEST_EXIT_AFTER_UDP: '3' });
    cleanup.push(() => lb.stop());
    const uport = await lb.proc.port('udp');
    const N = 8;
    const clients = await Promise.all(Array.from({ length: N }, () => client(uport)));
    cleanup.push(() => clients.forEach((c) => c.close()));
    const before = await Promise.all(clients.map((c, i) => c.ask(`before ${i}`)));
    process.kill(lb.pid, 'SIGUSR2');
    const failed = await lb.log((l) => l.msg === 'upgrade failed', 20000, 'upgrade failed');
    assert.match(String(failed.reason), /after the handover began: 0 connection\(s\) and 2 UDP session\(s\)/);
    assert.ok(alive(lb.pid));
    // Every client is answered (a session the dead process had acknowledged starts anew here);
    // those it had not acknowledged go on from the same upstream socket.
    const afterPorts = await Promise.all(clients.map((c, i) => c.ask(`after ${i}`)));
    const same = afterPorts.filter((p, i) => p === before[i]).length;
    assert.ok(same >= N - 2, `${same} of ${N} sessions kept their backend-side port`);
    // The listener is read again: a new client gets a session.
    const fresh = await client(uport);
    cleanup.push(() => fresh.close());
    await fresh.ask('new client');
    t.diagnostic(`${same} of ${N} sessions kept their upstream socket`);
  });

  test('a wildcard bind: the replies of a session still leave from the address its client sent to; udp_responses counts on across the upgrade', async (t) => {
    if (!spliceAvailable().ok) return t.skip(`native addon not available: ${spliceAvailable().reason}`);
    const backend = await portEcho();
    cleanup.push(() => backend.close());
    const lb = new UpgradingL4lb(
      `[global]\nsplice = "on"\ndrain_timeout = "1s"\n[admin]\nbind = "127.0.0.1:0"\n` +
        `[[listeners]]\nname = "udp"\nprotocol = "udp"\nbind = "0.0.0.0:0"\npool = "u"\nudp_responses = 3\n` +
        poolToml('u', 'round-robin', [`{ address = "127.0.0.1:${backend.port}" }`]),
    );
    cleanup.push(() => lb.stop());
    const uport = await lb.proc.port('udp');
    // Clients connected to 127.0.0.2: their kernel drops a reply from any other address.
    const socks = await Promise.all(
      Array.from({ length: 4 }, async () => {
        const s = dgram.createSocket('udp4');
        s.bind(0, '127.0.0.1');
        await once(s, 'listening');
        s.connect(uport, '127.0.0.2');
        await once(s, 'connect');
        return s;
      }),
    );
    cleanup.push(() => socks.forEach((s) => s.close()));
    const ask = (s: dgram.Socket, msg: string): Promise<number> =>
      withTimeout(
        new Promise<number>((resolve) => {
          s.once('message', (m) => {
            const text = m.toString();
            assert.equal(text.slice(0, text.lastIndexOf('|')), msg);
            resolve(Number(text.slice(text.lastIndexOf('|') + 1)));
          });
          s.send(msg);
        }),
        3000,
        `reply from 127.0.0.2 to ${msg}`,
      );
    const first = await Promise.all(socks.map((s, i) => ask(s, `a${i}`)));
    const { line } = await lb.upgrade(20000);
    assert.equal(line.sessions, socks.length);
    // Responses 2 and 3 of each session, from the new process's engine, from 127.0.0.2.
    for (const round of ['b', 'c']) {
      const ports = await Promise.all(socks.map((s, i) => ask(s, `${round}${i}`)));
      assert.deepEqual(ports, first, `round ${round}: the same sessions (backend-side ports)`);
    }
    // The third response ended each session: the next datagram opens a new one.
    const fourth = await Promise.all(socks.map((s, i) => ask(s, `d${i}`)));
    fourth.forEach((p, i) => assert.notEqual(p, first[i], `client ${i}: a new session after udp_responses = 3`));
    assert.equal(lb.count('upgrade failed'), 0);
  });

  test('an upgrade that changes `splice` moves the sessions between the JavaScript UDP path and the engine (off, on, off): same backend source port, none lost', async (t) => {
    if (!spliceAvailable().ok) return t.skip(`native addon not available: ${spliceAvailable().reason}`);
    const backend = await portEcho();
    cleanup.push(() => backend.close());
    const lb = new UpgradingL4lb(config(backend.port, '2s', 'off'));
    cleanup.push(() => lb.stop());
    const uport = await lb.proc.port('udp');
    const N = 3;
    const clients = await Promise.all(Array.from({ length: N }, () => client(uport)));
    cleanup.push(() => clients.forEach((c) => c.close()));
    const st = streaming(clients);
    const counts = st.counts;
    try {
      await waitFor(() => counts.every((n) => n >= 20), 10000, 'every client under way');
      for (const splice of ['on', 'off']) {
        lb.proc.writeConfig(config(backend.port, '2s', splice));
        const { line } = await lb.upgrade(20000);
        assert.equal(line.sessions, N, `to splice = "${splice}"`);
        const at = [...counts];
        await waitFor(() => counts.every((n, i) => n >= (at[i] as number) + 50), 10000, `every client going on with splice = "${splice}"`);
      }
    } finally {
      await st.stop();
    }
    for (const [i, p] of st.ports.entries()) assert.equal(p.size, 1, `client ${i} reached the backend from ${[...p].join(', ')}`);
    // Idle, each ends on the JavaScript path with every byte it carried through the three processes.
    await waitFor(() => lb.proc.logs.filter((l) => l.msg === 'connection closed').length >= N, 10000, 'the sessions end (idle)');
    const closed = lb.proc.logs.filter((l) => l.msg === 'connection closed');
    assert.equal(closed.length, N);
    for (const c of clients) {
      const mine = closed.filter((l) => l.client === c.local && l.bytes_in === c.sent && l.bytes_out === c.got && l.pump === 'js');
      assert.equal(mine.length, 1, `a closed line for ${c.local} with bytes_in ${c.sent}, bytes_out ${c.got}: ${JSON.stringify(closed)}`);
    }
    assert.equal(lb.count('upgrade failed'), 0);
    t.diagnostic(`JS -> engine -> JS: longest wait for an echo ${st.maxGap()} ms; exchanges ${counts.join(', ')}`);
  });
});
