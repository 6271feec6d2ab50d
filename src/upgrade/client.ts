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
import { adminUrl, type ReloadOutcome } from '../admin/reload-client';

export async function requestUpgrade(admin: AdminConfig | null, file: string, timeoutMs = 120_000): Promise<ReloadOutcome> {
  if (admin === null) return { code: EXIT.FAILURE, stdout: '', stderr: `l4lb: ${file} has no [admin] section: cannot reach the running instance\n` };
  if (admin.bind.port === 0) return { code: EXIT.FAILURE, stdout: '', stderr: `l4lb: ${file}: admin.bind has port 0: cannot reach the running instance\n` };
  const url = `${adminUrl(admin)}/api/v1/upgrade`;
  let r: Response;
  try {
    r = await fetch(url, {
      method: 'POST',
      headers: admin.token !== null ? { authorization: `Bearer ${admin.token}` } : {},
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name;
    return { code: EXIT.FAILURE, stdout: '', stderr: `l4lb: no l4lb answers at ${url} (${cause})\n` };
  }
  const text = await r.text().catch(() => '');
  let body: { pid?: number; listeners?: number; connections?: number; sessions?: number; error?: string } = {};
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    /* not JSON: reported below */
  }
  if (r.status === 200) {
    return { code: EXIT.OK, stdout: `upgraded: new process ${body.pid ?? '?'} took ${body.listeners ?? 0} listener(s), ${body.connections ?? 0} connection(s), ${body.sessions ?? 0} UDP session(s)\n`, stderr: '' };
  }
  return { code: EXIT.FAILURE, stdout: '', stderr: `l4lb: ${url} answered ${r.status}: ${body.error ?? text}\n` };
}
