/**
 * Upgrade, the old process's side (SPEC §8.5, docs/upgrade.md): starts the
 * program on disk with the same arguments, hands it every listening socket,
 * UDP session and TCP connection (with the bytes in flight) and the runtime
 * state, then exits 0 as soon as it confirms. Until the new process says
 * `ready` nothing here has stopped or paused: any failure before that
 * (invalid file, a program that exits or never answers) leaves this process
 * serving as if nothing had happened. With workers, this process (their
 * primary) relays what each worker hands over (src/cluster/upgrade-old.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { UpgradeHost } from './host';
import { DataPlane } from '../dataplane/dataplane';
import { ClusterDataPlane } from '../cluster/primary';
import { clusterSource } from '../cluster/upgrade-old';
import { Channel } from './channel';
import { netHandle } from './handles';
import { HandoverFailed, localSource, type HandedOver, type HandoverSource } from './export';
import { ACK_TIMEOUT_MS, HELLO_TIMEOUT_MS, READY_TIMEOUT_MS, UPGRADE_ENV, UPGRADE_EXEC_ENV, type ToNew, type ToOld } from './protocol';

export type UpgradeResult =
  | { ok: true; pid: number; listeners: number; connections: number; sessions: number; left_behind: number }
  | { ok: false; reason: string };

let running: Promise<UpgradeResult> | null = null;

/** Runs one upgrade (a second request while one runs gets the same outcome). */
export function upgrade(server: UpgradeHost): Promise<UpgradeResult> {
  if (running !== null) return running;
  running = run(server).finally(() => {
    running = null;
  });
  return running;
}

async function run(server: UpgradeHost): Promise<UpgradeResult> {
  const log = server.log;
  const dp = server.dataPlane;
  const fail = (reason: string): UpgradeResult => {
    log.error({ reason }, 'upgrade failed');
    return { ok: false, reason };
  };
  if (server.draining) return fail('draining: the process is shutting down');
  // One process's data plane, or its workers' (through their primary, this process).
  let source: HandoverSource;
  if (dp instanceof DataPlane) source = localSource(dp, log);
  else if (dp instanceof ClusterDataPlane) source = clusterSource(dp, log);
  else return fail('this data plane cannot be handed over');

  const exec = process.env[UPGRADE_EXEC_ENV] || process.execPath;
  const args = [...process.execArgv, ...process.argv.slice(1)];
  log.info({ pid: process.pid, program: exec, args }, 'upgrade started');
  const t0 = Date.now();
  let child: ChildProcess;
  try {
    child = spawn(exec, args, {
      detached: true,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: { ...process.env, [UPGRADE_ENV]: String(process.pid) },
    });
  } catch (err) {
    return fail(`cannot start ${exec}: ${(err as Error).message}`);
  }
  const ch = new Channel<ToOld, ToNew>(child);
  let exitInfo: string | null = null;
  child.on('error', (err) => ch.close(`cannot start ${exec}: ${err.message}`));
  child.on('exit', (code, signal) => {
    exitInfo = signal !== null ? `new process killed by ${signal}` : `new process exited with code ${code}${code === 78 ? ' (configuration invalid)' : ''}`;
    ch.close(exitInfo);
  });
  // An `error` message from the new process ends every wait with its reason.
  const errorWatch = ch.wait((m) => m.t === 'error', 24 * 3600_000, 'error').then(
    ({ msg }) => {
      ch.close(`new process: ${(msg as { reason: string }).reason}`);
    },
    () => undefined,
  );
  void errorWatch;
  const abandon = (): void => {
    // The new process is not used: make sure it does not linger.
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    ch.detach();
  };

  // 1. The new process read a valid file and asks for the state and listeners.
  let listeners = 0;
  try {
    await ch.wait((m) => m.t === 'hello', HELLO_TIMEOUT_MS, 'hello from the new process');
    await ch.send({ t: 'state', runtime: server.runtime.all(), health: server.health.exportStates(), reloads: { ...server.reloadCounts } });
    listeners = await source.sendListeners(ch);
    const adminSrv = server.admin?.netServer;
    const ah = adminSrv === undefined ? null : netHandle(adminSrv);
    if (ah !== null && server.config.admin !== null) {
      await ch.send({ t: 'listener', name: 'admin', kind: 'admin', bind: `${server.config.admin.bind.host}:${server.config.admin.bind.port}` }, ah);
    }
    await ch.send({ t: 'listeners-done' });
    await ch.wait((m) => m.t === 'ready', READY_TIMEOUT_MS, 'ready from the new process');
  } catch (err) {
    abandon();
    return fail((err as Error).message);
  }
  const newPid = child.pid ?? 0;
  const tReady = Date.now();

  // 2. The new process accepts on every listener: stop accepting here.
  // Only the admin listening socket closes: the request that asked for this
  // upgrade (POST /api/v1/upgrade) is answered when it is done.
  const adminNet = server.admin?.netServer;
  if (adminNet !== undefined && adminNet.listening) adminNet.close();

  // 3. UDP sessions, then TCP connections.
  let out: HandedOver;
  try {
    await source.pause();
    out = await source.handOver(ch);
    // Counters go on in the new process from these totals (connections left behind count up to now).
    await ch.send({ t: 'done', listeners, connections: out.connections, sessions: out.sessions, totals: dp.snapshot() });
    await ch.wait((m) => m.t === 'confirmed', ACK_TIMEOUT_MS, 'confirmation from the new process');
  } catch (err) {
    // The new process failed half-way: what it took is its own (and gone with
    // it if it died); the rest goes on here, and listeners bind again.
    abandon();
    source.resume();
    server.admin?.listen().catch((e: unknown) => log.error({ listener: 'admin', err: (e as Error).message }, 'upgrade: listener could not bind again'));
    const done = err instanceof HandoverFailed ? err : new HandoverFailed((err as Error).message, 0, 0);
    return fail(`${done.message} (after the handover began: ${done.connections} connection(s) and ${done.sessions} UDP session(s) were already handed over)`);
  }
  const { connections, sessions, leftBehind, maxPauseMs } = out;
  ch.detach();
  child.unref();
  child.disconnect?.();
  const now = Date.now();
  log.info({ pid: newPid, listeners, connections, sessions, left_behind: leftBehind, duration_ms: now - t0, handover_ms: now - tReady, max_pause_ms: Math.round(maxPauseMs) }, 'upgrade handed over');
  return { ok: true, pid: newPid, listeners, connections, sessions, left_behind: leftBehind };
}
