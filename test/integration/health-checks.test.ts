/**
 * Health checks that know the service (SPEC §8.1), end to end through the
 * real CLI: send-expect against backends that never answer or answer 1 MiB
 * of junk; the three recipes of configs/lb.example.toml against the real
 * thing (two redis-servers, one a replica; an HTTP side port standing in for
 * Patroni, with workers = 2; dnsmasq over UDP). Recipes are read from the
 * example file itself, only timings and ports are changed. Waits are on log
 * lines and status fields, every one bounded.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { join } from 'node:path';
import { startServer, connect, readLine, waitFor, rssKiB, withTimeout, type TestServer } from '../helpers/net';
import { L4lbProcess, type LogLine } from '../helpers/l4lb';
import { listenerToml } from '../helpers/toml';
import { hasBinary, redisCmd, startRedis, startDnsmasq, dnsQuery, udpAsk, type Service } from '../helpers/services';
import { loadConfigFile } from '../../src/config/load';
import type { HealthCheckConfig } from '../../src/config/schema';

const EXAMPLE = join(__dirname, '..', '..', '..', 'configs', 'lb.example.toml');

/** The [health_check] of a recipe pool in the example config, as TOML keys (timings and port left out). */
function recipe(pool: string): string {
  const hc: HealthCheckConfig | undefined = loadConfigFile(EXAMPLE, { cpuCount: 2 }).pools.find((p) => p.name === pool)?.healthCheck;
  assert.ok(hc, `recipe ${pool} in ${EXAMPLE}`);
  const lines = [`type = ${JSON.stringify(hc.type)}`];
  if (hc.type === 'send-expect') {
    lines.push(`protocol = ${JSON.stringify(hc.protocol)}`);
    if (hc.sendHex !== '') lines.push(`send_hex = "${hc.sendHex}"`);
    if (hc.expect !== null) lines.push(`expect = ${JSON.stringify(hc.expect)}`);
    if (hc.expectRegex !== null) lines.push(`expect_regex = ${JSON.stringify(hc.expectRegex)}`);
  }
  if (hc.type === 'http') {
    lines.push(`path = ${JSON.stringify(hc.path)}`);
    if (hc.expectStatus !== null) lines.push(`expect_status = [${hc.expectStatus.join(', ')}]`);
  }
  return lines.join('\n');
}

function pool(name: string, backends: string[], health: string, extra = 'algorithm = "round-robin"'): string {
  return `[pools.${name}]\n${extra}\nbackends = [${backends.map((b) => `{ address = "${b}" }`).join(', ')}]\n[pools.${name}.health_check]\n${health}\n`;
}

const ADMIN = '[admin]\nbind = "127.0.0.1:0"\n';

async function adminPort(lb: L4lbProcess): Promise<number> {
  return (await lb.waitForLog((l) => l.msg === 'admin listening', 15000, 'admin listening')).port as number;
}

interface BackendStatus {
  address: string;
  state: string;
  check: { result: string; reason: string | null; latency_ms: number; at: string } | null;
  state_since: string | null;
}

async function backendStatus(admin: number, poolName: string, address: string): Promise<BackendStatus> {
  const r = await fetch(`http://127.0.0.1:${admin}/api/v1/status`, { signal: AbortSignal.timeout(5000) });
  const doc = (await r.json()) as { pools: { name: string; backends: BackendStatus[] }[] };
  const b = doc.pools.find((p) => p.name === poolName)?.backends.find((x) => x.address === address);
  assert.ok(b, `status of ${poolName} ${address}`);
  return b;
}

async function metric(admin: number, labels: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${admin}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
  const line = text.split('\n').find((l) => l.startsWith(`l4lb_health_checks_total{${labels}}`));
  return line === undefined ? NaN : Number(line.split(' ').at(-1));
}

/** The next (not yet seen) `backend state changed` line for `backend` going `to`. */
function nextChange(lb: L4lbProcess, backend: string, to: string, timeoutMs = 8000): Promise<LogLine> {
  const seen = new Set(lb.logs);
  return lb.waitForLog((l) => !seen.has(l) && l.msg === 'backend state changed' && l.backend === backend && l.to === to, timeoutMs, `${backend} -> ${to}`);
}

