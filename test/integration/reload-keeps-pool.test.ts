/**
 * Reload as a plan (issue "Architecture seams"): a pool the reload does not
 * change keeps its Pool object — its picker and round-robin position — while
 * a changed pool is rebuilt.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTaggedServer, connect, readLine, type TestServer } from '../helpers/net';
import { L4lbProcess } from '../helpers/l4lb';
import { listenerToml, poolToml } from '../helpers/toml';

describe('reload keeps unchanged pools', () => {
  const servers: TestServer[] = [];
  let lb: L4lbProcess;
  let port: number;
  let port2: number;

  async function tag(p: number): Promise<string> {
    const s = await connect(p);
    try {
      return await readLine(s);
    } finally {
      s.destroy();
    }
  }

  const config = (extra: string): string =>
    listenerToml('rr', 'rr') +
    listenerToml('other', 'other') +
    poolToml('rr', 'round-robin', servers.slice(0, 3).map((s) => `{ address = "127.0.0.1:${s.port}" }`)) +
    poolToml('other', 'round-robin', [`{ address = "127.0.0.1:${(servers[3] as TestServer).port}"${extra} }`]);

  before(async () => {
    for (const t of ['A', 'B', 'C', 'D']) servers.push(await startTaggedServer(t));
    lb = new L4lbProcess(config(''));
    port = await lb.port('rr');
    port2 = await lb.port('other');
  });
  after(async () => {
    await lb.stop();
    for (const s of servers) await s.close();
  });

  test('the round-robin position of an unchanged pool survives SIGHUP (another pool changed meanwhile)', async () => {
    assert.equal(await tag(port), 'A');
    assert.equal(await tag(port), 'B');
    lb.writeConfig(config(', weight = 3')); // only the other pool changes
    lb.signal('SIGHUP');
    await lb.waitForLog((l) => l.msg === 'config reloaded', 5000, 'reload');
    // A rebuilt picker would start again at A.
    assert.equal(await tag(port), 'C');
    assert.equal(await tag(port), 'A');
    assert.equal(await tag(port2), 'D');
  });
});
