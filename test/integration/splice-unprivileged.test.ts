/**
 * The splice pump run by an unprivileged user: such users get only
 * `pipe-user-pages-soft` (64 MiB by default) of pipe buffers in all, so
 * enlarging pipes fails once many connections are open. l4lb must keep the
 * default pipe size then and carry every byte.
 */
import { describe, test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { startEchoServer, connect, readAll, mulberry32, randomBytesSeeded, type TestServer } from '../helpers/net';
import { L4lbProcess } from '../helpers/l4lb';
import { spliceAvailable } from '../../src/native/addon';

const NOBODY = 65534;
const splice = spliceAvailable();
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const skip = !splice.ok ? `native splice addon not available: ${splice.reason}` : !isRoot ? 'needs root to start l4lb as an unprivileged user' : false;

describe('splice pump as an unprivileged user', { skip }, () => {
  let echo: TestServer;
  let lb: L4lbProcess;
  before(async () => {
    echo = await startEchoServer();
    lb = new L4lbProcess(
      `[global]\nsplice = "on"\nconnection_log = true\n[[listeners]]\nname = "u"\nbind = "127.0.0.1:0"\npool = "p"\n` +
        `[pools.p]\nbackends = [{ address = "127.0.0.1:${echo.port}" }]\n[pools.p.health_check]\nenabled = false\n`,
      { uid: NOBODY },
    );
  });
  after(async () => {
    await lb.stop();
    await echo.close();
  });

  test('300 concurrent connections (more pipe buffer than the user may have at full size) all arrive intact', async () => {
    const port = await lb.port('u');
    const one = async (i: number): Promise<void> => {
      const payload = randomBytesSeeded(256 * 1024, mulberry32(7 + i));
      const c = await connect(port);
      const got = readAll(c, 60000);
      c.end(payload);
      const back = await got;
      assert.equal(createHash('sha256').update(back).digest('hex'), createHash('sha256').update(payload).digest('hex'), `connection ${i}`);
      c.destroy();
    };
    // Hold all 300 open at once: each sends, and the echo cannot finish before all are connected.
    await Promise.all(Array.from({ length: 300 }, (_, i) => one(i)));
    const line = await lb.waitForLog((l) => l.msg === 'connection closed', 5000);
    assert.equal(line.pump, 'splice');
  });
});