function changesOf(lb: L4lbProcess, backend: string): LogLine[] {
  return lb.logs.filter((l) => l.msg === 'backend state changed' && l.backend === backend);
}

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

describe('health checks: send-expect over TCP: silence is timeout, 1 MiB of junk is expect_mismatch with a bounded read', () => {
  // Long enough that a loaded CI machine never times out the good backend's probe.
  const TIMEOUT_MS = 600;
  const JUNK = Buffer.alloc(1 << 20, 'x');
  let silent: TestServer;
  let junk: TestServer;
  let good: TestServer;
  let lb: L4lbProcess;
  let admin: number;
  let spawnedAt: number;
  const hc = (interval: string): string =>
    `type = "send-expect"\nsend = "PING\\r\\n"\nexpect = "+PONG"\ninterval = "${interval}"\ntimeout = "${TIMEOUT_MS}ms"\nrise = 2\nfall = 2`;

  before(async () => {
    silent = await startServer(() => {});
    junk = await startServer((s) => {
      s.on('data', () => s.write(JUNK));
    });
    good = await startServer((s) => {
      s.on('data', () => s.write('+PONG\r\n'));
      s.on('end', () => s.end());
    });
    spawnedAt = Date.now();
    lb = new L4lbProcess(
      ADMIN +
        listenerToml('se', 'se') +
        pool('se', [`127.0.0.1:${silent.port}`, `127.0.0.1:${good.port}`], hc('150ms')) +
        listenerToml('junk', 'junk') +
        pool('junk', [`127.0.0.1:${junk.port}`], hc('40ms')),
    );
    admin = await adminPort(lb);
  });
  after(async () => {
    await lb.stop();
    for (const s of [silent, junk, good]) await s.close();
  });

  test('a backend that accepts and never answers goes down with reason timeout; status shows the check', async () => {
    const addr = `127.0.0.1:${silent.port}`;
    const line = await lb.waitForLog((l) => l.msg === 'backend state changed' && l.backend === addr, 8000, 'silent down');
    assert.equal(line.to, 'down');
    assert.equal(line.reason, 'timeout');
    const st = await backendStatus(admin, 'se', addr);
    assert.equal(st.state, 'down');
    assert.equal(st.check?.result, 'failed');
    assert.equal(st.check?.reason, 'timeout');
    assert.ok((st.check?.latency_ms ?? 0) >= 140, `latency ${st.check?.latency_ms}`);
    assert.match(st.check?.at ?? '', ISO);
    assert.match(st.state_since ?? '', ISO);
    assert.ok(Math.abs(Date.parse(st.state_since!) - Date.parse(String(line.time))) < 50, 'state_since is the transition time');
    // The answering backend stays up since start, with ok checks.
    const ok = await backendStatus(admin, 'se', `127.0.0.1:${good.port}`);
    assert.equal(ok.state, 'up');
    assert.deepEqual([ok.check?.result, ok.check?.reason], ['ok', null]);
    assert.ok(Date.parse(ok.state_since!) >= spawnedAt - 1000 && Date.parse(ok.state_since!) <= Date.parse(String(line.time)), 'state_since = start time');
    assert.equal(changesOf(lb, `127.0.0.1:${good.port}`).length, 0);
    const c = await connect(await lb.port('se'));
    c.write('PING\r\n');
    assert.equal(await readLine(c, 3000), '+PONG\r');
    c.destroy();
  });

  test('the metric l4lb_health_checks_total counts ok and failed probes per backend', async () => {
    const okLabels = `pool="se",backend="127.0.0.1:${good.port}",result="ok"`;
    await waitFor(async () => (await metric(admin, okLabels)) >= 3, 5000, 'ok probes counted');
    assert.ok((await metric(admin, `pool="se",backend="127.0.0.1:${silent.port}",result="failed"`)) >= 2);
    assert.equal(await metric(admin, `pool="se",backend="127.0.0.1:${good.port}",result="failed"`), 0);
  });

  test('1 MiB of junk fails with expect_mismatch after 4 KiB, and l4lb memory stays flat over 40 such probes', async () => {
    const addr = `127.0.0.1:${junk.port}`;
    const line = await lb.waitForLog((l) => l.msg === 'backend state changed' && l.backend === addr, 8000, 'junk down');
    assert.equal(line.reason, 'expect_mismatch');
    assert.match(String(line.detail), /^no match in the first 4096 bytes; got 4096 bytes: "x{64}\.\.\."$/);
    const pid = lb.child.pid!;
    const base = junk.accepted;
    const rss0 = rssKiB(pid);
    await waitFor(() => junk.accepted >= base + 40, 15000, '40 more junk probes', 20);
    const rss1 = rssKiB(pid);
    const st = await backendStatus(admin, 'junk', addr);
    assert.equal(st.check?.reason, 'expect_mismatch');
    assert.ok((st.check?.latency_ms ?? 1e9) < TIMEOUT_MS, `judged before the timeout: ${st.check?.latency_ms} ms`);
    process.stdout.write(`# measured: l4lb RSS ${rss0} KiB -> ${rss1} KiB over 40 probes answered with 1 MiB each\n`);
    assert.ok(rss1 - rss0 < 16 * 1024, `RSS grew ${rss1 - rss0} KiB over 40 MiB of junk offered`);
  });
});

