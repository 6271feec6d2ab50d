/**
 * workers > 1: the primary carries no bytes, so it must not start the
 * splice addon's threads (nor its slab); the workers do.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { L4lbProcess } from '../helpers/l4lb';
import { listenerToml, poolToml } from '../helpers/toml';
import { waitFor } from '../helpers/net';
import { workerPids } from '../helpers/cluster';
import { spliceAvailable } from '../../src/native/addon';

/**
 * Threads of `pid` blocked in epoll: libuv's loop and the addon's splice
 * threads wait there; V8's and libuv's pool threads wait on futexes. The
 * most seen over a few samples (a thread that is running at that instant
 * is not waiting).
 */
async function epollThreads(pid: number): Promise<number> {
  let most = 0;
  for (let i = 0; i < 8; i++) {
    let n = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        if (readFileSync(`/proc/${pid}/task/${tid}/wchan`, 'utf8').includes('epoll_wait')) n++;
      } catch {
        /* thread gone */
      }
    }
    most = Math.max(most, n);
    await new Promise((r) => setTimeout(r, 25));
  }
  return most;
}

async function threadsOf(splice: string): Promise<{ primary: number; worker: number; log: string }> {
  const lb = new L4lbProcess(`[global]\nworkers = 2\nsplice = "${splice}"\n` + listenerToml('e', 'p') + poolToml('p', 'round-robin', ['{ address = "127.0.0.1:9" }']));
  try {
    await lb.port('e');
    await waitFor(() => workerPids(lb.child.pid!).length === 2, 10000, 'two workers');
    const pump = await lb.waitForLog((l) => l.msg === 'byte pump', 5000, 'byte pump');
    return { primary: await epollThreads(lb.child.pid!), worker: await epollThreads(workerPids(lb.child.pid!)[0]!), log: String(pump.pump) };
  } finally {
    await lb.stop();
  }
}

test('workers = 2: the primary starts no splice threads, the workers do', async (t) => {
  if (!spliceAvailable().ok) return t.skip(`splice addon not available: ${spliceAvailable().reason}`);
  try {
    readFileSync('/proc/self/wchan', 'utf8');
  } catch {
    return t.skip('/proc/<pid>/task/<tid>/wchan is not readable here');
  }
  const off = await threadsOf('off');
  const on = await threadsOf('on');
  assert.equal(on.log, 'splice', 'the byte pump log line still says splice');
  // The check can see the addon's threads: a worker with splice has more threads in epoll.
  assert.ok(on.worker > off.worker, `worker threads in epoll: splice on ${on.worker}, off ${off.worker}`);
  assert.ok(on.primary <= off.primary, `primary threads in epoll: splice on ${on.primary}, off ${off.primary}`);
});
