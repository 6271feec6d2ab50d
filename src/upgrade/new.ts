/**
 * Upgrade, the new process's side (SPEC §8.5, docs/upgrade.md). Started by
 * the old process with an IPC channel and UPGRADE_ENV set: once its
 * configuration file is read it says `hello`, receives the runtime state
 * and the listening sockets, starts (adopting those sockets instead of
 * binding), says `ready`, then takes over the UDP sessions and TCP
 * connections one by one and confirms.
 */
import type dgram from 'node:dgram';
import type { Config } from '../config/schema';
import type { UpgradeHost } from './host';
import { DataPlane } from '../dataplane/dataplane';
import { ClusterDataPlane } from '../cluster/primary';
import { clusterSink } from '../cluster/upgrade-new';
import { UdpListener } from '../udp/listener';
import { Channel } from './channel';
import { closeRaw, type RawHandle } from './handles';
import { localSink, type HandoverSink } from './adopt';
import { HELLO_TIMEOUT_MS, UPGRADE_ENV, UPGRADE_HOLD_UDP_ENV, UPGRADE_TEST_EXIT_ENV, UPGRADE_TEST_EXIT_UDP_ENV, type Inherited, type TcpMeta, type ToNew, type ToOld } from './protocol';

/** Handles received and adopted by fd: kept referenced for the life of the process. */
const kept: RawHandle[] = [];

export class UpgradeChild {
  readonly oldPid: number;
  private readonly ch: Channel<ToNew, ToOld>;

  private constructor(oldPid: number) {
    this.oldPid = oldPid;
    this.ch = new Channel<ToNew, ToOld>(process);
  }

  /** Non-null when this process was started by an upgrade (and has its channel). Clears the marker from the environment. */
  static detect(): UpgradeChild | null {
    const from = process.env[UPGRADE_ENV];
    delete process.env[UPGRADE_ENV];
    if (from === undefined || typeof process.send !== 'function') return null;
    return new UpgradeChild(Number(from));
  }

  /** Tells the old process why this one cannot take over (it keeps serving). */
  async fail(reason: string): Promise<void> {
    try {
      await this.ch.send({ t: 'error', reason });
    } catch {
      /* the old process is gone: nothing to tell */
    }
  }

  /** `hello`, then the state and listeners the old process hands over, matched against the new configuration. */
  async receive(config: Config): Promise<Inherited> {
    await this.ch.send({ t: 'hello', pid: process.pid });
    const { msg } = await this.ch.wait((m) => m.t === 'state', HELLO_TIMEOUT_MS, 'state from the old process');
    const state = msg as Extract<ToNew, { t: 'state' }>;
    const out: Inherited = { runtime: state.runtime, health: state.health, reloads: state.reloads ?? { success: 0, failure: 0 }, fds: new Map(), adminFd: null };
    for (;;) {
      const { msg: m, handle } = await this.ch.wait((x) => x.t === 'listener' || x.t === 'listeners-done', HELLO_TIMEOUT_MS, 'listeners from the old process');
      if (m.t === 'listeners-done') break;
      if (m.t !== 'listener' || handle === null) continue;
      const fd = handle.fd;
      let used = false;
      if (typeof fd === 'number' && fd >= 0) {
        if (m.kind === 'admin') {
          const a = config.admin;
          if (a !== null && `${a.bind.host}:${a.bind.port}` === m.bind) {
            out.adminFd = fd;
            used = true;
          }
        } else {
          const lc = config.listeners.find((l) => l.name === m.name);
          if (lc !== undefined && `${lc.protocol} ${lc.bindText}` === m.bind) {
            out.fds.set(m.name, fd);
            used = true;
          }
        }
      }
      if (used) kept.push(handle);
      else closeRaw(handle);
    }
    // UDP datagrams of clients whose sessions are still to come are held
    // (here, and in the workers this process is about to start).
    UdpListener.holding = true;
    process.env[UPGRADE_HOLD_UDP_ENV] = '1';
    return out;
  }

