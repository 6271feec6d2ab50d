/** Entry point of a data-plane worker process (see worker.ts). */
import { runWorker } from './worker';

runWorker();
