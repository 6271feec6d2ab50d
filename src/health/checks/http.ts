/**
 * The HTTP probe (SPEC §8.1), usually on a side port (`port`), as
 * HAProxy's `option httpchk` against Patroni's `/primary`: one HTTP/1.1 GET
 * with `Host` = the probed address and `Connection: close`; the status code
 * decides. Only the response head is read (status line and headers, at most
 * MAX_REPLY bytes); the body is never read.
 *
 * Failures: the status is not an expected one → `http_status_<code>`; a
 * reply that is not HTTP, a head larger than MAX_REPLY, or a connection
 * closed before the head was complete (truncated, empty) →
 * `bad_http_response`; nothing complete within the timeout → `timeout`.
 * The timeout covers the whole probe. The probe owns its socket and always
 * closes it: after a well-formed answer with a FIN (the body is discarded,
 * the socket destroyed when the server closes or after `timeout`), else at
 * once. Nothing here throws.
 */
import net from 'node:net';
import { formatHostPort } from '../../net/address';
import { VERSION } from '../../version';
import { BoundedBuffer, describeReply, errorResult, MAX_REPLY, type ProbeFn, type ProbeResult } from '../probe';
import { deferred } from './send-expect';
import { closeCleanly } from '../tcp-probe';

export type HttpHead =
  | { kind: 'incomplete' }
  | { kind: 'bad'; detail: string }
  | { kind: 'ok'; status: number };

const STATUS_LINE = /^HTTP\/1\.[01] ([1-5][0-9][0-9])(?: [^\r\n]*)?$/;
const HEADER_LINE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+:/;
const PREFIX = 'HTTP/1.';

/**
 * Contract: parses the bytes of an HTTP/1.x response read so far. `ok` with
 * the status code once the whole head (status line and headers, ended by an
 * empty line; CRLF or bare LF line ends) is there and well formed;
 * `incomplete` while it may still become one; `bad` (with a short reason) as
 * soon as it cannot: the first bytes are not `HTTP/1.x`, the status line is
 * malformed, a header line has no `name:`. Pure; never throws.
 */
export function parseHttpHead(buf: Buffer): HttpHead {
  const text = buf.toString('latin1');
  const n = Math.min(text.length, PREFIX.length);
  if (text.slice(0, n) !== PREFIX.slice(0, n)) return { kind: 'bad', detail: 'not an HTTP/1.x response' };
  const firstEnd = text.indexOf('\n');
  if (firstEnd < 0) return { kind: 'incomplete' };
  const statusLine = text.slice(0, firstEnd).replace(/\r$/, '');
  const m = STATUS_LINE.exec(statusLine);
  if (m === null || m[1] === undefined) return { kind: 'bad', detail: 'malformed status line' };
  let at = firstEnd + 1;
  for (;;) {
    const end = text.indexOf('\n', at);
    if (end < 0) return { kind: 'incomplete' };
    const line = text.slice(at, end).replace(/\r$/, '');
    if (line === '') return { kind: 'ok', status: Number(m[1]) };
    if (!HEADER_LINE.test(line) && !/^[ \t]/.test(line)) return { kind: 'bad', detail: 'malformed header line' };
    at = end + 1;
  }
}

/** Contract: true when `status` counts as healthy: listed in `expected`, or 200-399 when `expected` is null. */
export function statusHealthy(status: number, expected: readonly number[] | null): boolean {
  return expected === null ? status >= 200 && status <= 399 : expected.includes(status);
}

/** Contract: the request bytes for `path` on `host:port` (IPv6 in brackets). */
export function httpRequest(path: string, host: string, port: number): Buffer {
  return Buffer.from(
    `GET ${path} HTTP/1.1\r\nHost: ${formatHostPort(host, port)}\r\nUser-Agent: l4lb-health-check/${VERSION}\r\n` +
      'Accept: */*\r\nConnection: close\r\n\r\n',
    'latin1',
  );
}

export interface HttpProbeOptions {
  path: string;
  /** null = 200-399. */
  expectStatus: readonly number[] | null;
}

/** Contract: the HTTP probe for these options (see the file comment). */
export function httpProbe(opts: HttpProbeOptions): ProbeFn {
  return (target, timeoutMs, cb) => {
    let finished = false;
    let s: net.Socket;
    try {
      s = net.connect({ host: target.host, port: target.port, family: target.family, allowHalfOpen: false, noDelay: true });
    } catch (err) {
      return deferred(errorResult(err), cb);
    }
    const reply = new BoundedBuffer(MAX_REPLY);
    const timer = setTimeout(() => finish({ ok: false, reason: 'timeout', ...(reply.length > 0 ? { detail: describeReply(reply.view()) } : {}) }), Math.max(1, timeoutMs));
    timer.unref();

    /** A well-formed answer (any status) closes politely (FIN, the body discarded); anything else is cut. */
    function finish(r: ProbeResult, polite = false): void {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      s.removeAllListeners('data');
      s.removeAllListeners('end');
      if (polite) closeCleanly(s, timeoutMs);
      else s.destroy();
      cb(r);
    }

    s.on('error', (err) => finish(errorResult(err)));
    s.once('connect', () => s.write(httpRequest(opts.path, target.host, target.port)));
    s.on('data', (chunk: Buffer) => {
      const full = reply.push(chunk);
      const head = parseHttpHead(reply.view());
      if (head.kind === 'ok') {
        if (statusHealthy(head.status, opts.expectStatus)) finish({ ok: true }, true);
        else finish({ ok: false, reason: `http_status_${head.status}` }, true);
      } else if (head.kind === 'bad') {
        finish({ ok: false, reason: 'bad_http_response', detail: `${head.detail}; ${describeReply(reply.view())}` });
      } else if (full) {
        finish({ ok: false, reason: 'bad_http_response', detail: `response head larger than ${MAX_REPLY} bytes` });
      }
    });
    s.on('end', () => {
      const detail = reply.length === 0 ? 'closed without a reply' : `truncated response; ${describeReply(reply.view())}`;
      finish({ ok: false, reason: 'bad_http_response', detail });
    });
    return {
      cancel: () => {
        finished = true;
        clearTimeout(timer);
        s.destroy();
      },
    };
  };
}
