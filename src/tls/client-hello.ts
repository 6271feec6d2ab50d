/**
 * Incremental, bounded reader of a TLS ClientHello (RFC 8446 §4.1.2, RFC
 * 5246 §7.4.1.2) for routing by server name (RFC 6066 §3) without
 * terminating TLS. Pure: no sockets, no timers.
 *
 * - Fed the client's bytes as they arrive, in chunks of any size (including
 *   empty ones); answers `need-more`, `done` (with the server name, or null
 *   when the client sent none) or `bad`.
 * - Handles a ClientHello split across any number of TCP segments and TLS
 *   records (a handshake message fragmented over several records, RFC 8446
 *   §5.1), up to CLIENT_HELLO_MAX_BYTES of stream (record headers included).
 * - Every check runs at a fixed byte offset as bytes arrive, so any chunking
 *   of the same bytes gives the same answer (property-tested).
 * - Memory is bounded: at most the handshake message itself is copied, and
 *   only when it spans several chunks or records (the common single-chunk,
 *   single-record ClientHello is parsed in place).
 * - `push` and `end` never throw; an unexpected internal exception becomes
 *   `bad` with reason `internal`.
 * - Nothing is changed: the caller forwards every byte it read.
 */

/** At most this many bytes of stream (record headers included) may hold the ClientHello. */
export const CLIENT_HELLO_MAX_BYTES = 65536;
/** RFC 8446 §5.1: a plaintext record fragment is at most 2^14 bytes. */
export const TLS_MAX_FRAGMENT = 16384;

const RECORD_HANDSHAKE = 0x16;
const HANDSHAKE_CLIENT_HELLO = 0x01;
const EXT_SERVER_NAME = 0x0000;
const NAME_TYPE_HOST = 0x00;
/** legacy_version(2) random(32) session_id<0..32>(1) cipher_suites<2..>(2+2) compression<1..>(1+1). */
const MIN_BODY = 2 + 32 + 1 + 2 + 2 + 1 + 1;

export type ClientHelloBadReason =
  | 'not_tls'          // first byte is not a TLS handshake record (0x16)
  | 'bad_record'       // record version or length not valid, or a non-handshake record mid-message
  | 'not_client_hello' // the first handshake message is not a ClientHello
  | 'too_large'        // would end beyond CLIENT_HELLO_MAX_BYTES
  | 'malformed'        // ClientHello or server_name extension framing is wrong
  | 'truncated'        // end() before the ClientHello was complete
  | 'internal';        // a bug: never expected

export type ClientHelloResult =
  | { readonly state: 'need-more' }
  /** `length`: stream bytes up to and including the ClientHello's last byte. `sni`: lower-cased, or null. */
  | { readonly state: 'done'; readonly sni: string | null; readonly length: number }
  | { readonly state: 'bad'; readonly reason: ClientHelloBadReason; readonly message: string };

const NEED_MORE: ClientHelloResult = Object.freeze({ state: 'need-more' });

const bad = (reason: ClientHelloBadReason, message: string): ClientHelloResult => ({ state: 'bad', reason, message });

/**
 * Contract: reads the server name from a complete ClientHello body
 * `b[0..n)` (after the 4-byte handshake header). Returns the lower-cased
 * host_name, null when there is no server_name extension, or a `bad`
 * result for any framing error: lengths that overrun their container,
 * extensions that do not fill the extensions block exactly, a repeated
 * extension type, an empty or repeated host_name, or one with a byte outside
 * printable ASCII.
 */
