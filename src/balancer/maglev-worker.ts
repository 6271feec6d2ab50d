/**
 * Worker-thread entry: builds Maglev tables off the data plane's event loop
 * (see maglev-async.ts). One message in, one table out (transferred).
 */
import { parentPort } from 'node:worker_threads';
import { buildMaglevTable } from './maglev';

interface Job {
  id: number;
  keys: string[];
  weights: number[];
  M: number;
}

parentPort?.on('message', (job: Job) => {
  const table = buildMaglevTable(job.keys, job.weights, job.M);
  parentPort?.postMessage({ id: job.id, table }, [table.buffer as ArrayBuffer]);
});
