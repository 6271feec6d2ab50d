/**
 * Routing TLS passthrough by server name (SPEC §8.2) through the real CLI:
 * `openssl s_server` backends with different certificates and `openssl
 * s_client` clients (the certificate the client sees proves the TLS session
 * is end to end), hand-built ClientHellos to a raw backend that checks the
 * exact bytes, refusals (no_route, bad_client_hello) counted in the metrics,
 * PROXY headers both ways, and a reload of the routes. Once per pump.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { connect, readAll, endOf, waitFor, withTimeout, rssKiB, recordingBackend } from '../helpers/net';
import { L4lbProcess } from '../helpers/l4lb';
import { spliceAvailable } from '../../src/native/addon';
import { alpnExtension, clientHello, clientHelloBody, handshake, paddingExtension, records } from '../support/tls-hello';

const openssl = spawnSync('openssl', ['version'], { encoding: 'utf8' });
const noOpenssl = openssl.status === 0 ? false : 'openssl is not installed (apt-get install openssl)';

/** An `openssl s_server` with its own self-signed certificate (CN = name), answering HTTP GETs (-www). */
interface TlsBackend {
  name: string;
  port: number;
  proc: ChildProcess;
}

async function startSServer(dir: string, name: string): Promise<TlsBackend> {
  const key = join(dir, `${name}.key`);
  const crt = join(dir, `${name}.crt`);
  const gen = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-subj', `/CN=${name}`, '-days', '1', '-keyout', key, '-out', crt], { encoding: 'utf8', timeout: 20000 });
  assert.equal(gen.status, 0, `openssl req: ${gen.stderr}`);
  const proc = spawn('openssl', ['s_server', '-accept', '127.0.0.1:0', '-cert', crt, '-key', key, '-www'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.setEncoding('utf8');
  const port = await withTimeout(new Promise<number>((resolve, reject) => {
    proc.stdout!.on('data', (d: string) => {
      out += d;
      const m = /ACCEPT 127\.0\.0\.1:(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    proc.on('exit', (c) => reject(new Error(`s_server exited ${c}: ${out}`)));
  }), 10000, `s_server ${name}`);
  proc.stdout!.resume();
  proc.stderr!.resume();
  return { name, port, proc };
}

/** `openssl s_client` through l4lb: the CN of the certificate it was shown, or null (refused). */
async function sClient(port: number, servername: string | null): Promise<string | null> {
  const args = ['s_client', '-connect', `127.0.0.1:${port}`, ...(servername === null ? ['-noservername'] : ['-servername', servername])];
  const proc = spawn('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.setEncoding('utf8');
  proc.stdout.on('data', (d: string) => (out += d));
  proc.stderr.resume();
  const timer = setTimeout(() => proc.kill('SIGKILL'), 10000);
  await once(proc, 'exit');
  clearTimeout(timer);
  const m = /^subject=.*CN\s*=\s*([\w.-]+)/m.exec(out);
  return m ? (m[1] as string) : null;
}


async function http(port: number, path: string): Promise<string> {
  const r = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(10000) });
  return r.text();
}

function sample(metrics: string, name: string, labels: Record<string, string>): number {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`).sort().join(',');
  for (const line of metrics.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const inner = line.slice(name.length + 1, line.indexOf('}')).split(',').sort().join(',');
    if (inner === want) return Number(line.slice(line.indexOf('}') + 1).trim());
  }
  return NaN;
}

/** Sends `parts` one write at a time, each on its own (TCP_NODELAY) segment, paced by 1 ms. */
async function writeParts(s: net.Socket, parts: Buffer[]): Promise<void> {
  for (const p of parts) await new Promise<void>((r) => s.write(p, () => setTimeout(r, 1)));
}

const pools = (a: TlsBackend, b: TlsBackend, c: TlsBackend, rec: number): string =>
  [['a', a.port], ['b', b.port], ['c', c.port], ['rec', rec]]
    .map(([n, p]) => `[pools.${n}]\nalgorithm = "round-robin"\nbackends = [{ address = "127.0.0.1:${p}" }]\n[pools.${n}.health_check]\nenabled = false\n`)
    .join('');

function config(mode: 'js' | 'splice', a: TlsBackend, b: TlsBackend, c: TlsBackend, rec: number, apiPool = 'a'): string {
  return `[global]\nsplice = "${mode === 'splice' ? 'on' : 'off'}"\nconnection_log = true\n` +
    `[admin]\nbind = "127.0.0.1:0"\n` +
    `[[listeners]]\nname = "tls"\nbind = "127.0.0.1:0"\nroute_by = "sni"\npool = "c"\n` +
    `routes = [\n  { sni = "api.example.com", pool = "${apiPool}" },\n  { sni = "*.example.com", pool = "b" },\n]\n` +
    `[[listeners]]\nname = "strict"\nbind = "127.0.0.1:0"\nroute_by = "sni"\nclient_hello_timeout = "300ms"\n` +
    `routes = [{ sni = "api.example.com", pool = "a" }, { sni = "raw.test", pool = "rec" }]\n` +
    `[[listeners]]\nname = "raw"\nbind = "127.0.0.1:0"\nroute_by = "sni"\nroutes = [{ sni = "raw.test", pool = "rec" }]\n` +
    `[[listeners]]\nname = "pp"\nbind = "127.0.0.1:0"\nroute_by = "sni"\naccept_proxy_protocol = true\nproxy_protocol = "v1"\n` +
    `routes = [{ sni = "raw.test", pool = "rec" }]\n` +
    pools(a, b, c, rec);
}

const splice = spliceAvailable();
let dir = '';
let A: TlsBackend;
let B: TlsBackend;
let C: TlsBackend;

before(async () => {
  if (noOpenssl) return;
  dir = mkdtempSync(join(tmpdir(), 'l4lb-sni-'));
  [A, B, C] = await Promise.all([startSServer(dir, 'backend-a'), startSServer(dir, 'backend-b'), startSServer(dir, 'backend-c')]);
});
after(() => {
  for (const s of [A, B, C]) s?.proc.kill('SIGKILL');
  if (dir !== '') rmSync(dir, { recursive: true, force: true });
});

for (const mode of ['js', 'splice'] as const) {
  const skip = noOpenssl || (mode === 'splice' && !splice.ok ? `native splice addon not available: ${splice.reason}` : false);
  describe(`SNI routing (${mode} pump)`, { skip }, () => {
    let lb: L4lbProcess;
    let rec: Awaited<ReturnType<typeof recordingBackend>>;
    let tlsPort: number;
    let strict: number;
    let pp: number;
    let raw: number;
    let admin: number;

    before(async () => {
      rec = await recordingBackend();
      lb = new L4lbProcess(config(mode, A, B, C, rec.server.port));
      [tlsPort, strict, pp, raw] = await Promise.all([lb.port('tls'), lb.port('strict'), lb.port('pp'), lb.port('raw')]);
      admin = (await lb.waitForLog((l) => l.msg === 'admin listening', 10000, 'admin listening')).port as number;
    });
    after(async () => {
      await lb.stop();
      await rec.server.close();
    });

    test('openssl s_client: exact, wildcard, case, unknown (fallback) and no SNI reach the right certificate', async () => {
      assert.equal(await sClient(tlsPort, 'api.example.com'), 'backend-a');
      assert.equal(await sClient(tlsPort, 'www.example.com'), 'backend-b', 'wildcard');
      assert.equal(await sClient(tlsPort, 'API.Example.Com'), 'backend-a', 'case-insensitive');
      assert.equal(await sClient(tlsPort, 'a.b.example.com'), 'backend-c', 'wildcard is one label: fallback');
      assert.equal(await sClient(tlsPort, 'unknown.org'), 'backend-c', 'fallback pool');
      assert.equal(await sClient(tlsPort, null), 'backend-c', 'no SNI: fallback pool');
      const line = await lb.waitForLog((l) => l.msg === 'connection closed' && l.sni === 'api.example.com', 5000, 'log with sni');
      assert.equal(line.listener, 'tls');
      assert.equal(line.backend, `127.0.0.1:${A.port}`);
      assert.equal(line.pump, mode);
      assert.ok((line.bytes_in as number) > 200, 'the ClientHello is counted in bytes_in');
      const none = await lb.waitForLog((l) => l.msg === 'connection closed' && l.listener === 'tls' && l.sni === null, 5000, 'log with sni null');
      assert.equal(none.backend, `127.0.0.1:${C.port}`);
    });

    test('Node tls.connect with servername: the TLS session is end to end', async () => {
      const s = tls.connect({ port: tlsPort, host: '127.0.0.1', servername: 'shop.example.com', rejectUnauthorized: false });
      await withTimeout(once(s, 'secureConnect'), 5000, 'secureConnect');
      assert.equal(s.getPeerCertificate().subject.CN, 'backend-b');
      s.write('GET / HTTP/1.0\r\n\r\n');
      const body = (await readAll(s as unknown as net.Socket, 10000, true)).toString();
      assert.match(body, /^HTTP\/1\.0 200 ok/, 'an HTTP answer from s_server through the TLS session');
    });

    test('no fallback: unknown name and no SNI are refused and counted as no_route', async () => {
      assert.equal(await sClient(strict, 'unknown.org'), null);
      assert.equal(await sClient(strict, null), null);
      assert.equal(await sClient(strict, 'api.example.com'), 'backend-a');
      const m = await http(admin, '/metrics');
      assert.equal(sample(m, 'l4lb_connections_rejected_total', { listener: 'strict', reason: 'no_route' }), 2);
      assert.equal(sample(m, 'l4lb_connections_rejected_total', { listener: 'tls', reason: 'no_route' }), 0);
    });

    test('a ClientHello written one byte at a time reaches the backend unchanged, then the data', async () => {
      const hello = clientHello({ sni: 'raw.test' });
      const s = await connect(raw);
      s.setNoDelay(true);
      const reply = readAll(s);
      await writeParts(s, Array.from(hello, (_, i) => hello.subarray(i, i + 1)));
      s.end('after-hello');
      assert.equal((await reply).toString(), 'ok');
      assert.ok((await rec.next()).equals(Buffer.concat([hello, Buffer.from('after-hello')])), 'exact bytes');
    });

    test('a ClientHello and a FIN in one segment: the FIN is passed on after the ClientHello', async () => {
      for (let i = 0; i < 20; i++) {
        const hello = clientHello({ sni: 'raw.test' });
        const s = await connect(raw);
        const reply = readAll(s);
        s.end(hello);
        assert.equal((await reply).toString(), 'ok', `connection ${i}`);
        assert.ok((await rec.next()).equals(hello));
      }
    });

    test('a ClientHello split over two TLS records (and two segments), and one of ~16 KiB', async () => {
      const hs = handshake(clientHelloBody({ sni: 'raw.test' }));
      const two = records(hs, [40, 16384]);
      const s = await connect(raw);
      const reply = readAll(s);
      await writeParts(s, [two.subarray(0, 45), two.subarray(45)]);
      s.end();
      assert.equal((await reply).toString(), 'ok');
      assert.ok((await rec.next()).equals(two));

      const alpn = Array.from({ length: 300 }, (_, i) => `protocol-${i}`);
      const big = records(handshake(clientHelloBody({ sni: 'RAW.test', extensions: [alpnExtension(alpn), paddingExtension(13_000)] })));
      assert.ok(big.length > 16_384 && big.length < 20_000, `size ${big.length}`);
      const t = await connect(raw);
      const reply2 = readAll(t);
      const parts: Buffer[] = [];
      for (let i = 0; i < big.length; i += 1400) parts.push(big.subarray(i, i + 1400));
      await writeParts(t, parts);
      t.end('tail');
      assert.equal((await reply2).toString(), 'ok');
      assert.ok((await rec.next()).equals(Buffer.concat([big, Buffer.from('tail')])), 'exact bytes of the large ClientHello');
      await lb.waitForLog((l) => l.msg === 'connection closed' && l.sni === 'raw.test' && l.bytes_in === big.length + 4, 5000, 'bytes_in of the large hello');
    });

    test('PROXY header from the client first, PROXY header to the backend, then the ClientHello unchanged', async () => {
      const hello = clientHello({ sni: 'raw.test' });
      const s = await connect(pp);
      const reply = readAll(s);
      await writeParts(s, [Buffer.from('PROXY TCP4 198.51.100.7 203.0.113.9 40000 443\r\n'), hello.subarray(0, 30), hello.subarray(30)]);
      s.end('x');
      assert.equal((await reply).toString(), 'ok');
      const got = await rec.next();
      const head = 'PROXY TCP4 198.51.100.7 203.0.113.9 40000 443\r\n';
      assert.equal(got.subarray(0, head.length).toString('latin1'), head);
      assert.ok(got.subarray(head.length).equals(Buffer.concat([hello, Buffer.from('x')])), 'ClientHello after the header, unchanged');
      // The same in one segment: header and ClientHello together.
      const t = await connect(pp);
      const reply2 = readAll(t);
      t.end(Buffer.concat([Buffer.from(head), hello]));
      assert.equal((await reply2).toString(), 'ok');
      assert.ok((await rec.next()).equals(Buffer.concat([Buffer.from(head), hello])));
    });

    test('not TLS, a lying length, a truncated ClientHello then silence: bad_client_hello; others unaffected', async () => {
      const before = await http(admin, '/metrics');
      const base = sample(before, 'l4lb_connections_rejected_total', { listener: 'strict', reason: 'bad_client_hello' });
      // An HTTP request: closed at once.
      const h = await connect(strict);
      h.write('GET / HTTP/1.1\r\nHost: raw.test\r\n\r\n');
      assert.notEqual(await endOf(h, 2000), undefined);
      // A handshake length that lies (shorter than the body): malformed, closed at once.
      const lie = clientHello({ sni: 'raw.test' });
      lie.writeUInt16BE(lie.readUInt16BE(7) - 5, 7);
      const l = await connect(strict);
      l.write(lie);
      await endOf(l, 2000);
      // Truncated, then silence: closed after client_hello_timeout (300ms), not before; a good client meanwhile.
      const hello = clientHello({ sni: 'api.example.com' });
      const t0 = Date.now();
      const tr = await connect(strict);
      tr.write(hello.subarray(0, 50));
      const ended = endOf(tr, 5000);
      assert.equal(await sClient(strict, 'api.example.com'), 'backend-a', 'another client is served meanwhile');
      await ended;
      const took = Date.now() - t0;
      assert.ok(took >= 280 && took < 3000, `closed after ${took} ms`);
      // Trickling bytes does not extend the deadline (absolute, not idle).
      const t1 = Date.now();
      const tk = await connect(strict);
      const trickle = setInterval(() => { if (!tk.destroyed) tk.write(Buffer.from([0x00])); }, 50);
      tk.write(hello.subarray(0, 9));
      await endOf(tk, 5000);
      clearInterval(trickle);
      assert.ok(Date.now() - t1 < 1500, `trickled connection closed after ${Date.now() - t1} ms`);
      // A client that leaves without sending a byte (a port probe) is not a bad ClientHello.
      const probe = await connect(strict);
      probe.end();
      await endOf(probe, 2000);
      await lb.waitForLog((x) => x.msg === 'connection closed' && x.listener === 'strict' && x.reason === 'client_gone', 5000, 'client_gone');
      await waitFor(async () => {
        const m = await http(admin, '/metrics');
        return sample(m, 'l4lb_connections_rejected_total', { listener: 'strict', reason: 'bad_client_hello' }) === base + 4;
      }, 5000, 'four bad_client_hello rejections');
      const m = await http(admin, '/metrics');
      assert.equal(sample(m, 'l4lb_connections_rejected_total', { listener: 'strict', reason: 'bad_client_hello' }), base + 4, 'exactly four');
      const line = await lb.waitForLog((x) => x.msg === 'connection closed' && x.reason === 'bad_client_hello', 5000, 'log line');
      assert.equal(line.backend, null);
    });

    test('many bad and truncated ClientHellos: every session released, memory bounded', async () => {
      const big = records(handshake(clientHelloBody({ sni: 'raw.test', extensions: [paddingExtension(30_000)] })));
      const round = async (): Promise<void> => {
        await Promise.all(Array.from({ length: 100 }, async (_, i) => {
          const s = await connect(strict);
          s.write(i % 2 === 0 ? big.subarray(0, 20_000 + i) : Buffer.from('SSH-2.0-OpenSSH_9.6\r\n'));
          await endOf(s, 5000);
          s.destroy();
        }));
      };
      await round();
      const rss0 = rssKiB(lb.child.pid!);
      for (let k = 0; k < 4; k++) await round();
      await waitFor(async () => sample(await http(admin, '/metrics'), 'l4lb_connections_active', { listener: 'strict' }) === 0, 5000, 'no session left');
      const grew = rssKiB(lb.child.pid!) - rss0;
      assert.ok(grew < 40_000, `RSS grew by ${grew} KiB over 400 refused connections`);
      assert.equal(await sClient(strict, 'api.example.com'), 'backend-a', 'still serving');
    });

    test('status API shows route_by and routes; a reload changes routes for new connections only', async () => {
      const st = JSON.parse(await http(admin, '/api/v1/status')) as { listeners: { name: string; route_by: string; routes: unknown[]; pool: string | null }[] };
      const l = st.listeners.find((x) => x.name === 'tls');
      assert.equal(l?.route_by, 'sni');
      assert.deepEqual(l?.routes, [{ sni: 'api.example.com', pool: 'a' }, { sni: '*.example.com', pool: 'b' }]);
      assert.equal(l?.pool, 'c');
      assert.equal(st.listeners.find((x) => x.name === 'strict')?.pool, null, 'no fallback pool');

      // An open TLS session to backend-a, kept across the reload.
      const old = tls.connect({ port: tlsPort, host: '127.0.0.1', servername: 'api.example.com', rejectUnauthorized: false });
      await withTimeout(once(old, 'secureConnect'), 5000, 'secureConnect');
      assert.equal(old.getPeerCertificate().subject.CN, 'backend-a');
      lb.writeConfig(config(mode, A, B, C, rec.server.port, 'b'));
      const gen = lb.logs.filter((x) => x.msg === 'config reloaded').length;
      lb.signal('SIGHUP');
      await waitFor(() => lb.logs.filter((x) => x.msg === 'config reloaded').length > gen, 10000, 'config reloaded');
      assert.equal(await sClient(tlsPort, 'api.example.com'), 'backend-b', 'new connections use the new route');
      old.write('GET / HTTP/1.0\r\n\r\n');
      const body = (await readAll(old as unknown as net.Socket, 10000, true)).toString();
      assert.match(body, /^HTTP\/1\.0 200 ok/, 'the open connection went on untouched');
      const st2 = JSON.parse(await http(admin, '/api/v1/status')) as { listeners: { name: string; routes: unknown[] }[] };
      assert.deepEqual(st2.listeners.find((x) => x.name === 'tls')?.routes, [{ sni: 'api.example.com', pool: 'b' }, { sni: '*.example.com', pool: 'b' }]);
    });
  });
}
