/**
 * The pure parts of the service-aware checks: HTTP response head parsing,
 * healthy status ranges, the request bytes, hex decoding, reply matchers,
 * the bounded reply buffer, errno → reason and the escaped detail.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseHttpHead, statusHealthy, httpRequest } from '../../src/health/checks/http';
import { makeMatcher } from '../../src/health/checks/send-expect';
import { BoundedBuffer, describeReply, escapeBytes, reasonOf } from '../../src/health/probe';
import { parseHex } from '../../src/config/values';

const head = (s: string) => parseHttpHead(Buffer.from(s, 'latin1'));

test('parseHttpHead: a complete head gives the status (CRLF or bare LF, with or without a reason phrase)', () => {
  assert.deepEqual(head('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'), { kind: 'ok', status: 200 });
  assert.deepEqual(head('HTTP/1.0 503 Service Unavailable\r\nServer: x\r\nX-A: b\r\n\r\nbody'), { kind: 'ok', status: 503 });
  assert.deepEqual(head('HTTP/1.1 204\r\n\r\n'), { kind: 'ok', status: 204 });
  assert.deepEqual(head('HTTP/1.1 301 Moved\nLocation: /x\n\n'), { kind: 'ok', status: 301 });
  assert.deepEqual(head('HTTP/1.1 200 OK\r\nX-Folded: a\r\n  continued\r\n\r\n'), { kind: 'ok', status: 200 });
});

test('parseHttpHead: every prefix of a valid head is incomplete, never bad', () => {
  const full = 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n';
  for (let n = 0; n < full.length; n++) assert.deepEqual(head(full.slice(0, n)), { kind: 'incomplete' }, `prefix ${n}`);
  assert.deepEqual(head(full), { kind: 'ok', status: 200 });
});

test('parseHttpHead: garbage is bad as soon as it shows', () => {
  assert.equal(head('SSH-2.0-OpenSSH').kind, 'bad');
  assert.equal(head('H').kind, 'incomplete');
  assert.equal(head('HTTX').kind, 'bad');
  assert.equal(head('\x00\x01\x02').kind, 'bad');
  assert.deepEqual(head('HTTP/2 200\r\n\r\n'), { kind: 'bad', detail: 'not an HTTP/1.x response' });
  assert.deepEqual(head('HTTP/1.1 20 OK\r\n\r\n'), { kind: 'bad', detail: 'malformed status line' });
  assert.deepEqual(head('HTTP/1.1 2000 OK\r\n'), { kind: 'bad', detail: 'malformed status line' });
  assert.deepEqual(head('HTTP/1.1 700 Nope\r\n'), { kind: 'bad', detail: 'malformed status line' });
  assert.deepEqual(head('HTTP/1.1 200OK\r\n'), { kind: 'bad', detail: 'malformed status line' });
  assert.deepEqual(head('HTTP/1.1 200 OK\r\nno colon here\r\n\r\n'), { kind: 'bad', detail: 'malformed header line' });
  assert.deepEqual(head('HTTP/1.1 200 OK\r\n: empty name\r\n\r\n'), { kind: 'bad', detail: 'malformed header line' });
});

test('statusHealthy: default 200-399, else exactly the listed codes', () => {
  for (const [s, want] of [[199, false], [200, true], [302, true], [399, true], [400, false], [503, false]] as const) {
    assert.equal(statusHealthy(s, null), want, String(s));
  }
  assert.equal(statusHealthy(200, [200]), true);
  assert.equal(statusHealthy(204, [200]), false);
  assert.equal(statusHealthy(503, [200, 503]), true);
});

test('httpRequest: GET, HTTP/1.1, Host = probed address (IPv6 bracketed), Connection: close', () => {
  const r = httpRequest('/primary', '10.0.0.11', 8008).toString('latin1');
  assert.match(r, /^GET \/primary HTTP\/1\.1\r\nHost: 10\.0\.0\.11:8008\r\n/);
  assert.match(r, /\r\nConnection: close\r\n\r\n$/);
  assert.match(httpRequest('/', '::1', 80).toString('latin1'), /\r\nHost: \[::1\]:80\r\n/);
});

test('parseHex: bytes, case, spaces; errors say what is wrong', () => {
  assert.deepEqual(parseHex(''), Buffer.alloc(0));
  assert.deepEqual(parseHex('0a1B ff\n00'), Buffer.from([0x0a, 0x1b, 0xff, 0x00]));
  assert.equal(parseHex('0g'), '"g" is not a hex digit');
  assert.equal(parseHex('0x12'), '"x" is not a hex digit');
  assert.equal(parseHex('abc'), 'odd number of hex digits (3)');
});

test('makeMatcher: substring as UTF-8 bytes, regex over bytes as latin1, neither = any byte', () => {
  const sub = makeMatcher('role:master', null);
  assert.equal(sub(Buffer.from('$90\r\n# Replication\r\nrole:master\r\n')), true);
  assert.equal(sub(Buffer.from('# Replication\r\nrole:slave\r\n')), false);
  assert.equal(makeMatcher('é', null)(Buffer.from('café')), true);
  const re = makeMatcher(null, '^\\x12\\x34[\\x80-\\xff]');
  assert.equal(re(Buffer.from([0x12, 0x34, 0x85, 0x80])), true);
  assert.equal(re(Buffer.from([0x12, 0x34, 0x01, 0x80])), false);
  assert.equal(makeMatcher(null, 'role:(master|primary)')(Buffer.from('role:primary')), true);
  const any = makeMatcher(null, null);
  assert.equal(any(Buffer.alloc(0)), false);
  assert.equal(any(Buffer.from([0])), true);
  assert.equal(makeMatcher('', '')(Buffer.from('x')), true, 'empty strings are unset');
});

test('BoundedBuffer keeps at most cap bytes, whatever arrives', () => {
  const b = new BoundedBuffer(10);
  assert.equal(b.push(Buffer.from('abcd')), false);
  assert.equal(b.push(Buffer.alloc(1 << 20, 0x41)), true);
  assert.equal(b.length, 10);
  assert.equal(b.view().toString(), 'abcdAAAAAA');
  assert.equal(b.push(Buffer.from('more')), true);
  assert.equal(b.length, 10);
});

test('reasonOf: errno codes to the SPEC reasons', () => {
  assert.equal(reasonOf('ECONNREFUSED'), 'refused');
  assert.equal(reasonOf('ECONNRESET'), 'reset');
  assert.equal(reasonOf('EPIPE'), 'reset');
  assert.equal(reasonOf('ETIMEDOUT'), 'timeout');
  assert.equal(reasonOf('EHOSTUNREACH'), 'unreachable');
  assert.equal(reasonOf('EWHATEVER'), 'error');
});

test('escapeBytes / describeReply: printable, escaped, bounded', () => {
  assert.equal(escapeBytes(Buffer.from('role:slave\r\n\t"\\')), 'role:slave\\r\\n\\t\\"\\\\');
  assert.equal(escapeBytes(Buffer.from([0x00, 0x7f, 0xff])), '\\x00\\x7f\\xff');
  const long = escapeBytes(Buffer.alloc(1000, 0x61));
  assert.equal(long, `${'a'.repeat(64)}...`);
  assert.equal(describeReply(Buffer.alloc(0)), 'no reply');
  assert.equal(describeReply(Buffer.from('ab')), 'got 2 bytes: "ab"');
});
