/**
 * Seeded generator + property checker for the PROXY protocol parser, shared
 * by test/unit/proxy-fuzz.test.ts and bench/proxy-fuzz.ts.
 */
import assert from 'node:assert/strict';
import {
  encodeHeader, formatIPv6, ParseResult, ProxyErrorCode, ProxyHeader, ProxyHeaderParser,
  V2_SIGNATURE,
} from '../../src/proxy';

/** Contract: mulberry32 PRNG; returns a function yielding uint32 values deterministically from `seed`. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

export type Rng = () => number;
/** Contract: uniform integer in [0, n) (n >= 1). */
export const below = (r: Rng, n: number): number => r() % n;
const bytes = (r: Rng, n: number): Buffer => {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = r() & 0xff;
  return b;
};

export const ERROR_CODES: readonly ProxyErrorCode[] = [
  'bad_signature', 'bad_v1', 'too_long', 'bad_version', 'bad_command', 'bad_family',
  'bad_protocol', 'truncated', 'bad_tlv', 'internal',
];

/** A generated well-formed header and what the parser must return for it. */
export interface Sample {
  readonly bytes: Buffer;
  readonly header: ProxyHeader;
  readonly length: number;
}

/** Contract: random 16 bytes, biased toward zero runs and IPv4-mapped forms. */
function v6bytes(r: Rng): Buffer {
  const b = bytes(r, 16);
  switch (below(r, 5)) {
    case 0: { const s = below(r, 8); const e = s + below(r, 9 - s); b.fill(0, s * 2, e * 2); break; }
    case 1: b.fill(0, 0, 10); b[10] = 0xff; b[11] = 0xff; break; // mapped
    case 2: b.fill(0); if (below(r, 2)) b[15] = 1; break;       // :: or ::1
    default: break;
  }
  return b;
}

/** Contract: a valid but non-canonical IPv6 text for `b` (full form, upper case, leading zeros, or "::"). */
function v6text(r: Rng, b: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 8; i++) {
    const g = b.readUInt16BE(i * 2);
    groups.push(below(r, 3) === 0 ? g.toString(16).padStart(4, '0') : g.toString(16));
  }
  let t: string;
  switch (below(r, 4)) {
    case 0: t = groups.join(':'); break;
    case 1: t = `${groups.slice(0, 6).join(':')}:${b[12]}.${b[13]}.${b[14]}.${b[15]}`; break;
    default: t = formatIPv6(b); break;
  }
  return below(r, 3) === 0 ? t.toUpperCase() : t;
}

