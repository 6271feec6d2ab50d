/**
 * A data-plane worker (global.workers > 1): runs one DataPlane and obeys the
 * primary. Listening TCP sockets are shared by the cluster module (one
 * socket, accepted by every worker: the kernel spreads connections); UDP
 * listeners are given to worker 1 only (see primary.ts), so a flow stays on
 * one worker. The worker pushes its counters to the primary every
 * SNAPSHOT_INTERVAL_MS, and exits when told or when the primary goes away.
 */
import cluster from 'node:cluster';
import { createLogger } from '../log';
import type { BackendSpec, PreparedApply } from '../dataplane/dataplane';
import { choosePump, createLocalDataPlane } from '../dataplane/local';
import type { ToPrimary, ToWorker } from './protocol';
import { SNAPSHOT_INTERVAL_MS } from './protocol';
import { WorkerUpgrade } from './upgrade-worker';

export function runWorker(): void {
  const worker = cluster.worker;
  if (worker === undefined) throw new Error('runWorker() outside a cluster worker');
  const send = (m: ToPrimary): void => {
    if (process.connected) process.send!(m);
  };
  const level = (process.env.L4LB_LOG_LEVEL ?? 'info') as 'info';
  const log = createLogger(level).child({ worker: worker.id });
  // The primary checked that splice = "on" can be honoured; a worker whose
  // engine cannot start carries its bytes with the JS pump.
  const pump = choosePump(process.env.L4LB_SPLICE === 'off' ? 'off' : 'auto', 1);
  const { dataPlane: dp } = createLocalDataPlane(pump, {
    log,
    onConnectFailure: (pool, address, kind) => send({ t: 'connect-failure', pool, address, kind }),
  });
  const upgrade = new WorkerUpgrade(dp, log, send);
  const push = (): void => send({ t: 'snapshot', snap: dp.snapshot() });
  const timer = setInterval(push, SNAPSHOT_INTERVAL_MS);
  timer.unref();

  const failed = (id: number, err: NodeJS.ErrnoException & { address?: string; port?: number; listener?: string }): void =>
    send({ t: 'apply-failed', id, error: { message: err.message, code: err.code, address: err.address, port: err.port, listener: err.listener } });
  // Applies run one after the other (a listener must not be bound twice);
  // the chain carries a reload's generation between 'prepare' and
  // 'commit'/'cancel' (see DataPlane.prepare).
  let prepared: Promise<PreparedApply | null> = Promise.resolve(null);

  process.on('message', (raw: unknown, handle: unknown) => {
    const m = raw as ToWorker;
    if (upgrade.handle(m, handle)) return;
    switch (m.t) {
      case 'apply': {
        const before = prepared;
        prepared = before.then(async (pending) => {
          log.level = m.config.global.logLevel;
          try {
            const bindings = await dp.apply(m.config, new Map<string, BackendSpec[]>(m.backends), new Map(m.fds));
            send({ t: 'applied', id: m.id, bindings });
            push();
          } catch (err) {
            failed(m.id, err as NodeJS.ErrnoException);
          }
          return pending;
        });
        break;
      }
      case 'prepare': {
        const before = prepared;
        prepared = before.then(async (stale) => {
          if (stale !== null) await dp.cancel(stale);
          try {
            const p = await dp.prepare(m.config, new Map<string, BackendSpec[]>(m.backends), new Map(m.fds));
            send({ t: 'applied', id: m.id, bindings: [...p.bound] });
            return p;
          } catch (err) {
            failed(m.id, err as NodeJS.ErrnoException);
            return null;
          }
        });
        break;
      }
      case 'commit':
      case 'cancel': {
        const before = prepared;
        prepared = before.then(async (p) => {
          if (p !== null) {
            if (m.t === 'commit') {
              log.level = p.config.global.logLevel;
              dp.commit(p);
            } else await dp.cancel(p);
          }
          send({ t: 'done', id: m.id });
          push();
          return null;
        });
        break;
      }
      case 'state':
        dp.setBackendState(m.pool, m.address, m.state);
        break;
      case 'weight':
        dp.setBackendWeight(m.pool, m.address, m.weight);
        break;
      case 'pool':
        dp.setPoolBackends(m.pool, m.specs);
        break;
      case 'stop':
        void dp.stopAccepting().then(() => send({ t: 'done', id: m.id }));
        break;
      case 'idle':
        void dp.whenIdle().then(() => {
          push();
          send({ t: 'done', id: m.id });
        });
        break;
      case 'abort':
        dp.abortAll(m.reason);
        break;
      case 'shutdown-backend':
        void dp.shutdownBackend(m.pool, m.address).then((n) => send({ t: 'closed', id: m.id, n }));
        break;
      case 'connections':
        void dp.connections(m.query).then((list) => send({ t: 'connection-list', id: m.id, list }));
        break;
      case 'exit':
        clearInterval(timer);
        dp.dispose();
        push();
        process.disconnect();
        setImmediate(() => process.exit(0));
        break;
    }
  });
  // The primary is gone: nothing to serve for.
  process.on('disconnect', () => process.exit(0));
  // Signals are the primary's business (it drains us through IPC).
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(sig, () => {});
}
