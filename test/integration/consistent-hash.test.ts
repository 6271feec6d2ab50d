/**
 * consistent-hash end to end: affinity for fixed flows, stability across a
 * reload that removes a backend, and agreement between two l4lb processes.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startServer, readAll, withTimeout, type TestServer } from '../helpers/net';
import { L4lbProcess } from '../helpers/l4lb';
import { listenerToml, poolToml } from '../helpers/toml';

/** Backends that write their tag and close (so l4lb, not the client, closes first: no TIME_WAIT on the client's port). */
async function tagServers(n: number): Promise<TestServer[]> {
  const out: TestServer[] = [];
  for (let i = 0; i < n; i++) {
    const tag = String.fromCharCode(65 + i);
    out.push(
      await startServer((s) => {
        s.end(`${tag}\n`);
      }),
    );
  }
  return out;
}

/**
 * Connects from a fixed local address and port; resolves with the backend's
 * tag once the connection is fully closed. The server side closes first, so
 * the client's port is free again at once; a port still finishing its close
 * (EADDRNOTAVAIL) is retried, a bounded number of times.
 */
async function tagFrom(port: number, localAddress: string, localPort?: number): Promise<string> {
  for (let attempt = 0; ; attempt++) {
    const s = net.connect({ port, host: '127.0.0.1', localAddress, ...(localPort !== undefined ? { localPort } : {}) });
    let failed: NodeJS.ErrnoException | null = null;
    s.on('error', (e) => (failed = e));
    const closed = new Promise<void>((r) => s.once('close', () => r()));
    const all = await withTimeout(readAll(s, 5000, true), 5000, `tag via ${localAddress}:${localPort ?? 0}`);
    await withTimeout(closed, 5000, 'close');
    const err = failed as NodeJS.ErrnoException | null;
    if (err === null) return all.toString().trim();
    if (err.code !== 'EADDRNOTAVAIL' || attempt >= 50) throw err;
    await new Promise((r) => setTimeout(r, 20));
  }
}

const pool = (ports: number[], extra = ''): string => poolToml('ch', 'consistent-hash', ports.map((p) => `{ address = "127.0.0.1:${p}" }`), extra);

describe('consistent-hash', () => {
  let servers: TestServer[];
  before(async () => {
    servers = await tagServers(4);
  });
  after(async () => {
    for (const s of servers) await s.close();
  });

  test('connections of the same 5-tuple land on the same backend every time', async () => {
    const lb = new L4lbProcess(listenerToml('ch', 'ch') + pool(servers.map((s) => s.port)));
    try {
      const port = await lb.port('ch');
      const seen = new Set<string>();
      for (let i = 0; i < 12; i++) {
        const addr = `127.0.0.${10 + i}`;
        const localPort = 41000 + i;
        const first = await tagFrom(port, addr, localPort);
        seen.add(first);
        for (let r = 0; r < 3; r++) assert.equal(await tagFrom(port, addr, localPort), first, `flow ${addr}:${localPort} try ${r}`);
      }
      assert.ok(seen.size >= 2, 'flows spread over several backends');
    } finally {
      await lb.stop();
    }
  });

  test('after a reload that removes one backend, at least 97% of the flows on the others stay put', async () => {
    const lb = new L4lbProcess(listenerToml('ch', 'ch') + pool(servers.map((s) => s.port), 'hash_key = "source-ip"'));
    try {
      const port = await lb.port('ch');
      const flows = Array.from({ length: 200 }, (_, i) => `127.${1 + (i >> 8)}.${i & 255}.${1 + (i % 7)}`);
      const before: string[] = [];
      for (const f of flows) before.push(await tagFrom(port, f));
      const removed = 'B';
      lb.writeConfig(listenerToml('ch', 'ch') + pool([servers[0]!.port, servers[2]!.port, servers[3]!.port], 'hash_key = "source-ip"'));
      lb.signal('SIGHUP');
      await lb.waitForLog((l) => l.msg === 'config reloaded', 10000);
      let kept = 0;
      let onSurvivors = 0;
      for (let i = 0; i < flows.length; i++) {
        const now = await tagFrom(port, flows[i]!);
        assert.notEqual(now, removed);
        if (before[i] === removed) continue;
        onSurvivors++;
        if (now === before[i]) kept++;
      }
      assert.ok(onSurvivors > 100);
      assert.ok(kept / onSurvivors >= 0.97, `${kept} of ${onSurvivors} flows stayed`);
    } finally {
      await lb.stop();
    }
  });

  test('two separate l4lb processes with the same pool choose the same backend for the same source address', async () => {
    const cfg = listenerToml('ch', 'ch') + pool(servers.map((s) => s.port), 'hash_key = "source-ip"');
    const a = new L4lbProcess(cfg);
    const b = new L4lbProcess(cfg);
    try {
      const [pa, pb] = [await a.port('ch'), await b.port('ch')];
      const tags = new Set<string>();
      for (let i = 0; i < 40; i++) {
        const src = `127.0.${i}.9`;
        const ta = await tagFrom(pa, src);
        tags.add(ta);
        assert.equal(await tagFrom(pb, src), ta, `source ${src}`);
      }
      assert.ok(tags.size >= 2);
    } finally {
      await a.stop();
      await b.stop();
    }
  });
});
