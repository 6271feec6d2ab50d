import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  encodeV1, encodeV2, ParseResult, ProxyHeaderParser, parseProxyHeader, V2_MAX_HEADER, V2_SIGNATURE,
} from '../../src/proxy';

const A = { address: '192.0.2.1', port: 51000 };
const B = { address: '198.51.100.7', port: 443 };
const V4 = {
  version: 1, command: 'PROXY', protocol: 'TCP4',
  source: { address: '192.0.2.1', port: 51000 }, destination: { address: '198.51.100.7', port: 443 },
} as const;

/** Builds a v2 header by hand: ver/cmd, fam, body (length is body.length unless given). */
function v2(verCmd: number, fam: number, body: Buffer, len = body.length): Buffer {
  const h = Buffer.alloc(16);
  V2_SIGNATURE.copy(h);
  h[12] = verCmd;
  h[13] = fam;
  h.writeUInt16BE(len, 14);
  return Buffer.concat([h, body]);
}
const ipv4Block = Buffer.from('c0000201c6336407c73801bb', 'hex'); // 192.0.2.1 198.51.100.7 51000 443

function code(r: ParseResult): string {
  return r.state === 'error' ? r.code : r.state;
}
function v1(line: string): ParseResult {
  return parseProxyHeader(Buffer.from(line, 'latin1'));
}

test('v1 and v2 headers in one chunk, followed by data (rest is a view, not a copy)', () => {
  for (const hdr of [encodeV1(A, B), encodeV2(A, B)]) {
    const chunk = Buffer.concat([hdr, Buffer.from('GET / HTTP/1.1\r\n')]);
    const r = parseProxyHeader(chunk);
    assert.equal(r.state, 'done');
    if (r.state !== 'done') return;
    assert.deepEqual(r.header, { ...V4, version: hdr[0] === 0x50 ? 1 : 2 });
    assert.equal(r.rest.toString(), 'GET / HTTP/1.1\r\n');
    assert.equal(r.rest.buffer, chunk.buffer, 'rest shares memory with the chunk');
  }
});

test('byte-by-byte feeding, then data; pushes after done are payload', () => {
  for (const hdr of [encodeV1(A, B), encodeV2(A, B), encodeV1({ address: '2001:db8::1', port: 1 }, { address: '::1', port: 2 })]) {
    const p = new ProxyHeaderParser();
    for (let i = 0; i < hdr.length - 1; i++) {
      assert.equal(p.push(hdr.subarray(i, i + 1)).state, 'need-more');
      assert.equal(p.bufferedBytes, i + 1);
    }
    const r = p.push(Buffer.concat([hdr.subarray(hdr.length - 1), Buffer.from('xyz')]));
    assert.equal(r.state, 'done');
    if (r.state === 'done') assert.equal(r.rest.toString(), 'xyz');
    assert.equal(p.bufferedBytes, 0, 'buffer released');
    const again = p.push(Buffer.from('more'));
    assert.ok(again.state === 'done' && again.rest.toString() === 'more');
    assert.equal(p.end().state, 'done');
  }
});

test('empty chunks and Uint8Array input are accepted', () => {
  const p = new ProxyHeaderParser();
  assert.equal(p.push(Buffer.alloc(0)).state, 'need-more');
  const hdr = encodeV2(A, B);
  assert.equal(p.push(new Uint8Array(hdr.subarray(0, 10))).state, 'need-more');
  assert.equal(p.push(Buffer.alloc(0)).state, 'need-more');
  assert.equal(p.push(new Uint8Array(hdr.subarray(10))).state, 'done');
});

test('first byte that starts neither version is rejected at once', () => {
  for (const first of [0x00, 0x47 /* G */, 0x16 /* TLS */, 0x0a, 0x70 /* p */]) {
    assert.equal(code(new ProxyHeaderParser().push(Buffer.from([first]))), 'bad_signature');
  }
  assert.equal(code(v1('PROXZ TCP4')), 'bad_signature');
  assert.equal(code(parseProxyHeader(Buffer.from('0d0a0d0a000d0a5155495420', 'hex'))), 'bad_signature');
});

test('v1 UNKNOWN forms (§2.1)', () => {
  for (const line of ['PROXY UNKNOWN\r\n', 'PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n', 'PROXY UNKNOWN anything at all\r\n']) {
    const r = v1(line);
    assert.equal(r.state, 'done', line);
    if (r.state === 'done') assert.deepEqual(r.header, { version: 1, command: 'PROXY', protocol: 'UNKNOWN' });
  }
});

test('v1 TCP6 addresses are returned in canonical form', () => {
  const r = v1('PROXY TCP6 2001:DB8:0:0:0:0:0:1 0:0:0:0:0:ffff:10.1.2.3 0 65535\r\n');
  assert.ok(r.state === 'done');
  assert.deepEqual(r.header.source, { address: '2001:db8::1', port: 0 });
  assert.deepEqual(r.header.destination, { address: '::ffff:10.1.2.3', port: 65535 });
});

