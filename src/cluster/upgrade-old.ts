/**
 * Upgrade with workers, the old primary's part (docs/upgrade.md,
 * "Workers"): the workers hand over (src/cluster/upgrade-worker.ts) and
 * this process relays. Worker 0 sends the listening sockets (TCP ones are
 * shared by every worker; UDP listeners run on worker 0 alone); then every
 * worker sends its UDP sessions and TCP connections at the same time. Each
 * gets an id unique in this upgrade, goes to the new process with the
 * index of the worker it came from, and its acknowledgement goes back to
 * that worker, which only then releases it. This process keeps no copy of
 * anything it relays. When the new process goes away, every worker is told
 * at once: each takes back what was not acknowledged.
 */
import type { Logger } from '../log';
import type { ClusterDataPlane } from './primary';
import { closeRaw, type RawHandle } from '../upgrade/handles';
import { HandoverFailed, type HandedOver, type HandoverSource, type OutChannel } from '../upgrade/export';
import type { ToNew } from '../upgrade/protocol';
import type { ToPrimary } from './protocol';

export function clusterSource(dp: ClusterDataPlane, log: Logger): HandoverSource {
  return {
    sendListeners: (ch) => sendListeners(dp, ch),
    pause: async () => {
      await dp.request((id) => ({ t: 'upgrade-pause', id }));
    },
    handOver: (ch) => handOver(dp, ch, log),
    resume: () => {
      dp.upgradeTap = null;
      dp.broadcast({ t: 'upgrade-resume' });
    },
  };
}

/** Sends `msg` with `handle` on, then closes this process's copy of it. */
async function relay(ch: OutChannel, msg: ToNew, handle: unknown): Promise<void> {
  try {
    await ch.send(msg, handle as RawHandle | null);
  } finally {
    if (handle !== null && handle !== undefined) closeRaw(handle as RawHandle);
  }
}

async function sendListeners(dp: ClusterDataPlane, ch: OutChannel): Promise<number> {
  const relays: Promise<void>[] = [];
  dp.upgradeTap = (_index, m, handle) => {
    if (m.t !== 'listener') return false;
    relays.push(relay(ch, m as ToNew, handle));
    return true;
  };
  try {
    const replies = await dp.request((id) => ({ t: 'upgrade-listeners', id }), 0);
    await Promise.all(relays);
    const failed = replies.find((r): r is Extract<ToPrimary, { t: 'upgrade-result' }> => r.t === 'upgrade-result');
    if (failed !== undefined) throw new Error(`worker 0: ${failed.reason ?? 'listeners not sent'}`);
    return relays.length;
  } finally {
    dp.upgradeTap = null;
  }
}

async function handOver(dp: ClusterDataPlane, ch: OutChannel, log: Logger): Promise<HandedOver> {
  let nextId = 1;
  // (worker, the worker's id) ↔ the id in this upgrade.
  const ids = new Map<string, number>();
  const origin = new Map<number, { index: number; id: number }>();
  let udpDone = 0;
  let failure: string | null = null;
  const abort = (why: string): void => {
    if (failure !== null) return;
    failure = why;
    dp.broadcast({ t: 'upgrade-abort', reason: why });
  };
  const forward = (msg: ToNew, handle: unknown): void => {
    relay(ch, msg, handle).catch((err: unknown) => abort((err as Error).message));
  };
  dp.upgradeTap = (index, raw, handle) => {
    const m = raw as ToNew;
    switch (m.t) {
      case 'udp':
      case 'tcp': {
        const id = nextId++;
        ids.set(`${index}:${m.id}`, id);
        origin.set(id, { index, id: m.id });
        forward({ ...m, id, ...(m.t === 'tcp' ? { worker: index } : {}) }, handle);
        return true;
      }
      case 'tcp-backend':
        forward({ t: 'tcp-backend', id: ids.get(`${index}:${m.id}`) ?? 0 }, handle);
        return true;
      case 'udp-done':
        // UDP runs on worker 0, but every worker says it is through with UDP.
        if (++udpDone === dp.workerCount) forward({ t: 'udp-done' }, null);
        return true;
      default:
        return false;
    }
  };
  // Acknowledgements of the new process go back to the worker that sent the session.
  ch.onMessage = (m) => {
    if (m.t !== 'tcp-ok' && m.t !== 'udp-ok') return;
    const o = origin.get(m.id);
    if (o === undefined) return;
    origin.delete(m.id);
    dp.sendTo(o.index, { t: m.t, id: o.id }).catch((err: unknown) => log.warn({ worker: o.index, err: (err as Error).message }, 'upgrade: an acknowledgement could not be relayed'));
  };
  // The new process went away (or said why it cannot go on): every worker stops waiting for it.
  const gone = ch.wait(() => false, 24 * 3600_000, 'end of the new process');
  gone.catch((err: unknown) => abort((err as Error).message));
  try {
    const replies = await dp.request((id) => ({ t: 'upgrade-out', id }));
    const out: HandedOver = { connections: 0, sessions: 0, leftBehind: 0, maxPauseMs: 0 };
    let reason: string | null = failure;
    for (const r of replies) {
      if (r.t !== 'upgrade-result') {
        log.warn({}, 'upgrade: a worker exited during the handover (its connections are lost)');
        continue;
      }
      out.connections += r.connections;
      out.sessions += r.sessions;
      out.leftBehind += r.leftBehind;
      out.maxPauseMs = Math.max(out.maxPauseMs, r.maxPauseMs);
      reason ??= r.reason;
    }
    if (reason !== null) throw new HandoverFailed(reason, out.connections, out.sessions);
    return out;
  } finally {
    dp.upgradeTap = null;
    ch.onMessage = null;
  }
}
