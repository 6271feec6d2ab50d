/**
 * The send-expect probe (SPEC §8.1), over TCP or UDP: send some bytes, then
 * judge the reply by a substring, a regex, or "any reply of >= 1 byte".
 *
 * TCP: connect, write `send` (nothing for services that greet first), read
 * into a buffer of at most MAX_REPLY bytes and judge after every chunk. A
 * match passes at once. A full buffer without a match, the peer's FIN
 * without a match, or the timeout after some bytes without a match fail with
 * `expect_mismatch` (a reply came and it was not the expected one; the
 * timeout matters because most services keep the connection open after
 * answering, Redis for one). The timeout with no byte at all is `timeout`.
 *
 * UDP: a connected datagram socket sends `send` once; the first datagram
 * back decides (a match passes, anything else is `expect_mismatch`). An ICMP
 * port unreachable arrives as ECONNREFUSED: `refused`. No answer within the
 * timeout: `timeout`. The probe does not retransmit; rise/fall absorb a lost
 * datagram.
 *
 * The timeout covers the whole probe, from connect to judgement. Ownership:
 * the probe owns its socket and always closes it; nothing here throws.
 */
import net from 'node:net';
import dgram from 'node:dgram';
import { BoundedBuffer, describeReply, errorResult, MAX_REPLY, type ProbeFn, type ProbeResult } from '../probe';
import { closeCleanly } from '../tcp-probe';

/** Judges a reply (or the part of it read so far). */
export type ReplyMatcher = (reply: Buffer) => boolean;

/**
 * Contract: the matcher for `expect` (the reply contains these UTF-8
 * bytes), or `expectRegex` (JavaScript syntax, tested against the reply
 * read as latin1, one character per byte, so `\x00`-`\xff` match bytes and
 * ASCII text matches as written), or neither (any reply of >= 1 byte).
 * `expectRegex` must be valid (the configuration validated it).
 */
export function makeMatcher(expect: string | null, expectRegex: string | null): ReplyMatcher {
  if (expect !== null && expect !== '') {
    const needle = Buffer.from(expect, 'utf8');
    return (reply) => reply.indexOf(needle) >= 0;
  }
  if (expectRegex !== null && expectRegex !== '') {
    const re = new RegExp(expectRegex);
    return (reply) => re.test(reply.toString('latin1'));
  }
  return (reply) => reply.length >= 1;
}

export interface SendExpectOptions {
  protocol: 'tcp' | 'udp';
  /** Bytes to send (may be empty for TCP). */
  send: Buffer;
  match: ReplyMatcher;
}

/** Contract: the send-expect probe for these options (see the file comment). */
export function sendExpectProbe(opts: SendExpectOptions): ProbeFn {
  return opts.protocol === 'udp' ? udpProbe(opts) : tcpProbe(opts);
}

function tcpProbe(opts: SendExpectOptions): ProbeFn {
  return (target, timeoutMs, cb) => {
    let finished = false;
    let s: net.Socket;
    try {
      s = net.connect({ host: target.host, port: target.port, family: target.family, allowHalfOpen: false, noDelay: true });
    } catch (err) {
      return deferred(errorResult(err), cb);
    }
    const reply = new BoundedBuffer(MAX_REPLY);
    const timer = setTimeout(() => {
      if (reply.length > 0) finish({ ok: false, reason: 'expect_mismatch', detail: describeReply(reply.view(), 'no match within the timeout; got') });
      else finish({ ok: false, reason: 'timeout' });
    }, Math.max(1, timeoutMs));
    timer.unref();

    function finish(r: ProbeResult): void {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      s.removeAllListeners('data');
      s.removeAllListeners('end');
      if (r.ok) closeCleanly(s, timeoutMs);
      else s.destroy();
      cb(r);
    }

    s.on('error', (err) => {
      const r = errorResult(err);
      if (!r.ok && reply.length > 0) r.detail = describeReply(reply.view());
      finish(r);
    });
    s.once('connect', () => {
      if (opts.send.length > 0) s.write(opts.send);
    });
    s.on('data', (chunk: Buffer) => {
      const full = reply.push(chunk);
      if (opts.match(reply.view())) finish({ ok: true });
      else if (full) finish({ ok: false, reason: 'expect_mismatch', detail: describeReply(reply.view(), `no match in the first ${MAX_REPLY} bytes; got`) });
    });
    s.on('end', () => {
      finish({ ok: false, reason: 'expect_mismatch', detail: reply.length > 0 ? describeReply(reply.view(), 'closed without a match; got') : 'closed without a reply' });
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

function udpProbe(opts: SendExpectOptions): ProbeFn {
  return (target, timeoutMs, cb) => {
    let finished = false;
    let s: dgram.Socket;
    try {
      s = dgram.createSocket({ type: target.family === 6 ? 'udp6' : 'udp4' });
    } catch (err) {
      return deferred(errorResult(err), cb);
    }
    const timer = setTimeout(() => finish({ ok: false, reason: 'timeout' }), Math.max(1, timeoutMs));
    timer.unref();

    function finish(r: ProbeResult): void {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      close();
      cb(r);
    }
    function close(): void {
      s.removeAllListeners('message');
      try {
        s.close();
      } catch {
        // already closed
      }
    }

    s.on('error', (err) => finish(errorResult(err)));
    s.on('message', (msg: Buffer) => {
      // Only the first MAX_REPLY bytes are judged.
      const reply = msg.length > MAX_REPLY ? msg.subarray(0, MAX_REPLY) : msg;
      if (opts.match(reply)) finish({ ok: true });
      else finish({ ok: false, reason: 'expect_mismatch', detail: describeReply(reply) });
    });
    try {
      s.connect(target.port, target.host, () => {
        if (finished) return;
        s.send(opts.send, (err) => {
          if (err) finish(errorResult(err));
        });
      });
    } catch (err) {
      finish(errorResult(err));
    }
    return {
      cancel: () => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        close();
      },
    };
  };
}

/** Contract: a handle whose callback gets `r` on the next turn unless cancelled (for synchronous failures). */
export function deferred(r: ProbeResult, cb: (r: ProbeResult) => void): { cancel(): void } {
  let cancelled = false;
  const t = setImmediate(() => {
    if (!cancelled) cb(r);
  });
  return {
    cancel: () => {
      cancelled = true;
      clearImmediate(t);
    },
  };
}
