import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatConfigIssue } from '../../src/errors';

test('config issue format names file:line:col, key path and message', () => {
  assert.equal(
    formatConfigIssue({ file: 'lb.toml', line: 14, col: 17, path: 'pools.web.backends[1].address', message: 'expected "host:port", got "10.0.0.7"' }),
    'lb.toml:14:17: pools.web.backends[1].address: expected "host:port", got "10.0.0.7"',
  );
  assert.equal(formatConfigIssue({ file: 'lb.toml', line: 0, col: 0, path: '', message: 'not TOML' }), 'lb.toml: not TOML');
});
