import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileAcl, parseCidr } from '../../src/net/cidr';
import { parseIPv4, parseIPv6Into } from '../../src/net/ip';
import type { Cidr } from '../../src/config/schema';

function cidr(text: string): Cidr {
  const c = parseCidr(text);
  assert.ok(typeof c !== 'string', `${text}: ${String(c)}`);
  return c;
}
const list = (...t: string[]): Cidr[] => t.map(cidr);

test('parseCidr: families, prefixes, host bits cleared, bare addresses', () => {
  const a = cidr('10.1.2.3/8');
  assert.deepEqual([a.family, a.prefix, [...a.bytes], a.text], [4, 8, [10, 0, 0, 0], '10.1.2.3/8']);
  assert.deepEqual([...cidr('192.168.1.255/23').bytes], [192, 168, 0, 0]);
  assert.deepEqual([...cidr('0.0.0.0/0').bytes], [0, 0, 0, 0]);
  assert.equal(cidr('1.2.3.4').prefix, 32);
  const b = cidr('2001:db8::ffff/33');
  assert.equal(b.family, 6);
  assert.deepEqual([...b.bytes], [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  assert.equal(cidr('::1').prefix, 128);
  assert.equal(cidr('::/0').prefix, 0);
  for (const bad of ['', '/8', '10.0.0.0/', '10.0.0.0/33', '::/129', '10.0.0.0/-1', '10.0.0.0/8/8', '10.0.0/8', 'fe80::1%eth0/64', 'a/8', '10.0.0.0/ 8', '10.0.0.0/1000']) {
    assert.equal(typeof parseCidr(bad), 'string', bad);
  }
});

test('parseIPv4 and parseIPv6Into', () => {
  assert.equal(parseIPv4('0.0.0.0'), 0);
  assert.equal(parseIPv4('255.255.255.255'), 0xffffffff);
  assert.equal(parseIPv4('1.2.3.4'), 0x01020304);
  for (const bad of ['1.2.3', '1.2.3.4.5', '256.0.0.1', '1..2.3', '1.2.3.4 ', '', 'a.b.c.d', '1234.1.1.1', '.1.2.3']) assert.equal(parseIPv4(bad), -1, bad);
  const out = new Uint8Array(16);
  const v6 = (s: string): number[] | null => (parseIPv6Into(s, out) ? [...out] : null);
  assert.deepEqual(v6('::'), new Array(16).fill(0));
  assert.deepEqual(v6('::1'), [...new Array(15).fill(0), 1]);
  assert.deepEqual(v6('1::'), [0, 1, ...new Array(14).fill(0)]);
  assert.deepEqual(v6('::ffff:1.2.3.4'), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 1, 2, 3, 4]);
  assert.deepEqual(v6('2001:DB8:0:0:0:0:0:1'), [0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
  assert.deepEqual(v6('fe80::1%eth0'), [0xfe, 0x80, ...new Array(13).fill(0), 1]);
  for (const bad of [':', ':::', '1:2:3:4:5:6:7', '1:2:3:4:5:6:7:8:9', '1::2::3', '12345::', 'g::', '1:', ':1', '1.2.3.4', '::1.2.3', '1:2:3:4:5:6:7:1.2.3.4', '']) {
    assert.equal(parseIPv6Into(bad, out), false, bad);
  }
  assert.equal(parseIPv6Into('1:2:3:4:5:6:1.2.3.4', out), true);
  assert.equal(parseIPv6Into('1:2:3:4:5:6:7::', out), true);
});

test('ACL: absent allow = everyone; empty deny', () => {
  const acl = compileAcl(null, []);
  assert.equal(acl('1.2.3.4'), true);
  assert.equal(acl('garbage'), true);
});

test('ACL: allow list, deny wins over allow', () => {
  const acl = compileAcl(list('10.0.0.0/8'), list('10.9.0.0/16'));
  assert.equal(acl('10.1.2.3'), true);
  assert.equal(acl('10.9.0.1'), false);
  assert.equal(acl('11.0.0.1'), false);
  assert.equal(acl('::ffff:10.1.2.3'), true);
  assert.equal(acl('::FFFF:10.9.9.9'), false);
  assert.equal(acl('::ffff:a01:203'), true); // hex spelling of ::ffff:10.1.2.3
  assert.equal(acl('2001:db8::1'), false);
});

test('ACL: /0, /32, /128 and IPv6 prefixes', () => {
  const all4 = compileAcl(list('0.0.0.0/0'), []);
  assert.equal(all4('255.255.255.255'), true);
  assert.equal(all4('0.0.0.0'), true);
  assert.equal(all4('::ffff:8.8.8.8'), true);
  assert.equal(all4('2001:db8::1'), false);
  const all6 = compileAcl(list('::/0'), []);
  assert.equal(all6('2001:db8::1'), true);
  assert.equal(all6('1.2.3.4'), true, 'an IPv4 address is inside ::/0 as its mapped form');
  const host = compileAcl(list('192.0.2.7/32', '2001:db8::7/128'), []);
  assert.equal(host('192.0.2.7'), true);
  assert.equal(host('192.0.2.8'), false);
  assert.equal(host('2001:db8::7'), true);
  assert.equal(host('2001:db8:0:0:0:0:0:7'), true);
  assert.equal(host('2001:db8::8'), false);
  const odd = compileAcl(list('2001:db8:8000::/33', '128.0.0.0/1'), []);
  assert.equal(odd('2001:db8:8000::1'), true);
  assert.equal(odd('2001:db8:ffff::1'), true);
  assert.equal(odd('2001:db8:7fff::1'), false);
  assert.equal(odd('200.1.1.1'), true);
  assert.equal(odd('127.255.255.255'), false);
  const mapped = compileAcl(list('::ffff:10.0.0.0/104'), []);
  assert.equal(mapped('10.2.3.4'), true);
  assert.equal(mapped('11.2.3.4'), false);
  const deny6 = compileAcl(null, list('fe80::/10'));
  assert.equal(deny6('fe80::1%eth0'), false);
  assert.equal(deny6('febf::1'), false);
  assert.equal(deny6('fec0::1'), true);
  assert.equal(deny6('10.0.0.1'), true);
});

test('ACL: garbage input matches no CIDR and never throws', () => {
  const allow = compileAcl(list('0.0.0.0/0', '::/0'), []);
  const deny = compileAcl(null, list('0.0.0.0/0', '::/0'));
  const junk: unknown[] = ['', 'garbage', '1.2.3', '1.2.3.4.5', '999.1.1.1', ':::', '1::2::3', 'localhost', undefined, '::ffff:1.2.3', ' 1.2.3.4'];
  for (const j of junk) {
    assert.equal(allow(j as string), false, String(j));
    assert.equal(deny(j as string), true, String(j));
  }
});
