/**
 * The status page for people (`GET /`): one self-contained HTML document
 * built from the status JSON, no external assets, every value escaped.
 */

const ESC: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** HTML-escapes any value's text. */
export function esc(v: unknown): string {
  return String(v ?? '').replace(/[&<>"']/g, (c) => ESC[c] as string);
}

interface StatusListener {
  name: string;
  protocol: string;
  bind: string;
  address: string;
  port: number;
  pool: string;
  active_connections: number;
}
interface StatusBackend {
  address: string;
  name?: string;
  state: string;
  weight: number;
  backup?: boolean;
  active_connections: number;
  total_connections: number;
}
interface StatusPool {
  name: string;
  algorithm: string;
  backends: StatusBackend[];
}

export function renderStatusPage(status: Record<string, unknown>): string {
  const listeners = (status.listeners ?? []) as StatusListener[];
  const pools = (status.pools ?? []) as StatusPool[];
  const rows = (cells: unknown[]): string => `<tr>${cells.map((c) => `<td>${esc(c)}</td>`).join('')}</tr>`;
  const stateCell = (s: string): string => `<td class="${s === 'up' ? 'up' : s === 'down' ? 'down' : 'drain'}">${esc(s)}</td>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="5"><title>l4lb status</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}.up{color:#060}.down{color:#b00;font-weight:bold}.drain{color:#a60}
small{color:#666}
</style></head><body>
<h1>l4lb ${esc(status.version)}</h1>
<p><small>up ${esc(status.uptime_seconds)} s · configuration generation ${esc(status.config_generation)}${status.draining ? ' · <b>draining</b>' : ''}</small></p>
<h2>Listeners</h2>
<table><tr><th>name</th><th>protocol</th><th>bind</th><th>bound</th><th>pool</th><th>active</th></tr>
${listeners.map((l) => rows([l.name, l.protocol, l.bind, `${l.address}:${l.port}`, l.pool, l.active_connections])).join('\n')}
</table>
${pools
  .map(
    (p) => `<h2>Pool ${esc(p.name)} <small>${esc(p.algorithm)}</small></h2>
<table><tr><th>backend</th><th>name</th><th>state</th><th>weight</th><th>backup</th><th>active</th><th>total</th></tr>
${p.backends
  .map(
    (b) =>
      `<tr><td>${esc(b.address)}</td><td>${esc(b.name ?? '')}</td>${stateCell(b.state)}<td>${esc(b.weight)}</td><td>${b.backup ? 'yes' : ''}</td><td>${esc(b.active_connections)}</td><td>${esc(b.total_connections)}</td></tr>`,
  )
  .join('\n')}
</table>`,
  )
  .join('\n')}
</body></html>
`;
}
