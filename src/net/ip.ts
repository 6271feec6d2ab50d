/**
 * The one IP-address text parser. Every place that turns address text into
 * bytes (ACLs, the PROXY codec, the flow hash, the DNS answer order, config
 * validation) goes through here, so they all agree on what an address is.
 *
 * Hand-written, allocation-free: the accept path and the flow hash call it
 * per connection. Accepted forms are those of `net.isIP`: IPv4 as four
 * decimal parts 0..255 without leading zeros; IPv6 as in RFC 4291 §2.2
 * (one "::", an optional dotted IPv4 tail), with an optional "%zone".
 */

/** Longest IPv6 text without a zone: "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255". */
const MAX_IPV6_TEXT = 45;

/**
 * Contract: parses IPv4 text in s[start..end) into an unsigned 32-bit value
 * (a non-negative number). Returns -1 unless it is exactly four decimal
 * parts 0..255, each of 1..3 digits without a leading zero.
 */
export function parseIPv4(s: string, start = 0, end = s.length): number {
  let value = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      if (digits === 1 && part === 0) return -1; // leading zero
      part = part * 10 + (c - 48);
      if (++digits > 3 || part > 255) return -1;
    } else if (c === 46) {
      if (digits === 0 || ++dots > 3) return -1;
      value = value * 256 + part;
      part = 0;
      digits = 0;
    } else {
      return -1;
    }
  }
  if (dots !== 3 || digits === 0) return -1;
  return value * 256 + part;
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

const groups = new Uint16Array(8);

/**
 * Contract: parses IPv6 text into out[off..off+16) (network order). A
 * "%zone" suffix is ignored when `zone` is 'strip' and makes the text
 * invalid when it is 'reject'; an empty zone is always invalid. Returns
 * false, leaving `out` unspecified, when the text is not an IPv6 address.
 */
export function parseIPv6Into(s: string, out: Uint8Array, off = 0, zone: 'strip' | 'reject' = 'strip'): boolean {
  let end = s.length;
  for (let k = 0; k < end; k++) {
    if (s.charCodeAt(k) === 37) {
      if (zone === 'reject' || k === s.length - 1) return false;
      end = k;
      break;
    }
  }
  if (end < 2 || end > MAX_IPV6_TEXT) return false;
  let n = 0;
  let gap = -1;
  let i = 0;
  if (s.charCodeAt(0) === 58) {
    if (s.charCodeAt(1) !== 58) return false;
    gap = 0;
    i = 2;
  }
  while (i < end) {
    if (n >= 8) return false;
    let v = 0;
    let digits = 0;
    let j = i;
    while (j < end) {
      const h = hexValue(s.charCodeAt(j));
      if (h < 0) break;
      v = v * 16 + h;
      if (++digits > 4) return false;
      j++;
    }
    if (j < end && s.charCodeAt(j) === 46) {
      if (n > 6) return false;
      const v4 = parseIPv4(s, i, end);
      if (v4 < 0) return false;
      groups[n++] = Math.floor(v4 / 65536);
      groups[n++] = v4 % 65536;
      i = end;
      break;
    }
    if (digits === 0) return false;
    groups[n++] = v;
    if (j === end) { i = j; break; }
    if (s.charCodeAt(j) !== 58) return false;
    j++;
    if (j < end && s.charCodeAt(j) === 58) {
      if (gap >= 0) return false;
      gap = n;
      j++;
    } else if (j === end) {
      return false;
    }
    i = j;
  }
  if (gap < 0 ? n !== 8 : n > 7) return false;
  const zeros = gap < 0 ? 0 : 8 - n;
  let o = off;
  for (let g = 0; g <= n; g++) {
    if (g === gap) for (let z = 0; z < zeros; z++) { out[o++] = 0; out[o++] = 0; }
    if (g === n) break;
    const v = groups[g] ?? 0;
    out[o++] = v >>> 8;
    out[o++] = v & 0xff;
  }
  return true;
}

/** Contract: true when out[off..off+16) is an IPv4-mapped IPv6 address (::ffff:0:0/96). */
export function isV4MappedBytes(b: Uint8Array, off = 0): boolean {
  for (let i = 0; i < 10; i++) if (b[off + i] !== 0) return false;
  return b[off + 10] === 0xff && b[off + 11] === 0xff;
}

/**
 * Contract: parses IPv4 or IPv6 text into `out` at `off` (4 or 16 bytes,
 * network order) and returns 4 or 6; returns 0 when `s` is neither (out
 * unspecified). With `unmapV4`, an IPv4-mapped IPv6 address is written as
 * its 4 IPv4 bytes and reported as 4. A zone id is handled as in
 * parseIPv6Into (default: ignored).
 */
export function parseIpInto(s: string, out: Uint8Array, off = 0, unmapV4 = false, zone: 'strip' | 'reject' = 'strip'): 0 | 4 | 6 {
  if (s.indexOf(':') < 0) {
    const v4 = parseIPv4(s);
    if (v4 < 0) return 0;
    out[off] = v4 >>> 24;
    out[off + 1] = (v4 >>> 16) & 0xff;
    out[off + 2] = (v4 >>> 8) & 0xff;
    out[off + 3] = v4 & 0xff;
    return 4;
  }
  if (!parseIPv6Into(s, out, off, zone)) return 0;
  if (unmapV4 && isV4MappedBytes(out, off)) {
    out.copyWithin(off, off + 12, off + 16);
    return 4;
  }
  return 6;
}

/** Contract: 4 or 6 when `s` is an IP literal (zone id allowed on IPv6), else 0. Allocation-free. */
export function ipVersion(s: string): 0 | 4 | 6 {
  return parseIpInto(s, SCRATCH);
}
const SCRATCH = new Uint8Array(16);

/**
 * Contract: a new array of the address's bytes (4 for IPv4, 16 for IPv6,
 * zone id ignored), or null when `s` is not an IP literal. For control-path
 * callers; the hot path uses parseIpInto with its own buffer.
 */
export function ipBytes(s: string, unmapV4 = false): Uint8Array | null {
  const buf = new Uint8Array(16);
  const f = parseIpInto(s, buf, 0, unmapV4);
  return f === 0 ? null : buf.slice(0, f === 4 ? 4 : 16);
}