describe('health checks: the Redis recipe against a primary and a replica', { skip: hasBinary('redis-server') ? false : 'redis-server not installed (Debian package redis-server)' }, () => {
  const INTERVAL = 200;
  const TIMEOUT = 150;
  const RISE = 2;
  const FALL = 2;
  const BOUND = (FALL + RISE) * INTERVAL * 1.05 + TIMEOUT + 1000;
  let a: Service;
  let b: Service;
  let lb: L4lbProcess;

  /** The redis-server l4lb sends a new connection to (its tcp_port). */
  async function servedBy(): Promise<number> {
    const info = await redisCmd(await lb.port('redis'), ['INFO', 'server']);
    const m = /tcp_port:(\d+)/.exec(info ?? '');
    assert.ok(m, `INFO server through l4lb: ${info}`);
    return Number(m[1]);
  }

  before(async () => {
    [a, b] = await Promise.all([startRedis(), startRedis()]);
    assert.equal(await redisCmd(b.port, ['REPLICAOF', '127.0.0.1', String(a.port)]), 'OK');
    const health = `${recipe('redis')}\ninterval = "${INTERVAL}ms"\ntimeout = "${TIMEOUT}ms"\nrise = ${RISE}\nfall = ${FALL}`;
    lb = new L4lbProcess(listenerToml('redis', 'redis') + pool('redis', [`127.0.0.1:${a.port}`, `127.0.0.1:${b.port}`], health));
    await lb.port('redis');
  });
  after(async () => {
    await lb?.stop();
    await a?.stop();
    await b?.stop();
  });

  test('only the primary is up; writes through l4lb go to it', async () => {
    const down = await lb.waitForLog((l) => l.msg === 'backend state changed' && l.backend === `127.0.0.1:${b.port}`, 8000, 'replica down');
    assert.equal(down.to, 'down');
    assert.equal(down.reason, 'expect_mismatch');
    assert.match(String(down.detail), /role:slave/);
    assert.equal(changesOf(lb, `127.0.0.1:${a.port}`).length, 0);
    for (let i = 0; i < 6; i++) assert.equal(await servedBy(), a.port);
    assert.equal(await redisCmd(await lb.port('redis'), ['SET', 'k', 'v1']), 'OK');
  });

  test('after a failover (REPLICAOF NO ONE, REPLICAOF the old primary) traffic flips within fall x interval + rise x interval + margin', async () => {
    const aDown = nextChange(lb, `127.0.0.1:${a.port}`, 'down');
    const bUp = nextChange(lb, `127.0.0.1:${b.port}`, 'up');
    const t0 = Date.now();
    assert.equal(await redisCmd(b.port, ['REPLICAOF', 'NO', 'ONE']), 'OK');
    assert.equal(await redisCmd(a.port, ['REPLICAOF', '127.0.0.1', String(b.port)]), 'OK');
    const [down, up] = await Promise.all([aDown, bUp]);
    const took = Math.max(Date.parse(String(down.time)), Date.parse(String(up.time))) - t0;
    assert.equal(down.reason, 'expect_mismatch');
    assert.match(String(down.detail), /role:slave/);
    assert.equal(up.reason, 'probe_ok');
    assert.ok(took <= BOUND, `flipped after ${took} ms (bound ${BOUND})`);
    process.stdout.write(`# measured: redis failover followed after ${took} ms (interval ${INTERVAL}, fall ${FALL}, rise ${RISE})\n`);
    for (let i = 0; i < 6; i++) assert.equal(await servedBy(), b.port);
    assert.equal(await redisCmd(await lb.port('redis'), ['SET', 'k', 'v2']), 'OK');
  });
});

