/**
 * Out of file descriptors (SPEC §8.6): l4lb's fd limit is lowered at run time
 * (`prlimit --pid`), then clients hold far more TCP connections and UDP
 * sessions than it can carry. New clients beyond the budget are refused
 * with reason `resources` (counted, logged at warn), the reserve keeps the
 * health probes and the admin endpoint working — the backend stays up —
 * and once the flood ends clients are served again.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import dgram from 'node:dgram';
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { startEchoServer, waitFor, readBytes, type TestServer } from '../helpers/net';
import { L4lbProcess } from '../helpers/l4lb';
import { listenerToml, poolToml } from '../helpers/toml';
import { sample } from '../helpers/admin';

const prlimit = spawnSync('prlimit', ['--version'], { encoding: 'utf8' });
const skip = process.platform !== 'linux' ? 'needs Linux (/proc, prlimit)' : prlimit.status !== 0 ? 'prlimit (util-linux) not installed' : false;

const FD_LIMIT = 256;

/** A sample's value, 0 when absent. */
function value(metrics: string, name: string, labels: Record<string, string>): number {
  return sample(metrics, name, labels) ?? 0;
}

describe('running out of file descriptors', { skip }, () => {
  let echo: TestServer;
  let udpEcho: dgram.Socket;
  let lb: L4lbProcess;
  let tcpPort: number;
  let udpPort: number;
  let admin: number;
  const held: net.Socket[] = [];
  const udpClients: dgram.Socket[] = [];

  before(async () => {
    echo = await startEchoServer();
    udpEcho = dgram.createSocket('udp4');
    udpEcho.on('message', (m, r) => udpEcho.send(m, r.port, r.address));
    udpEcho.bind(0, '127.0.0.1');
    await once(udpEcho, 'listening');
    const health = 'interval = "100ms"\ntimeout = "500ms"\nfall = 2\nrise = 1';
    lb = new L4lbProcess(
      `[global]\nsplice = "off"\n[admin]\nbind = "127.0.0.1:0"\n` +
        listenerToml('tcp', 'tcp') +
        `[[listeners]]\nname = "udp"\nprotocol = "udp"\nbind = "127.0.0.1:0"\npool = "udp"\n` +
        poolToml('tcp', 'round-robin', [`{ address = "127.0.0.1:${echo.port}" }`], '', health) +
        poolToml('udp', 'round-robin', [`{ address = "127.0.0.1:${(udpEcho.address() as net.AddressInfo).port}" }`], '', `${health}\nport = ${echo.port}`),
    );
    tcpPort = await lb.port('tcp');
    udpPort = await lb.port('udp');
    admin = (await lb.waitForLog((l) => l.msg === 'admin listening')).port as number;
    const r = spawnSync('prlimit', ['--pid', String(lb.child.pid), `--nofile=${FD_LIMIT}:${FD_LIMIT}`], { encoding: 'utf8' });
    assert.equal(r.status, 0, `prlimit: ${r.stderr}`);
  });
  after(async () => {
    for (const s of held) s.destroy();
    for (const u of udpClients) u.close();
    await lb.stop();
    await echo.close();
    udpEcho.close();
  });

  test('400 held TCP connections and 300 UDP clients against a 256-fd limit: refusals counted as resources, backends stay up, admin answers, service resumes', async () => {
    // 400 TCP clients that stay connected.
    for (let i = 0; i < 400; i += 50) {
      await Promise.all(
        Array.from({ length: 50 }, async () => {
          const s = net.connect({ port: tcpPort, host: '127.0.0.1' });
          s.on('error', () => {});
          held.push(s);
          await Promise.race([once(s, 'connect'), once(s, 'close')]);
        }),
      );
    }
    // 300 UDP clients, each from its own port.
    for (let i = 0; i < 300; i++) {
      const u = dgram.createSocket('udp4');
      u.on('error', () => {});
      udpClients.push(u);
      u.send('hello', udpPort, '127.0.0.1');
    }
    const metrics = async (): Promise<string> => (await fetch(`http://127.0.0.1:${admin}/metrics`, { signal: AbortSignal.timeout(3000) })).text();
    await waitFor(
      async () => {
        const m = await metrics();
        return value(m, 'l4lb_connections_rejected_total', { listener: 'tcp', reason: 'resources' }) > 0 && value(m, 'l4lb_connections_rejected_total', { listener: 'udp', reason: 'resources' }) > 0;
      },
      10000,
      'resources refusals on both listeners',
      100,
    );
    // Over more than fall x interval of probes, the backends stay up and the admin endpoint answers.
    for (let i = 0; i < 8; i++) {
      const st = (await (await fetch(`http://127.0.0.1:${admin}/api/v1/status`, { signal: AbortSignal.timeout(3000) })).json()) as { pools: { name: string; backends: { state: string }[] }[] };
      for (const p of st.pools) assert.equal(p.backends[0]?.state, 'up', `pool ${p.name} during the flood`);
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(lb.logs.filter((l) => l.msg === 'backend state changed').length, 0, 'no backend was marked down');
    // Refusals are logged at most once a second (from the counters): the line may still be on its way.
    const warn = await lb.waitForLog((l) => l.msg === 'connections rejected' && l.reason === 'resources', 5000);
    assert.ok(warn.level === 'warn' || (warn.level as unknown) === 40, `logged at warn: ${JSON.stringify(warn)}`);
    const m = await metrics();
    const tcpRefused = value(m, 'l4lb_connections_rejected_total', { listener: 'tcp', reason: 'resources' });
    assert.ok(tcpRefused >= 100, `tcp refused for resources: ${tcpRefused}`);
    // The flood ends; a new client is served.
    for (const s of held) s.destroy();
    for (const u of udpClients) u.close();
    held.length = 0;
    udpClients.length = 0;
    await waitFor(async () => value(await metrics(), 'l4lb_connections_active', { listener: 'tcp' }) === 0, 10000, 'tcp connections gone', 100);
    const c = net.connect({ port: tcpPort, host: '127.0.0.1' });
    c.on('error', () => {});
    held.push(c);
    c.write('after\n');
    assert.equal((await readBytes(c, 6, 10000)).toString(), 'after\n');
  });
});
