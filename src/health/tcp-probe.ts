/**
 * The active health probe: a TCP connect to the backend (or its
 * health_check port) followed by a clean close (FIN). A backend that accepts
 * and closes at once passes: the connect is what is checked. Probes are not
 * client traffic: they touch no backend counter.
 *
 * Ownership: the probe owns its socket and always destroys it: on failure at
 * once, on success once the peer has closed too or after `timeoutMs` more,
 * whichever comes first. Nothing here throws; every timer is unref'd.
 */
import net from 'node:net';
import { errorResult, type ProbeFn, type ProbeResult } from './probe';

export type { ProbeFn, ProbeHandle, ProbeResult, ProbeTarget } from './probe';

/**
 * Contract: connects to `target`, calls `cb` exactly once (unless cancelled)
 * with ok, or with the reason (`timeout` when no connect within `timeoutMs`,
 * else the errno's reason such as `refused`, with the code in `error`).
 * Never throws.
 */
export const probeTcp: ProbeFn = (target, timeoutMs, cb) => {
  let finished = false;
  let socket: net.Socket;
  try {
    socket = net.connect({ host: target.host, port: target.port, family: target.family, allowHalfOpen: false, noDelay: true });
  } catch (err) {
    const r = errorResult(err);
    const t = setImmediate(() => {
      if (!finished) {
        finished = true;
        cb(r);
      }
    });
    return {
      cancel: () => {
        finished = true;
        clearImmediate(t);
      },
    };
  }
  const s = socket;
  const timer = setTimeout(() => finish({ ok: false, reason: 'timeout' }), Math.max(1, timeoutMs));
  timer.unref();

  function finish(r: ProbeResult): void {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    if (r.ok) closeCleanly(s, timeoutMs);
    else s.destroy();
    cb(r);
  }

  s.on('error', (err: NodeJS.ErrnoException) => finish(errorResult(err)));
  s.once('connect', () => finish({ ok: true }));
  return {
    cancel: () => {
      finished = true;
      clearTimeout(timer);
      s.destroy();
    },
  };
};

/**
 * Contract: sends FIN, discards anything the backend sends (a greeting), and
 * destroys the socket when the backend closes its side or after `lingerMs`.
 */
export function closeCleanly(s: net.Socket, lingerMs: number): void {
  const t = setTimeout(() => s.destroy(), Math.max(1, lingerMs));
  t.unref();
  s.once('close', () => clearTimeout(t));
  s.resume();
  s.end();
}
