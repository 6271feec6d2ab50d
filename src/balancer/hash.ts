/**
 * MurmurHash3 x86_32 (Austin Appleby, public domain), over bytes. Chosen
 * because it is small, well known, fast in JavaScript (32-bit multiplies
 * with Math.imul) and has reference implementations in every language, so
 * another implementation can reproduce l4lb's tables and choices exactly.
 */

/** murmur3_32 of `data[0..len)` with `seed`; an unsigned 32-bit integer. */
export function murmur3(data: Uint8Array, len: number, seed: number): number {
  let h = seed >>> 0;
  const nblocks = len >>> 2;
  for (let i = 0; i < nblocks; i++) {
    const o = i << 2;
    let k = (data[o] as number) | ((data[o + 1] as number) << 8) | ((data[o + 2] as number) << 16) | ((data[o + 3] as number) << 24);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const tail = nblocks << 2;
  let k = 0;
  const rem = len & 3;
  if (rem > 0) {
    if (rem === 3) k ^= (data[tail + 2] as number) << 16;
    if (rem >= 2) k ^= (data[tail + 1] as number) << 8;
    k ^= data[tail] as number;
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
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

const enc = new TextEncoder();

/** murmur3_32 of a string's UTF-8 bytes (control plane only: allocates). */
export function murmur3String(s: string, seed: number): number {
  const b = enc.encode(s);
  return murmur3(b, b.length, seed);
}
