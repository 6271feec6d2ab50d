/**
 * Address helpers for the configuration and the control path:
 * "host:port" / "[v6]:port" parsing, IP normalisation, loopback test.
 * Nothing here is on the per-packet path (see cidr.ts for that).
 */
import { ipVersion } from './ip';
import type { HostPort } from './types';

const HOST_LABEL = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;
const PORT_DIGITS = /^[0-9]{1,5}$/;

/** Contract: 4 or 6 when `host` is an IP literal (no brackets), else 0. */
export function ipFamily(host: string): 0 | 4 | 6 {
  const f = ipVersion(host);
  return f === 4 ? 4 : f === 6 ? 6 : 0;
}

/**
 * Contract: true when `host` is a syntactically valid DNS name (labels of
 * letters, digits, '-' and '_', 1..63 chars, not starting or ending with '-',
 * at most 253 chars, optional trailing dot). All-numeric dotted names are
 * rejected because they look like a mistyped IPv4 address.
 */
export function isValidHostname(host: string): boolean {
  const h = host.endsWith('.') ? host.slice(0, -1) : host;
  if (h.length === 0 || h.length > 253) return false;
  if (/^[0-9.]+$/.test(h)) return false;
  return h.split('.').every((label) => HOST_LABEL.test(label));
}

/**
 * Contract: parses "host:port" or "[ipv6]:port" into a HostPort with the port
 * in 0..65535 (callers apply narrower ranges). Returns a short reason string
 * instead when the text is not of that shape, the IPv6 literal is invalid or
 * unbracketed, or the host is neither an IP literal nor a valid name.
 * Never throws.
 */
export function parseHostPort(text: string): HostPort | string {
  let host: string;
  let portText: string;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0 || text[close + 1] !== ':') return 'expected "[ipv6]:port"';
    host = text.slice(1, close);
    portText = text.slice(close + 2);
    if (ipVersion(host) !== 6) return `"${host}" in brackets is not an IPv6 address`;
  } else {
    const colon = text.lastIndexOf(':');
    if (colon < 0) return 'expected "host:port"';
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (host.includes(':')) {
      return ipVersion(host) === 6 ? 'an IPv6 address needs brackets: "[ipv6]:port"' : 'expected "host:port"';
    }
    if (host.length === 0) return 'expected "host:port" (the host is empty)';
    if (ipVersion(host) === 0 && !isValidHostname(host)) return `"${host}" is not a valid IP address or host name`;
  }
  if (!PORT_DIGITS.test(portText)) return `the port "${portText}" is not a number`;
  const port = Number(portText);
  if (port > 65535) return `port ${port} is out of range 0..65535`;
  return { host, port, family: ipFamily(host) };
}

/**
 * Contract: returns the address with an IPv4-mapped IPv6 prefix removed
 * ("::ffff:1.2.3.4" -> "1.2.3.4", any case); any other text is returned as is.
 */
export function normalizeIp(addr: string): string {
  if (addr.length > 7 && addr.charCodeAt(0) === 58 && /^::ffff:/i.test(addr)) {
    const rest = addr.slice(7);
    if (ipVersion(rest) === 4) return rest;
  }
  return addr;
}

/**
 * Contract: true for "localhost", 127.0.0.0/8, ::1 and IPv4-mapped loopback
 * (brackets around an IPv6 literal are tolerated). False for anything else,
 * including names other than "localhost".
 */
export function isLoopback(host: string): boolean {
  let h = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (h.toLowerCase() === 'localhost') return true;
  h = normalizeIp(h);
  const f = ipVersion(h);
  if (f === 4) return h.startsWith('127.');
  if (f === 6) return /^(0{0,4}:){2,7}0{0,3}1$/.test(h) || h === '::1';
  return false;
}

/** Contract: formats host and port back as "host:port" or "[v6]:port". */
export function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