export function serverNameOf(b: Uint8Array, n: number): string | null | ClientHelloResult {
  if (n < MIN_BODY) return bad('malformed', 'ClientHello shorter than its fixed fields');
  if (b[0] !== 0x03) return bad('malformed', 'ClientHello legacy_version is not 3.x');
  let p = 2 + 32;
  const sid = b[p] ?? 0;
  if (sid > 32) return bad('malformed', 'session_id longer than 32 bytes');
  p += 1 + sid;
  if (p + 2 > n) return bad('malformed', 'ClientHello ends inside cipher_suites');
  const cs = ((b[p] ?? 0) << 8) | (b[p + 1] ?? 0);
  if (cs < 2 || (cs & 1) !== 0) return bad('malformed', 'cipher_suites length is not a positive even number');
  p += 2 + cs;
  if (p + 1 > n) return bad('malformed', 'ClientHello ends inside cipher_suites');
  const comp = b[p] ?? 0;
  if (comp < 1) return bad('malformed', 'no compression method');
  p += 1 + comp;
  if (p > n) return bad('malformed', 'ClientHello ends inside compression_methods');
  if (p === n) return null; // no extensions at all (legal before TLS 1.3)
  if (p + 2 > n) return bad('malformed', 'ClientHello ends inside the extensions length');
  const extLen = ((b[p] ?? 0) << 8) | (b[p + 1] ?? 0);
  p += 2;
  if (p + extLen !== n) return bad('malformed', 'extensions do not fill the ClientHello exactly');
  let sni: string | null = null;
  let seenSni = false;
  // Extension types seen (RFC 8446 §4.2: at most one of each type).
  const seen = new Set<number>();
  while (p < n) {
    if (p + 4 > n) return bad('malformed', 'extension header overruns the ClientHello');
    const type = ((b[p] ?? 0) << 8) | (b[p + 1] ?? 0);
    const len = ((b[p + 2] ?? 0) << 8) | (b[p + 3] ?? 0);
    p += 4;
    if (p + len > n) return bad('malformed', 'extension overruns the ClientHello');
    if (seen.has(type)) return bad('malformed', `extension ${type} appears twice`);
    seen.add(type);
    if (type === EXT_SERVER_NAME) {
      seenSni = true;
      const r = hostNameOf(b, p, p + len);
      if (typeof r !== 'string') return r;
      sni = r;
    }
    p += len;
  }
  return seenSni ? sni : null;
}

/** Contract: the host_name of a ServerNameList at b[from..to) (RFC 6066 §3), lower-cased; `bad` on any framing error. */
function hostNameOf(b: Uint8Array, from: number, to: number): string | ClientHelloResult {
  if (to - from < 2) return bad('malformed', 'server_name extension too short');
  const listLen = ((b[from] ?? 0) << 8) | (b[from + 1] ?? 0);
  if (listLen === 0 || from + 2 + listLen !== to) return bad('malformed', 'server_name list length does not match the extension');
  let p = from + 2;
  let host: string | null = null;
  while (p < to) {
    if (p + 3 > to) return bad('malformed', 'server_name entry overruns the list');
    const type = b[p] ?? 0;
    const len = ((b[p + 1] ?? 0) << 8) | (b[p + 2] ?? 0);
    p += 3;
    if (p + len > to) return bad('malformed', 'server_name entry overruns the list');
    if (type === NAME_TYPE_HOST) {
      if (host !== null) return bad('malformed', 'more than one host_name');
      if (len === 0 || len > 255) return bad('malformed', 'host_name empty or longer than 255 bytes');
      let s = '';
      for (let i = p; i < p + len; i++) {
        let c = b[i] ?? 0;
        if (c < 0x21 || c > 0x7e) return bad('malformed', 'host_name has a byte outside printable ASCII');
        if (c >= 0x41 && c <= 0x5a) c += 0x20;
        s += String.fromCharCode(c);
      }
      host = s;
    }
    p += len;
  }
  if (host === null) return bad('malformed', 'server_name extension without a host_name');
  return host;
}

/**
 * The incremental reader. One per connection; feed it with `push()` until
 * it answers `done` or `bad`. After that, `push()` returns the same answer
 * (later bytes are payload, not examined).
 */
export class ClientHelloReader {
  /** Stream bytes examined so far (at most CLIENT_HELLO_MAX_BYTES). */
  private offset = 0;
  /** Record header bytes collected (0..4; 5 completes it). */
  private recHdrLen = 0;
  private recLenHi = 0;
  /** Bytes left in the current record's fragment; 0 = a record header comes next. */
  private recLeft = 0;
  /** Handshake header bytes collected (0..4). */
  private hsHdrLen = 0;
  /** ClientHello body length (valid once hsHdrLen === 4). */
  private bodyLen = 0;
  private bodyLenAcc = 0;
  /** The body, copied when it spans chunks or records; null until needed. */
  private body: Buffer | null = null;
  private bodyGot = 0;
  private result: ClientHelloResult = NEED_MORE;

  /** Stream bytes examined so far. */
  get bytesExamined(): number {
    return this.offset;
  }

  /** Bytes held in memory (the partial handshake body). */
  get bufferedBytes(): number {
    return this.body === null ? 0 : this.body.length;
  }

  /** Contract: feeds the next chunk; never throws. */
  push(chunk: Uint8Array): ClientHelloResult {
    if (this.result.state !== 'need-more') return this.result;
    try {
      this.result = this.consume(chunk);
    } catch (e) {
      this.result = bad('internal', `internal error: ${(e as Error)?.message ?? String(e)}`);
    }
    if (this.result.state !== 'need-more') this.body = null;
    return this.result;
  }

  /** Contract: the stream ended (EOF): `truncated` unless already decided; never throws. */
  end(): ClientHelloResult {
    if (this.result.state === 'need-more') {
      this.result = bad('truncated', `connection ended after ${this.offset} bytes, before the ClientHello was complete`);
      this.body = null;
    }
    return this.result;
  }

