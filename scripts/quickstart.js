#!/usr/bin/env node
'use strict';
// `npm start`: two demo TCP backends on 127.0.0.1:9001 and :9002 and l4lb in
// front of them on 127.0.0.1:8080 (configs/quickstart.toml). Ctrl-C stops all.
const net = require('node:net');
const { spawn } = require('node:child_process');
const { join } = require('node:path');

const root = join(__dirname, '..');
const config = process.env.L4LB_QUICKSTART_CONFIG || join(root, 'configs', 'quickstart.toml');

function demoBackend(n, port) {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    s.write(`hello from demo backend ${n} (127.0.0.1:${port}); type a line, it echoes\n`);
    s.pipe(s);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

async function main() {
  const backends = [];
  try {
    backends.push(await demoBackend(1, 9001), await demoBackend(2, 9002));
  } catch (err) {
    console.error(`quickstart: cannot start demo backends: ${err.message} (are ports 9001/9002 free?)`);
    process.exit(1);
  }
  const lb = spawn(process.execPath, ['--max-semi-space-size=4', join(root, 'dist', 'src', 'cli.js'), '--config', config], { stdio: 'inherit' });
  console.error(
    [
      '',
      'l4lb quick start: demo backends on 127.0.0.1:9001 and 127.0.0.1:9002, l4lb on 127.0.0.1:8080.',
      'Try it:   (exec 3<>/dev/tcp/127.0.0.1/8080; head -n1 <&3)   (bash; twice: round-robin alternates the backends)',
      'Status:   http://127.0.0.1:9090/ ; JSON: curl -s 127.0.0.1:9090/api/v1/status ; metrics: curl -s 127.0.0.1:9090/metrics',
      'Stop:     Ctrl-C',
      '',
    ].join('\n'),
  );
  const forward = (sig) => lb.kill(sig);
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  process.on('SIGHUP', forward);
  lb.on('exit', (code, signal) => {
    for (const b of backends) b.close();
    process.exit(code ?? (signal ? 1 : 0));
  });
}
main();
