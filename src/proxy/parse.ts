/**
 * Incremental, bounded PROXY protocol header parser for the data path
 * (HAProxy "The PROXY protocol": §2.1 v1, §2.2 v2).
 *
 * - Version is detected from the first byte: 'P' starts v1, 0x0D starts v2;
 *   anything else is rejected at once (`bad_signature`).
 * - Memory is bounded: at most V1_MAX_HEADER (107) bytes for v1 and at most
 *   `maxV2HeaderBytes` (default and ceiling V2_MAX_HEADER = 65535) for v2.
 * - Checks run strictly in byte order as bytes arrive, so a header split
 *   across any number of chunks yields exactly the same result as the whole
 *   header in one chunk (property-tested).
 * - When the whole header arrives in one chunk it is decoded in place (no
 *   copy) and `rest` is a subarray of that chunk.
 * - `push` and `end` never throw; an internal exception becomes
 *   `{ state: 'error', code: 'internal' }`.
 */
import { formatIPv4, formatIPv6, parseIPv4, parseIPv6 } from './addr';
import {
  Endpoint, ParseResult, ProxyErrorCode, ProxyHeader, ProxyTransport,
  V1_MAX_HEADER, V2_ADDR_LEN_INET, V2_ADDR_LEN_INET6, V2_ADDR_LEN_UNIX,
  V2_FIXED_HEADER, V2_MAX_HEADER, V2_SIGNATURE,
} from './types';

/** Outcome of one decoding attempt over a prefix of the stream. */
type Attempt =
  | { readonly k: 'need'; readonly want: number }
  | { readonly k: 'done'; readonly header: ProxyHeader; readonly length: number }
  | { readonly k: 'error'; readonly code: ProxyErrorCode; readonly message: string };

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const V1_SIG = 'PROXY';
/** §2.1: what may follow "PROXY ": the INET protocol token and its delimiter. */
const V1_TOKENS = ['TCP4 ', 'TCP6 ', 'UNKNOWN ', 'UNKNOWN\r'];
const PORT_RE = /^(?:0|[1-9][0-9]{0,4})$/;

const need = (want: number): Attempt => ({ k: 'need', want });
const err = (code: ProxyErrorCode, message: string): Attempt => ({ k: 'error', code, message });

/**
 * Contract: decode a v1 header (§2.1) from `b[0..n)`. Returns `need` when no
 * CRLF has been seen yet and fewer than 107 bytes are available, `too_long`
 * when 107 bytes hold no CRLF, `bad_signature` when the first 5 bytes are not
 * "PROXY", `bad_v1` for any other malformation (checked in byte order:
 * delimiter after PROXY, protocol token, lone CR or LF, then the full line).
 */
function attemptV1(b: Buffer, n: number): Attempt {
  const lim = Math.min(n, V1_MAX_HEADER);
  for (let i = 0; i < lim; i++) {
    const c = b[i] ?? 0;
    if (i < 5) {
      if (c !== V1_SIG.charCodeAt(i)) return err('bad_signature', 'not a PROXY protocol header');
      continue;
    }
    if (i === 5) {
      if (c !== SP) return err('bad_v1', 'v1: expected a single space after "PROXY"');
      continue;
    }
    if (i - 6 < 8) {
      const at = i - 6;
      let ok = false;
      // Some token must agree with every byte seen so far (up to its length).
      for (const t of V1_TOKENS) {
        const upto = Math.min(at, t.length - 1);
        let same = true;
        for (let j = 0; j <= upto; j++) if (t.charCodeAt(j) !== b[6 + j]) { same = false; break; }
        if (same) { ok = true; break; }
      }
      if (!ok) return err('bad_v1', 'v1: protocol must be TCP4, TCP6 or UNKNOWN');
    }
    const prev = b[i - 1];
    if (prev === CR && c !== LF) return err('bad_v1', 'v1: CR not followed by LF');
    if (c === LF) {
      if (prev !== CR) return err('bad_v1', 'v1: LF without CR');
      return decodeV1Line(b.toString('latin1', 6, i - 1), i + 1);
    }
  }
  if (n >= V1_MAX_HEADER) return err('too_long', 'v1: no CRLF within 107 bytes');
  return need(V1_MAX_HEADER);
}