test('v1 malformed lines are bad_v1', () => {
  for (const line of [
    'PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n',       // double space
    'PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n',
    'PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n',
    'PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n',
    'PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n',
    'PROXY UNKNOWNX\r\n',
    'PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n',
    'PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n',
    'PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n',
    'PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n',
    'PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n',
    'PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n',
    'PROXY TCP4 ::1 5.6.7.8 1 2\r\n',             // IPv6 under TCP4
    'PROXY TCP6 1.2.3.4 ::1 1 2\r\n',             // IPv4 under TCP6
    'PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n',        // zone id
    'PROXY TCP6 1::2::3 ::1 1 2\r\n',
    'PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n',
    'PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n',
    'PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n',
    'PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n',
    'PROXY TCP4 1.2.3.4 5.6.7.8 1 0x2\r\n',
    'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n',           // LF without CR
    'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX\n',        // CR not followed by LF
    'PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n',
  ]) {
    assert.equal(code(v1(line)), 'bad_v1', JSON.stringify(line));
  }
});

test('v1 without CRLF within 107 bytes is too_long; 107 exactly is fine', () => {
  const pad = (n: number): string => 'PROXY UNKNOWN ' + 'x'.repeat(n - 16) + '\r\n';
  assert.equal(pad(107).length, 107);
  assert.equal(v1(pad(107)).state, 'done');
  assert.equal(code(v1(pad(108))), 'too_long');
  const p = new ProxyHeaderParser();
  const long = Buffer.from('PROXY UNKNOWN ' + 'x'.repeat(200));
  let r: ParseResult = { state: 'need-more' };
  for (let i = 0; i < long.length && r.state === 'need-more'; i++) {
    r = p.push(long.subarray(i, i + 1));
    assert.ok(p.bufferedBytes <= 107);
  }
  assert.equal(code(r), 'too_long');
});

test('v1 early rejection: bad protocol token is reported before CRLF', () => {
  const p = new ProxyHeaderParser();
  assert.equal(p.push(Buffer.from('PROXY TC')).state, 'need-more');
  assert.equal(code(p.push(Buffer.from('X'))), 'bad_v1');
  assert.equal(code(p.push(Buffer.from('anything'))), 'bad_v1', 'errors are sticky');
});

test('v2 version, command, family and protocol checks (§2.2)', () => {
  assert.equal(code(parseProxyHeader(v2(0x11, 0x11, ipv4Block))), 'bad_version');
  assert.equal(code(parseProxyHeader(v2(0x31, 0x11, ipv4Block))), 'bad_version');
  assert.equal(code(parseProxyHeader(v2(0x22, 0x11, ipv4Block))), 'bad_command');
  assert.equal(code(parseProxyHeader(v2(0x2f, 0x11, ipv4Block))), 'bad_command');
  assert.equal(code(parseProxyHeader(v2(0x21, 0x41, ipv4Block))), 'bad_family');
  assert.equal(code(parseProxyHeader(v2(0x21, 0x13, ipv4Block))), 'bad_protocol');
  // Rejected on the 13th/14th byte, before the rest arrives.
  assert.equal(code(parseProxyHeader(v2(0x11, 0x11, ipv4Block).subarray(0, 13))), 'bad_version');
  assert.equal(code(parseProxyHeader(v2(0x21, 0xf1, ipv4Block).subarray(0, 14))), 'bad_family');
});

test('v2 UDP, AF_UNSPEC and AF_UNIX', () => {
  const udp = parseProxyHeader(v2(0x21, 0x12, ipv4Block));
  assert.ok(udp.state === 'done');
  assert.deepEqual(udp.header, { ...V4, version: 2, protocol: 'UDP4' });
  for (const [fam, body] of [[0x00, Buffer.alloc(0)], [0x01, Buffer.alloc(5)], [0x31, Buffer.alloc(216)], [0x10, ipv4Block]] as const) {
    const r = parseProxyHeader(v2(0x21, fam, body));
    assert.ok(r.state === 'done', `fam ${fam}`);
    assert.deepEqual(r.header, { version: 2, command: 'PROXY', protocol: 'UNKNOWN' });
  }
  assert.equal(code(parseProxyHeader(v2(0x21, 0x31, Buffer.alloc(215)))), 'truncated');
});

test('v2 LOCAL: no addresses, family and body ignored (§2.2)', () => {
  for (const [fam, body] of [[0x00, Buffer.alloc(0)], [0x11, ipv4Block], [0xff, Buffer.from('junk')]] as const) {
    const r = parseProxyHeader(Buffer.concat([v2(0x20, fam, body), Buffer.from('data')]));
    assert.ok(r.state === 'done');
    assert.deepEqual(r.header, { version: 2, command: 'LOCAL', protocol: 'UNKNOWN' });
    assert.equal(r.rest.toString(), 'data');
  }
});

