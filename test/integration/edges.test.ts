/**
 * Edges of the TCP data path, on both pumps: bytes written just before a
 * reset are delivered before the reset is passed on (both directions), a
 * FIN right after a PROXY header is passed on, and a reset racing the
 * handoff to the splice threads neither crashes nor leaks.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startServer, waitFor, withTimeout, type TestServer } from '../helpers/net';
import { L4lbProcess, type LogLine } from '../helpers/l4lb';
import { poolToml, listenerToml } from '../helpers/toml';
import { spliceAvailable, wasReset } from '../../src/native/addon';

const splice = spliceAvailable();
const REPLY = Buffer.from('FATAL: too many connections for role "app"\n');
const REQUEST = Buffer.from('startup: user=app database=app\n');

interface Outcome {
  data: Buffer;
  /** How the client's side ended: a reset, or EOF (for a Node client, libuv may report a reset arriving with the last bytes as EOF). */
  end: 'reset' | 'eof' | 'close' | 'timeout';
  /** At EOF: what the kernel says (null when the addon cannot tell). */
  eofWasReset: boolean | null;
}

/** Connects, optionally writes `first`, collects everything until the end. */
function exchange(port: number, first: Buffer | null, timeoutMs = 5000): Promise<Outcome> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const chunks: Buffer[] = [];
    let done = false;
    const fin = (end: Outcome['end'], eofWasReset: boolean | null = null): void => {
      if (done) return;
      done = true;
      clearTimeout(t);
      resolve({ data: Buffer.concat(chunks), end, eofWasReset });
      s.destroy();
    };
    const t = setTimeout(() => fin('timeout'), timeoutMs);
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => {
      const fd = (s as unknown as { _handle?: { fd?: number } | null })._handle?.fd ?? -1;
      fin('eof', wasReset(fd));
    });
    s.on('error', () => fin('reset'));
    s.on('close', () => fin('close'));
    if (first !== null) s.write(first);
  });
}

/** Runs `n` exchanges, `conc` at a time. */
async function many(n: number, conc: number, one: () => Promise<Outcome>): Promise<Outcome[]> {
  const out: Outcome[] = [];
  for (let i = 0; i < n; i += conc) out.push(...(await Promise.all(Array.from({ length: Math.min(conc, n - i) }, one))));
  return out;
}

function closedLines(lb: L4lbProcess, listener: string): LogLine[] {
  return lb.logs.filter((l) => l.msg === 'connection closed' && l.listener === listener);
}

async function activeConnections(lb: L4lbProcess, adminPort: number): Promise<number> {
  const r = await fetch(`http://127.0.0.1:${adminPort}/api/v1/status`);
  const j = (await r.json()) as { listeners: { active_connections: number }[] };
  return j.listeners.reduce((a, l) => a + l.active_connections, 0);
}

