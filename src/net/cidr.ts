/**
 * CIDR parsing (config time) and the ACL matcher used on the accept hot path.
 * The matcher parses addresses with ./ip into numbers / a reused byte
 * buffer: no regular expressions, no string splitting, no allocation per call.
 */
import { isV4MappedBytes, parseIPv4, parseIPv6Into, parseIpInto } from './ip';
import type { Cidr } from './types';

/**
 * Contract: parses "addr/prefix" (or a bare address, meaning /32 or /128)
 * into a Cidr with host bits cleared. IPv4 prefixes 0..32, IPv6 0..128.
 * Returns a reason string when invalid. Never throws.
 */
export function parseCidr(text: string): Cidr | string {
  const slash = text.indexOf('/');
  const addr = slash < 0 ? text : text.slice(0, slash);
  const family: 4 | 6 = addr.includes(':') ? 6 : 4;
  const bytes = new Uint8Array(family === 4 ? 4 : 16);
  if (addr.includes('%') || !parseIpInto(addr, bytes)) return `"${addr}" is not an IPv4 or IPv6 address`;
  const max = family === 4 ? 32 : 128;
  let prefix = max;
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    if (!/^[0-9]{1,3}$/.test(p)) return `expected a prefix length after "/", got "${p}"`;
    prefix = Number(p);
    if (prefix > max) return `prefix /${prefix} is out of range 0..${max} for IPv${family}`;
  }
  for (let b = 0; b < bytes.length; b++) {
    const keep = Math.max(0, Math.min(8, prefix - b * 8));
    bytes[b] = (bytes[b] ?? 0) & ((0xff00 >>> keep) & 0xff);
  }
  return { text, family, bytes, prefix };
}

/** Compiled rules of one family for fast matching. */
interface RuleSet {
  v4net: Uint32Array;
  v4mask: Uint32Array;
  v6: { bytes: Uint8Array; prefix: number }[];
}

function compileRules(cidrs: readonly Cidr[]): RuleSet {
  const v4 = cidrs.filter((c) => c.family === 4);
  const set: RuleSet = { v4net: new Uint32Array(v4.length), v4mask: new Uint32Array(v4.length), v6: [] };
  v4.forEach((c, k) => {
    const b = c.bytes;
    set.v4net[k] = (((b[0] ?? 0) << 24) | ((b[1] ?? 0) << 16) | ((b[2] ?? 0) << 8) | (b[3] ?? 0)) >>> 0;
    set.v4mask[k] = c.prefix === 0 ? 0 : (0xffffffff << (32 - c.prefix)) >>> 0;
  });
  for (const c of cidrs) if (c.family === 6) set.v6.push({ bytes: c.bytes, prefix: c.prefix });
  return set;
}

const scratch = new Uint8Array(16);

function matchV4(set: RuleSet, v: number): boolean {
  const nets = set.v4net;
  const masks = set.v4mask;
  for (let k = 0; k < nets.length; k++) {
    if (((v & (masks[k] ?? 0)) >>> 0) === nets[k]) return true;
  }
  return false;
}

function matchV6(set: RuleSet, addr: Uint8Array): boolean {
  for (let k = 0; k < set.v6.length; k++) {
    const rule = set.v6[k];
    if (rule === undefined) continue;
    const full = rule.prefix >>> 3;
    let ok = true;
    for (let b = 0; b < full; b++) if (addr[b] !== rule.bytes[b]) { ok = false; break; }
    if (!ok) continue;
    const rem = rule.prefix & 7;
    if (rem !== 0) {
      const mask = (0xff00 >>> rem) & 0xff;
      if (((addr[full] ?? 0) & mask) !== rule.bytes[full]) continue;
    }
    return true;
  }
  return false;
}

/** Writes the IPv4-mapped form of v into scratch. */
function mapV4(v: number): void {
  scratch.fill(0, 0, 10);
  scratch[10] = 0xff;
  scratch[11] = 0xff;
  scratch[12] = v >>> 24;
  scratch[13] = (v >>> 16) & 0xff;
  scratch[14] = (v >>> 8) & 0xff;
  scratch[15] = v & 0xff;
}

/**
 * Contract: returns a predicate over `socket.remoteAddress` strings that is
 * true when the address is allowed: not matched by `deny`, and matched by
 * `allow` unless `allow` is null (absent = everyone). IPv4-mapped IPv6
 * addresses match IPv4 CIDRs (and IPv4 addresses match "::ffff:a.b.c.d/n"
 * blocks). Garbage or undefined input matches no CIDR. Never throws.
 */
export function compileAcl(allow: readonly Cidr[] | null, deny: readonly Cidr[]): (remoteAddress: string | undefined) => boolean {
  const allowSet = allow === null ? null : compileRules(allow);
  const denySet = compileRules(deny);
  const denyEmpty = deny.length === 0;
  if (allowSet === null && denyEmpty) return () => true;

  // Classifies the address into the shared scratch buffer; returns the IPv4
  // value (>= 0), -2 for IPv6 (in scratch), or -1 for garbage.
  const classify = (a: string | undefined): number => {
    if (typeof a !== 'string' || a.length === 0) return -1;
    let colon = false;
    for (let i = 0; i < a.length; i++) if (a.charCodeAt(i) === 58) { colon = true; break; }
    if (!colon) return parseIPv4(a);
    if (!parseIPv6Into(a, scratch)) return -1;
    if (!isV4MappedBytes(scratch)) return -2;
    return (((scratch[12] ?? 0) << 24) | ((scratch[13] ?? 0) << 16) | ((scratch[14] ?? 0) << 8) | (scratch[15] ?? 0)) >>> 0;
  };
  const matches = (set: RuleSet, kind: number): boolean => {
    if (kind >= 0) {
      if (set.v4net.length > 0 && matchV4(set, kind)) return true;
      if (set.v6.length === 0) return false;
      mapV4(kind);
      return matchV6(set, scratch);
    }
    if (kind === -2) return set.v6.length > 0 && matchV6(set, scratch);
    return false;
  };
  return (remoteAddress) => {
    const kind = classify(remoteAddress);
    if (!denyEmpty && matches(denySet, kind)) return false;
    if (allowSet === null) return true;
    return matches(allowSet, kind);
  };
}
