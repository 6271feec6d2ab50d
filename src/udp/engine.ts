/**
 * The UDP data path on the native engine (native/src/udp_*.cc): the
 * engine owns the listening socket and every session's upstream socket and
 * moves the datagrams itself; TypeScript decides who gets a session (the
 * same `decideUdp` as the JavaScript listener), counts, logs and answers
 * the admin API. Used when the addon is loaded and `splice` is not "off";
 * otherwise the JavaScript `UdpListener` runs. See docs/data-path.md.
 *
 * Per session TypeScript keeps no object: the engine's fixed record holds
 * the client, the upstream fd, the counters and the idle-list links; here
 * only per-backend session counts and the listener's totals live.
 */
import type { ListenerConfig } from '../config/schema';
import type { Pool } from '../backend/pool';
import type { Backend } from '../backend/backend';
import type { ListenerContext } from '../listener/context';
import { fdBudget } from '../net/fd-budget';
import { UdpListener, type CarriedUdp } from './listener';
import dgram from 'node:dgram';
import { backendsById, handleFd, idOf, loadedUdpEngine, pump, quietSocket, releaseId, udpEngine } from './engine-binding';
import { EngineUdpListenerBase } from './engine-listener';

/** Upgrade: an engine session taken out of the engine (udpExport) for a new process; `socket` wraps the dup of its upstream socket. */
export interface EngineHandover extends CarriedUdp {
  listener: EngineUdpListener;
  clientAddr: string;
  clientPort: number;
  pool: string;
  backend: Backend;
  bid: number;
  socket: dgram.Socket;
}

/** Fields per session in udpExport's flat array (kExportFields in native/src/udp_engine.h). */
const EXPORT_FIELDS = 11;

/** A UDP listener on the engine when `native` and the engine is available, else the JavaScript one. */
export function createUdpListener(config: ListenerConfig, pool: Pool, ctx: ListenerContext, native: boolean): UdpListener {
  // A scoped IPv6 bind (fe80::1%eth0) stays on dgram, which resolves the zone.
  const e = native && !config.bind.host.includes('%') ? udpEngine() : null;
  return e === null ? new UdpListener(config, pool, ctx) : new EngineUdpListener(config, pool, ctx, e);
}

/** The engine listener with the upgrade's hand-over of its listening socket and sessions (src/upgrade/). */
export class EngineUdpListener extends EngineUdpListenerBase {
  async handoverSocket(): Promise<dgram.Socket | null> {
    if (this.lid < 0 || this.eClosed) return null;
    const fd = this.engine.udpListenerFd(this.lid);
    if (fd < 0) return null;
    return quietSocket(this.config.bind.family === 6 ? 6 : 4, fd);
  }

  /**
   * Once every engine listener is paused: waits (up to `maxMs`) until no
   * client waits for a decision, so that a client whose first datagrams
   * came just before the pause has its session here, handed over with the
   * others, instead of one left behind in this process.
   */
  static async settlePending(maxMs = 500): Promise<void> {
    const b = loadedUdpEngine();
    if (b === null || b === undefined) return;
    const end = Date.now() + maxMs;
    while (b.udpInfo().pending > 0 && Date.now() < end) {
      pump();
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** Stops (true) or resumes (false) reading the listening socket; open sessions go on. */
  pauseForUpgrade(paused: boolean): void {
    if (this.lid >= 0 && !this.eClosed) this.engine.udpPause(this.lid, paused);
  }

  /**
   * Takes the open sessions out of the engine for a new process: each with
   * a socket over a dup of its connected upstream socket. Until
   * forgetExported() they still count here; takeBackExported() puts one
   * back into the engine.
   */
  async exportSessions(): Promise<EngineHandover[]> {
    if (this.lid < 0 || this.eClosed) return [];
    const a = this.engine.udpExport(this.lid);
    const out: EngineHandover[] = [];
    for (let i = 0; i + EXPORT_FIELDS <= a.length; i += EXPORT_FIELDS) {
      const bid = a[i + 2] as number;
      const fd = a[i + 6] as number;
      const e = backendsById.get(bid);
      let socket: dgram.Socket;
      try {
        socket = await quietSocket(a[i + 7] === 6 ? 6 : 4, fd);
      } catch {
        // Not a socket any more: nothing to hand over; it ends here without a report.
        this.countEnded(bid, e?.backend);
        releaseId(bid, 1);
        continue;
      }
      if (e === undefined) {
        socket.close();
        this.countEnded(bid, undefined);
        continue;
      }
      out.push({
        listener: this,
        clientAddr: a[i] as string,
        clientPort: a[i + 1] as number,
        pool: e.pool,
        backend: e.backend,
        bid,
        startedAt: a[i + 3] as number,
        bytesIn: a[i + 4] as number,
        bytesOut: a[i + 5] as number,
        responses: a[i + 8] as number,
        localAddr: a[i + 9] as string,
        ifindex: a[i + 10] as number,
        socket,
      });
    }
    return out;
  }

  /** A session the new process acknowledged: no longer counted here (no end report); its socket closes. */
  forgetExported(h: EngineHandover): void {
    h.socket.close();
    this.countEnded(h.bid, h.backend);
    releaseId(h.bid, 1);
    if (this.eSessions === 0) {
      const w = this.eWaiters;
      this.eWaiters = [];
      for (const fn of w) fn();
    }
  }

  /** A session whose handover failed goes on in this engine. False (and it ends) when the engine refuses it. */
  takeBackExported(h: EngineHandover): boolean {
    const fd = handleFd(h.socket);
    const rc = this.lid < 0 || this.eClosed || fd < 0 ? -1 : this.importSession(h.clientAddr, h.clientPort, h.bid, fd, h);
    h.socket.close();
    if (rc === 0) return true;
    this.forgetExported(h);
    return false;
  }

  private importSession(clientAddr: string, clientPort: number, bid: number, fd: number, c: CarriedUdp): number {
    return this.engine.udpImport(this.lid, clientAddr.includes(':') ? 6 : 4, clientAddr, clientPort, bid, fd, c.startedAt, c.bytesIn, c.bytesOut, c.responses, c.localAddr, c.ifindex);
  }

  /** A session the previous process handed over: the engine serves it on with the same (connected) upstream socket. */
  adoptEngineSession(sock: dgram.Socket, clientAddr: string, clientPort: number, backend: Backend, carried: CarriedUdp): boolean {
    const fd = handleFd(sock);
    if (this.lid < 0 || this.eClosed || fd < 0) {
      sock.close();
      return false;
    }
    const bid = idOf(backend, this.pool.name);
    const rc = this.importSession(clientAddr, clientPort, bid, fd, carried);
    sock.close();
    if (rc !== 0) {
      releaseId(bid, 0);
      return false;
    }
    this.deferred.delete(`${clientAddr}|${clientPort}`);
    fdBudget.add(1);
    const e = backendsById.get(bid);
    if (e !== undefined) e.sessions++;
    this.perBackend.set(bid, (this.perBackend.get(bid) ?? 0) + 1);
    this.eSessions++;
    this.stats.active++;
    this.stats.udpSessionsActive++;
    backend.active++;
    return true;
  }
}
