/** Helpers for tests of workers > 1: which processes are the workers, which one holds a connection. */
import type net from 'node:net';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';

/**
 * The pids whose parent is `pid`, from every process's /proc/<pid>/stat.
 * (/proc/<pid>/task/<tid>/children can skip a child while the list changes:
 * the kernel documents it as reliable only when the children are stopped.)
 */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    // pid (comm) state ppid ...: comm may hold spaces and parentheses.
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (ppid === pid) out.push(Number(name));
  }
  return out;
}

/** Worker pids: the children of the l4lb process. */
export function workerPids(pid: number): number[] {
  return childPids(pid);
}

/** The worker holding l4lb's side of client connection `c` (by socket inode in /proc). */
export function ownerOf(c: net.Socket, lbPort: number, pids: readonly number[]): number | undefined {
  const hex = (n: number): string => n.toString(16).toUpperCase().padStart(4, '0');
  const local = `0100007F:${hex(lbPort)}`;
  const remote = `0100007F:${hex(c.localPort ?? 0)}`;
  let inode: string | undefined;
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1] === local && f[2] === remote) inode = f[9];
  }
  if (inode === undefined) return undefined;
  for (const pid of pids) {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      let target = '';
      try {
        target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      if (target === `socket:[${inode}]`) return pid;
    }
  }
  return undefined;
}
