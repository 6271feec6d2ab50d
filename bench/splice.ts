/**
 * Loopback throughput: naive JS pipe vs splice pump, in one process.
 * Usage: node dist/bench/splice.js [MiB=2048]
 * Reports Gbit/s and CPU-seconds per GB (process.cpuUsage: the whole process,
 * including the load generator and sink, which are the same for both modes).
 */
import * as net from 'node:net';
import { once } from 'node:events';
import type { Pump } from '../src/tcp/pump';
import { splicePump, canSplice } from '../src/tcp/splice-pump';
import { spliceAvailable } from '../src/native/addon';

const naivePump: Pump = {
  kind: 'js',
  start(client, backend, _head, done) {
    const h = { bytesIn: 0, bytesOut: 0, abort: () => { client.destroy(); backend.destroy(); } };
    client.on('data', (b: Buffer) => (h.bytesIn += b.length));
    client.pipe(backend);
    backend.pipe(client);
    let n = 0;
    const c = (): void => { if (++n === 2) done('closed', h.bytesIn, h.bytesOut); };
    client.on('close', c);
    backend.on('close', c);
    client.on('error', () => {});
    backend.on('error', () => {});
    client.resume();
    return h;
  },
};

async function run(pump: Pump, mib: number): Promise<{ gbps: number; cpuPerGB: number }> {
  const total = mib * 1024 * 1024;
  let received = 0;
  let sinkP!: Promise<number>;
  const sinkDone = new Promise<void>((resolve) => {
    const sink = net.createServer((s) => {
      s.on('data', (b: Buffer) => (received += b.length));
      s.on('end', () => { s.end(); sink.close(); resolve(); });
    });
    sink.listen(0, '127.0.0.1');
    sinkP = once(sink, 'listening').then(() => (sink.address() as net.AddressInfo).port);
  });
  const sinkPort = await sinkP;
  const front = net.createServer({ pauseOnConnect: true }, (client) => {
    const up = net.connect(sinkPort, '127.0.0.1');
    up.pause();
    up.on('connect', () => {
      if (pump.kind === 'splice' && !canSplice(client, up)) throw new Error('not spliceable');
      pump.start(client, up, null, () => front.close());
    });
  });
  front.listen(0, '127.0.0.1');
  await once(front, 'listening');
  const chunk = Buffer.alloc(256 * 1024, 7);
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const c = net.connect((front.address() as net.AddressInfo).port, '127.0.0.1');
  await once(c, 'connect');
  let sent = 0;
  await new Promise<void>((resolve) => {
    const go = (): void => {
      while (sent < total) {
        sent += chunk.length;
        if (!c.write(chunk)) { c.once('drain', go); return; }
      }
      c.end();
      resolve();
    };
    go();
  });
  c.resume();
  await sinkDone;
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  c.destroy();
  if (received !== total) throw new Error(`received ${received} of ${total}`);
  const gb = total / 1e9;
  return { gbps: (total * 8) / secs / 1e9, cpuPerGB: (cpu.user + cpu.system) / 1e6 / gb };
}

async function main(): Promise<void> {
  const mib = Number(process.argv[2] ?? 2048);
  const a = spliceAvailable();
  const modes: Pump[] = [naivePump];
  if (a.ok) modes.push(splicePump);
  else console.log(`splice unavailable: ${a.reason}`);
  for (const p of modes) {
    const r = await run(p, mib);
    console.log(`${p.kind.padEnd(6)} ${mib} MiB: ${r.gbps.toFixed(2)} Gbit/s, ${r.cpuPerGB.toFixed(3)} CPU-s/GB (process)`);
  }
}

void main();
