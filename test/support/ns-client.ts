/**
 * Client agent for the network-namespace tests (run inside the client's
 * namespace, which the test process cannot open sockets in). Reads one JSON
 * request a line on stdin, answers one JSON line on stdout with the same id.
 *
 *   {"id":1,"op":"batch","host":"10.99.9.1","port":80,"localPorts":[40000,...],"timeoutMs":1000}
 *   {"id":2,"op":"loop","host":"10.99.9.1","port":80,"durationMs":3000,"gapMs":20,"timeoutMs":250}
 *   {"id":3,"op":"udp","host":"10.99.9.1","port":53,"localPorts":[45000,...],"timeoutMs":1000}
 *   {"id":4,"op":"hold","host":"10.99.9.1","port":81,"localPorts":[46000,...],"via":"10.99.1.11","timeoutMs":1000}
 *   {"id":5,"op":"ping","handle":46003,"timeoutMs":1000}
 *
 * Each connection reads until the server closes; its result is
 * {t (Date.now() at the start), ok, reply (the text) or err (an error code or
 * "timeout" or "empty")}. `loop` opens connections one after the other from
 * ephemeral ports until durationMs has passed (bounded by 10,000 connections).
 * `udp` sends one datagram from each local port and waits for one answer.
 * `hold` opens connections (to an echo backend that first writes "echo
 * <peer>") from the local ports in turn until one is carried by `via`, and
 * keeps it open: its handle is the local port (reply "held <port>").
 * `ping` writes a line on a held connection and reports the echo, or the
 * error or close that came instead.
 */
import net from 'node:net';
import dgram from 'node:dgram';
import { createInterface } from 'node:readline';

export interface ConnResult {
  t: number;
  ok: boolean;
  reply?: string;
  err?: string;
}

interface Request {
  id: number;
  op: 'batch' | 'loop' | 'udp' | 'hold' | 'ping';
  via?: string;
  handle?: number;
  host: string;
  port: number;
  localPorts?: number[];
  durationMs?: number;
  gapMs?: number;
  timeoutMs: number;
}

function once(host: string, port: number, timeoutMs: number, localPort?: number): Promise<ConnResult & { retry?: boolean }> {
  const t = Date.now();
  return new Promise((resolve) => {
    const s = net.connect({ host, port, ...(localPort !== undefined ? { localPort } : {}) });
    let data = '';
    let err: string | undefined;
    const timer = setTimeout(() => {
      err = 'timeout';
      s.destroy();
    }, timeoutMs);
    s.setEncoding('utf8');
    s.on('data', (d: string) => (data += d));
    s.on('end', () => s.end());
    s.on('error', (e: NodeJS.ErrnoException) => (err = err ?? e.code ?? e.message));
    s.on('close', () => {
      clearTimeout(timer);
      const reply = data.trim();
      if (err === 'EADDRINUSE' || err === 'EADDRNOTAVAIL') resolve({ t, ok: false, err, retry: true });
      else if (err !== undefined) resolve({ t, ok: false, err, ...(reply ? { reply } : {}) });
      else if (reply === '') resolve({ t, ok: false, err: 'empty' });
      else resolve({ t, ok: true, reply });
    });
  });
}

/** A fixed local port may still be finishing its previous close: retried a bounded number of times. */
async function fromPort(host: string, port: number, timeoutMs: number, localPort: number): Promise<ConnResult> {
  for (let attempt = 0; ; attempt++) {
    const r = await once(host, port, timeoutMs, localPort);
    if (!r.retry || attempt >= 50) {
      delete r.retry;
      return r;
    }
    await new Promise((res) => setTimeout(res, 20));
  }
}

function udpOnce(host: string, port: number, timeoutMs: number, localPort: number): Promise<ConnResult> {
  const t = Date.now();
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    const done = (r: ConnResult): void => {
      clearTimeout(timer);
      s.close();
      resolve(r);
    };
    const timer = setTimeout(() => done({ t, ok: false, err: 'timeout' }), timeoutMs);
    s.on('error', (e: NodeJS.ErrnoException) => done({ t, ok: false, err: e.code ?? e.message }));
    s.on('message', (m) => done({ t, ok: true, reply: m.toString().trim() }));
    s.bind(localPort, () => s.send('?', port, host));
  });
}

const held = new Map<number, net.Socket>();

async function hold(req: Request): Promise<ConnResult> {
  const t = Date.now();
  for (const localPort of req.localPorts ?? []) {
    const r = await new Promise<{ s: net.Socket; first: string } | null>((resolve) => {
      const s = net.connect({ host: req.host, port: req.port, localPort });
      const timer = setTimeout(() => {
        s.destroy();
        resolve(null);
      }, req.timeoutMs);
      s.setEncoding('utf8');
      s.once('data', (d: string) => {
        clearTimeout(timer);
        resolve({ s, first: d.trim() });
      });
      s.on('error', () => {
        clearTimeout(timer);
        resolve(null);
      });
    });
    if (r === null) continue;
    if (r.first.endsWith(` ${req.via ?? ''}`)) {
      held.set(localPort, r.s);
      return { t, ok: true, reply: `held ${localPort}` };
    }
    r.s.destroy();
  }
  return { t, ok: false, err: 'no connection through the wanted host' };
}

function ping(req: Request): Promise<ConnResult> {
  const t = Date.now();
  const s = held.get(req.handle ?? -1);
  if (s === undefined) return Promise.resolve({ t, ok: false, err: 'no such handle' });
  return new Promise((resolve) => {
    const done = (r: ConnResult): void => {
      clearTimeout(timer);
      s.removeListener('data', onData);
      resolve(r);
    };
    const onData = (d: string): void => done({ t, ok: true, reply: d.trim() });
    const timer = setTimeout(() => done({ t, ok: false, err: 'timeout' }), req.timeoutMs);
    s.on('data', onData);
    s.once('error', (e: NodeJS.ErrnoException) => done({ t, ok: false, err: e.code ?? e.message }));
    s.once('close', () => done({ t, ok: false, err: 'closed' }));
    s.write('ping\n');
  });
}

async function handle(req: Request): Promise<ConnResult[]> {
  const out: ConnResult[] = [];
  if (req.op === 'hold') return [await hold(req)];
  if (req.op === 'ping') return [await ping(req)];
  if (req.op === 'udp') {
    for (const p of req.localPorts ?? []) out.push(await udpOnce(req.host, req.port, req.timeoutMs, p));
    return out;
  }
  if (req.op === 'batch') {
    for (const p of req.localPorts ?? []) out.push(await fromPort(req.host, req.port, req.timeoutMs, p));
    return out;
  }
  const end = Date.now() + (req.durationMs ?? 1000);
  for (let i = 0; i < 10_000 && Date.now() < end; i++) {
    const r = await once(req.host, req.port, req.timeoutMs);
    delete r.retry;
    out.push(r);
    await new Promise((res) => setTimeout(res, req.gapMs ?? 20));
  }
  return out;
}

const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  let req: Request;
  try {
    req = JSON.parse(line) as Request;
  } catch {
    return;
  }
  void handle(req).then((results) => process.stdout.write(JSON.stringify({ id: req.id, results }) + '\n'));
});
rl.on('close', () => process.exit(0));
process.stdout.write('ready\n');
