/**
 * Validation of the SPEC §8.1 health check keys: defaults, each key's
 * values, the one-type-per-key rule, at most one of send / send_hex and of
 * expect / expect_regex, hex and regex checked at load; every error names
 * its key and line:col.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/load';
import { formatConfigIssue } from '../../src/errors';
import { BASE, FILE, expectIssue, issuesOf, locate } from './config-helpers';

const HC = 'pools.web.health_check';
const withHc = (body: string): string => `${BASE}[pools.web.health_check]\n${body}\n`;
const hcOf = (body: string) => parseConfig(withHc(body), FILE).pools[0]!.healthCheck;

test('defaults: type connect, protocol tcp, nothing to send or expect, path "/", status 200-399', () => {
  const hc = parseConfig(BASE, FILE).pools[0]!.healthCheck;
  assert.deepEqual(
    { type: hc.type, protocol: hc.protocol, sendHex: hc.sendHex, expect: hc.expect, expectRegex: hc.expectRegex, path: hc.path, expectStatus: hc.expectStatus },
    { type: 'connect', protocol: 'tcp', sendHex: '', expect: null, expectRegex: null, path: '/', expectStatus: null },
  );
  assert.equal(hcOf('interval = "1s"').type, 'connect');
});

test('send-expect: send is kept as bytes (TOML escapes applied), expect as text', () => {
  const hc = hcOf('type = "send-expect"\nsend = "INFO replication\\r\\n"\nexpect = "role:master"');
  assert.equal(hc.type, 'send-expect');
  assert.equal(Buffer.from(hc.sendHex, 'hex').toString('latin1'), 'INFO replication\r\n');
  assert.equal(hc.expect, 'role:master');
  assert.equal(hc.expectRegex, null);
  const u = hcOf('type = "send-expect"\nsend = "é"');
  assert.equal(u.sendHex, 'c3a9', 'UTF-8 bytes of the string');
});

test('send_hex: upper/lower case and spaces between bytes; empty placeholders count as unset', () => {
  const hc = hcOf('type = "send-expect"\nprotocol = "udp"\nsend_hex = "12 34 0A0b"\nsend = ""\nexpect_regex = "^\\\\x12\\\\x34"\nexpect = ""');
  assert.equal(hc.protocol, 'udp');
  assert.equal(hc.sendHex, '12340a0b');
  assert.equal(hc.expectRegex, '^\\x12\\x34');
  assert.equal(hc.expect, null);
});

test('http: path and expect_status', () => {
  const hc = hcOf('type = "http"\nport = 8008\npath = "/primary"\nexpect_status = [200, 204]');
  assert.equal(hc.type, 'http');
  assert.equal(hc.port, 8008);
  assert.equal(hc.path, '/primary');
  assert.deepEqual(hc.expectStatus, [200, 204]);
});

test('bad type and protocol name the key and line', () => {
  const text = withHc('type = "tcp-check"');
  expectIssue(text, issuesOf(text), `${HC}.type`, '"tcp-check"', /expected one of "connect", "send-expect", "http", got "tcp-check"/);
  const t2 = withHc('type = "send-expect"\nsend = "x"\nprotocol = "sctp"');
  expectIssue(t2, issuesOf(t2), `${HC}.protocol`, '"sctp"', /expected one of "tcp", "udp"/);
});

test('a key of another type is an error (a forgotten type is not silently a connect check)', () => {
  const text = withHc('send = "PING\\r\\n"\nexpect = "PONG"');
  const issues = issuesOf(text);
  assert.equal(issues.length, 2);
  expectIssue(text, issues, `${HC}.send`, '"PING', /send applies to type = "send-expect" only; this health check has type = "connect"/);
  expectIssue(text, issues, `${HC}.expect`, '"PONG"', /expect applies to type = "send-expect" only/);
  const t2 = withHc('type = "send-expect"\npath = "/x"\nexpect_status = [200]');
  const i2 = issuesOf(t2);
  expectIssue(t2, i2, `${HC}.path`, '"/x"', /path applies to type = "http" only; this health check has type = "send-expect"/);
  expectIssue(t2, i2, `${HC}.expect_status`, '[200]', /expect_status applies to type = "http" only/);
  const t3 = withHc('type = "http"\nprotocol = "udp"');
  expectIssue(t3, issuesOf(t3), `${HC}.protocol`, '"udp"', /protocol applies to type = "send-expect" only/);
});

test('at most one of send / send_hex and of expect / expect_regex', () => {
  const text = withHc('type = "send-expect"\nsend = "a"\nsend_hex = "62"\nexpect = "x"\nexpect_regex = "y"');
  const issues = issuesOf(text);
  assert.equal(issues.length, 2);
  expectIssue(text, issues, `${HC}.send_hex`, '"62"', /at most one of send \/ send_hex/);
  expectIssue(text, issues, `${HC}.expect_regex`, '"y"', /at most one of expect \/ expect_regex/);
});

test('bad hex: a non-hex character or an odd number of digits, with the line', () => {
  const text = withHc('type = "send-expect"\nsend_hex = "12zz"');
  expectIssue(text, issuesOf(text), `${HC}.send_hex`, '"12zz"', /expected hex bytes such as "0a1b2c", got "12zz" \("z" is not a hex digit\)/);
  const t2 = withHc('type = "send-expect"\nsend_hex = "123"');
  expectIssue(t2, issuesOf(t2), `${HC}.send_hex`, '"123"', /odd number of hex digits \(3\)/);
});

test('an invalid regex is reported at load with key, line and the reason', () => {
  const text = withHc('type = "send-expect"\nexpect_regex = "role:(master"');
  const issues = issuesOf(text);
  expectIssue(text, issues, `${HC}.expect_regex`, '"role:(master"', /expected a JavaScript regular expression, got "role:\(master" \(Invalid regular expression: .*\)/);
  const p = locate(text, '"role:(master"');
  assert.match(formatConfigIssue(issues[0]!), new RegExp(`^lb\\.toml:${p.line}:${p.col}: ${HC.replace(/\./g, '\\.')}\\.expect_regex: `));
});

test('udp send-expect must send something', () => {
  const text = withHc('type = "send-expect"\nprotocol = "udp"\nexpect = "x"');
  expectIssue(text, issuesOf(text), `${HC}.protocol`, '"udp"', /protocol = "udp" needs send or send_hex/);
});

test('bad path and expect_status values', () => {
  const text = withHc('type = "http"\npath = "primary"\nexpect_status = [200, 99, "503"]');
  const issues = issuesOf(text);
  assert.equal(issues.length, 3);
  expectIssue(text, issues, `${HC}.path`, '"primary"', /expected a path starting with "\/" without spaces or control characters/);
  expectIssue(text, issues, `${HC}.expect_status[1]`, '99', /expected an HTTP status code between 100 and 599, got 99/);
  expectIssue(text, issues, `${HC}.expect_status[2]`, '"503"', /got "503"/);
  const t2 = withHc('type = "http"\npath = "/a b"\nexpect_status = []');
  const i2 = issuesOf(t2);
  expectIssue(t2, i2, `${HC}.path`, '"/a b"', /expected a path/);
  expectIssue(t2, i2, `${HC}.expect_status`, '[]', /expected a non-empty array of HTTP status codes/);
});

test('unknown health_check key suggests the near miss', () => {
  const text = withHc('type = "send-expect"\nexpect_regexp = "x"');
  expectIssue(text, issuesOf(text), `${HC}.expect_regexp`, 'expect_regexp', /unknown key "expect_regexp" \(did you mean "expect_regex"\?\)/);
});
