/**
 * Hand-written IP address text <-> bytes helpers used by the PROXY codec.
 * No DNS, no allocation beyond the returned buffers/strings.
 */

/** A parsed IP address: 4 bytes for IPv4, 16 for IPv6. */
export interface IpBytes {
  readonly family: 4 | 6;
  readonly bytes: Buffer;
}

const MAX_IPV6_TEXT = 45; // "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"

/**
 * Contract: parse strict dotted-decimal IPv4 (exactly four parts, each 0..255,
 * no sign, no leading zeros, no surrounding whitespace) into `out[off..off+4)`.
 * Returns true on success; on failure returns false and `out` may be partly written.
 */
export function parseIPv4Into(text: string, out: Buffer, off: number): boolean {
  const n = text.length;
  if (n < 7 || n > 15) return false;
  let part = 0;
  let value = 0;
  let digits = 0;
  let leadingZero = false;
  for (let i = 0; i <= n; i++) {
    const c = i < n ? text.charCodeAt(i) : 0x2e; /* virtual trailing '.' */
    if (c === 0x2e) {
      if (digits === 0 || part > 3) return false;
      out[off + part] = value;
      part++;
      value = 0;
      digits = 0;
      leadingZero = false;
    } else if (c >= 0x30 && c <= 0x39) {
      if (leadingZero) return false;
      if (digits === 0 && c === 0x30) leadingZero = true;
      value = value * 10 + (c - 0x30);
      digits++;
      if (value > 255) return false;
    } else {
      return false;
    }
  }
  return part === 4;
}

/** Contract: strict IPv4 text -> 4-byte Buffer, or null (see parseIPv4Into). */
export function parseIPv4(text: string): Buffer | null {
  const out = Buffer.alloc(4);
  return parseIPv4Into(text, out, 0) ? out : null;
}

/** Parses 1..4 hex digits; returns -1 when `s` is not such a group. */
function parseHexGroup(s: string): number {
  const n = s.length;
  if (n < 1 || n > 4) return -1;
  let v = 0;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    let d: number;
    if (c >= 0x30 && c <= 0x39) d = c - 0x30;
    else if (c >= 0x61 && c <= 0x66) d = c - 0x61 + 10;
    else if (c >= 0x41 && c <= 0x46) d = c - 0x41 + 10;
    else return -1;
    v = (v << 4) | d;
  }
  return v;
}

/**
 * Splits one side of a "::" into 16-bit groups written big-endian to a list.
 * The last group of the whole address (`allowV4Tail`) may be dotted IPv4,
 * which counts as two groups. Returns null on any malformed group.
 */
function parseGroups(side: string, allowV4Tail: boolean): number[] | null {
  if (side === '') return [];
  const parts = side.split(':');
  const groups: number[] = [];
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i] ?? '';
    if (allowV4Tail && i === parts.length - 1 && p.indexOf('.') !== -1) {
      const v4 = Buffer.alloc(4);
      if (!parseIPv4Into(p, v4, 0)) return null;
      groups.push(v4.readUInt16BE(0), v4.readUInt16BE(2));
    } else {
      const g = parseHexGroup(p);
      if (g < 0) return null;
      groups.push(g);
    }
  }
  return groups;
}

/**
 * Contract: parse IPv6 text (RFC 4291 §2.2: full form, one "::", optional
 * dotted IPv4 tail) into a 16-byte Buffer, or null. A zone id ("%eth0") is
 * rejected unless `stripZone` is true, in which case it is dropped.
 * Never throws.
 */
export function parseIPv6(text: string, stripZone = false): Buffer | null {
  let s = text;
  const pct = s.indexOf('%');
  if (pct !== -1) {
    if (!stripZone || pct === s.length - 1) return null;
    s = s.slice(0, pct);
  }
  if (s.length < 2 || s.length > MAX_IPV6_TEXT) return null;
  const dbl = s.indexOf('::');
  let groups: number[];
  if (dbl === -1) {
    const all = parseGroups(s, true);
    if (all === null || all.length !== 8) return null;
    groups = all;
  } else {
    if (s.indexOf('::', dbl + 1) !== -1) return null;
    const head = parseGroups(s.slice(0, dbl), false);
    const tail = parseGroups(s.slice(dbl + 2), true);
    if (head === null || tail === null) return null;
    const fill = 8 - head.length - tail.length;
    if (fill < 1) return null;
    groups = head;
    for (let i = 0; i < fill; i++) groups.push(0);
    for (const g of tail) groups.push(g);
  }
  const out = Buffer.alloc(16);
  for (let i = 0; i < 8; i++) out.writeUInt16BE(groups[i] ?? 0, i * 2);
  return out;
}

/** Contract: true when `b` (16 bytes) is an IPv4-mapped IPv6 address ::ffff:0:0/96. */
export function isV4Mapped(b: Buffer, off = 0): boolean {
  for (let i = 0; i < 10; i++) if (b[off + i] !== 0) return false;
  return b[off + 10] === 0xff && b[off + 11] === 0xff;
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
