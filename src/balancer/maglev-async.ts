/**
 * Large Maglev tables are built on a worker thread (SPEC §8.6): a table of
 * 1,000,003 entries takes 150–190 ms to build, which on the data plane's
 * event loop would stall every connection of the process on each health
 * flap. Tables up to ASYNC_TABLE_MIN entries (the default 65,537) take a few
 * milliseconds and are still built in place.
 *
 * One worker thread per process, started on first use and unref'd (it never
 * keeps the process alive). Builds are pure (same input, same table), so a
 * table built here is exactly the one buildMaglevTable gives in place.
 */
import { Worker } from 'node:worker_threads';
import { join } from 'node:path';
import { buildMaglevTable } from './maglev';

/** Tables larger than this are built off the event loop. */
export const ASYNC_TABLE_MIN = 65_537;

let worker: Worker | null = null;
let nextId = 1;
const waiting = new Map<number, { resolve: (t: Int32Array) => void; reject: (e: Error) => void }>();

/** Builds done here and in place since start (for tests and status). */
export const maglevBuilds = { offThread: 0, inPlace: 0 };

function getWorker(): Worker {
  if (worker !== null) return worker;
  const w = new Worker(join(__dirname, 'maglev-worker.js'));
  w.on('message', (m: { id: number; table: Int32Array }) => {
    const job = waiting.get(m.id);
    if (job === undefined) return;
    waiting.delete(m.id);
    if (waiting.size === 0) w.unref();
    maglevBuilds.offThread++;
    job.resolve(m.table);
  });
  const fail = (err: Error): void => {
    worker = null;
    for (const job of waiting.values()) job.reject(err);
    waiting.clear();
  };
  w.on('error', fail);
  w.on('exit', (code) => fail(new Error(`maglev worker exited (${code})`)));
  w.unref(); // after the listeners: only a build in flight keeps the process alive
  worker = w;
  return w;
}

/**
 * The same table as buildMaglevTable(keys, weights, M), built on the worker
 * thread. Rejects only when the worker cannot run (the caller then builds
 * in place).
 */
export function buildMaglevTableOffThread(keys: readonly string[], weights: readonly number[], M: number): Promise<Int32Array> {
  return new Promise((resolve, reject) => {
    const id = nextId++;
    waiting.set(id, { resolve, reject });
    try {
      const w = getWorker();
      w.ref();
      w.postMessage({ id, keys, weights, M });
    } catch (err) {
      waiting.delete(id);
      reject(err as Error);
    }
  });
}

/** In place, counted (small tables, and the fallback). */
export function buildMaglevTableInPlace(keys: readonly string[], weights: readonly number[], M: number): Int32Array {
  maglevBuilds.inPlace++;
  return buildMaglevTable(keys, weights, M);
}
