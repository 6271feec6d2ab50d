import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isIP } from 'node:net';
import { ipBytes, ipVersion, parseIPv4, parseIpInto } from '../../src/net/ip';

test('net/ip agrees with net.isIP on a corpus and on random text', () => {
  const corpus = [
    '0.0.0.0', '255.255.255.255', '1.2.3.4', '01.2.3.4', '1.2.3', '1.2.3.4.5', '256.1.1.1', '1..2.3', ' 1.2.3.4', '',
    '::', '::1', '1::', '1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8:9', '1::2::3', ':1::', '1:::2', '::ffff:1.2.3.4',
    '::ffff:01.2.3.4', '1:2:3:4:5:6:1.2.3.4', '1:2:3:4:5:6:7:1.2.3.4', 'fe80::1%eth0', 'fe80::1%', '12345::', 'g::1',
    '2001:db8::1', '2001:DB8::A', '::1.2.3.4', '1:2:3:4:5:6:7::', '::2:3:4:5:6:7:8', 'ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255',
  ];
  for (const s of corpus) assert.equal(ipVersion(s), isIP(s), JSON.stringify(s));
  // Deterministic pseudo-random strings over the characters addresses are made of.
  const alphabet = '0123456789abcdefABCDEF:.%';
  let seed = 12345;
  const rnd = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  for (let i = 0; i < 50_000; i++) {
    let s = '';
    const len = 1 + rnd(20);
    for (let k = 0; k < len; k++) s += alphabet[rnd(alphabet.length)];
    if (s.includes('%')) continue; // zone ids: Node accepts any suffix; covered above
    assert.equal(ipVersion(s), isIP(s), JSON.stringify(s));
  }
});

test('net/ip bytes: IPv4, IPv6 with a gap, an IPv4 tail, unmapping', () => {
  assert.equal(parseIPv4('10.20.30.40'), 0x0a141e28);
  assert.deepEqual([...(ipBytes('10.20.30.40') ?? [])], [10, 20, 30, 40]);
  assert.deepEqual([...(ipBytes('2001:db8::1') ?? [])], [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
  assert.deepEqual([...(ipBytes('1:2:3:4:5:6:7::') ?? [])], [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 0]);
  assert.deepEqual([...(ipBytes('::ffff:1.2.3.4') ?? [])], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4]);
  assert.deepEqual([...(ipBytes('::ffff:1.2.3.4', true) ?? [])], [1, 2, 3, 4]);
  assert.deepEqual([...(ipBytes('::FFFF:102:304', true) ?? [])], [1, 2, 3, 4]);
  assert.equal(ipBytes('example.com'), null);
  const out = new Uint8Array(20);
  assert.equal(parseIpInto('fe80::1%eth0', out, 4), 6);
  assert.equal(out[4], 0xfe);
  assert.equal(out[19], 1);
  assert.equal(parseIpInto('fe80::1%eth0', out, 0, false, 'reject'), 0);
});
