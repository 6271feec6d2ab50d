#!/usr/bin/env node
'use strict';
// Builds the optional splice(2) addon in native/. Never fails the install:
// when the addon cannot build (not Linux, no compiler, node-gyp missing,
// L4LB_NO_NATIVE=1), l4lb runs its JavaScript pump and says why at start.
const { existsSync } = require('node:fs');
const { join } = require('node:path');
const { spawnSync } = require('node:child_process');

const dir = join(__dirname, '..', 'native');
function skip(why) {
  console.log(`l4lb: native splice addon not built (${why}); the JavaScript pump will be used`);
  process.exit(0);
}
if (process.env.L4LB_NO_NATIVE === '1') skip('L4LB_NO_NATIVE=1');
if (process.platform !== 'linux') skip(`platform ${process.platform} has no splice(2)`);
if (!existsSync(join(dir, 'binding.gyp'))) skip('native/binding.gyp not present');
let gyp;
try {
  gyp = require.resolve('node-gyp/bin/node-gyp.js');
} catch {
  skip('node-gyp is not installed (dev dependency)');
}
// Outside npm (node scripts/build-native.js) node-gyp does not see npm's
// `nodedir`; when Node's own headers are installed next to it, use them
// instead of downloading them.
const args = [gyp, 'rebuild', '--directory', dir];
const prefix = join(process.execPath, '..', '..');
if (!process.env.npm_config_nodedir && existsSync(join(prefix, 'include', 'node', 'node_api.h'))) {
  args.push(`--nodedir=${prefix}`);
}
const r = spawnSync(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
if (r.status !== 0) {
  const tail = `${r.stdout}\n${r.stderr}`.trim().split('\n').slice(-15).join('\n');
  console.log(tail);
  skip(`node-gyp rebuild failed with status ${r.status}`);
}
console.log('l4lb: native splice addon built');
