/**
 * The route table of a listener with `route_by = "sni"` (SPEC §8.2): exact
 * server names and one-leftmost-label wildcards ("*.example.com"), compared
 * without regard to case; an exact route wins over a wildcard. Lookups are
 * two Map reads at most.
 */
import { ipVersion } from '../net/ip';

export interface SniRoute<T> {
  /** As configured ("api.example.com" or "*.example.com"); any case. */
  readonly sni: string;
  readonly target: T;
}

const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;

/**
 * Contract: why `pattern` cannot be a route's `sni` (a message for the
 * configuration error), or null when it is a valid exact name or
 * one-leftmost-label wildcard.
 */
export function sniPatternError(pattern: string): string | null {
  const p = pattern.toLowerCase();
  const name = p.startsWith('*.') ? p.slice(2) : p;
  if (name === '') return 'expected a server name such as "api.example.com" or "*.example.com"';
  if (name.includes('*')) return 'a wildcard may only be the whole leftmost label, as in "*.example.com"';
  if (name.endsWith('.')) return 'expected a server name without a trailing dot';
  if (name.length > 253) return 'a server name is at most 253 characters';
  if (ipVersion(name) !== 0 || name.startsWith('[')) return 'an IP address is never sent as a server name (RFC 6066); use a DNS name';
  for (const label of name.split('.')) {
    if (!LABEL.test(label)) return `"${label}" is not a DNS label (letters, digits, "-" and "_", 1 to 63 characters, no leading or trailing "-")`;
  }
  return null;
}

/** Contract: the canonical (lower-case) form of a valid pattern, for duplicate detection and lookups. */
export function canonicalSni(pattern: string): string {
  return pattern.toLowerCase();
}

export class SniRouter<T> {
  private readonly exact = new Map<string, T>();
  /** Keyed by what follows "*." in the pattern. */
  private readonly wildcard = new Map<string, T>();
  readonly size: number;

  /** Routes must be valid patterns (validated configuration); a repeated pattern keeps the first. */
  constructor(routes: readonly SniRoute<T>[]) {
    for (const r of routes) {
      const p = canonicalSni(r.sni);
      if (p.startsWith('*.')) {
        const k = p.slice(2);
        if (!this.wildcard.has(k)) this.wildcard.set(k, r.target);
      } else if (!this.exact.has(p)) {
        this.exact.set(p, r.target);
      }
    }
    this.size = this.exact.size + this.wildcard.size;
  }

  /**
   * Contract: the target for the server name a client sent (already
   * lower-case, as the ClientHello reader returns it; one trailing dot is
   * ignored), or undefined when no route matches or there is no name.
   */
  match(name: string | null): T | undefined {
    if (name === null || name === '') return undefined;
    let n = name;
    if (n.charCodeAt(n.length - 1) === 0x2e) n = n.slice(0, -1);
    const e = this.exact.get(n);
    if (e !== undefined) return e;
    const dot = n.indexOf('.');
    if (dot <= 0) return undefined;
    return this.wildcard.get(n.slice(dot + 1));
  }

  /** Contract: a router with the same patterns, every target passed through `f`. */
  map<U>(f: (t: T) => U): SniRouter<U> {
    const out: SniRoute<U>[] = [];
    for (const [k, v] of this.exact) out.push({ sni: k, target: f(v) });
    for (const [k, v] of this.wildcard) out.push({ sni: `*.${k}`, target: f(v) });
    return new SniRouter(out);
  }
}
