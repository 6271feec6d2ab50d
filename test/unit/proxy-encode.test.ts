import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isIPv6 } from 'node:net';
import {
  encodeHeader, encodeV1, encodeV2, formatIPv6, parseIPv4, parseIPv6, parseProxyHeader,
} from '../../src/proxy';
import { mulberry32 } from '../support/proxy-fuzz';

const SIG = '0d0a0d0a000d0a515549540a';
const hex = (b: Buffer): string => b.toString('hex');
const text = (b: Buffer): string => b.toString('latin1');

test('v1 TCP4 exact bytes (§2.1)', () => {
  assert.equal(text(encodeV1({ address: '192.168.0.1', port: 56324 }, { address: '192.168.0.11', port: 443 })),
    'PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n');
  assert.equal(text(encodeV1({ address: '0.0.0.0', port: 0 }, { address: '255.255.255.255', port: 65535 })),
    'PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n');
});

test('v1 TCP6 exact bytes, canonical RFC 5952 text, zone id stripped', () => {
  assert.equal(text(encodeV1({ address: '2001:DB8:0:0:0:0:0:1', port: 1 }, { address: '::1', port: 2 })),
    'PROXY TCP6 2001:db8::1 ::1 1 2\r\n');
  assert.equal(text(encodeV1({ address: 'fe80::1%eth0', port: 1 }, { address: 'fe80::2', port: 2 })),
    'PROXY TCP6 fe80::1 fe80::2 1 2\r\n');
});

test('v1 IPv4-mapped IPv6 is sent as IPv4; mixed families map IPv4 into IPv6', () => {
  assert.equal(text(encodeV1({ address: '::ffff:10.0.0.1', port: 1000 }, { address: '::ffff:10.0.0.2', port: 80 })),
    'PROXY TCP4 10.0.0.1 10.0.0.2 1000 80\r\n');
  assert.equal(text(encodeV1({ address: '::ffff:10.0.0.1', port: 1000 }, { address: '10.0.0.2', port: 80 })),
    'PROXY TCP4 10.0.0.1 10.0.0.2 1000 80\r\n');
  assert.equal(text(encodeV1({ address: '10.0.0.1', port: 1000 }, { address: '2001:db8::2', port: 80 })),
    'PROXY TCP6 ::ffff:10.0.0.1 2001:db8::2 1000 80\r\n');
  assert.equal(text(encodeV1({ address: '2001:db8::1', port: 1000 }, { address: '::ffff:10.0.0.2', port: 80 })),
    'PROXY TCP6 2001:db8::1 ::ffff:10.0.0.2 1000 80\r\n');
});

test('v1 UNKNOWN when an address or port is missing or unparsable', () => {
  const ok = { address: '1.2.3.4', port: 1 };
  for (const bad of [undefined, null, {}, { address: undefined, port: 1 }, { address: 'example.com', port: 1 },
    { address: '1.2.3.4', port: undefined }, { address: '1.2.3.4', port: 65536 }, { address: '1.2.3.4', port: 1.5 },
    { address: '01.2.3.4', port: 1 }, { address: '1.2.3', port: 1 }, { address: '1::2::3', port: 1 }]) {
    assert.equal(text(encodeV1(bad, ok)), 'PROXY UNKNOWN\r\n');
    assert.equal(text(encodeV1(ok, bad)), 'PROXY UNKNOWN\r\n');
  }
});

test('v2 exact bytes for TCP over IPv4 and IPv6 (§2.2)', () => {
  assert.equal(hex(encodeV2({ address: '192.168.0.1', port: 56324 }, { address: '192.168.0.11', port: 443 })),
    `${SIG}2111000cc0a80001c0a8000bdc0401bb`);
  assert.equal(hex(encodeV2({ address: '2001:db8::1', port: 1 }, { address: '::1', port: 65535 })),
    `${SIG}21210024${'20010db8000000000000000000000001'}${'00000000000000000000000000000001'}0001ffff`);
});

test('v2 mapped -> IPv4, mixed -> IPv6 with the IPv4 side mapped', () => {
  assert.equal(hex(encodeV2({ address: '::ffff:1.2.3.4', port: 1 }, { address: '5.6.7.8', port: 2 })),
    `${SIG}2111000c010203040506070800010002`);
  assert.equal(hex(encodeV2({ address: '1.2.3.4', port: 1 }, { address: '2001:db8::5', port: 2 })),
    `${SIG}21210024${'00000000000000000000ffff01020304'}${'20010db8000000000000000000000005'}00010002`);
});

test('v2 LOCAL, UNSPEC fallback and DGRAM', () => {
  const a = { address: '1.2.3.4', port: 1 };
  const b = { address: '5.6.7.8', port: 2 };
  assert.equal(hex(encodeV2(a, b, 'LOCAL')), `${SIG}20000000`);
  assert.equal(hex(encodeV2(undefined, undefined, 'LOCAL')), `${SIG}20000000`);
  assert.equal(hex(encodeV2({ address: 'nope', port: 1 }, b)), `${SIG}21000000`);
  assert.equal(hex(encodeV2(a, b, 'PROXY', 'dgram')), `${SIG}2112000c010203040506070800010002`);
});

