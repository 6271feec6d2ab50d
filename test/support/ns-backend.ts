/**
 * Backends for the network-namespace tests (run inside the backends'
 * namespace): `node ns-backend.js <address> <tag>:<port>...`. Each TCP
 * server writes "<tag> <peer address>\n" and closes, so the client learns
 * which backend answered and which l4lb host (the peer) carried the flow;
 * a UDP socket on the same port answers every datagram the same way.
 * Prints "ready" once every server listens.
 */
import net from 'node:net';
import dgram from 'node:dgram';

const [host, ...specs] = process.argv.slice(2);
if (host === undefined || specs.length === 0) {
  process.stderr.write('usage: ns-backend <address> <tag>:<port>...\n');
  process.exit(64);
}
let pending = specs.length * 2;
for (const spec of specs) {
  const [tag, port] = spec.split(':');
  // Tag "echo": writes the peer's address, then echoes and stays open (a long-lived connection).
  const server = net.createServer((s) => {
    s.on('error', () => {});
    if (tag === 'echo') {
      s.write(`${tag} ${s.remoteAddress ?? '?'}\n`);
      s.pipe(s);
    } else s.end(`${tag} ${s.remoteAddress ?? '?'}\n`);
  });
  server.on('error', (e) => {
    process.stderr.write(`ns-backend ${spec}: ${e.message}\n`);
    process.exit(1);
  });
  server.listen(Number(port), host, () => {
    if (--pending === 0) process.stdout.write('ready\n');
  });
  const udp = dgram.createSocket('udp4');
  udp.on('message', (_msg, rinfo) => udp.send(`${tag} ${rinfo.address}\n`, rinfo.port, rinfo.address));
  udp.on('error', (e) => {
    process.stderr.write(`ns-backend udp ${spec}: ${e.message}\n`);
    process.exit(1);
  });
  udp.bind(Number(port), host, () => {
    if (--pending === 0) process.stdout.write('ready\n');
  });
}
// Ends with its parent: stdin closes when the test process goes away.
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
