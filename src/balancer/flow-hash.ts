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
 * Hot path: addresses are parsed (net/ip.ts) into a reused byte buffer and
 * read as murmur3's 32-bit blocks (every address is a whole number of
 * blocks), so nothing is allocated per flow. `flowKeyBytes` builds
 * the same key as bytes, for tests and for other implementations to check
 * against.
 */
import type { Flow } from './picker';
import { parseIpInto } from '../net/ip';

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
const BYTES = new Uint8Array(16);

/** Address text → blocks in `out`; returns the number of blocks (1, 4, or 0 when not an IP). */
function addressWords(s: string, out: Int32Array): number {
  const family = parseIpInto(s, BYTES, 0, true);
  if (family === 0) return 0;
  const n = family === 4 ? 1 : 4;
  for (let w = 0; w < n; w++) {
    const o = 4 * w;
    out[w] = (BYTES[o] as number) | ((BYTES[o + 1] as number) << 8) | ((BYTES[o + 2] as number) << 16) | ((BYTES[o + 3] as number) << 24);
  }
  return n;
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
