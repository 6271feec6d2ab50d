/**
 * The flow key and its hash, for consistent hashing (docs/consistent-hash.md).
 *
 * Key bytes, in this order:
 *   5-tuple:   source address, destination address, source port (2 bytes,
 *              big-endian), destination port (2 bytes, big-endian), protocol
 *              (1 byte: 6 TCP, 17 UDP)
 *   source-ip: source address only
 * An address is 4 bytes for IPv4 and for IPv4-mapped IPv6 (::ffff:a.b.c.d),
 * 16 bytes for other IPv6 addresses (network order). An address that is not
 * an IP literal contributes no bytes. Hash: murmur3_32 (x86, seed 0) over
 * those bytes.
 *
 * Hot path: addresses are parsed by hand straight into murmur3's 32-bit
 * blocks (every address is a whole number of blocks), so nothing is
 * allocated and no byte buffer is written per flow. `flowKeyBytes` builds
 * the same key as bytes, for tests and for other implementations to check
 * against.
 */
import type { Flow } from './picker';

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

/** murmur3 block step. */
function mix(h: number, k: number): number {
  k = Math.imul(k, C1);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, C2);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/** murmur3 tail (1 byte) and finalisation over `len` bytes in all. */
function finish(h: number, tailByte: number, hasTail: boolean, len: number): number {
  if (hasTail) {
    let k = Math.imul(tailByte, C1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, C2);
    h ^= k;
  }
  h ^= len;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** An address as murmur3 blocks (little-endian words of its network-order bytes). */
const SRC = new Int32Array(4);
let srcWords = 0;
const DST = new Int32Array(4);
let dstWords = 0;
let lastDst: string | null = null;
const V6 = new Uint16Array(8);

/**
 * Parses dotted-quad IPv4 in s[start..end) into one block (b0 | b1<<8 |
 * b2<<16 | b3<<24); returns false when it is not IPv4.
 */
function v4Word(s: string, start: number, end: number, out: Int32Array): boolean {
  let word = 0;
  let part = 0;
  let digits = 0;
  let shift = 0;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c === 46 /* . */) {
      if (digits === 0 || shift === 24) return false;
      word |= part << shift;
      shift += 8;
      part = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      part = part * 10 + (c - 48);
      if (++digits > 3 || part > 255) return false;
    } else return false;
  }
  if (digits === 0 || shift !== 24) return false;
  out[0] = word | (part << 24);
  return true;
}

/** Parses IPv6 text (compressed or not, embedded IPv4 tail, zone id ignored) into V6; false if invalid. */
function v6Groups(s: string): boolean {
  let end = s.indexOf('%');
  if (end < 0) end = s.length;
  let n = 0;
  let gap = -1;
  let i = 0;
  if (s.charCodeAt(0) === 58) {
    if (s.charCodeAt(1) !== 58) return false;
    gap = 0;
    i = 2;
  }
  while (i < end) {
    let j = i;
    let dot = false;
    while (j < end && s.charCodeAt(j) !== 58) {
      if (s.charCodeAt(j) === 46) dot = true;
      j++;
    }
    if (dot) {
      if (n > 6 || j !== end || !v4Word(s, i, end, TMP)) return false;
      const w = TMP[0] as number;
      V6[n++] = ((w & 0xff) << 8) | ((w >>> 8) & 0xff);
      V6[n++] = (((w >>> 16) & 0xff) << 8) | ((w >>> 24) & 0xff);
      i = end;
      break;
    }
    if (j === i || j - i > 4 || n >= 8) return false;
    let v = 0;
    for (let k = i; k < j; k++) {
      const c = s.charCodeAt(k);
      const d = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1;
      if (d < 0) return false;
      v = (v << 4) | d;
    }
    V6[n++] = v;
    i = j;
    if (i < end) {
      i++;
      if (i < end && s.charCodeAt(i) === 58) {
        if (gap >= 0) return false;
        gap = n;
        i++;
      } else if (i === end) return false;
    }
  }
  if (gap < 0 ? n !== 8 : n > 7) return false;
  if (gap >= 0) {
    const zeros = 8 - n;
    for (let g = 7; g >= gap + zeros; g--) V6[g] = V6[g - zeros] as number;
    for (let g = gap; g < gap + zeros; g++) V6[g] = 0;
  }
  return true;
}
const TMP = new Int32Array(1);

/** Address text → blocks in `out`; returns the number of blocks (1, 4, or 0 when not an IP). */
function addressWords(s: string, out: Int32Array): number {
  if (v4Word(s, 0, s.length, out)) return 1;
  if (s.length > 7 && s.charCodeAt(0) === 58 && s.startsWith('::ffff:') && s.indexOf('.') > 0 && v4Word(s, 7, s.length, out)) return 1;
  if (!v6Groups(s)) return 0;
  for (let w = 0; w < 4; w++) {
    const a = V6[2 * w] as number;
    const b = V6[2 * w + 1] as number;
    out[w] = (a >>> 8) | ((a & 0xff) << 8) | ((b >>> 8) << 16) | ((b & 0xff) << 24);
  }
  return 4;
}

/** The hash of a flow's key (see the layout above). Allocation-free. */
export function flowHash(flow: Flow, sourceOnly: boolean): number {
  let h = 0;
  srcWords = addressWords(flow.srcAddr, SRC);
  for (let i = 0; i < srcWords; i++) h = mix(h, SRC[i] as number);
  if (sourceOnly) return finish(h, 0, false, srcWords * 4);
  // The destination is nearly always one of a few listener addresses.
  if (flow.dstAddr !== lastDst) {
    dstWords = addressWords(flow.dstAddr, DST);
    lastDst = flow.dstAddr;
  }
  for (let i = 0; i < dstWords; i++) h = mix(h, DST[i] as number);
  const sp = flow.srcPort;
  const dp = flow.dstPort;
  h = mix(h, ((sp >>> 8) & 0xff) | ((sp & 0xff) << 8) | (((dp >>> 8) & 0xff) << 16) | ((dp & 0xff) << 24));
  return finish(h, flow.protocol, true, (srcWords + dstWords) * 4 + 5);
}

/** The key of a flow as bytes (tests, documentation, other implementations). */
export function flowKeyBytes(flow: Flow, sourceOnly: boolean): Uint8Array {
  const out: number[] = [];
  const push = (s: string): void => {
    const words = new Int32Array(4);
    const n = addressWords(s, words);
    for (let i = 0; i < n; i++) {
      const w = words[i] as number;
      out.push(w & 0xff, (w >>> 8) & 0xff, (w >>> 16) & 0xff, (w >>> 24) & 0xff);
    }
  };
  push(flow.srcAddr);
  if (!sourceOnly) {
    push(flow.dstAddr);
    out.push((flow.srcPort >>> 8) & 0xff, flow.srcPort & 0xff, (flow.dstPort >>> 8) & 0xff, flow.dstPort & 0xff, flow.protocol);
  }
  return Uint8Array.from(out);
}

/** The bytes of one address as it enters the key (empty when not an IP). */
export function addressKeyBytes(s: string): Uint8Array {
  const words = new Int32Array(4);
  const n = addressWords(s, words);
  const out = new Uint8Array(n * 4);
  for (let i = 0; i < n; i++) {
    const w = words[i] as number;
    out[4 * i] = w & 0xff;
    out[4 * i + 1] = (w >>> 8) & 0xff;
    out[4 * i + 2] = (w >>> 16) & 0xff;
    out[4 * i + 3] = (w >>> 24) & 0xff;
  }
  return out;
}