/** A Patroni stand-in: answers GET on the side port as `mode` says. */
type Mode = '200' | '503' | 'garbage' | 'truncated' | 'slow';

interface SidePort {
  server: net.Server;
  mode: Mode;
  requests: string[];
}

function sidePort(host: string, port: number): Promise<SidePort> {
  const sp: SidePort = {
    mode: '200',
    requests: [],
    server: net.createServer((s) => {
      s.on('error', () => {});
      let req = '';
      s.on('data', (d: Buffer) => {
        req += d.toString('latin1');
        if (!req.includes('\r\n\r\n')) return;
        sp.requests.push(req);
        switch (sp.mode) {
          case '200':
            s.end('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{"role":"master"}');
            break;
          case '503':
            s.end('HTTP/1.1 503 Service Unavailable\r\nContent-Length: 18\r\n\r\n{"role":"replica"}');
            break;
          case 'garbage':
            s.end('SSH-2.0-OpenSSH_9.2\r\n');
            break;
          case 'truncated':
            s.end('HTTP/1.1 200 OK\r\nContent-Le');
            break;
          case 'slow':
            break; // never answers
        }
      });
    }),
  };
  sp.server.listen(port, host);
  return withTimeout(
    new Promise<SidePort>((resolve, reject) => {
      sp.server.once('listening', () => resolve(sp));
      sp.server.once('error', reject);
    }),
    5000,
    `side port ${host}:${port}`,
  );
}

/** A data-port backend on `host` that writes its tag line. */
async function taggedOn(host: string, tag: string): Promise<{ server: net.Server; port: number }> {
  const server = net.createServer((s) => {
    s.on('error', () => {});
    s.end(`${tag}\n`);
  });
  server.listen(0, host);
  await once(server, 'listening');
  return { server, port: (server.address() as net.AddressInfo).port };
}