/** Contract: strict v1 port (§2.1: decimal 0..65535, no sign, no leading zeros) or -1. */
function v1Port(s: string): number {
  if (!PORT_RE.test(s)) return -1;
  const v = Number(s);
  return v <= 65535 ? v : -1;
}

/**
 * Contract: validate the text between "PROXY " and CRLF (§2.1): "UNKNOWN"
 * optionally followed by a space and anything (ignored), or
 * "TCP4|TCP6 <src> <dst> <sport> <dport>" with single spaces, addresses valid
 * for the family (IPv4 strict dotted-decimal; IPv6 RFC 4291 text, no zone id)
 * and strict ports. `length` is the header length including CRLF.
 */
function decodeV1Line(line: string, length: number): Attempt {
  if (line === 'UNKNOWN' || line.startsWith('UNKNOWN ')) {
    return { k: 'done', header: { version: 1, command: 'PROXY', protocol: 'UNKNOWN' }, length };
  }
  const parts = line.split(' ');
  if (parts.length !== 5) return err('bad_v1', 'v1: expected 5 space-separated fields after PROXY');
  const [proto, sa, da, sp, dp] = parts as [string, string, string, string, string];
  let src: string;
  let dst: string;
  if (proto === 'TCP4') {
    if (parseIPv4(sa) === null || parseIPv4(da) === null) return err('bad_v1', 'v1: invalid IPv4 address');
    src = sa;
    dst = da;
  } else if (proto === 'TCP6') {
    const s6 = parseIPv6(sa, false);
    const d6 = parseIPv6(da, false);
    if (s6 === null || d6 === null) return err('bad_v1', 'v1: invalid IPv6 address');
    src = formatIPv6(s6);
    dst = formatIPv6(d6);
  } else {
    return err('bad_v1', 'v1: protocol must be TCP4, TCP6 or UNKNOWN');
  }
  const sport = v1Port(sp);
  const dport = v1Port(dp);
  if (sport < 0 || dport < 0) return err('bad_v1', 'v1: invalid port');
  return {
    k: 'done',
    header: {
      version: 1, command: 'PROXY', protocol: proto,
      source: { address: src, port: sport }, destination: { address: dst, port: dport },
    },
    length,
  };
}

/**
 * Contract: decode a v2 header (§2.2) from `b[0..n)`, checking in byte order:
 * signature (`bad_signature`), version nibble 2 (`bad_version`), command
 * LOCAL/PROXY (`bad_command`); for PROXY only, family UNSPEC/INET/INET6/UNIX
 * (`bad_family`) and transport UNSPEC/STREAM/DGRAM (`bad_protocol`); length
 * with 16 + length <= `maxTotal` (`too_long`) and, for PROXY, length at least
 * the family's address block (`truncated`). Once 16 + length bytes are in:
 * LOCAL -> no addresses (the family byte is ignored, §2.2); AF_UNSPEC, AF_UNIX
 * or transport UNSPEC -> protocol UNKNOWN, no addresses; INET/INET6 ->
 * addresses and ports, then TLVs after the address block are walked
 * (type, 16-bit length, value) and must end exactly at the announced length
 * (`bad_tlv`); their contents are skipped.
 */
