/**
 * Loading a configuration for a reload without stalling the data plane
 * (SPEC §8.6): a large file (above OFF_THREAD_MIN_BYTES; validating 300,000
 * backends takes ~4 s) is read, parsed and validated on a worker thread and
 * arrives in pieces, each taking the event loop a few milliseconds to
 * receive and freeze. Smaller files are loaded in place (faster than
 * starting a thread). The result, and every error, is the same as
 * loadConfigFile's.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { loadConfigFile } from './load';
import { deepFreeze } from './validate';
import { ConfigError, type ConfigIssue } from '../errors';
import type { BackendConfig, Config, PoolConfig } from './schema';

/** Files up to this size validate in well under 50 ms: in place. */
export const OFF_THREAD_MIN_BYTES = 256 * 1024;

/** What the worker sends (load-worker.ts), in this order. */
export type LoadMessage =
  | { t: 'skeleton'; config: Config }
  | { t: 'backends'; pool: number; list: BackendConfig[] }
  | { t: 'done' }
  | { t: 'invalid'; issues: ConfigIssue[] }
  | { t: 'failed'; message: string };

/** Like loadConfigFile(path), off the event loop for large files. Rejects with ConfigError as it does. */
export function loadConfigFileOffThread(path: string): Promise<Config> {
  let size = 0;
  try {
    size = statSync(path).size;
  } catch {
    // loadConfigFile reports a missing or unreadable file.
  }
  if (size < OFF_THREAD_MIN_BYTES) return Promise.resolve().then(() => loadConfigFile(path));
  return new Promise((resolve, reject) => {
    let worker: Worker;
    try {
      worker = new Worker(join(__dirname, 'load-worker.js'), { workerData: { path } });
    } catch {
      resolve(loadConfigFile(path)); // no worker threads here: in place
      return;
    }
    let config: Config | null = null;
    let settled = false;
    const settle = (f: () => void): void => {
      if (settled) return;
      settled = true;
      void worker.terminate();
      f();
    };
    worker.on('message', (m: LoadMessage) => {
      switch (m.t) {
        case 'skeleton':
          config = m.config;
          break;
        case 'backends': {
          // Frozen piece by piece; the lists and the rest at the end.
          for (const b of m.list) deepFreeze(b);
          ((config as Config).pools[m.pool] as PoolConfig & { backends: BackendConfig[] }).backends.push(...m.list);
          break;
        }
        case 'done':
          settle(() => resolve(deepFreeze(config as Config)));
          break;
        case 'invalid':
          settle(() => reject(new ConfigError(m.issues)));
          break;
        case 'failed':
          settle(() => reject(new Error(m.message)));
          break;
      }
    });
    worker.on('error', (err) => settle(() => reject(err)));
    worker.on('exit', (code) => settle(() => reject(new Error(`configuration loader exited (${code})`))));
  });
}
