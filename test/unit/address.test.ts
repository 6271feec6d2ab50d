import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatHostPort, isLoopback, isValidHostname, normalizeIp, parseHostPort } from '../../src/net/address';

test('parseHostPort: IPv4, bracketed IPv6, names, port 0', () => {
  assert.deepEqual(parseHostPort('10.0.0.1:80'), { host: '10.0.0.1', port: 80, family: 4 });
  assert.deepEqual(parseHostPort('[::1]:0'), { host: '::1', port: 0, family: 6 });
  assert.deepEqual(parseHostPort('[2001:db8::1]:65535'), { host: '2001:db8::1', port: 65535, family: 6 });
  assert.deepEqual(parseHostPort('db3.internal:5432'), { host: 'db3.internal', port: 5432, family: 0 });
  assert.deepEqual(parseHostPort('localhost:1'), { host: 'localhost', port: 1, family: 0 });
});

test('parseHostPort: errors are strings, never throws', () => {
  for (const bad of ['10.0.0.7', ':80', '10.0.0.1:', '10.0.0.1:x', '10.0.0.1:65536', '10.0.0.1:-1', '::1:80', '[::1]80', '[::1', '[1.2.3.4]:80',
    '-a:1', 'a..b:1', 'a b:1', '1.2.3.256:1', `${'a'.repeat(64)}:1`, '10.0.0.1:123456', '']) {
    assert.equal(typeof parseHostPort(bad), 'string', bad);
  }
});

test('hostnames', () => {
  assert.ok(isValidHostname('a'));
  assert.ok(isValidHostname('svc_1.ns.cluster.local.'));
  assert.ok(isValidHostname('xn--bcher-kva.example'));
  assert.ok(!isValidHostname('a-.b'));
  assert.ok(!isValidHostname('1.2.3'));
  assert.ok(!isValidHostname(''));
});

test('normalizeIp and isLoopback', () => {
  assert.equal(normalizeIp('::ffff:1.2.3.4'), '1.2.3.4');
  assert.equal(normalizeIp('::FFFF:1.2.3.4'), '1.2.3.4');
  assert.equal(normalizeIp('::ffff:abcd'), '::ffff:abcd');
  assert.equal(normalizeIp('2001:db8::1'), '2001:db8::1');
  assert.equal(normalizeIp('1.2.3.4'), '1.2.3.4');
  for (const h of ['127.0.0.1', '127.1.2.3', '::1', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1', 'localhost', 'LOCALHOST', '[::1]']) assert.ok(isLoopback(h), h);
  for (const h of ['0.0.0.0', '::', '10.0.0.1', '128.0.0.1', '::2', 'example.com', '', '1::1']) assert.ok(!isLoopback(h), h);
  assert.equal(formatHostPort('::1', 80), '[::1]:80');
  assert.equal(formatHostPort('a', 80), 'a:80');
});
