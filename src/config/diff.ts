/**
 * The reload plan: what changes between two validated configurations.
 * Pure: no I/O, inputs are not modified.
 */
import { isDeepStrictEqual } from 'node:util';
import type { Config, GlobalConfig, ListenerConfig } from './schema';

export interface ReloadPlan {
  /** New listeners, plus listeners whose bind or protocol changed (new side). */
  readonly listenersToAdd: readonly ListenerConfig[];
  /** Removed listeners, plus listeners whose bind or protocol changed (old side). */
  readonly listenersToRemove: readonly ListenerConfig[];
  /** Same name, protocol and bind text: the socket stays, settings may differ. */
  readonly listenersToKeep: readonly { readonly old: ListenerConfig; readonly next: ListenerConfig }[];
  /** Names of kept listeners with any other setting changed. */
  readonly listenersChanged: readonly string[];
  readonly poolsAdded: readonly string[];
  readonly poolsRemoved: readonly string[];
  /** Pools present in both whose settings or backend list differ. */
  readonly poolsChanged: readonly string[];
  /** GlobalConfig keys whose values differ. */
  readonly globalChanged: readonly (keyof GlobalConfig)[];
  /** True when the admin endpoint appears, disappears, or its bind or token changes. */
  readonly adminChanged: boolean;
}

/**
 * Contract: compares `old` and `next` and returns the ReloadPlan. Listeners
 * are matched by name; one whose protocol or bind text changed is removed and
 * added. Pools are matched by name. Lists keep the order of their config.
 */
export function planReload(old: Config, next: Config): ReloadPlan {
  const oldListeners = new Map(old.listeners.map((l) => [l.name, l] as const));
  const nextNames = new Set(next.listeners.map((l) => l.name));
  const listenersToAdd: ListenerConfig[] = [];
  const listenersToRemove: ListenerConfig[] = [];
  const listenersToKeep: { old: ListenerConfig; next: ListenerConfig }[] = [];
  const listenersChanged: string[] = [];

  for (const l of old.listeners) if (!nextNames.has(l.name)) listenersToRemove.push(l);
  for (const n of next.listeners) {
    const o = oldListeners.get(n.name);
    if (o === undefined) {
      listenersToAdd.push(n);
    } else if (o.protocol !== n.protocol || o.bindText !== n.bindText) {
      listenersToRemove.push(o);
      listenersToAdd.push(n);
    } else {
      listenersToKeep.push({ old: o, next: n });
      if (!isDeepStrictEqual(o, n)) listenersChanged.push(n.name);
    }
  }

  const oldPools = new Map(old.pools.map((p) => [p.name, p] as const));
  const nextPools = new Map(next.pools.map((p) => [p.name, p] as const));
  const poolsAdded = next.pools.filter((p) => !oldPools.has(p.name)).map((p) => p.name);
  const poolsRemoved = old.pools.filter((p) => !nextPools.has(p.name)).map((p) => p.name);
  const poolsChanged = next.pools
    .filter((p) => {
      const o = oldPools.get(p.name);
      return o !== undefined && !isDeepStrictEqual(o, p);
    })
    .map((p) => p.name);

  const globalChanged = (Object.keys(next.global) as (keyof GlobalConfig)[]).filter(
    (k) => !isDeepStrictEqual(old.global[k], next.global[k]),
  );

  return {
    listenersToAdd,
    listenersToRemove,
    listenersToKeep,
    listenersChanged,
    poolsAdded,
    poolsRemoved,
    poolsChanged,
    globalChanged,
    adminChanged: !isDeepStrictEqual(old.admin, next.admin),
  };
}
