/**
 * Hand-built TLS ClientHellos (RFC 8446 §4.1.2, RFC 6066 §3) for the
 * ClientHello reader's unit and fuzz tests and the SNI routing integration
 * tests, plus the seeded fuzz runner. Built field by field here,
 * independently of the reader.
 */
import assert from 'node:assert/strict';
import { ClientHelloReader, CLIENT_HELLO_MAX_BYTES, serverNameOf, type ClientHelloResult } from '../../src/tls/client-hello';
import { mulberry32, below, split, type Rng } from './proxy-fuzz';

export { mulberry32, below, type Rng };

const u16 = (n: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
};
const u24 = (n: number): Buffer => Buffer.from([(n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]);
const vec8 = (b: Buffer): Buffer => Buffer.concat([Buffer.from([b.length]), b]);
const vec16 = (b: Buffer): Buffer => Buffer.concat([u16(b.length), b]);

/** One extension: type and data. */
export const ext = (type: number, data: Buffer): Buffer => Buffer.concat([u16(type), vec16(data)]);

/** The server_name extension with these host names (RFC 6066 §3). */
export function sniExtension(...names: string[]): Buffer {
  const list = Buffer.concat(names.map((n) => Buffer.concat([Buffer.from([0]), vec16(Buffer.from(n, 'latin1'))])));
  return ext(0, vec16(list));
}

/** ALPN (RFC 7301) with these protocol names. */
export function alpnExtension(protocols: string[]): Buffer {
  return ext(16, vec16(Buffer.concat(protocols.map((p) => vec8(Buffer.from(p, 'latin1'))))));
}

/** The padding extension (RFC 7685) of `n` zero bytes. */
export const paddingExtension = (n: number): Buffer => ext(21, Buffer.alloc(n));

export interface HelloOptions {
  /** The server name, or null for none (default "example.com"). */
  sni?: string | null;
  /** Extensions added after server_name (default: supported_versions and a key_share). */
  extensions?: Buffer[];
  sessionIdLength?: number;
  cipherSuites?: number;
  /** Omit the extensions block entirely (a TLS 1.0-style hello). */
  noExtensionsBlock?: boolean;
}

/** The ClientHello body (after the 4-byte handshake header). */
export function clientHelloBody(o: HelloOptions = {}): Buffer {
  const random = Buffer.alloc(32, 0x5a);
  const sid = Buffer.alloc(o.sessionIdLength ?? 32, 0x11);
  const suites = Buffer.alloc(2 * (o.cipherSuites ?? 3));
  for (let i = 0; i < suites.length; i += 2) suites.writeUInt16BE(0x1301 + i / 2, i);
  const fixed = Buffer.concat([Buffer.from([0x03, 0x03]), random, vec8(sid), vec16(suites), vec8(Buffer.from([0]))]);
  if (o.noExtensionsBlock) return fixed;
  const sni = o.sni === undefined ? 'example.com' : o.sni;
  const exts = [
    ...(sni !== null ? [sniExtension(sni)] : []),
    ...(o.extensions ?? [ext(43, Buffer.from([2, 0x03, 0x04])), ext(51, vec16(Buffer.concat([u16(29), vec16(Buffer.alloc(32, 7))])))]),
  ];
  return Buffer.concat([fixed, vec16(Buffer.concat(exts))]);
}

/** A handshake message: type 1 (ClientHello), 24-bit length, body. */
export const handshake = (body: Buffer): Buffer => Buffer.concat([Buffer.from([0x01]), u24(body.length), body]);

/**
 * Wraps handshake bytes in TLS records whose fragments have the given sizes
 * (the last size repeats; default one record up to 16384 bytes each).
 */
export function records(hs: Buffer, sizes: number[] = [16384]): Buffer {
  const out: Buffer[] = [];
  let off = 0;
  let k = 0;
  while (off < hs.length) {
    const n = Math.min(sizes[Math.min(k, sizes.length - 1)] ?? 16384, hs.length - off);
    out.push(Buffer.from([0x16, 0x03, 0x01]), u16(n), hs.subarray(off, off + n));
    off += n;
    k++;
  }
  return Buffer.concat(out);
}

/** A complete ClientHello on the wire, in one record. */
export const clientHello = (o: HelloOptions = {}): Buffer => records(handshake(clientHelloBody(o)));

// ---------------------------------------------------------------- fuzzing

const rbytes = (r: Rng, n: number): Buffer => {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = r() & 0xff;
  return b;
};

const LABELS = ['api', 'www', 'a', 'x-1', 'example', 'com', 'internal', 'b2', 'Mixed', 'Z'];

/** A random valid ClientHello (random name or none, extensions, record fragmentation) and what the reader must say. */
export function genHello(r: Rng): { bytes: Buffer; sni: string | null; length: number } {
  let sni: string | null = null;
  if (below(r, 5) !== 0) {
    const n = 1 + below(r, 4);
    const labels: string[] = [];
    for (let i = 0; i < n; i++) labels.push(LABELS[below(r, LABELS.length)] as string);
    sni = labels.join('.');
  }
  const exts: Buffer[] = [];
  const types = new Set<number>([0]);
  const ne = below(r, 6);
  for (let i = 0; i < ne; i++) {
    const t = 1 + below(r, 60);
    if (types.has(t)) continue;
    types.add(t);
    if (t === 21 && below(r, 4) === 0) exts.push(paddingExtension(below(r, 3) === 0 ? 2000 + below(r, 20000) : below(r, 300)));
    else if (t === 16) exts.push(alpnExtension(['h2', 'http/1.1'].slice(0, 1 + below(r, 2))));
    else exts.push(ext(t, rbytes(r, below(r, 10) === 0 ? below(r, 3000) : below(r, 40))));
  }
  const noBlock = sni === null && below(r, 10) === 0;
  const body = clientHelloBody({ sni, extensions: exts, sessionIdLength: below(r, 33), cipherSuites: 1 + below(r, 40), noExtensionsBlock: noBlock });
  const hs = handshake(body);
  let wire: Buffer;
  switch (below(r, 5)) {
    case 0: wire = records(hs, [1 + below(r, 8)]); break; // tiny records
    case 1: wire = records(hs, [1 + below(r, Math.min(hs.length, 16384)), 16384]); break; // two records
    case 2: wire = records(hs, [1 + below(r, 500), 1 + below(r, 500), 1 + below(r, 16384)]); break;
    default: wire = records(hs); break;
  }
  return { bytes: wire, sni: sni === null ? null : sni.toLowerCase(), length: wire.length };
}

/** Contract: a random mutation: bit flips (often in headers), truncation, insertion, deletion, length rewrite, garbage. */
export function mutateHello(r: Rng, b: Buffer): Buffer {
  const out = Buffer.from(b);
  switch (below(r, 8)) {
    case 0: case 1: {
      const flips = 1 + below(r, 3);
      for (let i = 0; i < flips && out.length > 0; i++) {
        const at = below(r, Math.min(out.length, below(r, 2) ? 120 : out.length));
        out[at] = (out[at] ?? 0) ^ (1 << below(r, 8));
      }
      return out;
    }
    case 2: return out.subarray(0, below(r, out.length + 1));
    case 3: { const at = below(r, out.length + 1); return Buffer.concat([out.subarray(0, at), rbytes(r, 1 + below(r, 4)), out.subarray(at)]); }
    case 4: { const at = below(r, Math.max(1, out.length)); return Buffer.concat([out.subarray(0, at), out.subarray(at + 1)]); }
    case 5: { // rewrite a length field: record (3..4), handshake (6..8) or somewhere inside
      const at = below(r, 3) === 0 ? 3 : below(r, 2) === 0 ? 6 + below(r, 2) : below(r, Math.max(1, out.length - 1));
      if (at + 1 < out.length) out.writeUInt16BE(r() & 0xffff, at);
      return out;
    }
    case 6: { const at = below(r, out.length + 1); return Buffer.concat([out.subarray(0, at), rbytes(r, below(r, 200))]); }
    default: {
      const g = rbytes(r, below(r, 150));
      if (below(r, 2) === 0 && g.length > 0) g[0] = 0x16;
      if (below(r, 2) === 0 && g.length > 2) { g[1] = 3; g[2] = 1; }
      return g;
    }
  }
}

export interface HelloFuzzStats {
  iterations: number;
  done: number;
  needMore: number;
  bad: Record<string, number>;
  maxBuffered: number;
}

/**
 * Contract: an independent check of a `done` answer: walking the records of
 * `input` from the start, the handshake bytes carried up to `length` are
 * exactly one ClientHello message (type 1, 4 + its 24-bit length), `length`
 * falls inside a record, and that message's server name is `sni`.
 */
export function verifyDone(input: Buffer, length: number, sni: string | null): void {
  assert.ok(length > 0 && length <= input.length && length <= CLIENT_HELLO_MAX_BYTES, `length ${length} out of range`);
  const hs: Buffer[] = [];
  let got = 0;
  let off = 0;
  while (off < length) {
    assert.ok(off + 5 <= length, 'length ends inside a record header');
    assert.equal(input[off], 0x16, 'a record that is not handshake');
    const n = input.readUInt16BE(off + 3);
    const take = Math.min(n, length - off - 5);
    hs.push(input.subarray(off + 5, off + 5 + take));
    got += take;
    off += 5 + take;
  }
  const msg = Buffer.concat(hs, got);
  assert.ok(msg.length >= 4 && msg[0] === 1, 'not a ClientHello message');
  const bodyLen = (msg[1]! << 16) | (msg[2]! << 8) | msg[3]!;
  assert.equal(msg.length, 4 + bodyLen, 'length is not the end of the ClientHello message');
  assert.equal(serverNameOf(msg.subarray(4), bodyLen), sni, 'server name differs');
}

function shape(res: ClientHelloResult): void {
  assert.ok(res.state === 'need-more' || res.state === 'done' || res.state === 'bad', 'unknown state');
  if (res.state === 'bad') assert.notEqual(res.reason, 'internal', `internal error: ${res.message}`);
}

/** Contract: every property on one input (see runHelloFuzz); throws an AssertionError on a violation. */
export function checkHello(r: Rng, input: Buffer, stats: HelloFuzzStats, expect?: { sni: string | null; length: number }): void {
  const one = new ClientHelloReader();
  const r1 = one.push(input);
  shape(r1);
  const two = new ClientHelloReader();
  let r2: ClientHelloResult = { state: 'need-more' };
  for (const c of split(r, input)) {
    const prev: ClientHelloResult["state"] = r2.state;
    r2 = two.push(c);
    shape(r2);
    assert.ok(two.bufferedBytes <= CLIENT_HELLO_MAX_BYTES);
    stats.maxBuffered = Math.max(stats.maxBuffered, two.bufferedBytes);
    if (prev !== 'need-more') assert.equal(r2.state, prev, 'a decided answer changed');
  }
  assert.equal(r2.state, r1.state, 'chunking changed the outcome');
  if (r1.state === 'done' && r2.state === 'done') {
    stats.done++;
    assert.equal(r2.sni, r1.sni);
    assert.equal(r2.length, r1.length, 'chunking changed the length');
    verifyDone(input, r1.length, r1.sni);
    if (expect) {
      assert.equal(r1.sni, expect.sni);
      assert.equal(r1.length, expect.length);
    }
  } else if (r1.state === 'bad' && r2.state === 'bad') {
    stats.bad[r1.reason] = (stats.bad[r1.reason] ?? 0) + 1;
    assert.equal(r2.reason, r1.reason, 'chunking changed the reason');
    assert.equal(expect, undefined, `valid ClientHello refused: ${r1.reason} ${r1.message}`);
  } else {
    stats.needMore++;
    assert.ok(input.length < CLIENT_HELLO_MAX_BYTES + 1, 'need-more beyond the bound');
    assert.equal(expect, undefined, 'valid ClientHello reported need-more');
    const e = one.end();
    assert.ok(e.state === 'bad' && e.reason === 'truncated');
  }
}

/**
 * Contract: `iterations` seeded cases, 1/4 valid ClientHellos (sometimes
 * followed by payload), 3/4 mutated (once or twice) or garbage. Properties:
 * push never throws and gives a known state (never `internal`); any chunking
 * gives the same state, reason, name and length; a `done` length is exactly
 * the end of a ClientHello message (checked independently) and within
 * 64 KiB; valid input gives the expected name and length; need-more only for
 * incomplete input, then end() says truncated.
 */
export function runHelloFuzz(seed: number, iterations: number): HelloFuzzStats {
  const r = mulberry32(seed);
  const stats: HelloFuzzStats = { iterations, done: 0, needMore: 0, bad: {}, maxBuffered: 0 };
  for (let i = 0; i < iterations; i++) {
    const s = genHello(r);
    if (below(r, 4) === 0) {
      const payload = below(r, 2) ? rbytes(r, below(r, 100)) : Buffer.alloc(0);
      checkHello(r, Buffer.concat([s.bytes, payload]), stats, s);
    } else {
      let m = mutateHello(r, s.bytes);
      if (below(r, 3) === 0) m = mutateHello(r, m);
      checkHello(r, m, stats);
    }
  }
  return stats;
}
