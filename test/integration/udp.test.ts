/**
 * UDP through the real CLI: per-client sessions with their own replies,
 * stickiness, udp_responses, idle expiry, large datagrams, backend failure
 * (ICMP port unreachable) moving sessions, ACLs and limits.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { withTimeout, waitFor } from '../helpers/net';
import { L4lbProcess } from '../helpers/l4lb';
import { poolToml } from '../helpers/toml';
import { spliceAvailable } from '../../src/native/addon';

interface UdpBackend {
  socket: dgram.Socket;
  port: number;
  received: number;
  close(): Promise<void>;
}

/** A UDP backend answering `<tag>:<datagram>` (or the datagram itself with `raw`). */
async function udpBackend(tag: string, raw = false, family: 'udp4' | 'udp6' = 'udp4'): Promise<UdpBackend> {
  const socket = dgram.createSocket({ type: family, recvBufferSize: 1 << 20, sendBufferSize: 1 << 20 });
  const b: UdpBackend = {
    socket,
    port: 0,
    received: 0,
    close: async () => {
      try {
        socket.close();
      } catch {
        /* closed */
      }
    },
  };
  socket.on('message', (msg, rinfo) => {
    b.received++;
    socket.send(raw ? msg : Buffer.concat([Buffer.from(`${tag}:`), msg]), rinfo.port, rinfo.address);
  });
  socket.bind(0, family === 'udp6' ? '::1' : '127.0.0.1');
  await once(socket, 'listening');
  b.port = socket.address().port;
  return b;
}

/** A client socket with a queue of replies. */
async function udpClient(family: 'udp4' | 'udp6' = 'udp4'): Promise<{ s: dgram.Socket; ask(port: number, msg: string | Buffer, host?: string): Promise<Buffer>; close(): void }> {
  const s = dgram.createSocket({ type: family, recvBufferSize: 1 << 20, sendBufferSize: 1 << 20 });
  s.bind(0, family === 'udp6' ? '::1' : '127.0.0.1');
  await once(s, 'listening');
  const waiting: ((b: Buffer) => void)[] = [];
  const got: Buffer[] = [];
  s.on('message', (m) => {
    const w = waiting.shift();
    if (w) w(m);
    else got.push(m);
  });
  return {
    s,
    ask: (port, msg, host = family === 'udp6' ? '::1' : '127.0.0.1') => {
      s.send(msg, port, host);
      const early = got.shift();
      if (early) return Promise.resolve(early);
      return withTimeout(new Promise<Buffer>((r) => waiting.push(r)), 3000, 'udp reply');
    },
    close: () => s.close(),
  };
}

const udpListener = (name: string, pool: string, extra = '', bind = '127.0.0.1:0'): string =>
  `[[listeners]]\nname = "${name}"\nprotocol = "udp"\nbind = "${bind}"\npool = "${pool}"\n${extra}\n`;

/** UDP data path: the JavaScript listener (`splice = "off"`) or the native engine (`splice = "on"`). */
type UdpPath = 'js' | 'engine';
const G = (path: UdpPath, extra = ''): string => `[global]\nsplice = "${path === 'engine' ? 'on' : 'off'}"\ndrain_timeout = "1s"\n${extra}\n`;
const native = spliceAvailable();