describe('health checks: the Patroni recipe (http on a side port) with workers = 2', () => {
  const H1 = '127.0.0.2';
  const H2 = '127.0.0.3';
  let d1: { server: net.Server; port: number };
  let d2: { server: net.Server; port: number };
  let s1: SidePort;
  let s2: SidePort;
  let lb: L4lbProcess;
  let admin: number;
  let b1: string;
  let b2: string;

  async function tag(): Promise<string> {
    const c = await connect(await lb.port('pg'));
    try {
      return await readLine(c, 3000);
    } finally {
      c.destroy();
    }
  }

  /**
   * Waits until new connections reach `want`: the primary pushes a state
   * change to both workers over IPC, so for a moment a worker may still
   * have the old picker (a connection then closes at once, no_backend).
   */
  async function tagBecomes(want: string): Promise<void> {
    await waitFor(async () => (await withTimeout(tag(), 300, 'tag').catch(() => '')) === want, 3000, `connections reach ${want}`);
    for (let i = 0; i < 6; i++) assert.equal(await tag(), want);
  }

  before(async () => {
    d1 = await taggedOn(H1, 'pg1');
    d2 = await taggedOn(H2, 'pg2');
    // The same side port on both hosts, as Patroni's 8008 on every node.
    for (let attempt = 0; attempt < 10 && s2 === undefined; attempt++) {
      const first = await sidePort(H1, 0);
      const p = (first.server.address() as net.AddressInfo).port;
      try {
        s2 = await sidePort(H2, p);
        s1 = first;
      } catch {
        first.server.close();
      }
    }
    assert.ok(s1 && s2, 'a side port free on both addresses');
    s2.mode = '503';
    const sideP = (s1.server.address() as net.AddressInfo).port;
    b1 = `${H1}:${d1.port}`;
    b2 = `${H2}:${d2.port}`;
    const health = `${recipe('patroni')}\nport = ${sideP}\ninterval = "100ms"\ntimeout = "150ms"\nrise = 2\nfall = 2`;
    lb = new L4lbProcess(`[global]\nworkers = 2\n${ADMIN}` + listenerToml('pg', 'pg') + pool('pg', [b1, b2], health));
    admin = await adminPort(lb);
    await lb.port('pg');
  });
  after(async () => {
    await lb?.stop();
    for (const s of [d1?.server, d2?.server, s1?.server, s2?.server]) s?.close();
  });

  test('the pool follows the side port: 503 is down (http_status_503), traffic goes to the 200 one; then it flips', async () => {
    const down = await lb.waitForLog((l) => l.msg === 'backend state changed' && l.backend === b2, 8000, 'b2 down');
    assert.equal(down.reason, 'http_status_503');
    await tagBecomes('pg1');
    const req = s1.requests[0] ?? '';
    const sideP = (s1.server.address() as net.AddressInfo).port;
    assert.match(req, /^GET \/primary HTTP\/1\.1\r\n/);
    assert.match(req, new RegExp(`\\r\\nHost: 127\\.0\\.0\\.2:${sideP}\\r\\n`));
    assert.match(req, /\r\nConnection: close\r\n/);
    const d1Down = nextChange(lb, b1, 'down');
    const d2Up = nextChange(lb, b2, 'up');
    s1.mode = '503';
    s2.mode = '200';
    assert.equal((await d1Down).reason, 'http_status_503');
    assert.equal((await d2Up).reason, 'probe_ok');
    await tagBecomes('pg2');
    const st = await backendStatus(admin, 'pg', b2);
    assert.equal(st.state, 'up');
    assert.deepEqual([st.check?.result, st.check?.reason], ['ok', null]);
    assert.match(st.state_since ?? '', ISO);
  });

  for (const [mode, reason, detail] of [
    ['garbage', 'bad_http_response', /^not an HTTP\/1\.x response; got 21 bytes: "SSH-2\.0/],
    ['truncated', 'bad_http_response', /^truncated response; got 27 bytes: "HTTP\/1\.1 200 OK\\r\\nContent-Le"$/],
    ['slow', 'timeout', null],
  ] as const) {
    test(`a ${mode} reply is ${reason}; the backend comes back when it answers 200 again`, async () => {
      const down = nextChange(lb, b2, 'down');
      s2.mode = mode;
      const line = await down;
      assert.equal(line.reason, reason);
      if (detail !== null) assert.match(String(line.detail), detail);
      const st = await backendStatus(admin, 'pg', b2);
      assert.equal(st.state, 'down');
      assert.deepEqual([st.check?.result, st.check?.reason], ['failed', reason]);
      assert.ok(Math.abs(Date.parse(st.state_since!) - Date.parse(String(line.time))) < 50);
      const up = nextChange(lb, b2, 'up');
      s2.mode = '200';
      await up;
      await tagBecomes('pg2');
    });
  }
});

describe('health checks: the DNS recipe (send-expect over UDP) against dnsmasq', { skip: hasBinary('dnsmasq') ? false : 'dnsmasq not installed (Debian package dnsmasq)' }, () => {
  let dns: Service;
  let lb: L4lbProcess;
  let admin: number;
  let addr: string;

  before(async () => {
    dns = await startDnsmasq('example.com', '127.0.0.9');
    addr = `127.0.0.1:${dns.port}`;
    const health = `${recipe('dns')}\ninterval = "100ms"\ntimeout = "150ms"\nrise = 2\nfall = 2`;
    lb = new L4lbProcess(
      ADMIN + listenerToml('dns', 'dns', 'protocol = "udp"\nudp_responses = 1') + pool('dns', [addr], health, 'algorithm = "consistent-hash"'),
    );
    admin = await adminPort(lb);
    await lb.port('dns');
  });
  after(async () => {
    await lb?.stop();
    await dns?.stop();
  });

  test('up while dnsmasq answers; queries through l4lb are answered', async () => {
    await waitFor(async () => (await backendStatus(admin, 'dns', addr)).check?.result === 'ok', 5000, 'a probe answered');
    const st = await backendStatus(admin, 'dns', addr);
    assert.equal(st.state, 'up');
    assert.ok((st.check?.latency_ms ?? 1e9) < 150);
    const reply = await udpAsk(await lb.port('dns'), dnsQuery('example.com', 0x4242), 2000);
    assert.ok(reply !== null, 'an answer through l4lb');
    assert.equal(reply.readUInt16BE(0), 0x4242);
    assert.deepEqual([...reply.subarray(-4)], [127, 0, 0, 9]);
    assert.equal(changesOf(lb, addr).length, 0);
  });

  test('stopped (SIGSTOP): down with reason timeout; continued: up again', async () => {
    const down = nextChange(lb, addr, 'down');
    dns.child.kill('SIGSTOP');
    try {
      const line = await down;
      assert.equal(line.reason, 'timeout');
      assert.equal((await backendStatus(admin, 'dns', addr)).check?.reason, 'timeout');
    } finally {
      dns.child.kill('SIGCONT');
    }
    const up = await nextChange(lb, addr, 'up');
    assert.equal(up.reason, 'probe_ok');
  });

  test('gone (process exits): down with reason refused (ICMP port unreachable)', async () => {
    const down = nextChange(lb, addr, 'down');
    await dns.stop();
    const line = await down;
    assert.equal(line.reason, 'refused');
    assert.equal(line.error, 'ECONNREFUSED');
  });
});

describe('health checks: send-expect over UDP against an in-test responder', () => {
  let sock: dgram.Socket;
  let port: number;
  let answer = 'pong';
  let lb: L4lbProcess;

  before(async () => {
    sock = dgram.createSocket('udp4');
    sock.on('message', (m, r) => {
      if (m.toString() === 'ping') sock.send(answer, r.port, r.address);
    });
    sock.bind(0, '127.0.0.1');
    await once(sock, 'listening');
    port = sock.address().port;
    const health = 'type = "send-expect"\nprotocol = "udp"\nsend = "ping"\nexpect_regex = "^pong$"\ninterval = "100ms"\ntimeout = "150ms"\nrise = 2\nfall = 2';
    lb = new L4lbProcess(listenerToml('u', 'u', 'protocol = "udp"') + pool('u', [`127.0.0.1:${port}`], health));
    await lb.port('u');
  });
  after(async () => {
    await lb?.stop();
    sock?.close();
  });

  test('a wrong datagram is expect_mismatch with the datagram in detail', async () => {
    const down = nextChange(lb, `127.0.0.1:${port}`, 'down');
    answer = 'pang\x00';
    const line = await down;
    assert.equal(line.reason, 'expect_mismatch');
    assert.equal(line.detail, 'got 5 bytes: "pang\\x00"');
    const up = nextChange(lb, `127.0.0.1:${port}`, 'up');
    answer = 'pong';
    await up;
  });
});

describe('health checks: a reload changes the check type of kept backends', () => {
  let data: { server: net.Server; port: number };
  let side: SidePort;
  let lb: L4lbProcess;
  let admin: number;
  let addr: string;
  const cfg = (health: string): string =>
    ADMIN + listenerToml('r', 'r') + pool('r', [addr], `interval = "100ms"\ntimeout = "150ms"\nrise = 2\nfall = 2\n${health}`);

  before(async () => {
    data = await taggedOn('127.0.0.1', 'R');
    side = await sidePort('127.0.0.1', 0);
    side.mode = '503';
    addr = `127.0.0.1:${data.port}`;
    lb = new L4lbProcess(cfg('type = "connect"'));
    admin = await adminPort(lb);
    await lb.port('r');
  });
  after(async () => {
    await lb?.stop();
    data?.server.close();
    side?.server.close();
  });

  test('connect -> http (side port answers 503): down with http_status_503; -> connect again: up', async () => {
    await waitFor(async () => (await backendStatus(admin, 'r', addr)).check?.result === 'ok', 5000, 'connect probes ok');
    const sideP = (side.server.address() as net.AddressInfo).port;
    const down = nextChange(lb, addr, 'down');
    lb.writeConfig(cfg(`type = "http"\nport = ${sideP}\npath = "/primary"`));
    lb.signal('SIGHUP');
    assert.equal((await down).reason, 'http_status_503');
    assert.ok(side.requests.length >= 2);
    const up = nextChange(lb, addr, 'up');
    lb.writeConfig(cfg('type = "connect"'));
    lb.signal('SIGHUP');
    assert.equal((await up).reason, 'probe_ok');
  });
});
