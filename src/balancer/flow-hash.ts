/**
 * The flow key and its hash, for consistent hashing (docs/consistent-hash.md).
 *
 * Key bytes, in this order:
 *   5-tuple:   protocol (1 byte: 6 TCP, 17 UDP), source address, source port
 *              (2 bytes, big-endian), destination address, destination port
 *              (2 bytes, big-endian)
 *   source-ip: source address only
 * An address is 4 bytes for IPv4 and for IPv4-mapped IPv6 (::ffff:a.b.c.d),
 * 16 bytes for other IPv6 addresses (network order). Hash: murmur3_32 with
 * seed 0 over those bytes.
 *
 * Hot path: the address text is parsed by hand into one module-level
 * buffer; nothing is allocated per flow.
 */
import type { Flow } from './picker';
import { murmur3 } from './hash';

const KEY = new Uint8Array(1 + 16 + 2 + 16 + 2);
const V6 = new Uint16Array(8);

/**
 * Writes the address's bytes at KEY[off..]; returns the offset after them,
 * or -1 when the text is not an IP address (then the flow hashes without it).
 */
export function writeAddress(text: string, out: Uint8Array, off: number): number {
  if (text.indexOf(':') < 0) return writeV4(text, 0, text.length, out, off);
  // IPv4-mapped IPv6 hashes like the IPv4 address.
  if (text.length > 7 && text.charCodeAt(0) === 58 /* : */ && text.startsWith('::ffff:') && text.indexOf('.') > 0) {
    return writeV4(text, 7, text.length, out, off);
  }
  return writeV6(text, out, off);
}

function writeV4(s: string, start: number, end: number, out: Uint8Array, off: number): number {
  let part = 0;
  let digits = 0;
  let o = off;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c === 46 /* . */) {
      if (digits === 0 || o - off >= 3) return -1;
      out[o++] = part;
      part = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      part = part * 10 + (c - 48);
      if (++digits > 3 || part > 255) return -1;
    } else return -1;
  }
  if (digits === 0 || o - off !== 3) return -1;
  out[o++] = part;
  return o;
}

function writeV6(s: string, out: Uint8Array, off: number): number {
  let end = s.indexOf('%'); // zone id: not part of the address
  if (end < 0) end = s.length;
  let n = 0; // groups written
  let gap = -1; // group index where "::" stands
  let i = 0;
  if (s.charCodeAt(0) === 58) {
    if (s.charCodeAt(1) !== 58) return -1;
    gap = 0;
    i = 2;
  }
  while (i < end) {
    // An embedded IPv4 tail (e.g. ::1.2.3.4 or 64:ff9b::1.2.3.4).
    let j = i;
    let dot = false;
    while (j < end && s.charCodeAt(j) !== 58) {
      if (s.charCodeAt(j) === 46) dot = true;
      j++;
    }
    if (dot) {
      if (n > 6 || j !== end) return -1;
      const tmp = off + 16 - 4; // scratch inside the output, overwritten below
      if (writeV4(s, i, end, out, tmp) < 0) return -1;
      V6[n++] = ((out[tmp] as number) << 8) | (out[tmp + 1] as number);
      V6[n++] = ((out[tmp + 2] as number) << 8) | (out[tmp + 3] as number);
      i = end;
      break;
    }
    if (j === i || j - i > 4 || n >= 8) return -1;
    let v = 0;
    for (let k = i; k < j; k++) {
      const c = s.charCodeAt(k);
      const d = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1;
      if (d < 0) return -1;
      v = (v << 4) | d;
    }
    V6[n++] = v;
    i = j;
    if (i < end) {
      i++; // ':'
      if (i < end && s.charCodeAt(i) === 58) {
        if (gap >= 0) return -1;
        gap = n;
        i++;
      } else if (i === end) return -1;
    }
  }
  if (gap < 0 && n !== 8) return -1;
  if (gap >= 0 && n > 7) return -1;
  const zeros = 8 - n;
  let o = off;
  for (let g = 0; g < 8; g++) {
    let v: number;
    if (gap < 0 || g < gap) v = V6[g] as number;
    else if (g < gap + zeros) v = 0;
    else v = V6[g - zeros] as number;
    out[o++] = v >>> 8;
    out[o++] = v & 0xff;
  }
  return o;
}

/** The hash of a flow's key (see the layout above). Allocation-free. */
export function flowHash(flow: Flow, sourceOnly: boolean): number {
  let o = 0;
  if (!sourceOnly) KEY[o++] = flow.protocol;
  const a = writeAddress(flow.srcAddr, KEY, o);
  if (a >= 0) o = a;
  if (!sourceOnly) {
    KEY[o++] = (flow.srcPort >>> 8) & 0xff;
    KEY[o++] = flow.srcPort & 0xff;
    const d = writeAddress(flow.dstAddr, KEY, o);
    if (d >= 0) o = d;
    KEY[o++] = (flow.dstPort >>> 8) & 0xff;
    KEY[o++] = flow.dstPort & 0xff;
  }
  return murmur3(KEY, o, 0);
}
