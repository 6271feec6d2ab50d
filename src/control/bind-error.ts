/**
 * A listener or admin endpoint that could not be bound, as the start-up or
 * reload error operators read: which one, which address, and why.
 */
import { L4lbError } from '../errors';

/** Contract: an L4lbError naming what could not bind (ERR_L4LB_BIND), or ERR_L4LB_START for anything else. */
export function bindError(err: unknown, what = 'listener'): L4lbError {
  if (err instanceof L4lbError) return err;
  const e = err as NodeJS.ErrnoException & { address?: string; port?: number; listener?: string };
  if (e && (e.code === 'EADDRINUSE' || e.code === 'EACCES' || e.code === 'EADDRNOTAVAIL')) {
    const why = e.code === 'EADDRINUSE' ? 'address already in use' : e.code === 'EACCES' ? 'permission denied' : 'address not available';
    const who = e.listener !== undefined ? `listener ${e.listener}` : what;
    const out = new L4lbError('ERR_L4LB_BIND', `${who}: cannot bind ${e.address ?? '?'}:${e.port ?? '?'}: ${why}`, { cause: err });
    return Object.assign(out, { listener: e.listener ?? (what === 'admin' ? 'admin' : undefined), address: e.address, port: e.port });
  }
  return new L4lbError('ERR_L4LB_START', e?.message ?? String(err), { cause: err });
}
