/**
 * The operator console (`GET /`): one self-contained HTML document, no
 * external assets and no build step. The server renders the current status
 * as plain tables (every value escaped: a backend name is data, not HTML);
 * the page's script then polls `/api/v1/status` every 1.5 s and redraws
 * with DOM text nodes only (never innerHTML with data), and offers drain /
 * enable / weight controls. When a POST answers 401 the page asks for the
 * admin token and keeps it in the tab's sessionStorage.
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

/** How often the page polls the status API. */
export const CONSOLE_REFRESH_MS = 1500;

export function renderStatusPage(status: Record<string, unknown>): string {
  const listeners = (status.listeners ?? []) as StatusListener[];
  const pools = (status.pools ?? []) as StatusPool[];
  const rows = (cells: unknown[]): string => `<tr>${cells.map((c) => `<td>${esc(c)}</td>`).join('')}</tr>`;
  const stateCell = (s: string): string => `<td class="state ${esc(s)}">${esc(s)}</td>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>l4lb console</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{display:flex;gap:1.2em;align-items:center;flex-wrap:wrap;padding:.7em 1.5em;background:#1d2330;color:#fff}
header h1{font-size:1.1em;margin:0}header small{color:#c9ced8}
#live{padding:.1em .5em;border-radius:3px;background:#2e7d32}#live.stale{background:#b71c1c}
main{padding:.5em 1.5em 2em}
h2{font-size:1.05em;margin:1.4em 0 .4em}h2 small{font-weight:normal;color:#666}
table{border-collapse:collapse;background:#fff;min-width:60%}
td,th{border:1px solid #d6d9df;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#eceef2;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
.state{font-weight:600}.up{color:#1b5e20}.down{color:#b71c1c}.draining{color:#a15c00}.removed{color:#666;font-style:italic}
.sub{color:#666;font-size:.9em}
button{font:inherit;padding:.1em .6em;margin-right:.3em;cursor:pointer}
input[type=number]{width:4.5em;font:inherit}
#tokenbox{background:#fff3cd;border:1px solid #e0c36a;padding:.6em 1em;margin:.8em 0}
#msg{color:#b71c1c;margin:.5em 0;min-height:1.2em}
</style></head><body>
<header><h1>l4lb <span id="version">${esc(status.version)}</span></h1>
<small>up <span id="uptime">${esc(status.uptime_seconds)} s</span> · configuration generation <span id="generation">${esc(status.config_generation)}</span>${status.draining ? ' · <b>draining</b>' : ''}</small>
<span id="live" class="stale" title="refreshed from /api/v1/status every ${CONSOLE_REFRESH_MS / 1000} s">not live yet</span></header>
<main>
<form id="tokenbox" hidden><label>This l4lb needs its admin token for changes: <input id="token" type="password" autocomplete="off"></label> <button type="submit">Use token</button></form>
<div id="msg" role="status"></div>
<div id="app">
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
</div>
</main>
<script>
${CONSOLE_SCRIPT}
</script>
</body></html>
`;
}

/**
 * The console's script (plain ES2017, runs as is in any current browser).
 * Everything from the status API is put into the page as text nodes.
 */
