/**
 * Worker-thread entry of loadConfigFileOffThread (load-off-thread.ts):
 * reads, parses and validates the file here, then sends the result in
 * pieces small enough that receiving each one costs the data plane's event
 * loop a few milliseconds: the configuration without its backend lists,
 * then each pool's backends in chunks.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { loadConfigFile } from './load';
import { ConfigError } from '../errors';
import type { LoadMessage } from './load-off-thread';

const CHUNK = 2000;
const port = parentPort;
const send = (m: LoadMessage): void => port?.postMessage(m);

try {
  const cfg = loadConfigFile((workerData as { path: string }).path);
  send({ t: 'skeleton', config: { ...cfg, pools: cfg.pools.map((p) => ({ ...p, backends: [] })) } });
  cfg.pools.forEach((p, pool) => {
    for (let i = 0; i < p.backends.length; i += CHUNK) send({ t: 'backends', pool, list: p.backends.slice(i, i + CHUNK) });
  });
  send({ t: 'done' });
} catch (err) {
  if (err instanceof ConfigError) send({ t: 'invalid', issues: [...err.issues] });
  else send({ t: 'failed', message: String((err as Error)?.message ?? err) });
}