  private consume(chunk: Uint8Array): ClientHelloResult {
    if (!(chunk instanceof Uint8Array)) return bad('internal', 'chunk is not bytes');
    const n = chunk.length;
    let i = 0;
    while (i < n) {
      if (this.offset >= CLIENT_HELLO_MAX_BYTES) return bad('too_large', `no complete ClientHello within ${CLIENT_HELLO_MAX_BYTES} bytes`);
      if (this.recLeft === 0) {
        const r = this.recordHeaderByte(chunk[i] ?? 0);
        this.offset++;
        i++;
        if (r !== null) return r;
        continue;
      }
      // Inside a handshake record's fragment.
      if (this.hsHdrLen < 4) {
        const r = this.handshakeHeaderByte(chunk[i] ?? 0);
        this.offset++;
        this.recLeft--;
        i++;
        if (r !== null) return r;
        continue;
      }
      const want = this.bodyLen - this.bodyGot;
      const take = Math.min(want, this.recLeft, n - i);
      if (this.body === null && take === want && this.bodyGot === 0) {
        // The whole body is in this chunk and this record: parse in place.
        this.offset += take;
        return this.finish(chunk.subarray(i, i + take));
      }
      if (this.body === null) this.body = Buffer.allocUnsafe(this.bodyLen);
      this.body.set(chunk.subarray(i, i + take), this.bodyGot);
      this.bodyGot += take;
      this.offset += take;
      this.recLeft -= take;
      i += take;
      if (this.bodyGot === this.bodyLen) return this.finish(this.body);
    }
    return NEED_MORE;
  }

  /** Contract: one byte of a 5-byte record header; a `bad` result, or null to go on. */
  private recordHeaderByte(c: number): ClientHelloResult | null {
    switch (this.recHdrLen++) {
      case 0:
        if (c !== RECORD_HANDSHAKE) {
          return this.offset === 0
            ? bad('not_tls', `first byte 0x${c.toString(16).padStart(2, '0')} is not a TLS handshake record`)
            : bad('bad_record', 'a record other than handshake before the ClientHello was complete');
        }
        return null;
      case 1:
        if (c !== 0x03) return bad('bad_record', `record version ${c}.x is not TLS`);
        return null;
      case 2:
        if (c > 0x04) return bad('bad_record', `record version 3.${c} is not TLS`);
        return null;
      case 3:
        this.recLenHi = c;
        return null;
      default: {
        const len = (this.recLenHi << 8) | c;
        this.recHdrLen = 0;
        if (len === 0) return bad('bad_record', 'empty handshake record');
        if (len > TLS_MAX_FRAGMENT) return bad('bad_record', `record of ${len} bytes exceeds ${TLS_MAX_FRAGMENT}`);
        this.recLeft = len;
        return null;
      }
    }
  }

  /** Contract: one byte of the 4-byte handshake header; a `bad` result, or null to go on. */
  private handshakeHeaderByte(c: number): ClientHelloResult | null {
    const k = this.hsHdrLen++;
    if (k === 0) {
      if (c !== HANDSHAKE_CLIENT_HELLO) return bad('not_client_hello', `handshake message type ${c} is not ClientHello`);
      return null;
    }
    this.bodyLenAcc = (this.bodyLenAcc << 8) | c;
    if (k < 3) return null;
    const len = this.bodyLenAcc;
    // The earliest the ClientHello can end: right after its body, with as few
    // further record headers as full-size records need (this byte is still in recLeft).
    const beyond = Math.max(0, len - (this.recLeft - 1));
    const minEnd = this.offset + 1 + len + 5 * Math.ceil(beyond / TLS_MAX_FRAGMENT);
    if (minEnd > CLIENT_HELLO_MAX_BYTES) {
      return bad('too_large', `ClientHello of ${len + 4} bytes would end beyond ${CLIENT_HELLO_MAX_BYTES} bytes`);
    }
    if (len < MIN_BODY) return bad('malformed', `ClientHello body of ${len} bytes is shorter than its fixed fields`);
    this.bodyLen = len;
    return null;
  }

  private finish(body: Uint8Array): ClientHelloResult {
    const r = serverNameOf(body, body.length);
    if (r !== null && typeof r === 'object') return r;
    return { state: 'done', sni: r, length: this.offset };
  }
}

/** Contract: reads a ClientHello from one buffer (tests, tools); `need-more` when incomplete. Never throws. */
export function readClientHello(buf: Uint8Array): ClientHelloResult {
  return new ClientHelloReader().push(buf);
}