const CONSOLE_SCRIPT = String.raw`(function () {
  'use strict';
  var REFRESH_MS = ${CONSOLE_REFRESH_MS};
  var token = sessionStorage.getItem('l4lb-token') || '';
  var pending = null; // the action waiting for a token
  var seen = {}; // pool|address -> { state, since } when the API has no state_since
  var app = document.getElementById('app');
  var msg = document.getElementById('msg');
  var live = document.getElementById('live');
  var tokenbox = document.getElementById('tokenbox');

  function el(tag, attrs) {
    var e = document.createElement(tag);
    if (attrs) for (var k in attrs) if (attrs[k] !== undefined && attrs[k] !== null) e.setAttribute(k, String(attrs[k]));
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined) continue;
      e.appendChild(typeof c === 'object' ? c : document.createTextNode(String(c)));
    }
    return e;
  }
  function bytes(n) {
    var u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    var i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n : n.toFixed(1)) + ' ' + u[i];
  }
  function ago(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm ' + (s % 60) + 's';
    if (s < 86400) return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm';
    return Math.floor(s / 86400) + 'd ' + Math.floor((s % 86400) / 3600) + 'h';
  }
  function num(v) { return el('td', { 'class': 'num' }, v === undefined || v === null ? '' : v); }

  function timeInState(pool, b, now) {
    if (b.state_since) return ago(now - Date.parse(b.state_since));
    var key = pool + '|' + b.address;
    var s = seen[key];
    if (!s || s.state !== b.state) { seen[key] = { state: b.state, since: s ? now : null }; s = seen[key]; }
    return s.since === null ? 'since load' : ago(now - s.since);
  }
  function lastCheck(c, now) {
    if (!c) return '';
    var t = c.result + (c.reason ? ' (' + c.reason + ')' : '');
    if (typeof c.latency_ms === 'number') t += ', ' + c.latency_ms + ' ms';
    if (c.at) t += ', ' + ago(now - Date.parse(c.at)) + ' ago';
    return t;
  }
  function rejections(r) {
    if (!r) return '';
    var parts = [];
    for (var k in r) if (r[k] > 0) parts.push(k + ' ' + r[k]);
    return parts.length ? parts.join(' · ') : 'none';
  }

  function render(s) {
    var now = Date.now();
    document.getElementById('version').textContent = s.version;
    document.getElementById('uptime').textContent = ago(s.uptime_seconds * 1000);
    document.getElementById('generation').textContent = s.config_generation;
    var frag = document.createDocumentFragment();
    frag.appendChild(el('h2', null, 'Listeners'));
    var lt = el('table', { id: 'listeners' }, el('tr', null, el('th', null, 'name'), el('th', null, 'protocol'), el('th', null, 'bound'), el('th', null, 'pool'),
      el('th', null, 'active'), el('th', null, 'total'), el('th', null, 'in'), el('th', null, 'out'), el('th', null, 'rejected')));
    (s.listeners || []).forEach(function (l) {
      lt.appendChild(el('tr', { 'data-listener': l.name },
        el('td', null, l.name), el('td', null, l.protocol), el('td', null, l.address + ':' + l.port, el('div', { 'class': 'sub' }, l.bind)), el('td', null, l.pool),
        num(l.active_connections), num(l.total_connections), num(l.bytes_in === undefined ? '' : bytes(l.bytes_in)), num(l.bytes_out === undefined ? '' : bytes(l.bytes_out)),
        el('td', { 'class': 'rejected' }, rejections(l.rejected))));
    });
    frag.appendChild(lt);
    (s.pools || []).forEach(function (p) {
      frag.appendChild(el('h2', null, 'Pool ' + p.name + ' ', el('small', null, p.algorithm)));
      var t = el('table', { 'data-pool': p.name }, el('tr', null, el('th', null, 'backend'), el('th', null, 'state'), el('th', null, 'in state'), el('th', null, 'last check'),
        el('th', null, 'weight'), el('th', null, 'active'), el('th', null, 'total'), el('th', null, 'in'), el('th', null, 'out'), el('th', null, 'connect failures'), el('th', null, 'control')));
      p.backends.forEach(function (b) {
        var key = p.name + '|' + b.address;
        var path = '/api/v1/pools/' + encodeURIComponent(p.name) + '/backends/' + encodeURIComponent(b.address) + '/';
        var controls = el('td', { 'class': 'controls' });
        if (b.state !== 'removed') {
          var drain = el('button', { type: 'button', 'data-action': b.state === 'draining' ? 'enable' : 'drain' }, b.state === 'draining' ? 'Enable' : 'Drain');
          drain.onclick = function () { act(path + (b.state === 'draining' ? 'enable' : 'drain'), null, (b.state === 'draining' ? 'enable ' : 'drain ') + b.address); };
          var w = el('input', { type: 'number', min: 0, max: 1000, step: 1, value: b.weight, 'data-weight': key, 'aria-label': 'weight of ' + b.address });
          var set = el('button', { type: 'button', 'data-action': 'weight' }, 'Set weight');
          set.onclick = function () { act(path + 'weight', { weight: Number(w.value) }, 'weight ' + b.address); };
          controls.appendChild(drain); controls.appendChild(w); controls.appendChild(set);
        }
        t.appendChild(el('tr', { 'data-backend': key },
          el('td', null, b.address, b.name ? el('div', { 'class': 'sub' }, b.name) : null, b.backup ? el('div', { 'class': 'sub' }, 'backup') : null),
          el('td', { 'class': 'state ' + b.state }, b.state), el('td', null, timeInState(p.name, b, now)), el('td', null, lastCheck(b.check, now)),
          num(b.weight), num(b.active_connections), num(b.total_connections),
          num(b.bytes_in === undefined ? '' : bytes(b.bytes_in)), num(b.bytes_out === undefined ? '' : bytes(b.bytes_out)), num(b.connect_failures), controls));
      });
      frag.appendChild(t);
    });
    // Same listeners, backends and states as on screen: update the cells in
    // place, so a button being clicked or a weight being typed stays put.
    var shape = (s.listeners || []).map(function (l) { return l.name; }).join(',') + ';' +
      (s.pools || []).map(function (p) { return p.name + ':' + p.backends.map(function (b) { return b.address + '=' + b.state; }).join(','); }).join(';');
    if (shape === lastShape && patch(frag)) return;
    lastShape = shape;
    while (app.firstChild) app.removeChild(app.firstChild);
    app.appendChild(frag);
  }
  var lastShape = null;

  /** Copies the new rows' cells into the rows on screen (not the controls, except an unfocused weight's value). */
  function patch(frag) {
    var fresh = frag.querySelectorAll('tr[data-backend], tr[data-listener]');
    var old = app.querySelectorAll('tr[data-backend], tr[data-listener]');
    if (fresh.length !== old.length) return false;
    for (var i = 0; i < fresh.length; i++) {
      var n = fresh[i].children, o = old[i].children;
      if (n.length !== o.length) return false;
      for (var j = 0; j < n.length; j++) {
        if (n[j].className === 'controls') {
          var w = o[j].querySelector('input[data-weight]'), nw = n[j].querySelector('input[data-weight]');
          if (w && nw && document.activeElement !== w && w.getAttribute('value') !== nw.getAttribute('value')) { w.value = nw.value; w.setAttribute('value', nw.value); }
          continue;
        }
        if (o[j].textContent !== n[j].textContent || o[j].className !== n[j].className) o[j].replaceWith(n[j].cloneNode(true));
      }
    }
    return true;
  }

  function refresh() {
    fetch('/api/v1/status', { cache: 'no-store' }).then(function (r) {
      if (!r.ok) throw new Error('status ' + r.status);
      return r.json();
    }).then(function (s) {
      render(s);
      live.textContent = 'live · ' + new Date().toLocaleTimeString();
      live.className = '';
    }).catch(function (e) {
      live.textContent = 'no answer (' + e.message + ')';
      live.className = 'stale';
    });
  }

  function act(path, body, what) {
    var headers = {};
    if (token) headers['Authorization'] = 'Bearer ' + token;
    if (body) headers['Content-Type'] = 'application/json';
    msg.textContent = '';
    fetch(path, { method: 'POST', headers: headers, body: body ? JSON.stringify(body) : undefined }).then(function (r) {
      if (r.status === 401) {
        pending = function () { act(path, body, what); };
        tokenbox.hidden = false;
        document.getElementById('token').focus();
        msg.textContent = token ? 'The token was refused.' : 'A token is needed to ' + what + '.';
        return;
      }
      return r.json().then(function (j) {
        if (!r.ok) msg.textContent = what + ': ' + (j && j.error ? j.error : 'HTTP ' + r.status);
        refresh();
      });
    }).catch(function (e) { msg.textContent = what + ': ' + e.message; });
  }

  tokenbox.onsubmit = function (ev) {
    ev.preventDefault();
    token = document.getElementById('token').value;
    sessionStorage.setItem('l4lb-token', token);
    tokenbox.hidden = true;
    msg.textContent = '';
    var p = pending;
    pending = null;
    if (p) p();
  };

  refresh();
  setInterval(refresh, REFRESH_MS);
})();`;
