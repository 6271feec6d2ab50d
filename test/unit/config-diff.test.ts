import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planReload } from '../../src/config/diff';
import { parseConfig } from '../../src/config/load';
import type { Config } from '../../src/config/schema';

const OLD = `[global]
log_level = "info"
[admin]
bind = "127.0.0.1:9090"
[[listeners]]
name = "keep"
bind = "127.0.0.1:1000"
pool = "a"
[[listeners]]
name = "tweak"
bind = "127.0.0.1:1001"
pool = "a"
[[listeners]]
name = "rebind"
bind = "127.0.0.1:1002"
pool = "a"
[[listeners]]
name = "reproto"
bind = "127.0.0.1:1003"
pool = "a"
[[listeners]]
name = "gone"
bind = "127.0.0.1:1004"
pool = "b"
[pools.a]
backends = [ { address = "10.0.0.1:80" } ]
[pools.b]
backends = [ { address = "10.0.0.2:80" } ]
[pools.c]
backends = [ { address = "10.0.0.3:80" } ]
`;

const NEXT = `[global]
log_level = "debug"
drain_timeout = "10s"
[admin]
bind = "127.0.0.1:9090"
[[listeners]]
name = "keep"
bind = "127.0.0.1:1000"
pool = "a"
[[listeners]]
name = "tweak"
bind = "127.0.0.1:1001"
pool = "c"
max_connections = 10
[[listeners]]
name = "rebind"
bind = "127.0.0.1:2002"
pool = "a"
[[listeners]]
name = "reproto"
protocol = "udp"
bind = "127.0.0.1:1003"
pool = "a"
[[listeners]]
name = "new"
bind = "127.0.0.1:1005"
pool = "d"
[pools.a]
backends = [ { address = "10.0.0.1:80" } ]
[pools.c]
backends = [ { address = "10.0.0.3:80", weight = 2 } ]
[pools.d]
backends = [ { address = "10.0.0.4:80" } ]
`;

const cfg = (t: string): Config => parseConfig(t, 'lb.toml', { cpuCount: 1 });
const names = (ls: readonly { name: string }[]): string[] => ls.map((l) => l.name);

test('planReload: listeners added, removed, kept, changed; pools and globals', () => {
  const plan = planReload(cfg(OLD), cfg(NEXT));
  assert.deepEqual(names(plan.listenersToAdd), ['rebind', 'reproto', 'new']);
  assert.deepEqual(names(plan.listenersToRemove), ['gone', 'rebind', 'reproto']);
  assert.deepEqual(plan.listenersToKeep.map((k) => [k.old.name, k.next.name]), [['keep', 'keep'], ['tweak', 'tweak']]);
  assert.equal(plan.listenersToKeep[1]?.old.pool, 'a');
  assert.equal(plan.listenersToKeep[1]?.next.pool, 'c');
  assert.deepEqual(plan.listenersChanged, ['tweak']);
  assert.deepEqual(plan.poolsAdded, ['d']);
  assert.deepEqual(plan.poolsRemoved, ['b']);
  assert.deepEqual(plan.poolsChanged, ['c']);
  assert.deepEqual(plan.globalChanged, ['logLevel', 'drainTimeoutMs']);
  assert.equal(plan.adminChanged, false);
});

test('planReload: identical configs give an empty plan', () => {
  const plan = planReload(cfg(OLD), cfg(OLD));
  assert.deepEqual(plan.listenersToAdd, []);
  assert.deepEqual(plan.listenersToRemove, []);
  assert.equal(plan.listenersToKeep.length, 5);
  assert.deepEqual(plan.listenersChanged, []);
  assert.deepEqual([plan.poolsAdded, plan.poolsRemoved, plan.poolsChanged, plan.globalChanged], [[], [], [], []]);
  assert.equal(plan.adminChanged, false);
});

test('planReload: ACL and health-check changes are detected; bind text matters, not the parsed value', () => {
  const base = OLD;
  const acl = base.replace('name = "keep"\nbind = "127.0.0.1:1000"', 'name = "keep"\nbind = "127.0.0.1:1000"\nallow = ["10.0.0.0/8"]');
  assert.deepEqual(planReload(cfg(base), cfg(acl)).listenersChanged, ['keep']);
  const acl2 = acl.replace('10.0.0.0/8', '10.0.0.0/9');
  assert.deepEqual(planReload(cfg(acl), cfg(acl2)).listenersChanged, ['keep']);
  const hc = `${base}[pools.a.health_check]\nrise = 5\n`;
  assert.deepEqual(planReload(cfg(base), cfg(hc)).poolsChanged, ['a']);
  const order = base.replace('backends = [ { address = "10.0.0.1:80" } ]', 'backends = [ { address = "10.0.0.1:80" }, { address = "10.0.0.9:80" } ]');
  assert.deepEqual(planReload(cfg(base), cfg(order)).poolsChanged, ['a']);
  // The same address spelled differently is a different bind text: remove + add.
  const v6a = base.replace('"127.0.0.1:1000"', '"[::1]:1000"');
  const v6b = base.replace('"127.0.0.1:1000"', '"[0:0::1]:1000"');
  const p = planReload(cfg(v6a), cfg(v6b));
  assert.deepEqual(names(p.listenersToAdd), ['keep']);
  assert.deepEqual(names(p.listenersToRemove), ['keep']);
});

test('planReload: admin appears, disappears, token changes', () => {
  const noAdmin = OLD.replace('[admin]\nbind = "127.0.0.1:9090"\n', '');
  assert.equal(planReload(cfg(OLD), cfg(noAdmin)).adminChanged, true);
  assert.equal(planReload(cfg(noAdmin), cfg(OLD)).adminChanged, true);
  const token = OLD.replace('bind = "127.0.0.1:9090"', 'bind = "127.0.0.1:9090"\ntoken = "t"');
  assert.equal(planReload(cfg(OLD), cfg(token)).adminChanged, true);
  assert.equal(planReload(cfg(noAdmin), cfg(noAdmin)).adminChanged, false);
});

test('planReload does not modify its inputs', () => {
  const a = cfg(OLD);
  const b = cfg(NEXT);
  const before = JSON.stringify([a, b]);
  planReload(a, b);
  assert.equal(JSON.stringify([a, b]), before);
});
