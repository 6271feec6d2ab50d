/**
 * `l4lb --config <file> --upgrade`: asks the running instance, through the
 * file's `[admin]` endpoint, to upgrade (POST /api/v1/upgrade), and waits
 * for the outcome.
 *
 *   0  handed over (prints the new process's pid and what it took)
 *   1  the upgrade failed (the running instance keeps serving; reason
 *      printed), or no instance answers
 */
import type { AdminConfig } from '../config/schema';
import { EXIT } from '../errors';
import { postAdmin, type ReloadOutcome } from '../admin/reload-client';

export async function requestUpgrade(admin: AdminConfig | null, file: string, timeoutMs = 120_000): Promise<ReloadOutcome> {
  const res = await postAdmin<{ pid: number; listeners: number; connections: number; sessions: number; error: string }>(admin, file, '/api/v1/upgrade', timeoutMs);
  if ('code' in res) return res;
  const { url, status, text, body } = res;
  if (status === 200) {
    return { code: EXIT.OK, stdout: `upgraded: new process ${body.pid ?? '?'} took ${body.listeners ?? 0} listener(s), ${body.connections ?? 0} connection(s), ${body.sessions ?? 0} UDP session(s)\n`, stderr: '' };
  }
  return { code: EXIT.FAILURE, stdout: '', stderr: `l4lb: ${url} answered ${status}: ${body.error ?? text}\n` };
}
