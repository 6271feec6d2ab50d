/**
 * Request guards of the admin endpoint against browsers (SPEC §8.6).
 *
 * A web page the operator has open can reach a loopback admin endpoint:
 *  - by DNS rebinding (a name of the attacker's that resolves to 127.0.0.1):
 *    the request then carries that name in `Host`. Only IP literals,
 *    `localhost` and the configured bind host are served (421 otherwise).
 *  - by a cross-origin "simple" request (a form POST, or fetch with
 *    `text/plain`), which a browser sends without asking first. Such a POST
 *    is refused (403) with or without a token: an `Origin` other than the
 *    endpoint's own, `Sec-Fetch-Site: cross-site`, or a form / `text/plain`
 *    body. Tools (curl, scripts, `l4lb --reload`) send none of these.
 * Pure functions over the request headers; no I/O.
 */
import { ipVersion } from '../net/ip';
import type { IncomingHttpHeaders } from 'node:http';

/** The host part of a `Host` header value (`[v6]:port`, `v4:port`, `name:port`, or without a port), lower-cased. */
export function hostOf(hostHeader: string): string {
  const h = hostHeader.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    return end > 0 ? h.slice(1, end) : h;
  }
  const colon = h.indexOf(':');
  // More than one colon without brackets: a bare IPv6 literal.
  if (colon >= 0 && h.indexOf(':', colon + 1) < 0) return h.slice(0, colon);
  return h;
}

/**
 * True when a request with this `Host` may be served: no Host at all
 * (HTTP/1.0 tools), an IP literal, `localhost`, or the configured bind host.
 */
export function hostAllowed(hostHeader: string | undefined, bindHost: string): boolean {
  if (hostHeader === undefined || hostHeader === '') return true;
  const h = hostOf(hostHeader);
  return ipVersion(h) !== 0 || h === 'localhost' || h === bindHost.toLowerCase();
}

const FORM_TYPES = ['application/x-www-form-urlencoded', 'multipart/form-data', 'text/plain'];

/**
 * Why a POST must be refused as one a page of another origin could have
 * sent, or null when it may go on. `host` is the request's own Host header
 * (already checked by hostAllowed), from which the endpoint's own origin
 * follows.
 */
export function crossSiteReason(headers: IncomingHttpHeaders): string | null {
  const origin = headers.origin;
  if (origin !== undefined) {
    const own = headers.host !== undefined ? `http://${headers.host.trim().toLowerCase()}` : null;
    if (origin.trim().toLowerCase() !== own) return `cross-origin request (Origin ${origin})`;
  }
  const site = headers['sec-fetch-site'];
  if (typeof site === 'string' && site.toLowerCase() === 'cross-site') return 'cross-site request (Sec-Fetch-Site)';
  const type = (headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  const hasBody = (headers['content-length'] !== undefined && headers['content-length'] !== '0') || headers['transfer-encoding'] !== undefined;
  if (hasBody && FORM_TYPES.includes(type)) return `a ${type} body is what a cross-site form sends; use application/json or no body`;
  return null;
}
