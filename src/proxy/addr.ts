/**
 * IP address text <-> bytes for the PROXY codec: Buffers over the one
 * parser in net/ip.ts, and the canonical text forms the v1 header needs.
 * No DNS, no allocation beyond the returned buffers/strings.
 */
import { isV4MappedBytes, parseIPv6Into, parseIpInto } from '../net/ip';

/** A parsed IP address: 4 bytes for IPv4, 16 for IPv6. */
export interface IpBytes {
  readonly family: 4 | 6;
  readonly bytes: Buffer;
}

/** Contract: IPv4 text (see net/ip.ts) -> a new 4-byte Buffer, or null. */
export function parseIPv4(text: string): Buffer | null {
  const out = Buffer.alloc(4);
  return text.indexOf(':') < 0 && parseIpInto(text, out) === 4 ? out : null;
}

/**
 * Contract: IPv6 text (see net/ip.ts) -> a new 16-byte Buffer, or null. A
 * zone id ("%eth0") is rejected unless `stripZone` is true, in which case
 * it is dropped. Never throws.
 */
export function parseIPv6(text: string, stripZone = false): Buffer | null {
  const out = Buffer.alloc(16);
  return parseIPv6Into(text, out, 0, stripZone ? 'strip' : 'reject') ? out : null;
}

/** Contract: true when `b` (16 bytes) is an IPv4-mapped IPv6 address ::ffff:0:0/96. */
export function isV4Mapped(b: Buffer, off = 0): boolean {
  return isV4MappedBytes(b, off);
}

/** Contract: dotted-decimal text of the 4 bytes at `b[off..off+4)`. */
export function formatIPv4(b: Buffer, off = 0): string {
  return `${b[off] ?? 0}.${b[off + 1] ?? 0}.${b[off + 2] ?? 0}.${b[off + 3] ?? 0}`;
}

/**
 * Contract: RFC 5952 canonical text of the 16 bytes at `b[off..off+16)`:
 * lowercase, no leading zeros, the longest run (first on a tie) of two or
 * more zero groups compressed to "::", and IPv4-mapped addresses written as
 * "::ffff:a.b.c.d" (RFC 5952 §5).
 */
export function formatIPv6(b: Buffer, off = 0): string {
  if (isV4Mapped(b, off)) return `::ffff:${formatIPv4(b, off + 12)}`;
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push(b.readUInt16BE(off + i * 2));
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  const hex = (x: number | undefined): string => (x ?? 0).toString(16);
  if (bestStart < 0) return g.map(hex).join(':');
  const left = g.slice(0, bestStart).map(hex).join(':');
  const right = g.slice(bestStart + bestLen).map(hex).join(':');
  return `${left}::${right}`;
}

/**
 * Contract: parse an address as the encoders see it: IPv4 dotted-decimal or
 * IPv6 text (zone id stripped). IPv4-mapped IPv6 becomes IPv4 when
 * `unmapV4` is true. Returns null for anything else (including undefined).
 */
export function parseIp(text: string | undefined, unmapV4: boolean): IpBytes | null {
  if (typeof text !== 'string') return null;
  if (text.indexOf(':') === -1) {
    const v4 = parseIPv4(text);
    return v4 === null ? null : { family: 4, bytes: v4 };
  }
  const v6 = parseIPv6(text, true);
  if (v6 === null) return null;
  if (unmapV4 && isV4Mapped(v6)) return { family: 4, bytes: v6.subarray(12, 16) };
  return { family: 6, bytes: v6 };
}

/** Contract: the IPv4 `v4` (4 bytes) as a new 16-byte IPv4-mapped IPv6 address. */
export function mapV4ToV6(v4: Buffer): Buffer {
  const out = Buffer.alloc(16);
  out[10] = 0xff;
  out[11] = 0xff;
  v4.copy(out, 12, 0, 4);
  return out;
}

/** Contract: true when `p` is an integer port in 0..65535. */
export function isPort(p: unknown): p is number {
  return typeof p === 'number' && Number.isInteger(p) && p >= 0 && p <= 65535;
}