  /** Receives the sessions and connections, confirms, and lets the old process exit. */
  async takeOver(server: UpgradeHost): Promise<{ connections: number; sessions: number; refused: number }> {
    const dp = server.dataPlane;
    const log = server.log;
    let connections = 0;
    let sessions = 0;
    let refused = 0;
    const exitAfter = Number(process.env[UPGRADE_TEST_EXIT_ENV] ?? '0');
    const exitAfterUdp = Number(process.env[UPGRADE_TEST_EXIT_UDP_ENV] ?? '0');
    const clients = new Map<number, { meta: { t: 'tcp' } & TcpMeta; handle: RawHandle }>();
    // This process's data plane takes them, or its workers do (relayed by this primary).
    const sink: HandoverSink = dp instanceof ClusterDataPlane ? clusterSink(dp) : localSink(dp);
    // Adoptions not yet acknowledged: `done` waits for them.
    const adopting = new Set<Promise<void>>();
    const track = (adoption: Promise<void>): void => {
      // One that could not be relayed fails the upgrade at once (the old process keeps the rest).
      const p = adoption.catch((err: unknown) => this.fail(`handover: ${(err as Error).message}`));
      adopting.add(p);
      void p.finally(() => adopting.delete(p));
    };
    const done = new Promise<void>((resolve, reject) => {
      const onMessage = (m: ToNew, handle: RawHandle | null): void => {
        if (m.t === 'udp' && handle !== null) {
          track(
            sink.udp(m, handle as unknown as dgram.Socket).then((ok) => {
              if (ok) sessions++;
              else refused++;
              if (exitAfterUdp > 0 && sessions >= exitAfterUdp) process.exit(1); // test-only (UPGRADE_TEST_EXIT_UDP_ENV)
              void this.ch.send({ t: 'udp-ok', id: m.id }).catch(() => undefined);
            }),
          );
        } else if (m.t === 'udp-done') {
          void Promise.all(adopting).then(() => sink.releaseUdp());
        } else if (m.t === 'tcp' && handle !== null) {
          clients.set(m.id, { meta: m, handle });
        } else if (m.t === 'tcp-backend' && handle !== null) {
          const c = clients.get(m.id);
          clients.delete(m.id);
          const adopted = c !== undefined ? sink.tcp(c.meta, c.handle, handle) : Promise.resolve(false);
          track(
            adopted.then((ok) => {
              if (ok) connections++;
              else refused++;
              if (exitAfter > 0 && connections >= exitAfter) process.exit(1); // test-only (UPGRADE_TEST_EXIT_ENV)
              void this.ch.send({ t: 'tcp-ok', id: m.id }).catch(() => undefined);
            }),
          );
        } else if (m.t === 'done') {
          // Counters go on from the old process's totals.
          if (dp instanceof DataPlane || dp instanceof ClusterDataPlane) dp.inheritTotals(m.totals);
          void Promise.all(adopting).then(() => resolve());
        }
      };
      for (const q of this.ch.drainQueue()) onMessage(q.msg, q.handle);
      this.ch.onMessage = onMessage;
      process.once('disconnect', () => reject(new Error('the old process went away during the handover')));
    });
    await this.ch.send({ t: 'ready' });
    try {
      await done;
      await this.ch.send({ t: 'confirmed', connections, sessions });
    } catch (err) {
      log.warn({ err: (err as Error).message, connections, sessions }, 'upgrade: handover incomplete');
    }
    sink.releaseUdp();
    if (refused > 0) log.warn({ refused }, 'upgrade: connections of listeners or pools the new configuration lacks were closed');
    this.ch.detach();
    // The channel must not keep this process alive, nor its end tie it to the old one.
    process.channel?.unref();
    try {
      process.disconnect?.();
    } catch {
      /* already gone */
    }
    return { connections, sessions, refused };
  }
}
