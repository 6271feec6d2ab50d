/**
 * accept_proxy_protocol against hostile clients (SPEC §8.6): the 5 s header
 * wait is an absolute deadline (a header trickled a byte at a time is cut),
 * connections waiting for a header count against max_connections and, by
 * their real peer, against max_connections_per_source, and with
 * trusted_proxies only listed peers may connect at all.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { startServer, readBytes, waitFor, type TestServer } from '../helpers/net';
import { L4lbProcess } from '../helpers/l4lb';
import { poolToml, listenerToml } from '../helpers/toml';
import { tempConfig, runCli } from '../helpers/l4lb';

async function status(admin: number): Promise<{ listeners: { name: string; active_connections: number }[] }> {
  const r = await fetch(`http://127.0.0.1:${admin}/api/v1/status`, { signal: AbortSignal.timeout(5000) });
  return (await r.json()) as { listeners: { name: string; active_connections: number }[] };
}

async function rejected(admin: number, listener: string, reason: string): Promise<number> {
  const m = await (await fetch(`http://127.0.0.1:${admin}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
  const line = m.split('\n').find((l) => l.startsWith('l4lb_connections_rejected_total{') && l.includes(`listener="${listener}"`) && l.includes(`reason="${reason}"`));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

/** Connects from `localAddress`; resolves with the socket once connected. */
async function open(port: number, localAddress = '127.0.0.1'): Promise<net.Socket> {
  const s = net.connect({ port, host: '127.0.0.1', localAddress });
  s.on('error', () => {});
  await once(s, 'connect');
  return s;
}

function closedWithin(s: net.Socket, ms: number): Promise<number> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    if (s.destroyed) return resolve(0);
    const timer = setTimeout(() => reject(new Error(`still open after ${ms} ms`)), ms);
    s.once('close', () => {
      clearTimeout(timer);
      resolve(Date.now() - t0);
    });
  });
}

