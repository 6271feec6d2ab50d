/**
 * The admin endpoint's lifecycle: bound at start (or taken over from the
 * previous process on upgrade), then following a change of [admin] on
 * reload: a new bind address is bound before the old one is closed; a
 * failure to bind keeps the old endpoint (logged). A token change takes
 * effect at once, in place.
 */
import type { Registry } from 'prom-client';
import type { AdminConfig } from '../config/schema';
import type { Logger } from '../log';
import { AdminServer, type AdminTarget } from '../admin/admin';
import { bindError } from './bind-error';

/** Binds an endpoint for `want` (on the inherited listening socket `fd`, if given) and logs `admin listening`. Throws ERR_L4LB_BIND. */
export async function openAdmin(want: AdminConfig, target: AdminTarget, registry: Registry, log: Logger, fd?: number): Promise<AdminServer> {
  const admin = new AdminServer(want, target, registry);
  try {
    await admin.listen(fd);
  } catch (err) {
    throw bindError(err, 'admin');
  }
  log.info({ address: admin.address, port: admin.port, token: want.token !== null }, 'admin listening');
  return admin;
}

/** Returns the endpoint to use from now on (`cur` itself, a new one, or null). */
export async function moveAdmin(cur: AdminServer | null, want: AdminConfig | null, target: AdminTarget, registry: Registry, log: Logger): Promise<AdminServer | null> {
  if (want === null) {
    if (cur !== null) await cur.close();
    return null;
  }
  if (cur !== null && cur.config.bind.host === want.bind.host && cur.config.bind.port === want.bind.port) {
    cur.setConfig(want);
    return cur;
  }
  let fresh: AdminServer;
  try {
    fresh = await openAdmin(want, target, registry, log);
  } catch (err) {
    log.error({ err: (err as Error).message }, 'admin endpoint could not move; keeping the old one');
    return cur;
  }
  // Bounded (AdminServer.close): open requests get a second, then are cut.
  if (cur !== null) await cur.close();
  return fresh;
}
