/**
 * Backends given by name, end to end.
 *
 * Through the REAL lookup path (the CLI as a child process, dns.lookup):
 * `localhost` resolves through /etc/hosts on every Linux machine, and a
 * `.invalid` name (RFC 6761) never resolves.
 *
 * A name whose addresses change under test control cannot go through the
 * system resolver without root changes to /etc/hosts: HOSTALIASES only maps a
 * single-label name to another NAME and glibc applies it in res_search (the
 * DNS path), not to nss "files", and there is no environment override for
 * /etc/hosts or /etc/resolv.conf. So the changing-name cases run the Server
 * in-process with a `lookup` injected through ServerOptions (a constructor
 * option, no environment hook in production code), with real sockets.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTaggedServer, connect, readLine, waitFor, withTimeout, type TestServer } from '../helpers/net';
import { L4lbProcess } from '../helpers/l4lb';
import { Server } from '../../src/server';
import type { DataPlane } from '../../src/dataplane/dataplane';
import { loadConfigFile } from '../../src/config/load';
import { createLogger } from '../../src/log';
import type { LookupAddress, LookupFn } from '../../src/dns/resolver';

type Line = { level: string; msg: string; [k: string]: unknown };

describe('dns: real system resolver (CLI)', () => {
  let a: TestServer;
  let lb: L4lbProcess;
  let port: number;

  before(async () => {
    a = await startTaggedServer('A');
    lb = new L4lbProcess(
      `[[listeners]]\nname = "web"\nbind = "127.0.0.1:0"\npool = "web"\n` +
        `[pools.web]\nalgorithm = "round-robin"\nresolve_interval = "1h"\n` +
        // localhost may also give ::1, where nothing listens: retries route around it.
        `backends = [ { address = "localhost:${a.port}" }, { address = "l4lb-test-nonexistent.invalid:${a.port}" } ]\n` +
        `[pools.web.health_check]\nenabled = false\n`,
    );
    port = await lb.port('web', 20000);
  });
  after(async () => {
    await lb.stop();
    await a.close();
  });

  test('localhost:<port> resolves through /etc/hosts and carries traffic; the log shows the name', async () => {
    const line = await lb.waitForLog((l) => l.msg === 'backend name resolved' && l.name === 'localhost', 5000, 'localhost resolved');
    assert.equal(line.pool, 'web');
    assert.ok((line.addresses as string[]).includes('127.0.0.1'), JSON.stringify(line));
    for (let i = 0; i < 4; i++) {
      const s = await connect(port);
      assert.equal(await readLine(s), 'A');
      s.destroy();
    }
  });

  test('a name that does not resolve at start is logged at warn and l4lb serves anyway', async () => {
    const w = await lb.waitForLog((l) => l.level === 'warn' && l.msg === 'backend name did not resolve', 5000, 'warn');
    assert.equal(w.name, 'l4lb-test-nonexistent.invalid');
    assert.equal(w.pool, 'web');
    assert.equal(lb.exitCode, null);
  });
});

/** A test-controlled name table for the injected lookup. */
class FakeDns {
  table = new Map<string, string[] | string>();
  calls = 0;
  lookup: LookupFn = (host) => {
    this.calls++;
    const v = this.table.get(host);
    if (v === undefined || typeof v === 'string') {
      const e = new Error(`getaddrinfo ${v ?? 'ENOTFOUND'} ${host}`) as NodeJS.ErrnoException;
      e.code = v ?? 'ENOTFOUND';
      return Promise.reject(e);
    }
    return Promise.resolve(v.map((address): LookupAddress => ({ address, family: 4 })));
  };
}

/** Tagged servers on 127.0.0.1, 127.0.0.2 and 127.0.0.3, all on the same port. */
async function startTrio(): Promise<TestServer[]> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const first = await startTaggedServer('A');
    const rest: TestServer[] = [];
    try {
      for (const [i, tag] of (['B', 'C'] as const).entries()) {
        const srv = net.createServer({ allowHalfOpen: true }, (s) => {
          s.on('error', () => {});
          t.sockets.add(s);
          s.on('close', () => t.sockets.delete(s));
          t.accepted++;
          s.write(`${tag}\n`);
          s.pipe(s);
        });
        const t: TestServer = {
          server: srv,
          port: first.port,
          accepted: 0,
          sockets: new Set(),
          close: async () => {
            for (const s of t.sockets) s.destroy();
            if (srv.listening) await new Promise<void>((r) => srv.close(() => r()));
          },
        };
        srv.listen(first.port, `127.0.0.${i + 2}`);
        await Promise.race([once(srv, 'listening'), once(srv, 'error').then(([e]) => Promise.reject(e as Error))]);
        rest.push(t);
      }
      return [first, ...rest];
    } catch {
      await first.close();
      for (const t of rest) await t.close();
    }
  }
  throw new Error('could not bind 127.0.0.1-3 on one port');
}

