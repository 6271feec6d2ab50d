/**
 * The incremental ClientHello reader (src/tls/client-hello.ts) and the SNI
 * route table (src/tls/sni-routes.ts): exact cases, then a seeded fuzz.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ClientHelloReader, CLIENT_HELLO_MAX_BYTES, readClientHello, type ClientHelloResult } from '../../src/tls/client-hello';
import { SniRouter, sniPatternError } from '../../src/tls/sni-routes';
import {
  alpnExtension, clientHello, clientHelloBody, ext, handshake, paddingExtension, records, runHelloFuzz, sniExtension,
} from '../support/tls-hello';

const done = (sni: string | null, length: number): ClientHelloResult => ({ state: 'done', sni, length });
const reason = (r: ClientHelloResult): string => (r.state === 'bad' ? r.reason : r.state);

test('one record in one chunk: the name, lower-cased, and the exact length', () => {
  const b = clientHello({ sni: 'API.Example.COM' });
  assert.deepEqual(readClientHello(b), done('api.example.com', b.length));
});

test('bytes after the ClientHello are not part of it; pushes after done keep the answer', () => {
  const b = clientHello({ sni: 'a.example.com' });
  const r = new ClientHelloReader();
  assert.deepEqual(r.push(Buffer.concat([b, Buffer.from('early data')])), done('a.example.com', b.length));
  assert.deepEqual(r.push(Buffer.from([0xff])), done('a.example.com', b.length));
});

test('no server_name extension, and no extensions block at all: done with null', () => {
  const a = clientHello({ sni: null });
  assert.deepEqual(readClientHello(a), done(null, a.length));
  const b = records(handshake(clientHelloBody({ noExtensionsBlock: true })));
  assert.deepEqual(readClientHello(b), done(null, b.length));
});

test('byte by byte, and with empty chunks: same answer, decided at the last byte', () => {
  const b = clientHello({ sni: 'slow.example.com' });
  const r = new ClientHelloReader();
  for (let i = 0; i < b.length - 1; i++) {
    assert.equal(r.push(b.subarray(i, i + 1)).state, 'need-more', `byte ${i}`);
    assert.equal(r.push(Buffer.alloc(0)).state, 'need-more');
  }
  assert.deepEqual(r.push(b.subarray(b.length - 1)), done('slow.example.com', b.length));
});

test('a handshake message fragmented over two, and over one-byte, records', () => {
  const hs = handshake(clientHelloBody({ sni: 'frag.example.com' }));
  const two = records(hs, [10, 16384]);
  assert.equal(two.length, hs.length + 10);
  assert.deepEqual(readClientHello(two), done('frag.example.com', two.length));
  const tiny = records(hs, [1]);
  assert.equal(tiny.length, hs.length * 6);
  assert.deepEqual(readClientHello(tiny), done('frag.example.com', tiny.length));
  // The handshake header itself split across records.
  const hdr = records(hs, [2, 3, 16384]);
  assert.deepEqual(readClientHello(hdr), done('frag.example.com', hdr.length));
});

test('a large ClientHello (padding, many ALPN values) over several records, up to 64 KiB', () => {
  const alpn = Array.from({ length: 500 }, (_, i) => `proto-${i}`);
  const hs = handshake(clientHelloBody({ sni: 'big.example.com', extensions: [alpnExtension(alpn), paddingExtension(40_000)] }));
  const wire = records(hs);
  assert.ok(wire.length > 40_000 && wire.length < CLIENT_HELLO_MAX_BYTES);
  assert.deepEqual(readClientHello(wire), done('big.example.com', wire.length));
  const r = new ClientHelloReader();
  let res: ClientHelloResult = { state: 'need-more' };
  for (let i = 0; i < wire.length; i += 1000) res = r.push(wire.subarray(i, i + 1000));
  assert.deepEqual(res, done('big.example.com', wire.length));
  assert.ok(r.bufferedBytes === 0, 'the copy is released once decided');
});

test('exactly 64 KiB is accepted; one byte more is too_large (decided early from the length)', () => {
  const base = handshake(clientHelloBody({ sni: 'x.example.com', extensions: [paddingExtension(0)] }));
  // Wire = 5 bytes per 16384-byte record + handshake; choose padding so wire is exactly 65536.
  const records4 = 4 * 5 + base.length;
  const pad = CLIENT_HELLO_MAX_BYTES - records4;
  const hs = handshake(clientHelloBody({ sni: 'x.example.com', extensions: [paddingExtension(pad)] }));
  const wire = records(hs);
  assert.equal(wire.length, CLIENT_HELLO_MAX_BYTES);
  assert.deepEqual(readClientHello(wire), done('x.example.com', CLIENT_HELLO_MAX_BYTES));
  const over = records(handshake(clientHelloBody({ sni: 'x.example.com', extensions: [paddingExtension(pad + 1)] })));
  // Only the first 9 bytes (record header + handshake header) are needed to refuse it.
  assert.equal(reason(readClientHello(over.subarray(0, 9))), 'too_large');
  // Tiny records make even a small message exceed the bound: refused once 64 KiB were read.
  const tinyHs = handshake(clientHelloBody({ sni: 'x.example.com', extensions: [paddingExtension(12_000)] }));
  const tiny = records(tinyHs, [1]);
  const r = new ClientHelloReader();
  assert.equal(r.push(tiny.subarray(0, CLIENT_HELLO_MAX_BYTES)).state, 'need-more');
  assert.equal(reason(r.push(tiny.subarray(CLIENT_HELLO_MAX_BYTES, CLIENT_HELLO_MAX_BYTES + 1))), 'too_large');
});

test('not TLS: refused at the first byte', () => {
  assert.equal(reason(readClientHello(Buffer.from('G'))), 'not_tls');
  assert.equal(reason(readClientHello(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'))), 'not_tls');
  assert.equal(reason(readClientHello(Buffer.from([0x80, 0x2e, 0x01]))), 'not_tls', 'SSLv2-style hello');
  assert.equal(reason(readClientHello(Buffer.from([0x17, 0x03, 0x03]))), 'not_tls', 'application data');
});

test('bad record framing and wrong handshake type', () => {
  assert.equal(reason(readClientHello(Buffer.from([0x16, 0x02]))), 'bad_record');
  assert.equal(reason(readClientHello(Buffer.from([0x16, 0x03, 0x09]))), 'bad_record');
  assert.equal(reason(readClientHello(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x00]))), 'bad_record', 'empty record');
  assert.equal(reason(readClientHello(Buffer.from([0x16, 0x03, 0x01, 0x40, 0x01]))), 'bad_record', '16385-byte record');
  assert.equal(reason(readClientHello(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x04, 0x02]))), 'not_client_hello');
  // A second record of another type before the message is complete.
  const hs = handshake(clientHelloBody());
  const first = records(hs.subarray(0, 20));
  assert.equal(reason(readClientHello(Buffer.concat([first, Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28])]))), 'bad_record');
});

test('lying lengths: record, handshake and inner lengths', () => {
  const good = clientHello({ sni: 'lie.example.com' });
  // Handshake length claims more than is sent: the reader waits (need-more), then EOF says truncated.
  const more = Buffer.from(good);
  more.writeUInt16BE(more.readUInt16BE(7) + 50, 7);
  const r = new ClientHelloReader();
  assert.equal(r.push(more).state, 'need-more');
  assert.equal(reason(r.end()), 'truncated');
  // Handshake length claims less: the body ends inside the extensions.
  const less = Buffer.from(good);
  less.writeUInt16BE(less.readUInt16BE(7) - 3, 7);
  assert.equal(reason(readClientHello(less)), 'malformed');
  // A handshake length below the fixed fields.
  assert.equal(reason(readClientHello(Buffer.from([0x16, 3, 1, 0, 8, 1, 0, 0, 4]))), 'malformed');
  // session_id longer than 32.
  const sid = Buffer.from(good);
  sid[5 + 4 + 34] = 33;
  assert.equal(reason(readClientHello(sid)), 'malformed');
});

test('malformed server_name extensions', () => {
  const withExt = (e: Buffer): Buffer => clientHello({ sni: null, extensions: [e] });
  assert.equal(reason(readClientHello(withExt(ext(0, Buffer.alloc(0))))), 'malformed', 'empty extension');
  assert.equal(reason(readClientHello(withExt(ext(0, Buffer.from([0, 5, 0, 0, 1, 0x61]))))), 'malformed', 'list length lies');
  assert.equal(reason(readClientHello(withExt(ext(0, Buffer.from([0, 4, 0, 0, 9, 0x61]))))), 'malformed', 'name length overruns');
  assert.equal(reason(readClientHello(withExt(sniExtension('a.com', 'b.com')))), 'malformed', 'two host_names');
  assert.equal(reason(readClientHello(withExt(sniExtension('bad name')))), 'malformed', 'a space');
  assert.equal(reason(readClientHello(withExt(sniExtension('caf\u00e9.com')))), 'malformed', 'not ASCII');
  assert.equal(reason(readClientHello(withExt(ext(0, Buffer.from([0, 3, 0, 0, 0]))))), 'malformed', 'empty host_name');
  assert.equal(
    reason(readClientHello(clientHello({ sni: 'a.com', extensions: [sniExtension('b.com')] }))),
    'malformed',
    'server_name twice',
  );
  // An unknown name type next to a host_name is skipped.
  const other = ext(0, Buffer.from([0, 10, 7, 0, 1, 0x7a, 0, 0, 3, 0x61, 0x2e, 0x62]));
  const b = withExt(other);
  assert.deepEqual(readClientHello(b), done('a.b', b.length));
});

test('never throws on hostile input types', () => {
  const r = new ClientHelloReader();
  for (const v of [null, undefined, 42, 'x', {}, [1, 2]] as unknown[]) {
    const res = new ClientHelloReader().push(v as Uint8Array);
    assert.equal(res.state, 'bad');
  }
  assert.equal(r.push(new Uint8Array([0x16])).state, 'need-more');
});

test('fuzz: 20,000 seeded valid and mutated ClientHellos with random chunk splits', () => {
  const t0 = Date.now();
  const stats = runHelloFuzz(0xc11e47, 20_000);
  const ms = Date.now() - t0;
  assert.ok(ms < 20_000, `fuzz took ${ms} ms`);
  assert.ok(stats.done > 4_000, `only ${stats.done} accepted`);
  assert.ok(stats.needMore > 500, `need-more ${stats.needMore}`);
  for (const c of ['not_tls', 'bad_record', 'not_client_hello', 'malformed']) {
    assert.ok((stats.bad[c] ?? 0) > 0, `no ${c} produced: ${JSON.stringify(stats.bad)}`);
  }
  assert.ok(stats.maxBuffered <= CLIENT_HELLO_MAX_BYTES);
  console.log(`# client hello fuzz: ${stats.iterations} inputs in ${ms} ms; done ${stats.done}, need-more ${stats.needMore}, bad ${JSON.stringify(stats.bad)}`);
});

test('SNI routes: exact, case-insensitive; one-label wildcard; exact wins', () => {
  const router = new SniRouter([
    { sni: '*.example.com', target: 'web' },
    { sni: 'API.example.com', target: 'api' },
    { sni: '*.b.example.com', target: 'deep' },
  ]);
  assert.equal(router.match('api.example.com'), 'api');
  assert.equal(router.match('www.example.com'), 'web');
  assert.equal(router.match('x.b.example.com'), 'deep');
  assert.equal(router.match('b.example.com'), 'web');
  assert.equal(router.match('a.x.example.com'), undefined, 'one label only');
  assert.equal(router.match('example.com'), undefined, 'the wildcard needs a label');
  assert.equal(router.match('www.example.com.'), 'web', 'one trailing dot is ignored');
  assert.equal(router.match(null), undefined);
  assert.equal(router.match('other.org'), undefined);
  const mapped = router.map((t) => t.toUpperCase());
  assert.equal(mapped.match('api.example.com'), 'API');
  assert.equal(mapped.match('z.example.com'), 'WEB');
});

test('SNI route patterns: what is accepted', () => {
  for (const ok of ['api.example.com', '*.example.com', 'localhost', 'A-1.Example.COM', '*.com', 'x_y.internal']) {
    assert.equal(sniPatternError(ok), null, ok);
  }
  for (const bad of ['', '*', '*.', 'a.*.com', 'api*.example.com', 'example.com.', '10.0.0.1', '::1', '-a.com', 'a..com', 'a b.com', `${'a'.repeat(64)}.com`]) {
    assert.notEqual(sniPatternError(bad), null, bad);
  }
});
