/**
 * Balancing algorithms end to end: real backends on 127.0.0.1, the real CLI as
 * a child process, real clients.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type net from 'node:net';
import { startTaggedServer, connect, readLine, waitFor, type TestServer } from '../helpers/net';
import { L4lbProcess } from '../helpers/l4lb';
import { poolToml, listenerToml } from '../helpers/toml';

describe('tcp balancing algorithms', () => {
  const servers: TestServer[] = [];
  let lb: L4lbProcess;

  before(async () => {
    for (const t of ['A', 'B', 'C']) servers.push(await startTaggedServer(t));
    const [a, b, c] = servers.map((s) => s.port);
    lb = new L4lbProcess(
      listenerToml('rr', 'rr') +
        poolToml('rr', 'round-robin', [`{ address = "127.0.0.1:${a}", weight = 2 }`, `{ address = "127.0.0.1:${b}" }`]) +
        listenerToml('rnd', 'rnd') +
        poolToml('rnd', 'random', [`{ address = "127.0.0.1:${a}" }`, `{ address = "127.0.0.1:${b}", weight = 3 }`]) +
        listenerToml('lc', 'lc') +
        poolToml('lc', 'least-connections', [`{ address = "127.0.0.1:${a}" }`, `{ address = "127.0.0.1:${b}" }`]) +
        listenerToml('cap', 'cap') +
        poolToml('cap', 'round-robin', [`{ address = "127.0.0.1:${a}", max_connections = 1 }`, `{ address = "127.0.0.1:${b}" }`]) +
        listenerToml('backup', 'backup') +
        poolToml('backup', 'round-robin', [`{ address = "127.0.0.1:${a}" }`, `{ address = "127.0.0.1:${c}", backup = true }`]),
    );
  });
  after(async () => {
    await lb.stop();
    for (const s of servers) await s.close();
  });

  async function tagOf(port: number, keep?: net.Socket[]): Promise<string> {
    const s = await connect(port);
    const tag = await readLine(s);
    if (keep) keep.push(s);
    else s.destroy();
    return tag;
  }

  test('round-robin follows the weights exactly (2:1)', async () => {
    const port = await lb.port('rr');
    const counts: Record<string, number> = {};
    for (let i = 0; i < 30; i++) {
      const t = await tagOf(port);
      counts[t] = (counts[t] ?? 0) + 1;
    }
    assert.deepEqual(counts, { A: 20, B: 10 });
  });

  test('random spreads by weight (1:3)', async () => {
    const port = await lb.port('rnd');
    const counts: Record<string, number> = { A: 0, B: 0 };
    for (let i = 0; i < 200; i++) {
      const t = await tagOf(port);
      counts[t] = (counts[t] ?? 0) + 1;
    }
    assert.ok(counts.A! > 20 && counts.A! < 90, `A got ${counts.A} of 200`);
    assert.equal(counts.A! + counts.B!, 200);
  });

  test('least-connections sends new connections to the less busy backend', async () => {
    const port = await lb.port('lc');
    const held: net.Socket[] = [];
    const first = await tagOf(port, held);
    const second = await tagOf(port, held);
    assert.notEqual(first, second, 'with one connection each side, the second goes elsewhere');
    const more: string[] = [];
    held[0]!.destroy(); // now `first` has fewer
    await waitFor(async () => {
      const t = await tagOf(port, held);
      more.push(t);
      return t === first;
    }, 5000, 'least loaded backend chosen');
    for (const h of held) h.destroy();
  });

  test('a backend at max_connections is skipped', async () => {
    const port = await lb.port('cap');
    const held: net.Socket[] = [];
    const tags: string[] = [];
    for (let i = 0; i < 4; i++) tags.push(await tagOf(port, held));
    assert.equal(tags.filter((t) => t === 'A').length, 1, `A has max_connections = 1: ${tags.join(',')}`);
    for (const h of held) h.destroy();
  });

  test('a backup takes no traffic while a primary is up', async () => {
    const port = await lb.port('backup');
    for (let i = 0; i < 5; i++) assert.equal(await tagOf(port), 'A');
  });
});

