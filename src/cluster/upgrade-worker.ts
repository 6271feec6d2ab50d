/**
 * Upgrade with workers, a worker's part (docs/upgrade.md, "Workers"). In
 * the old process each worker hands over its own listeners, sessions and
 * connections exactly as a single process does (src/upgrade/export.ts),
 * on a channel to its primary, which relays them to the new process; an
 * acknowledgement comes back the same way, and only then is a connection
 * released here. In the new process a worker takes what its primary
 * relays (src/upgrade/adopt.ts) and says so.
 */
import type dgram from 'node:dgram';
import type { Logger } from '../log';
import type { DataPlane } from '../dataplane/dataplane';
import { UdpListener } from '../udp/listener';
import { Channel } from '../upgrade/channel';
import type { RawHandle } from '../upgrade/handles';
import { HandoverFailed, handOverSessions, pauseListeners, resumeListeners, sendListeners, type OutChannel } from '../upgrade/export';
import { adoptTcp, adoptUdp, releaseHeldUdp } from '../upgrade/adopt';
import { UPGRADE_HOLD_UDP_ENV, type TcpMeta, type ToNew, type ToOld } from '../upgrade/protocol';
import type { ToPrimary, ToWorker } from './protocol';

export class WorkerUpgrade {
  private readonly dp: DataPlane;
  private readonly log: Logger;
  private readonly send: (m: ToPrimary) => void;
  /** Old side: the channel to the primary while a handover runs. */
  private ch: OutChannel | null = null;
  /** New side: relayed client sockets waiting for their backend socket, by id. */
  private readonly clients = new Map<number, { meta: { t: 'tcp' } & TcpMeta; handle: RawHandle }>();

  constructor(dp: DataPlane, log: Logger, send: (m: ToPrimary) => void) {
    this.dp = dp;
    this.log = log;
    this.send = send;
    // Started while the new process takes the UDP sessions over: hold the datagrams of clients still without one.
    if (process.env[UPGRADE_HOLD_UDP_ENV] === '1') UdpListener.holding = true;
  }

  /** Acts on an upgrade message; false when `m` is not one. */
  handle(m: ToWorker, handle: unknown): boolean {
    switch (m.t) {
      case 'upgrade-listeners':
        void sendListeners(this.dp, this.channel()).then(
          () => this.send({ t: 'done', id: m.id }),
          (err: unknown) => this.result(m.id, new HandoverFailed((err as Error).message, 0, 0)),
        );
        return true;
      case 'upgrade-pause':
        pauseListeners(this.dp);
        this.send({ t: 'done', id: m.id });
        return true;
      case 'upgrade-out': {
        const ch = this.channel();
        void handOverSessions(this.dp, ch, this.log)
          .then(
            (r) => this.send({ t: 'upgrade-result', id: m.id, ...r, reason: null }),
            (err: unknown) => this.result(m.id, err instanceof HandoverFailed ? err : new HandoverFailed((err as Error).message, 0, 0)),
          )
          .finally(() => {
            ch.detach();
            if (this.ch === ch) this.ch = null;
          });
        return true;
      }
      case 'upgrade-abort':
        this.ch?.close(m.reason);
        return true;
      case 'upgrade-resume':
        resumeListeners(this.dp, this.log);
        return true;
      case 'upgrade-release':
        releaseHeldUdp(this.dp);
        return true;
      case 'udp':
        this.send({ t: 'adopted', id: m.id, ok: handle !== null && adoptUdp(this.dp, m, handle as dgram.Socket) });
        return true;
      case 'tcp':
        if (handle !== null) this.clients.set(m.id, { meta: m, handle: handle as RawHandle });
        return true;
      case 'tcp-backend': {
        const c = this.clients.get(m.id);
        this.clients.delete(m.id);
        this.send({ t: 'adopted', id: m.id, ok: c !== undefined && handle !== null && adoptTcp(this.dp, c.meta, c.handle, handle as RawHandle) });
        return true;
      }
      case 'tcp-ok':
      case 'udp-ok':
        // Taken by the channel's waiters.
        return true;
      default:
        return false;
    }
  }

  /** The channel to the primary for this handover (a new one after a failed handover closed the last). */
  private channel(): OutChannel {
    if (this.ch === null || this.ch.closed !== null) {
      this.ch?.detach();
      this.ch = new Channel<ToOld, ToNew>(process);
      // Only acknowledgements are waited for on it; the primary's other messages are handled in worker.ts.
      this.ch.onMessage = () => undefined;
    }
    return this.ch;
  }

  private result(id: number, err: HandoverFailed): void {
    this.send({ t: 'upgrade-result', id, connections: err.connections, sessions: err.sessions, leftBehind: 0, maxPauseMs: 0, reason: err.message });
  }
}