function attemptV2(b: Buffer, n: number, maxTotal: number): Attempt {
  const sigN = Math.min(n, 12);
  for (let i = 0; i < sigN; i++) {
    if (b[i] !== V2_SIGNATURE[i]) return err('bad_signature', 'not a PROXY protocol header');
  }
  if (n < 13) return need(V2_FIXED_HEADER);
  const verCmd = b[12] ?? 0;
  if (verCmd >> 4 !== 2) return err('bad_version', `v2: unsupported version ${verCmd >> 4}`);
  const cmd = verCmd & 0x0f;
  if (cmd > 1) return err('bad_command', `v2: unknown command ${cmd}`);
  if (n < 14) return need(V2_FIXED_HEADER);
  const fam = b[13] ?? 0;
  const af = fam >> 4;
  const tp = fam & 0x0f;
  if (cmd === 1) {
    if (af > 3) return err('bad_family', `v2: unknown address family ${af}`);
    if (tp > 2) return err('bad_protocol', `v2: unknown transport protocol ${tp}`);
  }
  if (n < V2_FIXED_HEADER) return need(V2_FIXED_HEADER);
  const len = b.readUInt16BE(14);
  const total = V2_FIXED_HEADER + len;
  if (total > maxTotal) return err('too_long', `v2: header of ${total} bytes exceeds the ${maxTotal}-byte bound`);
  const addrLen = cmd === 0 ? 0
    : af === 1 ? V2_ADDR_LEN_INET : af === 2 ? V2_ADDR_LEN_INET6 : af === 3 ? V2_ADDR_LEN_UNIX : 0;
  if (len < addrLen) return err('truncated', `v2: length ${len} shorter than the ${addrLen}-byte address block`);
  if (n < total) return need(total);

  if (cmd === 0) return { k: 'done', header: { version: 2, command: 'LOCAL', protocol: 'UNKNOWN' }, length: total };
  if (af === 0 || af === 3 || tp === 0) {
    return { k: 'done', header: { version: 2, command: 'PROXY', protocol: 'UNKNOWN' }, length: total };
  }
  for (let off = V2_FIXED_HEADER + addrLen; off < total; ) {
    if (total - off < 3) return err('bad_tlv', 'v2: truncated TLV header');
    off += 3 + b.readUInt16BE(off + 1);
    if (off > total) return err('bad_tlv', 'v2: TLV runs past the header length');
  }
  let source: Endpoint;
  let destination: Endpoint;
  let protocol: ProxyTransport;
  const a = V2_FIXED_HEADER;
  if (af === 1) {
    protocol = tp === 1 ? 'TCP4' : 'UDP4';
    source = { address: formatIPv4(b, a), port: b.readUInt16BE(a + 8) };
    destination = { address: formatIPv4(b, a + 4), port: b.readUInt16BE(a + 10) };
  } else {
    protocol = tp === 1 ? 'TCP6' : 'UDP6';
    source = { address: formatIPv6(b, a), port: b.readUInt16BE(a + 32) };
    destination = { address: formatIPv6(b, a + 16), port: b.readUInt16BE(a + 34) };
  }
  return { k: 'done', header: { version: 2, command: 'PROXY', protocol, source, destination }, length: total };
}

export interface ProxyHeaderParserOptions {
  /**
   * Upper bound on a whole v2 header (16 + length), clamped to
   * [16, V2_MAX_HEADER]; larger announced lengths fail with `too_long`.
   * Default V2_MAX_HEADER (65535).
   */
  readonly maxV2HeaderBytes?: number;
}

/**
 * Incremental PROXY header parser. Feed client bytes with `push` until it
 * returns 'done' (use `header`, then forward `rest`) or 'error' (close the
 * connection). Call `end` when the client half-closes before completion.
 * After a terminal result, `push` keeps returning it (for 'done', with the
 * new chunk as `rest`: everything after the header is payload).
 */
export class ProxyHeaderParser {
  private readonly maxV2: number;
  private buf: Buffer | null = null;
  private len = 0;
  private want = 0;
  private header: ProxyHeader | null = null;
  private failure: ParseResult | null = null;

  /** Contract: a fresh parser expecting the first byte of a header. */
  constructor(options: ProxyHeaderParserOptions = {}) {
    const m = options.maxV2HeaderBytes;
    this.maxV2 = typeof m === 'number' && Number.isFinite(m)
      ? Math.max(V2_FIXED_HEADER, Math.min(V2_MAX_HEADER, Math.floor(m)))
      : V2_MAX_HEADER;
  }

  /** Contract: bytes currently held by the parser; never above max(107, maxV2HeaderBytes). */
  get bufferedBytes(): number {
    return this.len;
  }