test('encode -> parse round trips for every family combination', () => {
  const cases: Array<[string, string, string, string, string]> = [
    ['1.2.3.4', '5.6.7.8', 'TCP4', '1.2.3.4', '5.6.7.8'],
    ['::ffff:1.2.3.4', '::ffff:5.6.7.8', 'TCP4', '1.2.3.4', '5.6.7.8'],
    ['2001:db8::1', 'fe80::2%lo', 'TCP6', '2001:db8::1', 'fe80::2'],
    ['1.2.3.4', '2001:db8::1', 'TCP6', '::ffff:1.2.3.4', '2001:db8::1'],
  ];
  for (const [s, d, proto, es, ed] of cases) {
    for (const enc of [encodeV1, encodeV2]) {
      const bytes = enc({ address: s, port: 4242 }, { address: d, port: 80 });
      const r = parseProxyHeader(bytes);
      assert.equal(r.state, 'done');
      if (r.state !== 'done') continue;
      assert.deepEqual(r.header, {
        version: enc === encodeV1 ? 1 : 2, command: 'PROXY', protocol: proto,
        source: { address: es, port: 4242 }, destination: { address: ed, port: 80 },
      });
      assert.equal(r.rest.length, 0);
      assert.deepEqual(encodeHeader(r.header), bytes, 'forwarding the parsed header reproduces the bytes');
    }
  }
});

test('encodeHeader is faithful to the protocol it is given', () => {
  const h = { version: 2, command: 'PROXY', protocol: 'TCP6',
    source: { address: '::ffff:1.2.3.4', port: 1 }, destination: { address: '::ffff:5.6.7.8', port: 2 } } as const;
  assert.equal(hex(encodeHeader(h)).slice(24, 32), '21210024');
  assert.equal(text(encodeHeader({ ...h, version: 1 })), 'PROXY TCP6 ::ffff:1.2.3.4 ::ffff:5.6.7.8 1 2\r\n');
  assert.equal(text(encodeHeader({ version: 1, command: 'LOCAL', protocol: 'UNKNOWN' })), 'PROXY UNKNOWN\r\n');
  assert.equal(text(encodeHeader({ ...h, version: 1, protocol: 'UDP6' })), 'PROXY UNKNOWN\r\n');
  assert.equal(hex(encodeHeader({ version: 2, command: 'LOCAL', protocol: 'UNKNOWN' })), `${SIG}20000000`);
  assert.equal(hex(encodeHeader({ ...h, protocol: 'TCP4' })), `${SIG}21000000`, 'IPv6 text cannot be TCP4');
});

test('IPv4 parser is strict', () => {
  assert.deepEqual(parseIPv4('10.20.30.40'), Buffer.from([10, 20, 30, 40]));
  for (const bad of ['', '1.2.3', '1.2.3.4.5', '256.1.1.1', '01.1.1.1', '1..2.3', ' 1.2.3.4', '1.2.3.4 ', '+1.2.3.4', '1.2.3.a']) {
    assert.equal(parseIPv4(bad), null, bad);
  }
});

test('IPv6 parser: "::", embedded IPv4 tail, zone ids', () => {
  const h = (s: string, z = false): string | undefined => parseIPv6(s, z)?.toString('hex');
  assert.equal(h('::'), '0'.repeat(32));
  assert.equal(h('::1'), `${'0'.repeat(31)}1`);
  assert.equal(h('1::'), `0001${'0'.repeat(28)}`);
  assert.equal(h('::ffff:1.2.3.4'), '00000000000000000000ffff01020304');
  assert.equal(h('1:2:3:4:5:6:7.8.9.10'), '000100020003000400050006' + '0708090a');
  assert.equal(h('1:2:3:4:5:6:7::'), '0001000200030004000500060007' + '0000');
  assert.equal(h('fe80::1%eth0'), undefined);
  assert.equal(h('fe80::1%eth0', true), `fe80${'0'.repeat(27)}1`);
  for (const bad of ['', ':', ':::', '1:::2', '1::2::3', ':1::', '::1:', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7',
    '12345::', 'g::', '::1.2.3', '::1.2.3.4:5', '1.2.3.4::', '::01.2.3.4', '1:2:3:4:5:6:7:8::', 'fe80::%', '[::1]']) {
    assert.equal(h(bad), undefined, bad);
  }
});

test('IPv6 parse/format agree with node:net and WHATWG URL on random addresses', () => {
  const r = mulberry32(7);
  for (let i = 0; i < 3000; i++) {
    const b = Buffer.alloc(16);
    for (let j = 0; j < 8; j++) if (r() % 3 !== 0) b.writeUInt16BE(r() % 4 === 0 ? r() & 0xffff : r() & 0xf, j * 2);
    const s = formatIPv6(b);
    assert.ok(isIPv6(s), s);
    assert.deepEqual(parseIPv6(s), b, s);
    if (!s.includes('.')) assert.equal(new URL(`http://[${s}]/`).hostname, `[${s}]`);
  }
});
