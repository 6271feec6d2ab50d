/**
 * The in-process data plane of a single process or of one worker: which
 * byte pump carries TCP connections, and the DataPlane that uses it.
 */
import type { SpliceMode } from '../config/schema';
import { L4lbError } from '../errors';
import { spliceAvailable, tuneMalloc } from '../native/addon';
import { canSplice, splicePump, spliceEngineInfo } from '../tcp/splice-pump';
import { tcpEngineExpected, tcpEngineInfo } from '../tcp/engine';
import type { DataPlaneOptions } from './api';
import { DataPlane } from './dataplane';

export interface PumpChoice {
  readonly kind: 'js' | 'splice';
  /** Why, for the `byte pump` line. */
  readonly reason: string;
  /** Whether the native TCP engine accepts and connects (src/tcp/engine.ts; only with splice), and why (not). */
  readonly tcpEngine: { readonly ok: boolean; readonly reason: string };
}

/**
 * Contract: which byte pump carries TCP connections: splice(2) through the
 * native addon when `splice` allows it and the addon loads, else the JS
 * pump. With workers the primary carries no bytes: it only checks that the
 * addon loads (each worker starts its own engine). `splice = "on"` without
 * the addon throws ERR_L4LB_NATIVE (a start-up failure, exit 1).
 */
export function choosePump(mode: SpliceMode, workers: number): PumpChoice {
  const noEngine = { ok: false, reason: 'needs the splice pump' };
  if (mode === 'off') return { kind: 'js', reason: 'splice = "off"', tcpEngine: noEngine };
  const info = workers > 1 ? spliceAvailable() : spliceEngineInfo();
  if (info.ok) {
    return { kind: 'splice', reason: workers > 1 ? 'splice(2) in each worker' : info.reason, tcpEngine: workers > 1 ? tcpEngineExpected() : tcpEngineInfo() };
  }
  if (mode === 'on') throw new L4lbError('ERR_L4LB_NATIVE', `splice = "on" but the native splice addon is not available: ${info.reason}`);
  return { kind: 'js', reason: `splice addon not available: ${info.reason}`, tcpEngine: noEngine };
}

/**
 * A DataPlane carrying bytes in this process with `pump`. Only the JS pump
 * churns 64 KiB read buffers, so only it gets glibc's malloc tuning (with
 * splice the tuning would only cost idle memory, ~0.5 KiB per connection,
 * bench/history/2026-11-30.md). Returns whether the tuning was applied.
 */
export function createLocalDataPlane(pump: PumpChoice, opts: Omit<DataPlaneOptions, 'splice' | 'tcpEngine'>): { dataPlane: DataPlane; mallocTuned: boolean } {
  const mallocTuned = pump.kind === 'js' ? tuneMalloc() : false;
  const dataPlane = new DataPlane({ ...opts, splice: pump.kind === 'splice' ? { pump: splicePump, canSplice } : null, tcpEngine: pump.tcpEngine.ok });
  return { dataPlane, mallocTuned };
}
