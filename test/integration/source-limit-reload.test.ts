/**
 * max_connections_per_source turned on by a reload while connections from
 * that source are open: the limit counts them, and their end releases only
 * what they held (SPEC §2 limits, §4 reload).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type net from 'node:net';
import { startTaggedServer, connect, waitFor, withTimeout } from '../helpers/net';
import { L4lbProcess } from '../helpers/l4lb';
import { listenerToml, poolToml } from '../helpers/toml';

/** Connects and tells whether l4lb admitted the connection (the backend's tag arrives) or refused it. */
async function tryConnect(port: number): Promise<net.Socket | null> {
  const c = await connect(port);
  c.on('error', () => {});
  const tag = await withTimeout(
    new Promise<string | null>((resolve) => {
      c.once('data', (d: Buffer) => resolve(d.toString()));
      c.once('end', () => resolve(null));
      c.once('close', () => resolve(null));
    }),
    5000,
    'admitted or refused',
  );
  if (tag === null) {
    c.destroy();
    return null;
  }
  assert.equal(tag, 'A\n');
  return c;
}

async function closeAndWait(lb: L4lbProcess, c: net.Socket): Promise<void> {
  const n = lb.logs.filter((l) => l.msg === 'connection closed').length;
  c.destroy();
  await waitFor(() => lb.logs.filter((l) => l.msg === 'connection closed').length > n, 5000, 'connection closed logged');
}

test('a per-source limit enabled by a reload counts open connections; old ones release only their own count', async () => {
  const a = await startTaggedServer('A');
  const cfg = (extra: string): string => `[global]\nconnection_log = true\n` + listenerToml('l', 'p', extra) + poolToml('p', 'round-robin', [`{ address = "127.0.0.1:${a.port}" }`]);
  const lb = new L4lbProcess(cfg(''));
  const held: net.Socket[] = [];
  try {
    const port = await lb.port('l');
    // Three connections from 127.0.0.1 with no limit.
    for (let i = 0; i < 3; i++) {
      const c = await tryConnect(port);
      assert.ok(c !== null, 'admitted without a limit');
      held.push(c);
    }
    const n = lb.logs.filter((l) => l.msg === 'config reloaded').length;
    lb.writeConfig(cfg('max_connections_per_source = 2'));
    lb.signal('SIGHUP');
    await lb.waitForLog(() => lb.logs.filter((l) => l.msg === 'config reloaded').length > n, 10000, 'reloaded');

    // 3 open >= 2: a new one is refused.
    assert.equal(await tryConnect(port), null, 'over the limit with the 3 old connections open');
    // Close two old ones: 1 open, one more fits, then the limit holds again.
    await closeAndWait(lb, held.shift()!);
    await closeAndWait(lb, held.shift()!);
    const n1 = await tryConnect(port);
    assert.ok(n1 !== null, 'one old + one new = 2');
    held.push(n1);
    assert.equal(await tryConnect(port), null, 'a third is refused');
    // The last old one ends: its end frees one place, not more.
    await closeAndWait(lb, held.shift()!);
    const n2 = await tryConnect(port);
    assert.ok(n2 !== null, 'two new ones fit');
    held.push(n2);
    assert.equal(await tryConnect(port), null, 'and a third new one is refused');
    // The new ones release their places when they end.
    await closeAndWait(lb, held.shift()!);
    const n3 = await tryConnect(port);
    assert.ok(n3 !== null);
    held.push(n3);
    assert.equal(await tryConnect(port), null);
  } finally {
    for (const c of held) c.destroy();
    await lb.stop();
    await a.close();
  }
});
