/**
 * Runtime state that survives (drain and weight across SIGHUP, and across a
 * restart with state_file), the runtime API with workers = 2 (TCP and UDP),
 * and `backend state changed` to down at warn.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type net from 'node:net';
import { startEchoServer, startTaggedServer, connect, readLine, readBytes, readAll, endOf, waitFor, withTimeout, deadPort, type TestServer } from '../helpers/net';
import { L4lbProcess } from '../helpers/l4lb';
import { listenerToml, poolToml } from '../helpers/toml';
import { adminHttp, adminJson, adminPortOf, backendOf } from '../helpers/admin';

interface Conn {
  listener: string;
  protocol: string;
  backend: string;
  bytes_in: number;
}

describe('runtime state across reload and restart', () => {
  let a: TestServer;
  let b: TestServer;
  let dir: string;
  before(async () => {
    a = await startTaggedServer('A');
    b = await startTaggedServer('B');
    dir = mkdtempSync(join(tmpdir(), 'l4lb-state-'));
  });
  after(async () => {
    await a.close();
    await b.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const config = (stateFile: string | null, extra = ''): string =>
    `[global]\n${stateFile !== null ? `state_file = ${JSON.stringify(stateFile)}\n` : ''}[admin]\nbind = "127.0.0.1:0"\n` +
    listenerToml('ab', 'ab') +
    poolToml('ab', 'round-robin', [`{ address = "127.0.0.1:${a.port}" }`, `{ address = "127.0.0.1:${b.port}" }`, ...(extra ? [extra] : [])]);

  test('drain and weight survive SIGHUP; the state file makes them survive a restart; unknown entries are ignored', async () => {
    const A = `127.0.0.1:${a.port}`;
    const B = `127.0.0.1:${b.port}`;
    const stateFile = join(dir, 'state.json');
    const lb = new L4lbProcess(config(stateFile));
    try {
      const admin = await adminPortOf(lb);
      await adminJson(admin, 'POST', `/api/v1/pools/ab/backends/${encodeURIComponent(A)}/drain`);
      await adminJson(admin, 'POST', `/api/v1/pools/ab/backends/${encodeURIComponent(B)}/weight`, { body: { weight: 7 } });
      const saved = JSON.parse(readFileSync(stateFile, 'utf8')) as { version: number; backends: { pool: string; address: string; drain: boolean; weight: number | null }[] };
      assert.equal(saved.version, 1);
      assert.deepEqual(
        saved.backends.sort((x, y) => x.address.localeCompare(y.address)),
        [
          { pool: 'ab', address: A, drain: true, weight: null },
          { pool: 'ab', address: B, drain: false, weight: 7 },
        ].sort((x, y) => x.address.localeCompare(y.address)),
      );
      // SIGHUP with an unchanged pool: both stay.
      lb.signal('SIGHUP');
      await lb.waitForLog((l) => l.msg === 'config reloaded', 5000, 'reloaded');
      assert.equal((await backendOf(admin, 'ab', A))?.state, 'draining');
      assert.equal((await backendOf(admin, 'ab', B))?.weight, 7);
      const port = await lb.port('ab');
      for (let i = 0; i < 4; i++) {
        const c = await connect(port);
        assert.equal(await readLine(c), 'B');
        c.destroy();
      }
    } finally {
      await lb.stop();
    }
    // An entry for a backend the file no longer has is ignored (and dropped).
    const withGhost = JSON.parse(readFileSync(stateFile, 'utf8')) as { backends: unknown[] };
    withGhost.backends.push({ pool: 'ab', address: '10.9.9.9:1', drain: true, weight: 3 }, { pool: 'gone', address: A, drain: true, weight: null });
    writeFileSync(stateFile, JSON.stringify(withGhost));
    const again = new L4lbProcess(config(stateFile));
    try {
      const admin = await adminPortOf(again);
      const read = await again.waitForLog((l) => l.msg === 'state file read', 5000, 'state file read');
      assert.equal(read.backends, 4);
      assert.equal((await backendOf(admin, 'ab', A))?.state, 'draining');
      assert.equal((await backendOf(admin, 'ab', B))?.weight, 7);
      const port = await again.port('ab');
      const c = await connect(port);
      assert.equal(await readLine(c), 'B');
      c.destroy();
      const kept = JSON.parse(readFileSync(stateFile, 'utf8')) as { backends: { address: string }[] };
      assert.deepEqual(kept.backends.map((x) => x.address).sort(), [A, B].sort());
      // Enable and the configured weight again: the file empties.
      await adminJson(admin, 'POST', `/api/v1/pools/ab/backends/${encodeURIComponent(A)}/enable`);
      await adminJson(admin, 'POST', `/api/v1/pools/ab/backends/${encodeURIComponent(B)}/weight`, { body: { weight: 1 } });
      assert.equal((await backendOf(admin, 'ab', A))?.state, 'up');
    } finally {
      await again.stop();
    }
    const last = JSON.parse(readFileSync(stateFile, 'utf8')) as { backends: { address: string; weight: number | null }[] };
    // Weight 1 is a runtime weight too (it equals the configured one, but was set): kept; drain is gone.
    assert.deepEqual(last.backends, [{ pool: 'ab', address: B, drain: false, weight: 1 }]);
  });

  test('an unreadable state file is logged at warn and ignored', async () => {
    const stateFile = join(dir, 'broken.json');
    writeFileSync(stateFile, '{not json');
    const lb = new L4lbProcess(config(stateFile));
    try {
      const admin = await adminPortOf(lb);
      const w = await lb.waitForLog((l) => l.msg === 'state file ignored', 5000, 'state file ignored');
      assert.equal(w.level, 'warn');
      assert.equal(w.state_file, stateFile);
      assert.equal((await backendOf(admin, 'ab', `127.0.0.1:${a.port}`))?.state, 'up');
    } finally {
      await lb.stop();
    }
  });

  test('a backend that fails its checks goes down with a `backend state changed` line at warn', async () => {
    const dead = await deadPort();
    const lb = new L4lbProcess(
      `[admin]\nbind = "127.0.0.1:0"\n` +
        listenerToml('ab', 'ab') +
        poolToml('ab', 'round-robin', [`{ address = "127.0.0.1:${a.port}" }`, `{ address = "127.0.0.1:${dead}" }`], '', 'interval = "50ms"\ntimeout = "200ms"\nfall = 1\nrise = 1'),
    );
    try {
      const line = await lb.waitForLog((l) => l.msg === 'backend state changed' && l.to === 'down', 5000, 'down');
      assert.equal(line.level, 'warn');
      assert.equal(line.backend, `127.0.0.1:${dead}`);
      assert.ok(!lb.logs.some((l) => l.msg === 'pool has no backend up'), 'A is still up');
    } finally {
      await lb.stop();
    }
  });
});

describe('runtime API with workers = 2', () => {
  let echo: TestServer;
  let udpEcho: dgram.Socket;
  let udpPort: number;
  let lb: L4lbProcess;
  let admin: number;
  before(async () => {
    echo = await startEchoServer();
    udpEcho = dgram.createSocket('udp4');
    udpEcho.on('message', (m, r) => udpEcho.send(m, r.port, r.address));
    udpEcho.bind(0, '127.0.0.1');
    await once(udpEcho, 'listening');
    udpPort = udpEcho.address().port;
    lb = new L4lbProcess(
      `[global]\nworkers = 2\nconnection_log = true\n[admin]\nbind = "127.0.0.1:0"\n` +
        listenerToml('t', 'p') +
        `[[listeners]]\nname = "u"\nprotocol = "udp"\nbind = "127.0.0.1:0"\npool = "up"\n` +
        poolToml('p', 'round-robin', [`{ address = "127.0.0.1:${echo.port}" }`]) +
        poolToml('up', 'round-robin', [`{ address = "127.0.0.1:${udpPort}" }`]),
    );
    admin = await adminPortOf(lb);
  });
  after(async () => {
    await lb.stop();
    await echo.close();
    udpEcho.close();
  });

  test('connections from both workers are listed, TCP and UDP; shutdown-connections ends them all; weight applies in the workers', async () => {
    const port = await lb.port('t');
    const open: net.Socket[] = [];
    for (let i = 0; i < 6; i++) {
      const c = await connect(port);
      c.write('ab');
      await readBytes(c, 2);
      open.push(c);
    }
    const client = dgram.createSocket('udp4');
    try {
      client.send('ping', await lb.port('u'), '127.0.0.1');
      const [reply] = (await withTimeout(once(client, 'message'), 5000, 'udp reply')) as [Buffer];
      assert.equal(reply.toString(), 'ping');
      let list: Conn[] = [];
      await waitFor(async () => {
        list = (await adminJson<{ connections: Conn[] }>(admin, 'GET', '/api/v1/connections')).connections;
        return list.length === 7;
      }, 5000, 'six TCP connections and one UDP session listed');
      assert.equal(list.filter((c) => c.protocol === 'tcp').length, 6);
      const u = list.find((c) => c.protocol === 'udp');
      assert.equal(u?.listener, 'u');
      assert.equal(u?.backend, `127.0.0.1:${udpPort}`);
      assert.equal(u?.bytes_in, 4);
      assert.equal((await adminJson<{ connections: Conn[] }>(admin, 'GET', '/api/v1/connections?limit=3')).connections.length, 3);

      const ends = open.map((c) => endOf(c));
      const r = await adminJson<{ closed: number }>(admin, 'POST', `/api/v1/pools/p/backends/${encodeURIComponent(`127.0.0.1:${echo.port}`)}/shutdown-connections`);
      assert.equal(r.closed, 6);
      await Promise.all(ends);
      const ru = await adminJson<{ closed: number }>(admin, 'POST', `/api/v1/pools/up/backends/${encodeURIComponent(`127.0.0.1:${udpPort}`)}/shutdown-connections`);
      assert.equal(ru.closed, 1);
      await lb.waitForLog((l) => l.msg === 'connection closed' && l.listener === 'u' && l.termination === 'admin_shutdown', 5000, 'udp admin_shutdown');

      // Weight 0 on the only backend: no new connection is served (no_backend).
      const w = await adminJson<{ weight: number }>(admin, 'POST', `/api/v1/pools/p/backends/${encodeURIComponent(`127.0.0.1:${echo.port}`)}/weight`, { body: { weight: 0 } });
      assert.equal(w.weight, 0);
      for (let i = 0; i < 5; i++) {
        const c = await connect(port);
        c.write('x');
        // Refused at once: closed without an echo.
        assert.equal((await readAll(c, 5000, true)).length, 0);
      }
      await waitFor(async () => {
        const st = await adminJson<{ listeners: { name: string; rejected: Record<string, number> }[] }>(admin, 'GET', '/api/v1/status');
        return (st.listeners.find((l) => l.name === 't')?.rejected.no_backend ?? 0) >= 5;
      }, 5000, 'no_backend refusals counted in the workers');
      assert.equal((await adminHttp(admin, 'GET', '/api/v1/connections?listener=t')).status, 200);
    } finally {
      client.close();
    }
  });

  test('a backend removed by a reload while a worker holds a connection to it is `removed` until it ends', async () => {
    const E = `127.0.0.1:${echo.port}`;
    await adminJson(admin, 'POST', `/api/v1/pools/p/backends/${encodeURIComponent(E)}/weight`, { body: { weight: 1 } });
    const port = await lb.port('t');
    const held = await connect(port);
    held.write('hi');
    await readBytes(held, 2);
    const other = await startEchoServer();
    try {
      lb.writeConfig(
        `[global]\nworkers = 2\nconnection_log = true\n[admin]\nbind = "127.0.0.1:0"\n` +
          listenerToml('t', 'p') +
          `[[listeners]]\nname = "u"\nprotocol = "udp"\nbind = "127.0.0.1:0"\npool = "up"\n` +
          poolToml('p', 'round-robin', [`{ address = "127.0.0.1:${other.port}" }`]) +
          poolToml('up', 'round-robin', [`{ address = "127.0.0.1:${udpPort}" }`]),
      );
      await adminJson(admin, 'POST', '/api/v1/reload');
      await waitFor(async () => (await backendOf(admin, 'p', E))?.state === 'removed', 5000, 'removed in the summed status');
      assert.equal((await backendOf(admin, 'p', E))?.active_connections, 1);
      held.write('yo');
      assert.equal((await readBytes(held, 2)).toString(), 'yo');
      held.destroy();
      await waitFor(async () => (await backendOf(admin, 'p', E)) === undefined, 5000, 'gone after the last connection');
    } finally {
      held.destroy();
      await other.close();
    }
  });
});
