/**
 * What every active probe shares: its result type with the specific failure
 * reasons of SPEC §8.1, the handle to cancel it, the bounded reply buffer,
 * and the escaping of a reply's first bytes for the `detail` log field.
 *
 * A probe is a function (target, timeout, callback) → handle. It calls the
 * callback exactly once unless cancelled, never throws, owns its socket and
 * always closes it, and keeps at most MAX_REPLY bytes of a reply.
 */

/** Why a check failed (the `reason` of `backend state changed` and of the status API's `check`). */
export type FailReason =
  | 'refused'
  | 'timeout'
  | 'reset'
  | 'unreachable'
  | 'expect_mismatch'
  | 'bad_http_response'
  | `http_status_${number}`
  | 'error';

export type ProbeResult =
  | { ok: true }
  /** `error`: the errno code behind the reason when there is one; `detail`: what was seen (escaped, bounded). */
  | { ok: false; reason: FailReason; error?: string; detail?: string };

export interface ProbeTarget {
  host: string;
  port: number;
  family: 4 | 6;
}

export interface ProbeHandle {
  /** Contract: abandons the probe: the socket is destroyed and the callback is never called. Idempotent. */
  cancel(): void;
}

export type ProbeFn = (target: ProbeTarget, timeoutMs: number, cb: (r: ProbeResult) => void) => ProbeHandle;

/** A probe keeps at most this many bytes of a reply, then judges what it has. */
export const MAX_REPLY = 4096;

/** How many bytes of a reply a `detail` shows. */
export const DETAIL_BYTES = 64;

/**
 * Contract: the failure reason for a socket errno code: ECONNREFUSED →
 * refused, ECONNRESET/EPIPE → reset, ETIMEDOUT → timeout, EHOSTUNREACH /
 * ENETUNREACH / EHOSTDOWN / ENETDOWN → unreachable, anything else → error
 * (the code then goes in the result's `error`).
 */
export function reasonOf(code: string): FailReason {
  switch (code) {
    case 'ECONNREFUSED':
      return 'refused';
    case 'ECONNRESET':
    case 'EPIPE':
      return 'reset';
    case 'ETIMEDOUT':
      return 'timeout';
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EHOSTDOWN':
    case 'ENETDOWN':
      return 'unreachable';
    default:
      return 'error';
  }
}

/** Contract: a failed result for a socket error (reason from its code, the code kept in `error`). */
export function errorResult(err: unknown): ProbeResult {
  const code = (err as NodeJS.ErrnoException | null)?.code ?? 'error';
  return { ok: false, reason: reasonOf(code), error: code };
}

/**
 * Contract: the first DETAIL_BYTES bytes of `buf` as printable ASCII:
 * printable characters as they are, `\r` `\n` `\t` `\\` `\"` escaped, any
 * other byte as `\xNN`; "..." appended when `buf` is longer. Pure.
 */
export function escapeBytes(buf: Uint8Array, max = DETAIL_BYTES): string {
  let out = '';
  const n = Math.min(buf.length, max);
  for (let i = 0; i < n; i++) {
    const c = buf[i]!;
    if (c === 0x0d) out += '\\r';
    else if (c === 0x0a) out += '\\n';
    else if (c === 0x09) out += '\\t';
    else if (c === 0x5c) out += '\\\\';
    else if (c === 0x22) out += '\\"';
    else if (c >= 0x20 && c < 0x7f) out += String.fromCharCode(c);
    else out += `\\x${c.toString(16).padStart(2, '0')}`;
  }
  return buf.length > max ? `${out}...` : out;
}

/** Contract: "got N bytes: <escaped first bytes>", or "no reply" for an empty buffer. */
export function describeReply(buf: Uint8Array, what = 'got'): string {
  if (buf.length === 0) return 'no reply';
  return `${what} ${buf.length} bytes: "${escapeBytes(buf)}"`;
}

/**
 * A reply buffer that never holds more than `cap` bytes: `push` copies
 * only what still fits and tells whether the buffer is now full.
 */
export class BoundedBuffer {
  private readonly buf: Buffer;
  private len = 0;
  constructor(readonly cap = MAX_REPLY) {
    this.buf = Buffer.alloc(cap);
  }

  /** Contract: appends as much of `chunk` as fits; returns true when the buffer is full. */
  push(chunk: Uint8Array): boolean {
    const n = Math.min(chunk.length, this.cap - this.len);
    if (n > 0) {
      this.buf.set(n === chunk.length ? chunk : chunk.subarray(0, n), this.len);
      this.len += n;
    }
    return this.len >= this.cap;
  }

  get length(): number {
    return this.len;
  }

  get full(): boolean {
    return this.len >= this.cap;
  }

  /** The bytes so far (a view, valid until the next push). */
  view(): Buffer {
    return this.buf.subarray(0, this.len);
  }
}