const v4text = (b: Buffer): string => `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
const port = (r: Rng): number => (below(r, 4) === 0 ? below(r, 3) * 32767 + below(r, 2) : below(r, 65536));

/** Contract: a random well-formed v1 or v2 header, built independently of the encoders. */
export function genValid(r: Rng): Sample {
  const sp = port(r);
  const dp = port(r);
  const kind = below(r, 8);
  if (kind === 0) {
    const s = bytes(r, 4); const d = bytes(r, 4);
    const line = Buffer.from(`PROXY TCP4 ${v4text(s)} ${v4text(d)} ${sp} ${dp}\r\n`, 'latin1');
    return { bytes: line, length: line.length, header: { version: 1, command: 'PROXY', protocol: 'TCP4',
      source: { address: v4text(s), port: sp }, destination: { address: v4text(d), port: dp } } };
  }
  if (kind === 1) {
    const s = v6bytes(r); const d = v6bytes(r);
    let line = Buffer.from(`PROXY TCP6 ${v6text(r, s)} ${v6text(r, d)} ${sp} ${dp}\r\n`, 'latin1');
    // Dotted tails can exceed 39 characters; §2.1 caps the whole line at 107 bytes.
    if (line.length > 107) line = Buffer.from(`PROXY TCP6 ${formatIPv6(s)} ${formatIPv6(d)} ${sp} ${dp}\r\n`, 'latin1');
    return { bytes: line, length: line.length, header: { version: 1, command: 'PROXY', protocol: 'TCP6',
      source: { address: formatIPv6(s), port: sp }, destination: { address: formatIPv6(d), port: dp } } };
  }
  if (kind === 2) {
    let tail = '';
    if (below(r, 2)) {
      const n = below(r, 107 - 17);
      tail = ' ';
      for (let i = 0; i < n; i++) tail += String.fromCharCode(0x20 + below(r, 95));
    }
    const line = Buffer.from(`PROXY UNKNOWN${tail}\r\n`, 'latin1');
    return { bytes: line, length: line.length, header: { version: 1, command: 'PROXY', protocol: 'UNKNOWN' } };
  }
  // v2
  const tlvs: Buffer[] = [];
  const nt = below(r, 4);
  for (let i = 0; i < nt; i++) {
    const vl = below(r, 10) === 0 ? below(r, 3000) : below(r, 40);
    const t = Buffer.allocUnsafe(3 + vl);
    t[0] = r() & 0xff; t.writeUInt16BE(vl, 1); bytes(r, vl).copy(t, 3);
    tlvs.push(t);
  }
  const tlv = Buffer.concat(tlvs);
  const fixed = (verCmd: number, fam: number, body: Buffer): Buffer => {
    const h = Buffer.alloc(16);
    V2_SIGNATURE.copy(h); h[12] = verCmd; h[13] = fam; h.writeUInt16BE(body.length, 14);
    return Buffer.concat([h, body]);
  };
  if (kind === 3) { // LOCAL: family byte and body are ignored (§2.2)
    const b = fixed(0x20, r() & 0xff, bytes(r, below(r, 60)));
    return { bytes: b, length: b.length, header: { version: 2, command: 'LOCAL', protocol: 'UNKNOWN' } };
  }
  if (kind === 4) { // PROXY with AF_UNSPEC / AF_UNIX / transport UNSPEC
    const which = below(r, 3);
    const fam = which === 0 ? (below(r, 3)) : which === 1 ? 0x30 | below(r, 3) : (0x10 * (1 + below(r, 2)));
    const need = fam >> 4 === 3 ? 216 : fam >> 4 === 2 ? 36 : fam >> 4 === 1 ? 12 : 0;
    const b = fixed(0x21, fam, Buffer.concat([bytes(r, need), bytes(r, below(r, 30))]));
    return { bytes: b, length: b.length, header: { version: 2, command: 'PROXY', protocol: 'UNKNOWN' } };
  }
  const six = kind >= 6;
  const dgram = below(r, 4) === 0;
  const s = six ? v6bytes(r) : bytes(r, 4);
  const d = six ? v6bytes(r) : bytes(r, 4);
  const pp = Buffer.alloc(4); pp.writeUInt16BE(sp, 0); pp.writeUInt16BE(dp, 2);
  const b = fixed(0x21, (six ? 0x20 : 0x10) | (dgram ? 2 : 1), Buffer.concat([s, d, pp, tlv]));
  const fmt = six ? formatIPv6 : v4text;
  const protocol = six ? (dgram ? 'UDP6' : 'TCP6') : (dgram ? 'UDP4' : 'TCP4');
  return { bytes: b, length: b.length, header: { version: 2, command: 'PROXY', protocol,
    source: { address: fmt(s), port: sp }, destination: { address: fmt(d), port: dp } } };
}

/** Contract: a random mutation of `b`: bit flips, truncation, insert/delete, length-field rewrite, garbage. */
export function mutate(r: Rng, b: Buffer): Buffer {
  const out = Buffer.from(b);
  switch (below(r, 8)) {
    case 0: case 1: {
      const flips = 1 + below(r, 3);
      for (let i = 0; i < flips && out.length > 0; i++) {
        const at = below(r, Math.min(out.length, below(r, 2) ? 20 : out.length));
        out[at] = (out[at] ?? 0) ^ (1 << below(r, 8));
      }
      return out;
    }
    case 2: return out.subarray(0, below(r, out.length + 1));
    case 3: { const at = below(r, out.length + 1); return Buffer.concat([out.subarray(0, at), bytes(r, 1 + below(r, 4)), out.subarray(at)]); }
    case 4: { const at = below(r, Math.max(1, out.length)); return Buffer.concat([out.subarray(0, at), out.subarray(at + 1)]); }
    case 5: if (out.length >= 16 && out[0] === 0x0d) { out.writeUInt16BE(r() & 0xffff, 14); } else if (out.length > 6) { out[6 + below(r, out.length - 6)] = below(r, 2) ? 0x20 : r() & 0xff; } return out;
    case 6: { const at = below(r, out.length + 1); return Buffer.concat([out.subarray(0, at), bytes(r, below(r, 200))]); }
    default: {
      const g = bytes(r, below(r, 150));
      const lead = below(r, 3);
      if (lead === 0 && g.length > 0) g[0] = 0x50;
      if (lead === 1) return Buffer.concat([V2_SIGNATURE.subarray(0, below(r, 13)), g]);
      return g;
    }
  }
}

/** Contract: split `b` into random chunks (sometimes byte by byte, sometimes with empty chunks). */
export function split(r: Rng, b: Buffer): Buffer[] {
  if (below(r, 5) === 0) return Array.from(b, (_, i) => b.subarray(i, i + 1));
  const parts: Buffer[] = [];
  let off = 0;
  while (off < b.length) {
    const n = below(r, 8) === 0 ? 0 : 1 + below(r, Math.min(b.length - off, 1 + below(r, 64)));
    parts.push(b.subarray(off, off + n));
    off += n;
  }
  return parts;
}

export interface FuzzStats {
  iterations: number;
  done: number;
  needMore: number;
  errors: Record<string, number>;
  maxBuffered: number;
  pushes: number;
}

/** Contract: assert a result is one of the three states with a known error code. */
function checkShape(res: ParseResult): void {
  assert.ok(res.state === 'need-more' || res.state === 'done' || res.state === 'error', `bad state ${String((res as { state: unknown }).state)}`);
  if (res.state === 'error') {
    assert.ok(ERROR_CODES.includes(res.code), `unknown code ${res.code}`);
    assert.notEqual(res.code, 'internal', `internal error: ${res.message}`);
  }
}

/**
 * Contract: run every property on one input; throws an AssertionError on a
 * violation. Properties: push never throws; state is one of three; buffered
 * bytes never exceed the bound; a random chunking gives the same outcome
 * (state, code, header, rest bytes) as one chunk; 'done' consumes at most the
 * bound, `rest` is exactly the input's suffix, and encodeHeader(header)
 * re-parses to an equal header with nothing left over; 'need-more' holds
 * only inputs shorter than the bound, and end() then reports 'truncated'.
 */
export function checkInput(r: Rng, input: Buffer, stats: FuzzStats, expect?: Sample): void {
  const one = new ProxyHeaderParser();
  const bound = one.maxBufferedBytes;
  const r1 = one.push(input);
  stats.pushes++;
  checkShape(r1);
  assert.ok(one.bufferedBytes <= bound);
  stats.maxBuffered = Math.max(stats.maxBuffered, one.bufferedBytes);

  const two = new ProxyHeaderParser();
  let r2: ParseResult = { state: 'need-more' };
  const rest2: Buffer[] = [];
  for (const c of split(r, input)) {
    const prev = r2.state;
    r2 = two.push(c);
    stats.pushes++;
    checkShape(r2);
    assert.ok(two.bufferedBytes <= bound, `buffered ${two.bufferedBytes} > ${bound}`);
    stats.maxBuffered = Math.max(stats.maxBuffered, two.bufferedBytes);
    if (prev === 'error') assert.equal(r2.state, 'error');
    if (r2.state === 'done') rest2.push(r2.rest);
  }
  assert.equal(r2.state, r1.state, 'chunking changed the outcome');
  if (r1.state === 'error' && r2.state === 'error') assert.equal(r2.code, r1.code, 'chunking changed the error code');

  if (r1.state === 'done' && r2.state === 'done') {
    stats.done++;
    assert.deepEqual(r2.header, r1.header);
    assert.ok(Buffer.concat(rest2).equals(r1.rest), 'chunked rest differs');
    const consumed = input.length - r1.rest.length;
    assert.ok(consumed > 0 && consumed <= bound);
    assert.ok(input.subarray(consumed).equals(r1.rest));
    const again = new ProxyHeaderParser().push(encodeHeader(r1.header));
    assert.equal(again.state, 'done', 're-encoding does not parse');
    if (again.state === 'done') {
      assert.deepEqual(again.header, r1.header, 're-encoding does not round-trip');
      assert.equal(again.rest.length, 0);
    }
    if (expect !== undefined) {
      assert.deepEqual(r1.header, expect.header);
      assert.equal(consumed, expect.length);
    }
  } else if (r1.state === 'need-more') {
    stats.needMore++;
    assert.ok(input.length < bound);
    const e = one.end();
    assert.ok(e.state === 'error' && e.code === 'truncated');
    assert.equal(expect, undefined, 'valid header reported need-more');
  } else if (r1.state === 'error') {
    stats.errors[r1.code] = (stats.errors[r1.code] ?? 0) + 1;
    assert.equal(expect, undefined, `valid header rejected: ${r1.code} ${r1.message}`);
  }
}

/** Contract: `iterations` seeded cases (1/4 valid headers, optionally with payload; 3/4 mutated or garbage). */
export function runFuzz(seed: number, iterations: number): FuzzStats {
  const r = mulberry32(seed);
  const stats: FuzzStats = { iterations, done: 0, needMore: 0, errors: {}, maxBuffered: 0, pushes: 0 };
  for (let i = 0; i < iterations; i++) {
    const s = genValid(r);
    if (below(r, 4) === 0) {
      const payload = below(r, 2) ? bytes(r, below(r, 100)) : Buffer.alloc(0);
      checkInput(r, Buffer.concat([s.bytes, payload]), stats, s);
    } else {
      let m = mutate(r, s.bytes);
      if (below(r, 3) === 0) m = mutate(r, m);
      checkInput(r, m, stats);
    }
  }
  return stats;
}
