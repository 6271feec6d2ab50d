#!/usr/bin/env node
'use strict';
// Builds the optional splice(2) addon in native/ (npm runs it as the
// package's `install` script: `npm ci` in a checkout, `npm install -g`).
// Never fails: when the addon cannot be built (not Linux, no compiler,
// no node-gyp, L4LB_NO_NATIVE=1), it says why and how to build it later,
// and exits 0; l4lb then runs its JavaScript pump and says so at start.
//
// node-gyp is looked for, in order: this project's own (a checkout's dev
// dependency), the one npm runs lifecycle scripts with (npm sets
// npm_config_node_gyp), the copy bundled with the npm that runs us
// (npm_execpath), and the copy bundled with the npm installed next to this
// node (<prefix>/lib/node_modules/npm).
const { existsSync, mkdirSync, realpathSync, rmSync, writeFileSync } = require('node:fs');
const { join, dirname, resolve } = require('node:path');
const { spawnSync } = require('node:child_process');

const root = resolve(__dirname, '..');
const dir = join(root, 'native');
const self = join(root, 'scripts', 'build-native.js');
const TOOLS = 'a C++ compiler, make and python3 (Debian/Ubuntu: apt-get install g++ make python3)';

function later() {
  return `to build it later, install ${TOOLS} and run \`${process.execPath} ${self}\``;
}
// Why the last build did not happen, for the `byte pump` log line
// (npm hides a successful install script's output).
const note = join(dir, 'build', 'not-built.txt');
function skip(why, hint = true) {
  try {
    mkdirSync(join(dir, 'build'), { recursive: true });
    writeFileSync(note, `${why}\n`);
  } catch {
    // read-only tree: the log line then says less
  }
  console.log(`l4lb: native splice addon not built (${why}); the JavaScript pump will be used${hint ? `; ${later()}` : ''}`);
  process.exit(0);
}

function runs(cmd, args) {
  const r = spawnSync(cmd, args, { stdio: 'ignore' });
  return !r.error && r.status === 0;
}

function findNodeGyp() {
  const candidates = [];
  try {
    candidates.push(require.resolve('node-gyp/bin/node-gyp.js', { paths: [root] }));
  } catch {
    // not a checkout with dev dependencies
  }
  if (process.env.npm_config_node_gyp) candidates.push(process.env.npm_config_node_gyp);
  if (process.env.npm_execpath) {
    // .../node_modules/npm/bin/npm-cli.js -> .../node_modules/npm/node_modules/node-gyp
    candidates.push(join(dirname(process.env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  }
  let exe = process.execPath;
  try {
    exe = realpathSync(exe);
  } catch {
    // keep execPath
  }
  for (const bin of new Set([dirname(process.execPath), dirname(exe)])) {
    candidates.push(join(bin, '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  }
  return candidates.find((p) => p.endsWith('.js') && existsSync(p));
}

if (process.env.L4LB_NO_NATIVE === '1') skip('L4LB_NO_NATIVE=1', false);
if (process.platform !== 'linux') skip(`platform ${process.platform} has no splice(2)`, false);
if (!existsSync(join(dir, 'binding.gyp'))) skip(`${join(dir, 'binding.gyp')} is not present`, false);
try {
  require.resolve('node-addon-api', { paths: [root] });
} catch {
  skip('the node-addon-api package is not installed; reinstall l4lb with its dependencies');
}
const missing = [];
const cxx = process.env.CXX || 'c++';
if (!runs(cxx, ['--version']) && !(cxx === 'c++' && runs('g++', ['--version']))) missing.push(`C++ compiler (${cxx})`);
if (!runs('make', ['--version'])) missing.push('make');
const python = process.env.npm_config_python || process.env.PYTHON || 'python3';
if (!runs(python, ['--version'])) missing.push(python);
if (missing.length > 0) skip(`missing ${missing.join(', ')}`);

const gyp = findNodeGyp();
if (gyp === undefined) skip(`node-gyp not found; it comes with npm: install npm for ${process.execPath}`);

// node-gyp needs Node's headers. Where they are installed next to this node
// (official tarballs, nvm, NodeSource), use them instead of downloading.
const args = [gyp, 'rebuild', '--directory', dir];
const prefix = join(process.execPath, '..', '..');
if (!process.env.npm_config_nodedir && existsSync(join(prefix, 'include', 'node', 'node_api.h'))) {
  args.push(`--nodedir=${prefix}`);
}
// binding.gyp runs `node` to find node-addon-api's headers: this node.
const env = { ...process.env, PATH: `${dirname(process.execPath)}:${process.env.PATH ?? '/usr/bin:/bin'}` };
const r = spawnSync(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', env });
if (r.status !== 0) {
  const tail = `${r.stdout ?? ''}\n${r.stderr ?? ''}`.trim().split('\n').slice(-15).join('\n');
  console.log(tail);
  skip(`${gyp} rebuild failed with status ${r.status}${r.error ? ` (${r.error.message})` : ''}`);
}
rmSync(note, { force: true });
console.log(`l4lb: native splice addon built (${join(dir, 'build', 'Release', 'l4lb_splice.node')})`);
