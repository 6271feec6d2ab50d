/**
 * PROXY protocol through the real CLI: exact bytes sent to a raw backend (v1,
 * v2, IPv4, IPv6), headers accepted from clients (data in the same segment,
 * ACL on the claimed address), malformed headers closed while others are
 * served.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { spawnSync } from 'node:child_process';
import { connect, readAll, endOf, recordingBackend } from '../helpers/net';
import { L4lbProcess } from '../helpers/l4lb';
import { encodeV1, encodeV2 } from '../../src/proxy';
import { spliceAvailable } from '../../src/native/addon';


const pool = (port: number): string =>
  `[pools.p]\nalgorithm = "round-robin"\nbackends = [{ address = "127.0.0.1:${port}" }]\n[pools.p.health_check]\nenabled = false\n`;

const splice = spliceAvailable();
for (const mode of ['js', 'splice'] as const) {
  const skip = mode === 'splice' && !splice.ok ? `native splice addon not available: ${splice.reason}` : false;
  describe(`PROXY protocol: sending (${mode} pump)`, { skip }, () => {
    let rec: Awaited<ReturnType<typeof recordingBackend>>;
    let lb: L4lbProcess;

    before(async () => {
      rec = await recordingBackend();
      lb = new L4lbProcess(
          `[global]\nsplice = "${mode === 'splice' ? 'on' : 'off'}"\nconnection_log = true\n` +
        `[[listeners]]\nname = "v1"\nbind = "127.0.0.1:0"\npool = "p"\nproxy_protocol = "v1"\n` +
          `[[listeners]]\nname = "v2"\nbind = "127.0.0.1:0"\npool = "p"\nproxy_protocol = "v2"\n` +
          `[[listeners]]\nname = "v1six"\nbind = "[::1]:0"\npool = "p"\nproxy_protocol = "v1"\n` +
          `[[listeners]]\nname = "v2six"\nbind = "[::1]:0"\npool = "p"\nproxy_protocol = "v2"\n` +
          pool(rec.server.port),
      );
    });
    after(async () => {
      await lb.stop();
      await rec.server.close();
    });

    test('v1 over IPv4: the exact header line, then the client bytes', async () => {
      const port = await lb.port('v1');
      const c = await connect(port);
      const local = c.localPort!;
      c.end('payload');
      assert.equal((await readAll(c)).toString(), 'ok');
      const got = await rec.next();
      assert.equal(got.toString('latin1'), `PROXY TCP4 127.0.0.1 127.0.0.1 ${local} ${port}\r\npayload`);
      const line = await lb.waitForLog((l) => l.msg === 'connection closed' && l.client === `127.0.0.1:${local}`, 5000, 'connection closed');
      assert.equal(line.pump, mode, 'the header and the bytes went through this pump');
    });

    test('v2 over IPv4: signature, 0x21, TCP over IPv4, addresses and ports', async () => {
      const port = await lb.port('v2');
      const c = await connect(port);
      const local = c.localPort!;
      c.end('data');
      await readAll(c);
      const got = await rec.next();
      const expected = Buffer.concat([
        Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00, 0x0c]),
        Buffer.from([127, 0, 0, 1, 127, 0, 0, 1]),
        Buffer.from([local >> 8, local & 0xff, port >> 8, port & 0xff]),
        Buffer.from('data'),
      ]);
      assert.deepEqual(got, expected);
    });

    test('v1 and v2 over IPv6', async () => {
      const p1 = await lb.port('v1six');
      const c1 = await connect(p1, '::1');
      const l1 = c1.localPort!;
      c1.end('six');
      await readAll(c1);
      assert.equal((await rec.next()).toString('latin1'), `PROXY TCP6 ::1 ::1 ${l1} ${p1}\r\nsix`);

      const p2 = await lb.port('v2six');
      const c2 = await connect(p2, '::1');
      const l2 = c2.localPort!;
      c2.end('x');
      await readAll(c2);
      const got = await rec.next();
      const loop6 = Buffer.alloc(16);
      loop6[15] = 1;
      const expected = Buffer.concat([
        Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x21, 0x00, 0x24]),
        loop6,
        loop6,
        Buffer.from([l2 >> 8, l2 & 0xff, p2 >> 8, p2 & 0xff]),
        Buffer.from('x'),
      ]);
      assert.deepEqual(got, expected);
    });
  });
}

describe('PROXY protocol: accepting', () => {
  let rec: Awaited<ReturnType<typeof recordingBackend>>;
  let lb: L4lbProcess;

  before(async () => {
    rec = await recordingBackend();
    lb = new L4lbProcess(
      `[global]\nconnection_log = true\n` +
        `[[listeners]]\nname = "acc"\nbind = "127.0.0.1:0"\npool = "p"\naccept_proxy_protocol = true\n` +
        `[[listeners]]\nname = "chain"\nbind = "127.0.0.1:0"\npool = "p"\naccept_proxy_protocol = true\nproxy_protocol = "v1"\n` +
        `[[listeners]]\nname = "acl"\nbind = "127.0.0.1:0"\npool = "p"\naccept_proxy_protocol = true\ndeny = ["10.0.0.0/8"]\n` +
        pool(rec.server.port),
    );
  });
  after(async () => {
    await lb.stop();
    await rec.server.close();
  });

  test('v1 and v2 headers with data in the same segment: the data passes unchanged, the claimed client is logged', async () => {
    const port = await lb.port('acc');
    for (const [i, head] of [
      encodeV1({ address: '192.0.2.10', port: 1111 }, { address: '198.51.100.1', port: 443 }),
      encodeV2({ address: '2001:db8::7', port: 2222 }, { address: '2001:db8::1', port: 443 }),
    ].entries()) {
      const c = await connect(port);
      c.end(Buffer.concat([head, Buffer.from(`hello-${i}`)])); // one write: header and data together
      assert.equal((await readAll(c)).toString(), 'ok');
      assert.equal((await rec.next()).toString(), `hello-${i}`);
    }
    await lb.waitForLog((l) => l.msg === 'connection closed' && l.client === '192.0.2.10:1111', 5000, 'v1 client logged');
    await lb.waitForLog((l) => l.msg === 'connection closed' && l.client === '[2001:db8::7]:2222', 5000, 'v2 client logged');
  });

  test('a header split over several writes is assembled', async () => {
    const port = await lb.port('acc');
    const head = encodeV2({ address: '192.0.2.20', port: 2020 }, { address: '192.0.2.1', port: 80 });
    const c = await connect(port);
    c.setNoDelay(true);
    for (let i = 0; i < head.length; i += 5) {
      c.write(head.subarray(i, i + 5));
      await new Promise((r) => setImmediate(r));
    }
    c.end('after');
    await readAll(c);
    assert.equal((await rec.next()).toString(), 'after');
  });

  test('the header sent on carries the addresses received', async () => {
    const port = await lb.port('chain');
    const c = await connect(port);
    c.end(Buffer.concat([encodeV1({ address: '203.0.113.5', port: 5555 }, { address: '203.0.113.1', port: 8443 }), Buffer.from('z')]));
    await readAll(c);
    assert.equal((await rec.next()).toString('latin1'), 'PROXY TCP4 203.0.113.5 203.0.113.1 5555 8443\r\nz');
  });

  test('the ACL applies to the claimed address', async () => {
    const port = await lb.port('acl');
    const denied = await connect(port);
    denied.write(Buffer.concat([encodeV1({ address: '10.1.2.3', port: 1 }, { address: '10.0.0.1', port: 2 }), Buffer.from('no')]));
    assert.equal((await readAll(denied, 5000, true)).length, 0);
    const ok = await connect(port);
    ok.end(Buffer.concat([encodeV1({ address: '192.0.2.99', port: 1 }, { address: '10.0.0.1', port: 2 }), Buffer.from('yes')]));
    assert.equal((await readAll(ok)).toString(), 'ok');
    assert.equal((await rec.next()).toString(), 'yes');
  });

  test('malformed headers are closed while other clients are served', async () => {
    const port = await lb.port('acc');
    const v2 = encodeV2({ address: '192.0.2.1', port: 1 }, { address: '192.0.2.2', port: 2 });
    const badVersion = Buffer.from(v2);
    badVersion[12] = 0x31;
    const badFamily = Buffer.from(v2);
    badFamily[13] = 0x41;
    const cases: [string, Buffer, boolean][] = [
      ['bad signature', Buffer.from('GET / HTTP/1.0\r\n\r\n'), false],
      ['wrong version', badVersion, false],
      ['unknown family', badFamily, false],
      ['v1 over 107 bytes', Buffer.from(`PROXY TCP4 ${'1'.repeat(120)}`), false],
      ['v1 bad port', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n'), false],
      ['truncated then EOF', v2.subarray(0, 20), true],
    ];
    const closes = cases.map(async ([name, bytes, end]) => {
      const c = await connect(port);
      if (end) c.end(bytes);
      else c.write(bytes);
      const got = await readAll(c, 8000, true);
      assert.equal(got.length, 0, `${name}: no bytes from the backend`);
    });
    // A good client at the same time is served.
    const good = await connect(port);
    good.end(Buffer.concat([encodeV1({ address: '192.0.2.50', port: 50 }, { address: '192.0.2.1', port: 1 }), Buffer.from('fine')]));
    assert.equal((await readAll(good)).toString(), 'ok');
    assert.equal((await rec.next()).toString(), 'fine');
    await Promise.all(closes);
  });

  test('a client that sends no header is closed after 5 s', async () => {
    const port = await lb.port('acc');
    const c = await connect(port);
    const t0 = Date.now();
    const how = await endOf(c, 9000);
    const waited = Date.now() - t0;
    assert.ok(how !== null);
    assert.ok(waited >= 4500 && waited < 8000, `closed after ${waited} ms`);
  });
});

const haproxy = spawnSync('haproxy', ['-v']).status === 0;
describe('PROXY protocol: interoperability with HAProxy', { skip: haproxy ? false : 'haproxy is not installed (scripts/bench-peers.sh installs it)' }, () => {
  test('HAProxy send-proxy-v2 in front of l4lb, l4lb proxy_protocol v2 to a checking backend', async () => {
    const rec = await recordingBackend();
    const lb = new L4lbProcess(
      `[[listeners]]\nname = "in"\nbind = "127.0.0.1:0"\npool = "p"\naccept_proxy_protocol = true\nproxy_protocol = "v2"\n` + pool(rec.server.port),
    );
    const lbPort = await lb.port('in');
    const front = net.createServer();
    await new Promise<void>((r) => front.listen(0, '127.0.0.1', () => r()));
    const hport = (front.address() as net.AddressInfo).port;
    await new Promise<void>((r) => front.close(() => r()));
    const { spawn } = await import('node:child_process');
    const { writeFileSync, mkdtempSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'l4lb-haproxy-'));
    const cfg = join(dir, 'haproxy.cfg');
    writeFileSync(
      cfg,
      `global\n  log stderr format raw local0\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n` +
        `frontend f\n  bind 127.0.0.1:${hport}\n  default_backend b\nbackend b\n  server s1 127.0.0.1:${lbPort} send-proxy-v2\n`,
    );
    const hp = spawn('haproxy', ['-f', cfg, '-db'], { stdio: 'ignore' });
    try {
      let c: net.Socket | null = null;
      for (let i = 0; i < 100 && c === null; i++) {
        c = await connect(hport).catch(async () => {
          await new Promise((r) => setTimeout(r, 50));
          return null;
        });
      }
      assert.ok(c, 'haproxy listening');
      const local = c.localPort;
      c.end('through-haproxy');
      await readAll(c);
      const got = await rec.next();
      const tail = got.subarray(got.length - 'through-haproxy'.length).toString();
      assert.equal(tail, 'through-haproxy');
      // The header l4lb sends on names the original client (the test process).
      assert.equal(got.subarray(0, 12).toString('hex'), '0d0a0d0a000d0a515549540a');
      assert.equal(got[12], 0x21);
      assert.equal(got[13], 0x11);
      const srcPort = got.readUInt16BE(24);
      assert.equal(srcPort, local);
    } finally {
      hp.kill();
      await lb.stop();
      await rec.server.close();
    }
  });
});


