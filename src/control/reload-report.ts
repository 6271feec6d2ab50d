/**
 * The `config reloaded` line: what a reload changed, from its plan
 * (config/diff.ts) and the data plane's snapshots around it.
 */
import type { Config } from '../config/schema';
import type { ReloadPlan } from '../config/diff';
import type { DataPlaneSnapshot } from '../stats/stats';
import { formatHostPort } from '../net/address';

/** Keys of [global] that take effect only at the next start. */
const RESTART_KEYS: readonly string[] = ['workers', 'splice'];

/**
 * Contract: what a reload changed, for the `config reloaded` line:
 * listeners and pools added, removed, changed (by name; a listener whose
 * bind or protocol changed is `changed`), backends (`pool/address`) added,
 * removed, changed (weight, limit, backup), and the changed [global] keys
 * that need a restart.
 */
export function describeReload(
  plan: ReloadPlan,
  prev: Config,
  next: Config,
  before: DataPlaneSnapshot,
  after: DataPlaneSnapshot,
): { changes: Record<string, { added: string[]; removed: string[]; changed: string[] }>; restartRequired: string[] } {
  const addedL = plan.listenersToAdd.map((l) => l.name);
  const removedL = plan.listenersToRemove.map((l) => l.name);
  const moved = addedL.filter((n) => removedL.includes(n));
  const backendsOf = (s: DataPlaneSnapshot): Map<string, string> => {
    const m = new Map<string, string>();
    for (const p of s.pools) for (const b of p.backends) if (b.state !== 'removed') m.set(`${p.name}/${b.address}`, `${b.weight}/${b.backup}`);
    return m;
  };
  const b0 = backendsOf(before);
  const b1 = backendsOf(after);
  // max_connections of backends written as IP literals (a name's limit change shows as its pool's change).
  const limitsOf = (c: Config): Map<string, number> =>
    new Map(c.pools.flatMap((p) => p.backends.filter((bc) => bc.family !== 0).map((bc): [string, number] => [`${p.name}/${formatHostPort(bc.host, bc.port)}`, bc.maxConnections])));
  const l0 = limitsOf(prev);
  const l1 = limitsOf(next);
  const limitChanged = (key: string): boolean => l0.has(key) && l1.has(key) && l0.get(key) !== l1.get(key);
  return {
    changes: {
      listeners: {
        added: addedL.filter((n) => !moved.includes(n)),
        removed: removedL.filter((n) => !moved.includes(n)),
        changed: [...plan.listenersChanged, ...moved],
      },
      pools: { added: [...plan.poolsAdded], removed: [...plan.poolsRemoved], changed: [...plan.poolsChanged] },
      backends: {
        added: [...b1.keys()].filter((k) => !b0.has(k)),
        removed: [...b0.keys()].filter((k) => !b1.has(k)),
        changed: [...b1.keys()].filter((k) => b0.has(k) && (b0.get(k) !== b1.get(k) || limitChanged(k))),
      },
    },
    restartRequired: plan.globalChanged.filter((k) => RESTART_KEYS.includes(k)),
  };
}
