/**
 * workers = 2, the edges of the primary: a request to the workers while one
 * of them dies, and limits of pools that only UDP listeners use.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type net from 'node:net';
import { startEchoServer, connect, readBytes, waitFor } from '../helpers/net';
import { L4lbProcess } from '../helpers/l4lb';
import { listenerToml, poolToml } from '../helpers/toml';
import { workerPids, ownerOf } from '../helpers/cluster';

describe('workers = 2: a worker dying during a request', () => {
  test('a worker that already answered dies: the drain still waits for the other worker\'s connection', async () => {
    const echo = await startEchoServer();
    const lb = new L4lbProcess(`[global]\nworkers = 2\ndrain_timeout = "20s"\n` + listenerToml('e', 'p') + poolToml('p', 'round-robin', [`{ address = "127.0.0.1:${echo.port}" }`]));
    const conns: net.Socket[] = [];
    try {
      const port = await lb.port('e');
      await waitFor(() => workerPids(lb.child.pid!).length === 2, 10000, 'two workers');
      const pids = workerPids(lb.child.pid!);
      // One connection held by one worker; the other worker holds none.
      const c = await connect(port);
      conns.push(c);
      c.write('a');
      await readBytes(c, 1);
      let holder: number | undefined;
      await waitFor(() => (holder = ownerOf(c, port, pids)) !== undefined, 5000, 'the worker holding the connection');
      const idle = pids.find((p) => p !== holder)!;

      lb.signal('SIGTERM');
      await lb.waitForLog((l) => l.msg === 'draining', 5000, 'draining');
      // The idle worker answers the primary's "idle?" at once; the holder
      // cannot. This is not observable from outside: give the answer time.
      await new Promise((r) => setTimeout(r, 500));
      process.kill(idle, 'SIGKILL');
      await lb.waitForLog((l) => l.msg === 'worker exited', 5000, 'worker exited');

      // The drain must go on waiting for the holder's connection: l4lb does
      // not stop within a second (it would in a few ms if it counted the
      // dead worker's earlier answer twice), and the connection still works.
      const exited = await lb.waitExit(1000).then(
        () => true,
        () => false,
      );
      assert.equal(exited, false, `l4lb stopped while a connection was open: ${JSON.stringify(lb.logs.slice(-3))}`);
      c.write('b');
      assert.equal((await readBytes(c, 1, 3000)).toString(), 'b', 'the open connection still echoes');
      assert.equal(lb.exitCode, null, 'l4lb is still draining');
      c.end();
      assert.equal(await lb.waitExit(10000), 0);
      assert.ok(!lb.logs.some((l) => l.msg === 'drain timeout: closing open connections'), 'drained without a timeout');
    } finally {
      for (const c of conns) c.destroy();
      await lb.stop();
      await echo.close();
    }
  });
});