test('v2 length shorter than the address block is truncated', () => {
  assert.equal(code(parseProxyHeader(v2(0x21, 0x11, ipv4Block.subarray(0, 11)))), 'truncated');
  assert.equal(code(parseProxyHeader(v2(0x21, 0x21, Buffer.alloc(35)))), 'truncated');
  // Decided from the length field alone.
  assert.equal(code(parseProxyHeader(v2(0x21, 0x21, Buffer.alloc(0), 20))), 'truncated');
});

test('truncated header then EOF -> end() says truncated; truncated then garbage -> error', () => {
  const hdr = encodeV2(A, B);
  const p = new ProxyHeaderParser();
  assert.equal(p.push(hdr.subarray(0, 20)).state, 'need-more');
  assert.equal(code(p.end()), 'truncated');
  assert.equal(code(new ProxyHeaderParser().end()), 'truncated');
  // A v2 prefix cut inside the signature, followed by an HTTP request.
  const q = new ProxyHeaderParser();
  assert.equal(q.push(hdr.subarray(0, 7)).state, 'need-more');
  assert.equal(code(q.push(Buffer.from('GET / HTTP/1.1\r\n'))), 'bad_signature');
  // A v1 prefix followed by binary garbage.
  const s = new ProxyHeaderParser();
  assert.equal(s.push(Buffer.from('PROXY TCP4 1.2.3.4 ')).state, 'need-more');
  assert.equal(code(s.push(Buffer.from([0xde, 0xad, 0x0a]))), 'bad_v1');
});

test('v2 TLVs are skipped; bad TLV framing is rejected', () => {
  const tlv = Buffer.concat([
    Buffer.from([0x01, 0x00, 0x02]), Buffer.from('h2'),     // PP2_TYPE_ALPN
    Buffer.from([0x04, 0x00, 0x00]),                        // PP2_TYPE_NOOP, empty
    Buffer.from([0xe0, 0x01, 0x00]), Buffer.alloc(256, 7),   // custom type, 256 bytes
  ]);
  const hdr = v2(0x21, 0x11, Buffer.concat([ipv4Block, tlv]));
  const r = parseProxyHeader(Buffer.concat([hdr, Buffer.from('payload')]));
  assert.ok(r.state === 'done');
  assert.deepEqual(r.header, { ...V4, version: 2 });
  assert.equal(r.rest.toString(), 'payload');
  assert.equal(code(parseProxyHeader(v2(0x21, 0x11, Buffer.concat([ipv4Block, Buffer.from([0x01, 0x00, 0x05, 0x61])])))), 'bad_tlv');
  assert.equal(code(parseProxyHeader(v2(0x21, 0x11, Buffer.concat([ipv4Block, Buffer.from([0x01, 0x00])])))), 'bad_tlv');
});

test('v2 bound: 65535 bytes total accepted, more refused as too_long; never buffers more', () => {
  const tlvLen = V2_MAX_HEADER - 16 - 12 - 3;
  const body = Buffer.concat([ipv4Block, Buffer.from([0xee, tlvLen >> 8, tlvLen & 0xff])]);
  const big = v2(0x21, 0x11, Buffer.concat([body, Buffer.alloc(V2_MAX_HEADER - 16 - body.length, 1)]));
  assert.equal(big.length, V2_MAX_HEADER);
  const p = new ProxyHeaderParser();
  let r: ParseResult = { state: 'need-more' };
  for (let off = 0; off < big.length && r.state === 'need-more'; off += 1000) {
    r = p.push(big.subarray(off, off + 1000));
    assert.ok(p.bufferedBytes <= V2_MAX_HEADER);
  }
  assert.equal(r.state, 'done');
  assert.equal(code(parseProxyHeader(v2(0x21, 0x11, ipv4Block, V2_MAX_HEADER - 15))), 'too_long');
  assert.equal(code(parseProxyHeader(v2(0x21, 0x11, ipv4Block, 0xffff))), 'too_long');
  // A lower operator bound is honoured and rejected from the 16-byte prefix alone.
  const small = new ProxyHeaderParser({ maxV2HeaderBytes: 100 });
  assert.equal(small.maxBufferedBytes, 107);
  assert.equal(code(small.push(v2(0x21, 0x11, Buffer.alloc(0), 200))), 'too_long');
});

test('never throws on hostile input types', () => {
  const p = new ProxyHeaderParser();
  const r = p.push('PROXY' as unknown as Buffer);
  assert.equal(code(r), 'internal');
  assert.equal(code(new ProxyHeaderParser().push(null as unknown as Buffer)), 'internal');
});