for (const mode of ['js', 'splice'] as const) {
  const skip = mode === 'splice' && !splice.ok ? `native splice addon not available: ${splice.reason}` : false;
  describe(`edges [${mode} pump]`, { skip }, () => {
    let replyThenReset: TestServer;
    let greetThenReset: TestServer;
    let sink: TestServer;
    let finBackend: TestServer;
    /** What the sink backend received per connection, and how each ended. */
    const sunk: { data: Buffer; end: string }[] = [];
    let lb: L4lbProcess;
    const port: Record<string, number> = {};
    let admin = 0;

    before(async () => {
      // A database-like backend: reads the request, answers with an error
      // and resets at once.
      replyThenReset = await startServer((s) => {
        s.once('data', () => {
          s.write(REPLY);
          s.resetAndDestroy();
        });
      });
      // A backend that greets and resets at once, before the client speaks.
      greetThenReset = await startServer((s) => {
        s.write(REPLY);
        s.resetAndDestroy();
      });
      // Records what each connection delivered and how it ended.
      sink = await startServer((s) => {
        const chunks: Buffer[] = [];
        let ended = false;
        const done = (end: string): void => {
          if (ended) return;
          ended = true;
          sunk.push({ data: Buffer.concat(chunks), end });
        };
        s.on('data', (c: Buffer) => chunks.push(c));
        s.on('end', () => {
          const fd = (s as unknown as { _handle?: { fd?: number } | null })._handle?.fd ?? -1;
          done(wasReset(fd) === false ? 'eof' : 'eof-reset');
        });
        s.on('error', () => done('reset'));
        s.on('close', () => done('close'));
      });
      // Answers "bye" to a FIN, then closes.
      finBackend = await startServer((s) => {
        s.resume();
        s.on('end', () => s.end('bye\n'));
      });
      const pool = (name: string, b: TestServer): string =>
        poolToml(name, 'round-robin', [`{ address = "127.0.0.1:${b.port}" }`], 'retries = 0');
      lb = new L4lbProcess(
        `[global]\nsplice = "${mode === 'splice' ? 'on' : 'off'}"\nconnection_log = true\n` +
          `[admin]\nbind = "127.0.0.1:0"\n` +
          listenerToml('rr', 'rr') +
          listenerToml('greet', 'greet') +
          listenerToml('sink', 'sink') +
          listenerToml('pfin', 'pfin', 'accept_proxy_protocol = true') +
          pool('rr', replyThenReset) +
          pool('greet', greetThenReset) +
          pool('sink', sink) +
          pool('pfin', finBackend),
      );
      for (const n of ['rr', 'greet', 'sink', 'pfin']) port[n] = await lb.port(n);
      admin = (await lb.waitForLog((l) => l.msg === 'admin listening')).port as number;
    });
    after(async () => {
      await lb.stop();
      for (const s of [replyThenReset, greetThenReset, sink, finBackend]) await s.close();
    });

    test('bytes before a backend reset: 200 request / error-reply-then-RST exchanges, every reply arrives, then the reset', async () => {
      const before = closedLines(lb, 'rr').length;
      const out = await many(200, 20, () => exchange(port.rr as number, REQUEST));
      const lost = out.filter((o) => !o.data.equals(REPLY));
      assert.equal(lost.length, 0, `replies lost: ${lost.length} of 200 (${JSON.stringify(lost.slice(0, 3).map((o) => o.end))})`);
      // Never a clean FIN instead of the reset: the client saw a reset, or
      // (libuv) EOF on a socket the kernel says was reset.
      const clean = out.filter((o) => !(o.end === 'reset' || (o.end === 'eof' && o.eofWasReset !== false)));
      assert.equal(clean.length, 0, `ended without a reset: ${JSON.stringify(clean.slice(0, 3).map((o) => o.end))}`);
      await waitFor(() => closedLines(lb, 'rr').length >= before + 200, 10000, '200 connection closed lines');
      const reasons = new Set(closedLines(lb, 'rr').slice(before).map((l) => l.reason));
      assert.deepEqual([...reasons], ['backend_reset']);
    });

    test('bytes before a client reset: 200 requests followed at once by RST all reach the backend, then the reset', async () => {
      sunk.length = 0;
      const before = closedLines(lb, 'sink').length;
      for (let i = 0; i < 200; i++) {
        const accepted = sink.accepted;
        const s = net.connect({ port: port.sink as number, host: '127.0.0.1' });
        s.on('error', () => {});
        // Once l4lb has connected the backend, the request and the RST go
        // out back to back (a reset racing the pump's start).
        await waitFor(() => sink.accepted > accepted, 5000, 'backend connection');
        await new Promise<void>((resolve) => s.write(REQUEST, () => resolve()));
        s.resetAndDestroy();
      }
      await waitFor(() => sunk.length >= 200, 10000, `200 backend connections ended (${sunk.length})`);
      const lost = sunk.filter((x) => !x.data.equals(REQUEST));
      assert.equal(lost.length, 0, `requests lost: ${lost.length} of 200`);
      // The backend saw the reset (or EOF on a socket the kernel says was reset), never a clean FIN.
      const clean = sunk.filter((x) => x.end === 'eof' || x.end === 'close');
      assert.equal(clean.length, 0, `ended without a reset: ${clean.length}`);
      await waitFor(() => closedLines(lb, 'sink').length >= before + 200, 10000, '200 connection closed lines');
      const reasons = new Set(closedLines(lb, 'sink').slice(before).map((l) => l.reason));
      assert.deepEqual([...reasons], ['client_reset']);
    });

    test('a greeting then RST from the backend is passed on as a reset, never as a clean close', async () => {
      const before = closedLines(lb, 'greet').length;
      const out = await many(100, 20, () => exchange(port.greet as number, null));
      const clean = out.filter((o) => !(o.end === 'reset' || (o.end === 'eof' && o.eofWasReset !== false)));
      assert.equal(clean.length, 0, `ended without a reset: ${clean.length}`);
      // Whatever arrived is the greeting, whole: never a part of it.
      for (const o of out) assert.ok(o.data.length === 0 || o.data.equals(REPLY), `partial greeting: ${o.data.length} bytes`);
      await waitFor(() => closedLines(lb, 'greet').length >= before + 100, 10000, '100 connection closed lines');
      const reasons = new Set(closedLines(lb, 'greet').slice(before).map((l) => l.reason));
      assert.deepEqual([...reasons], ['backend_reset']);
    });

    test('a FIN right after a PROXY header is passed on (20 clients), nothing lingers', async () => {
      for (let i = 0; i < 20; i++) {
        const o = await new Promise<Outcome>((resolve) => {
          const s = net.connect({ port: port.pfin as number, host: '127.0.0.1', allowHalfOpen: true });
          const chunks: Buffer[] = [];
          const t = setTimeout(() => {
            resolve({ data: Buffer.concat(chunks), end: 'timeout', eofWasReset: null });
            s.destroy();
          }, 5000);
          s.on('data', (c: Buffer) => chunks.push(c));
          s.on('end', () => {
            clearTimeout(t);
            resolve({ data: Buffer.concat(chunks), end: 'eof', eofWasReset: null });
            s.destroy();
          });
          s.on('error', () => {
            clearTimeout(t);
            resolve({ data: Buffer.concat(chunks), end: 'reset', eofWasReset: null });
          });
          // Header and FIN in one go, no payload (as `printf ... | socat`).
          s.end(i % 2 === 0 ? 'PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n' : proxyV2());
        });
        assert.equal(o.end, 'eof', `client ${i}: ${o.end}`);
        assert.equal(o.data.toString(), 'bye\n', `client ${i}`);
      }
      await withTimeout(
        waitFor(async () => (await activeConnections(lb, admin)) === 0, 5000, 'no connection left open'),
        6000,
        'active connections back to 0',
      );
    });
  });
}

/** A PROXY v2 header for TCP4 1.2.3.4:1111 -> 5.6.7.8:2222. */
function proxyV2(): Buffer {
  const sig = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
  const addr = Buffer.from([1, 2, 3, 4, 5, 6, 7, 8, 0x04, 0x57, 0x08, 0xae]);
  return Buffer.concat([sig, Buffer.from([0x21, 0x11, 0x00, addr.length]), addr]);
}
