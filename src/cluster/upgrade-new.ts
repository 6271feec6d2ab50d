/**
 * Upgrade with workers, the new primary's part (docs/upgrade.md,
 * "Workers"): every UDP session and TCP connection the old process hands
 * over is relayed to one of this process's workers (src/cluster/
 * upgrade-worker.ts), which takes it; it is acknowledged to the old
 * process only once that worker said so. UDP sessions go to worker 0
 * (which runs the UDP listeners); a connection goes to the worker of the
 * same index as the old worker that carried it, modulo the number of
 * workers here (by its id when the old process had no workers). This
 * process keeps no copy of anything it relays.
 */
import type { ClusterDataPlane } from './primary';
import type { HandoverSink } from '../upgrade/adopt';
import { closeRaw, type RawHandle } from '../upgrade/handles';
import { ACK_TIMEOUT_MS, UPGRADE_HOLD_UDP_ENV } from '../upgrade/protocol';
import type { ToWorker } from './protocol';

export function clusterSink(dp: ClusterDataPlane): HandoverSink {
  const waiting = new Map<number, (ok: boolean) => void>();
  dp.upgradeTap = (_index, m) => {
    if (m.t !== 'adopted') return false;
    waiting.get(m.id)?.(m.ok);
    return true;
  };
  /** Sends `parts` (message and handle each) to worker `index`; resolves with its answer. */
  const adopt = async (index: number, id: number, parts: [ToWorker, RawHandle][]): Promise<boolean> => {
    const answer = new Promise<boolean>((resolve, reject) => {
      const timer = setTimeout(() => {
        waiting.delete(id);
        reject(new Error(`worker ${index} did not take ${id} within ${ACK_TIMEOUT_MS} ms`));
      }, ACK_TIMEOUT_MS);
      waiting.set(id, (ok) => {
        clearTimeout(timer);
        waiting.delete(id);
        resolve(ok);
      });
    });
    answer.catch(() => undefined); // awaited below; a failed send must not leave it unhandled
    try {
      for (const [m, h] of parts) await dp.sendTo(index, m, h);
    } finally {
      for (const [, h] of parts) closeRaw(h);
    }
    return answer;
  };
  return {
    udp: (m, sock) => adopt(0, m.id, [[m, sock as unknown as RawHandle]]),
    tcp: (m, client, backend) => adopt((m.worker ?? m.id) % dp.workerCount, m.id, [
      [m, client],
      [{ t: 'tcp-backend', id: m.id }, backend],
    ]),
    releaseUdp: () => {
      delete process.env[UPGRADE_HOLD_UDP_ENV];
      dp.broadcast({ t: 'upgrade-release' });
    },
  };
}