describe('dns: changing names (in-process server, injected lookup, real sockets)', () => {
  let servers: TestServer[];
  let port: number; // the servers' common port
  let dir: string;
  let server: Server;
  let lbPort: number;
  const dns = new FakeDns();
  const lines: Line[] = [];
  const changed: string[] = [];
  const clients: net.Socket[] = [];

  const config = (algorithm = 'round-robin', extraBackend = ''): string =>
    `[global]\ndrain_timeout = "2s"\n` +
    `[[listeners]]\nname = "db"\nbind = "127.0.0.1:0"\npool = "db"\n` +
    `[[listeners]]\nname = "ch"\nbind = "127.0.0.1:0"\npool = "ch"\n` +
    `[pools.db]\nalgorithm = "${algorithm}"\nresolve_interval = "1h"\nbackends = [ { address = "db.test:${port}" }${extraBackend} ]\n[pools.db.health_check]\nenabled = false\n` +
    `[pools.ch]\nalgorithm = "consistent-hash"\nresolve_interval = "1h"\nbackends = [ { address = "ch.test:${port}", weight = 2 } ]\n[pools.ch.health_check]\nenabled = false\n` +
    `[pools.late]\nresolve_interval = "1h"\nbackends = [ { address = "late.test:${port}" } ]\n[pools.late.health_check]\nenabled = false\n`;

  /** Opens a client through listener `name` and returns it with the backend's tag. */
  async function via(p: number): Promise<{ s: net.Socket; tag: string }> {
    const s = await connect(p);
    clients.push(s);
    return { s, tag: await readLine(s) };
  }
  const members = (pool: string): string[] => server.dataPlane.pools.get(pool)?.backends.map((b) => b.address) ?? [];
  const tick = (pool: string): Promise<void> => {
    const r = server.resolvers.get(pool);
    assert.ok(r);
    return r.tick();
  };

  before(async () => {
    servers = await startTrio();
    port = servers[0]?.port ?? 0;
    dir = mkdtempSync(join(tmpdir(), 'l4lb-dns-'));
    const path = join(dir, 'lb.toml');
    writeFileSync(path, config());
    dns.table.set('db.test', ['127.0.0.1']);
    dns.table.set('ch.test', ['127.0.0.2', '127.0.0.1']);
    // late.test does not resolve at start.
    const log = createLogger('info', { write: (s: string) => void lines.push(JSON.parse(s) as Line) });
    server = await Server.start({ configPath: path, config: loadConfigFile(path), log, lookup: dns.lookup });
    server.onPoolChanged((p) => changed.push(p));
    lbPort = server.bindings.find((b) => b.name === 'db')?.port ?? 0;
  });
  after(async () => {
    for (const c of clients) c.destroy();
    await withTimeout(server.drain(), 10000, 'drain');
    for (const s of servers) await s.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('start: status shows each resolved address with the name it came from; sorted order', () => {
    const st = server.status() as { pools: { name: string; resolve_failures: number; backends: { address: string; name?: string; weight: number }[] }[] };
    const ch = st.pools.find((p) => p.name === 'ch');
    assert.deepEqual(ch?.backends.map((b) => [b.address, b.name, b.weight]), [
      [`127.0.0.1:${port}`, `ch.test:${port}`, 2],
      [`127.0.0.2:${port}`, `ch.test:${port}`, 2],
    ]);
    const late = st.pools.find((p) => p.name === 'late');
    assert.deepEqual(late?.backends, []);
    assert.equal(late?.resolve_failures, 1);
    assert.ok(lines.some((l) => l.level === 'warn' && l.name === 'late.test'));
  });

  test('address added: joins the pool, old Backend objects kept, onPoolChanged fired, traffic reaches it', async () => {
    const before = server.dataPlane.pools.get('db')?.find(`127.0.0.1:${port}`);
    assert.ok(before);
    assert.equal((await via(lbPort)).tag, 'A');
    dns.table.set('db.test', ['127.0.0.2', '127.0.0.1']);
    await tick('db');
    assert.deepEqual(members('db'), [`127.0.0.1:${port}`, `127.0.0.2:${port}`]);
    assert.equal(server.dataPlane.pools.get('db')?.find(`127.0.0.1:${port}`), before);
    assert.ok(before.total >= 1);
    assert.deepEqual(changed, ['db']);
    // The pickers may still be stubs (first candidate): drain A to see traffic reach B.
    server.dataPlane.setBackendState('db', `127.0.0.1:${port}`, 'draining');
    assert.equal((await via(lbPort)).tag, 'B');
    server.dataPlane.setBackendState('db', `127.0.0.1:${port}`, 'up');
  });

  test('address removed: no new connections to it, its open connection stays open', async () => {
    server.dataPlane.setBackendState('db', `127.0.0.1:${port}`, 'draining');
    const c = await via(lbPort);
    server.dataPlane.setBackendState('db', `127.0.0.1:${port}`, 'up');
    assert.equal(c.tag, 'B');
    const open = c.s;
    const gone = server.dataPlane.pools.get('db')?.find(`127.0.0.2:${port}`);
    dns.table.set('db.test', ['127.0.0.1']);
    await tick('db');
    assert.deepEqual(members('db'), [`127.0.0.1:${port}`]);
    assert.equal(gone?.member, false);
    for (let i = 0; i < 4; i++) assert.equal((await via(lbPort)).tag, 'A');
    open.write('still here\n');
    assert.equal(await readLine(open), 'still here');
    assert.ok((gone?.active ?? 0) >= 1); // its open connections (this one and the one from the test before)
  });

  test('a failed lookup keeps the last set, counts, warns once', async () => {
    const pool = server.dataPlane.pools.get('db');
    const warns = (): number => lines.filter((l) => l.level === 'warn' && l.name === 'db.test').length;
    dns.table.set('db.test', 'EAI_AGAIN');
    await tick('db');
    await tick('db');
    assert.equal(server.dataPlane.pools.get('db'), pool); // untouched
    assert.deepEqual(members('db'), [`127.0.0.1:${port}`]);
    assert.equal(warns(), 1);
    const st = server.status() as { pools: { name: string; resolve_failures: number }[] };
    assert.equal(st.pools.find((p) => p.name === 'db')?.resolve_failures, 2);
    assert.equal((await via(lbPort)).tag, 'A');
    dns.table.set('db.test', ['127.0.0.1']);
    await tick('db');
  });

  test('consistent-hash: membership changes keep the Backend objects of addresses that stay', async () => {
    const p0 = server.dataPlane.pools.get('ch');
    const one = p0?.find(`127.0.0.1:${port}`);
    const two = p0?.find(`127.0.0.2:${port}`);
    assert.ok(one && two);
    dns.table.set('ch.test', ['127.0.0.3', '127.0.0.2', '127.0.0.1']);
    await tick('ch');
    const p1 = server.dataPlane.pools.get('ch');
    assert.deepEqual(members('ch'), [`127.0.0.1:${port}`, `127.0.0.2:${port}`, `127.0.0.3:${port}`]);
    assert.equal(p1?.find(`127.0.0.1:${port}`), one);
    assert.equal(p1?.find(`127.0.0.2:${port}`), two);
    assert.equal(p1?.find(`127.0.0.3:${port}`)?.weight, 2);
    // The listener follows the rebuilt pool.
    const chPort = server.bindings.find((b) => b.name === 'ch')?.port ?? 0;
    assert.equal((server.dataPlane as DataPlane).listeners.get('ch')?.pool, p1);
    assert.ok(['A', 'B', 'C'].includes((await via(chPort)).tag));
    dns.table.set('ch.test', ['127.0.0.3', '127.0.0.1']);
    await tick('ch');
    assert.deepEqual(members('ch'), [`127.0.0.1:${port}`, `127.0.0.3:${port}`]);
    assert.equal(two.member, false);
    assert.equal(server.dataPlane.pools.get('ch')?.find(`127.0.0.1:${port}`), one);
  });

  test('a name unresolvable at start joins when it resolves (timer-driven)', async () => {
    dns.table.set('late.test', ['127.0.0.3']);
    await tick('late');
    assert.deepEqual(members('late'), [`127.0.0.3:${port}`]);
  });

  test('reload: resolves again, replaces the resolvers of changed pools only, keeps the others', async () => {
    const oldDb = server.resolvers.get('db');
    const oldCh = server.resolvers.get('ch');
    assert.ok(oldDb?.running && oldCh?.running);
    dns.table.set('ch.test', ['127.0.0.3', '127.0.0.1', '127.0.0.2']);
    writeFileSync(server.configPath, config('round-robin', `, { address = "127.0.0.3:${port}" }`));
    const res = await server.reload();
    assert.deepEqual(res, { ok: true, generation: 2 });
    assert.notEqual(server.resolvers.get('db'), oldDb);
    assert.equal(oldDb?.running, false);
    assert.equal(server.resolvers.get('ch'), oldCh);
    assert.equal(oldCh?.running, true);
    assert.deepEqual(members('db'), [`127.0.0.1:${port}`, `127.0.0.3:${port}`]);
    assert.deepEqual(members('ch'), [`127.0.0.1:${port}`, `127.0.0.2:${port}`, `127.0.0.3:${port}`]);
  });

  test('re-resolution by the timer: a short resolve_interval picks up a change', async () => {
    writeFileSync(server.configPath, config().replace(/resolve_interval = "1h"/, 'resolve_interval = "30ms"'));
    assert.equal((await server.reload()).ok, true);
    dns.table.set('db.test', ['127.0.0.1', '127.0.0.2']);
    await waitFor(() => members('db').length === 2, 5000, 'timer picked up db.test change');
    const n = changed.length;
    assert.ok(n >= 1);
  });

  test('drain stops every resolver', async () => {
    for (const c of clients) c.destroy();
    await withTimeout(server.drain(), 10000, 'drain');
    for (const r of server.resolvers.values()) assert.equal(r.running, false);
    const calls = dns.calls;
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(dns.calls, calls);
  });
});