// The whole UDP suite runs once per data path; the engine run is skipped
// (with the reason) where the addon is not built.
for (const path of ['js', 'engine'] as const) {
  const skip = path === 'engine' && !native.ok ? `native addon not available: ${native.reason}` : false;
describe(`udp [${path}]`, { skip }, () => {
  let a: UdpBackend;
  let b: UdpBackend;
  let raw: UdpBackend;
  let lb: L4lbProcess;

  before(async () => {
    a = await udpBackend('A');
    b = await udpBackend('B');
    raw = await udpBackend('R', true);
    const two = [`{ address = "127.0.0.1:${a.port}" }`, `{ address = "127.0.0.1:${b.port}" }`];
    lb = new L4lbProcess(
      G(path, 'connection_log = true') +
        udpListener('u', 'ab') +
        poolToml('ab', 'round-robin', two) +
        udpListener('ch', 'abch') +
        poolToml('abch', 'consistent-hash', two) +
        udpListener('dns', 'ab', 'udp_responses = 1') +
        udpListener('idle', 'ab', 'idle_timeout = "300ms"') +
        udpListener('big', 'raw') +
        poolToml('raw', 'round-robin', [`{ address = "127.0.0.1:${raw.port}" }`]) +
        udpListener('deny', 'ab', 'deny = ["127.0.0.0/8"]') +
        udpListener('cap', 'ab', 'max_connections = 2'),
    );
  });
  after(async () => {
    await lb.stop();
    await a.close();
    await b.close();
    await raw.close();
  });

  test('120 clients each get their own replies; each session sticks to one backend', async () => {
    const port = await lb.port('u');
    const clients = await Promise.all(Array.from({ length: 120 }, () => udpClient()));
    try {
      const first = await Promise.all(clients.map((c, i) => c.ask(port, `hello-${i}`)));
      const tags = first.map((r, i) => {
        const [tag, body] = r.toString().split(':');
        assert.equal(body, `hello-${i}`, 'each client gets the reply to its own datagram');
        return tag;
      });
      assert.ok(tags.includes('A') && tags.includes('B'), 'round-robin spreads sessions');
      for (let round = 0; round < 3; round++) {
        const again = await Promise.all(clients.map((c, i) => c.ask(port, `again-${round}-${i}`)));
        again.forEach((r, i) => assert.equal(r.toString(), `${tags[i]}:again-${round}-${i}`));
      }
    } finally {
      for (const c of clients) c.close();
    }
  });

  test('consistent-hash: a client\'s datagrams all reach the same backend', async () => {
    const port = await lb.port('ch');
    const c = await udpClient();
    try {
      const tag = (await c.ask(port, 'x')).toString().split(':')[0];
      for (let i = 0; i < 10; i++) assert.equal((await c.ask(port, `y${i}`)).toString(), `${tag}:y${i}`);
    } finally {
      c.close();
    }
  });

  test('udp_responses = 1: each request/response is one session', async () => {
    const port = await lb.port('dns');
    const c = await udpClient();
    try {
      for (let i = 0; i < 3; i++) assert.match((await c.ask(port, `q${i}`)).toString(), new RegExp(`^[AB]:q${i}$`));
      await waitFor(() => lb.logs.filter((l) => l.msg === 'connection closed' && l.listener === 'dns' && l.reason === 'responses').length >= 3, 5000, 'three sessions ended by responses');
      const line = lb.logs.find((l) => l.msg === 'connection closed' && l.listener === 'dns');
      assert.equal(line?.pump, path, 'the data path that carried the datagrams');
    } finally {
      c.close();
    }
  });

  test('an idle session expires after idle_timeout', async () => {
    const port = await lb.port('idle');
    const c = await udpClient();
    try {
      await c.ask(port, 'ping');
      const line = await lb.waitForLog((l) => l.msg === 'connection closed' && l.listener === 'idle', 5000, 'idle expiry');
      assert.equal(line.reason, 'idle_timeout');
      assert.ok((line.duration_ms as number) >= 250, `expired after ${line.duration_ms} ms`);
      assert.equal(line.bytes_in, 4);
      assert.equal(line.bytes_out, 6);
    } finally {
      c.close();
    }
  });

  test('a 65,000-byte datagram passes whole and unchanged both ways', async () => {
    const port = await lb.port('big');
    const c = await udpClient();
    try {
      const big = Buffer.alloc(65_000);
      for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
      const back = await c.ask(port, big);
      assert.equal(back.length, big.length);
      assert.ok(back.equals(big));
    } finally {
      c.close();
    }
  });

  test('deny drops datagrams of refused sources', async () => {
    const port = await lb.port('deny');
    const c = await udpClient();
    try {
      await assert.rejects(c.ask(port, 'x'), /timed out/);
    } finally {
      c.close();
    }
  });

  test('max_connections caps sessions: a third client is dropped while two are open', async () => {
    const port = await lb.port('cap');
    const [c1, c2, c3] = await Promise.all([udpClient(), udpClient(), udpClient()]);
    try {
      await c1.ask(port, '1');
      await c2.ask(port, '2');
      await assert.rejects(c3.ask(port, '3'), /timed out/);
      assert.match((await c1.ask(port, '1b')).toString(), /:1b$/);
    } finally {
      c1.close();
      c2.close();
      c3.close();
    }
  });
});

describe(`udp [${path}] backend failure`, { skip }, () => {
  test('a stopped backend (ICMP port unreachable) ends its sessions; the next datagram goes to a healthy one', async () => {
    const a = await udpBackend('A');
    const b = await udpBackend('B');
    const lb = new L4lbProcess(
      G(path, 'connection_log = true') +
        udpListener('u', 'p') +
        poolToml('p', 'round-robin', [`{ address = "127.0.0.1:${a.port}" }`, `{ address = "127.0.0.1:${b.port}" }`], '', 'interval = "10s"\nfall = 1\nrise = 1'),
    );
    const clients = await Promise.all(Array.from({ length: 6 }, () => udpClient()));
    try {
      const port = await lb.port('u');
      const tags = (await Promise.all(clients.map((c, i) => c.ask(port, `${i}`)))).map((r) => r.toString().split(':')[0]);
      assert.ok(tags.includes('A'));
      await a.close();
      // Clients of A: the first datagram after the stop draws ECONNREFUSED (the
      // session ends, A is marked down); the next one lands on B.
      for (const [i, c] of clients.entries()) {
        if (tags[i] !== 'A') continue;
        c.s.send('lost?', port, '127.0.0.1');
      }
      await lb.waitForLog((l) => l.msg === 'connection closed' && l.reason === 'backend_refused', 5000, 'session ended by ECONNREFUSED');
      await lb.waitForLog((l) => l.msg === 'backend state changed' && l.to === 'down', 5000, 'A marked down');
      for (const [i, c] of clients.entries()) {
        // Drain any late reply, then ask again.
        const r = await c.ask(port, `retry-${i}`).catch(async () => c.ask(port, `retry-${i}`));
        assert.match(r.toString(), /^B:/);
      }
      assert.ok(lb.exitCode === null, 'l4lb is still running');
    } finally {
      for (const c of clients) c.close();
      await lb.stop();
      await b.close();
    }
  });

  test('IPv6 listener and backend', async () => {
    const b6 = await udpBackend('S', false, 'udp6');
    const lb = new L4lbProcess(G(path) + udpListener('six', 'p6', '', '[::1]:0') + poolToml('p6', 'round-robin', [`{ address = "[::1]:${b6.port}" }`]));
    const c = await udpClient('udp6');
    try {
      const port = await lb.port('six');
      assert.equal((await c.ask(port, 'v6')).toString(), 'S:v6');
    } finally {
      c.close();
      await lb.stop();
      await b6.close();
    }
  });
});
}