  /** Contract: the largest number of bytes this parser may ever hold. */
  get maxBufferedBytes(): number {
    return Math.max(V1_MAX_HEADER, this.maxV2);
  }

  /**
   * Contract: consume `chunk` (a Buffer or Uint8Array; empty is allowed) and
   * report need-more / done (with the bytes after the header) / error.
   * Never throws; holds at most `maxBufferedBytes` bytes.
   */
  push(chunk: Uint8Array): ParseResult {
    try {
      return this.pushInner(chunk);
    } catch (e) {
      return this.fail('internal', `parser failure: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  /**
   * Contract: the stream ended. Returns the terminal result if there is one,
   * else a `truncated` error (the header never completed). Never throws.
   */
  end(): ParseResult {
    if (this.failure !== null) return this.failure;
    if (this.header !== null) return { state: 'done', header: this.header, rest: Buffer.alloc(0) };
    return this.fail('truncated', 'connection ended before a complete PROXY header');
  }

  /** Contract: `push` without the exception guard. */
  private pushInner(input: Uint8Array): ParseResult {
    if (this.failure !== null) return this.failure;
    if (!(input instanceof Uint8Array)) return this.fail('internal', 'push() expects a Buffer');
    const chunk = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
    if (this.header !== null) return { state: 'done', header: this.header, rest: chunk };
    if (chunk.length === 0) return { state: 'need-more' };

    let off = 0;
    if (this.len === 0) {
      // Fast path: decode straight from the chunk, no copy.
      const r = this.attempt(chunk, chunk.length);
      if (r.k === 'done') return this.finish(r.header, chunk.subarray(r.length));
      if (r.k === 'error') return this.fail(r.code, r.message);
      // Incomplete: `want` > chunk.length, so all of it is header; keep it.
      this.ensure(r.want);
      chunk.copy(this.buf as Buffer, 0);
      this.len = chunk.length;
      this.want = r.want;
      return { state: 'need-more' };
    }
    while (off < chunk.length) {
      this.ensure(this.want);
      const b = this.buf as Buffer;
      const take = Math.min(chunk.length - off, this.want - this.len);
      chunk.copy(b, this.len, off, off + take);
      this.len += take;
      off += take;
      const r = this.attempt(b, this.len);
      if (r.k === 'done') return this.finish(r.header, chunk.subarray(off - (this.len - r.length)));
      if (r.k === 'error') return this.fail(r.code, r.message);
      this.want = r.want;
    }
    return { state: 'need-more' };
  }

  /** Contract: dispatch on the first byte (§2.1 'P', §2.2 0x0D) or reject it. */
  private attempt(b: Buffer, n: number): Attempt {
    const first = b[0];
    if (first === 0x50) return attemptV1(b, n);
    if (first === CR) return attemptV2(b, n, this.maxV2);
    return err('bad_signature', 'not a PROXY protocol header');
  }

  /** Contract: make `buf` hold at least `size` bytes, keeping `buf[0..len)`. */
  private ensure(size: number): void {
    const cur = this.buf;
    if (cur !== null && cur.length >= size) return;
    const next = Buffer.allocUnsafe(size);
    if (cur !== null && this.len > 0) cur.copy(next, 0, 0, this.len);
    this.buf = next;
  }

  /** Contract: enter the terminal 'done' state, releasing the buffer. */
  private finish(header: ProxyHeader, rest: Buffer): ParseResult {
    this.header = header;
    this.buf = null;
    this.len = 0;
    return { state: 'done', header, rest };
  }

  /** Contract: enter the terminal 'error' state, releasing the buffer. */
  private fail(code: ProxyErrorCode, message: string): ParseResult {
    this.failure = { state: 'error', code, message };
    this.buf = null;
    this.len = 0;
    return this.failure;
  }
}

/**
 * Contract: one-shot helper — parse a header at the start of `data` with a
 * fresh parser (same results as feeding it in any number of chunks).
 */
export function parseProxyHeader(data: Uint8Array, options?: ProxyHeaderParserOptions): ParseResult {
  return new ProxyHeaderParser(options).push(data);
}
