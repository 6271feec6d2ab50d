/**
 * Following a change of [admin] on reload: a new bind address is bound
 * before the old one is closed; a failure to bind keeps the old endpoint
 * (logged). A token change takes effect at once, in place.
 */
import type { Registry } from 'prom-client';
import type { AdminConfig } from '../config/schema';
import type { Logger } from '../log';
import { AdminServer, type AdminTarget } from '../admin/admin';
import { bindError } from './bind-error';

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
  const fresh = new AdminServer(want, target, registry);
  try {
    await fresh.listen();
  } catch (err) {
    log.error({ err: bindError(err, 'admin').message }, 'admin endpoint could not move; keeping the old one');
    return cur;
  }
  log.info({ address: fresh.address, port: fresh.port, token: want.token !== null }, 'admin listening');
  // Bounded (AdminServer.close): open requests get a second, then are cut.
  if (cur !== null) await cur.close();
  return fresh;
}
