/**
 * `l4lb --config <file> --reload`: asks the running instance, through the
 * file's `[admin]` endpoint, to reload (POST /api/v1/reload), so that
 * `systemctl reload` fails when the new file is invalid.
 *
 *   0  the instance reloaded (prints the new configuration generation)
 *   78 the file is invalid (errors printed: found here, or by the instance)
 *   1  no instance answers (no [admin], connection refused, timeout, token refused)
 */
import type { AdminConfig } from '../config/schema';
import { EXIT } from '../errors';

export interface ReloadOutcome {
  code: number;
  stdout: string;
  stderr: string;
}

/** Where to reach an admin endpoint bound to `bind`: a wildcard bind is reached on loopback. */
export function adminUrl(admin: AdminConfig): string {
  let host = admin.bind.host;
  if (host === '0.0.0.0') host = '127.0.0.1';
  if (host === '::') host = '::1';
  const h = host.includes(':') ? `[${host}]` : host;
  return `http://${h}:${admin.bind.port}`;
}

/**
 * POSTs to `path` on the running instance's admin endpoint and returns the
 * status and the parsed JSON body (`{}` when it is not JSON), or an outcome
 * of exit 1 when no instance can be asked or none answers.
 */
export async function postAdmin<T>(admin: AdminConfig | null, file: string, path: string, timeoutMs: number): Promise<{ url: string; status: number; text: string; body: Partial<T> } | ReloadOutcome> {
  if (admin === null) return { code: EXIT.FAILURE, stdout: '', stderr: `l4lb: ${file} has no [admin] section: cannot reach the running instance\n` };
  if (admin.bind.port === 0) return { code: EXIT.FAILURE, stdout: '', stderr: `l4lb: ${file}: admin.bind has port 0: cannot reach the running instance\n` };
  const url = `${adminUrl(admin)}${path}`;
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
  let body: Partial<T> = {};
  try {
    body = JSON.parse(text) as Partial<T>;
  } catch {
    /* not JSON: the caller reports the text */
  }
  return { url, status: r.status, text, body };
}

export async function requestReload(admin: AdminConfig | null, file: string, timeoutMs = 60_000): Promise<ReloadOutcome> {
  const res = await postAdmin<{ config_generation: number; errors: string[]; error: string }>(admin, file, '/api/v1/reload', timeoutMs);
  if ('code' in res) return res;
  const { url, status, text, body } = res;
  if (status === 200) return { code: EXIT.OK, stdout: `reloaded: configuration generation ${body.config_generation ?? '?'}\n`, stderr: '' };
  if (status === 422) return { code: EXIT.CONFIG, stdout: '', stderr: `${(body.errors ?? [text]).join('\n')}\n` };
  return { code: EXIT.FAILURE, stdout: '', stderr: `l4lb: ${url} answered ${status}: ${body.error ?? text}\n` };
}