describe('PROXY header: hostile clients', () => {
  let backend: TestServer;
  let lb: L4lbProcess;
  let admin: number;
  const port: Record<string, number> = {};
  const sockets: net.Socket[] = [];

  before(async () => {
    backend = await startServer((s) => s.on('data', () => s.write('ok')));
    const pool = poolToml('p', 'round-robin', [`{ address = "127.0.0.1:${backend.port}" }`]);
    lb = new L4lbProcess(
      `[admin]\nbind = "127.0.0.1:0"\n` +
        listenerToml('trickle', 'p', 'accept_proxy_protocol = true') +
        listenerToml('limited', 'p', 'accept_proxy_protocol = true\nmax_connections = 10') +
        listenerToml('persrc', 'p', 'accept_proxy_protocol = true\nmax_connections_per_source = 5') +
        listenerToml('trusted', 'p', 'accept_proxy_protocol = true\ntrusted_proxies = ["127.0.0.2/32"]\nallow = ["1.2.3.0/24"]') +
        pool,
    );
    for (const n of ['trickle', 'limited', 'persrc', 'trusted']) port[n] = await lb.port(n);
    admin = (await lb.waitForLog((l) => l.msg === 'admin listening')).port as number;
  });
  after(async () => {
    for (const s of sockets) s.destroy();
    await lb.stop();
    await backend.close();
  });

  test('a header trickled one byte every 200 ms is cut at the 5 s deadline; 30 waiting connections hold only 10 places of max_connections = 10; per-source counts the real peer', async () => {
    const header = Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n');
    const trickler = await open(port.trickle as number);
    const acceptedAt = Date.now();
    sockets.push(trickler);
    let i = 0;
    const drip = setInterval(() => {
      if (i < header.length - 1 && !trickler.destroyed) trickler.write(header.subarray(i, ++i));
    }, 200);
    try {
      // 30 header-less connections against max_connections = 10.
      const waiting: net.Socket[] = [];
      for (let k = 0; k < 30; k++) waiting.push(await open(port.limited as number));
      sockets.push(...waiting);
      await waitFor(async () => (await rejected(admin, 'limited', 'limit')) === 20, 5000, '20 refused for the limit', 50);
      const st = await status(admin);
      assert.equal(st.listeners.find((l) => l.name === 'limited')?.active_connections, 10, 'waiting connections are active connections');
      // Per source: 8 header-less connections from one real peer, limit 5.
      for (let k = 0; k < 8; k++) sockets.push(await open(port.persrc as number));
      await waitFor(async () => (await rejected(admin, 'persrc', 'source_limit')) === 3, 5000, '3 refused for the source limit', 50);
      // The trickler is closed at the deadline (5 s from accept), not kept alive by its bytes.
      await closedWithin(trickler, 8000);
      const age = Date.now() - acceptedAt;
      assert.ok(age >= 4500 && age <= 7500, `closed ${age} ms after the accept`);
      // And so are the waiting ones; the places are free again.
      await Promise.all(waiting.map((s) => closedWithin(s, 3000)));
      await waitFor(async () => (await status(admin)).listeners.find((l) => l.name === 'limited')?.active_connections === 0, 3000, 'limited back to 0');
      const c = await open(port.limited as number);
      sockets.push(c);
      c.write('PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\nhi');
      assert.equal((await readBytes(c, 2)).toString(), 'ok');
    } finally {
      clearInterval(drip);
    }
  });

  test('trusted_proxies: an untrusted peer is refused before a byte is read; a trusted one is admitted under the claimed address', async () => {
    const before = await rejected(admin, 'trusted', 'acl');
    const untrusted = await open(port.trusted as number, '127.0.0.1');
    sockets.push(untrusted);
    // Refused without sending anything: closed at once.
    await closedWithin(untrusted, 2000);
    assert.equal(await rejected(admin, 'trusted', 'acl'), before + 1);
    // A trusted peer (bound to 127.0.0.2) claiming an allowed client.
    const t = await open(port.trusted as number, '127.0.0.2');
    sockets.push(t);
    t.write('PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\nhi');
    assert.equal((await readBytes(t, 2)).toString(), 'ok');
    // The ACL still applies to the claimed address.
    const denied = await open(port.trusted as number, '127.0.0.2');
    sockets.push(denied);
    denied.write('PROXY TCP4 9.9.9.9 5.6.7.8 1111 2222\r\nhi');
    await closedWithin(denied, 2000);
    assert.equal(await rejected(admin, 'trusted', 'acl'), before + 2);
  });

  test('a reload turning max_connections_per_source on counts connections already waiting for a header by their real peer', async () => {
    const cfg = (limit: string): string =>
      `[admin]\nbind = "127.0.0.1:0"\n` +
      listenerToml('w', 'p', `accept_proxy_protocol = true\n${limit}`) +
      poolToml('p', 'round-robin', [`{ address = "127.0.0.1:${backend.port}" }`]);
    const lb2 = new L4lbProcess(cfg(''));
    try {
      const p = await lb2.port('w');
      const admin2 = (await lb2.waitForLog((l) => l.msg === 'admin listening')).port as number;
      const waiting: net.Socket[] = [];
      for (let k = 0; k < 3; k++) waiting.push(await open(p));
      await waitFor(async () => (await status(admin2)).listeners[0]?.active_connections === 3, 3000, '3 waiting');
      lb2.writeConfig(cfg('max_connections_per_source = 3'));
      lb2.signal('SIGHUP');
      await lb2.waitForLog((l) => l.msg === 'config reloaded', 5000, 'reload');
      // The three waiting ones hold the real peer's three places.
      const fourth = await open(p);
      await closedWithin(fourth, 2000);
      assert.equal(await rejected(admin2, 'w', 'source_limit'), 1);
      // Their headers arrive: the real peer's places are given back (the claimed clients take their own).
      for (const [k, s] of waiting.entries()) s.write(`PROXY TCP4 1.2.3.${k + 1} 5.6.7.8 1111 2222\r\nhi`);
      for (const s of waiting) assert.equal((await readBytes(s, 2)).toString(), 'ok');
      const next = await open(p);
      next.write('PROXY TCP4 1.2.3.9 5.6.7.8 1111 2222\r\nhi');
      assert.equal((await readBytes(next, 2)).toString(), 'ok');
      assert.equal(await rejected(admin2, 'w', 'source_limit'), 1);
      for (const s of [...waiting, next]) s.destroy();
    } finally {
      await lb2.stop();
    }
  });

  test('trusted_proxies without accept_proxy_protocol is a configuration error naming the key', async () => {
    const cfg = tempConfig(listenerToml('x', 'p', 'trusted_proxies = ["10.0.0.0/8"]') + poolToml('p', 'round-robin', ['{ address = "127.0.0.1:1" }']));
    try {
      const r = await runCli(['-c', cfg.path, '--check']);
      assert.equal(r.code, 78);
      assert.match(r.stderr, /listeners\[0\]\.trusted_proxies: trusted_proxies applies only with accept_proxy_protocol = true/);
    } finally {
      cfg.cleanup();
    }
  });
});
