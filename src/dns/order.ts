/**
 * A stable, numeric order for resolved IP addresses: IPv4 before IPv6, then
 * by address bytes (so 10.0.0.9 sorts before 10.0.0.10).
 */
import { isIP } from 'node:net';

/**
 * Contract: the address as bytes (4 for IPv4, 16 for IPv6), or null when
 * `ip` is not an IP literal. A zone id (`fe80::1%eth0`) is ignored.
 */
export function ipBytes(ip: string): number[] | null {
  const pct = ip.indexOf('%');
  const addr = pct >= 0 ? ip.slice(0, pct) : ip;
  const fam = isIP(addr);
  if (fam === 4) return addr.split('.').map(Number);
  if (fam !== 6) return null;
  let head = addr;
  let tail = '';
  const dbl = addr.indexOf('::');
  if (dbl >= 0) {
    head = addr.slice(0, dbl);
    tail = addr.slice(dbl + 2);
  }
  const words = (part: string): number[] => {
    if (part === '') return [];
    const out: number[] = [];
    for (const g of part.split(':')) {
      if (g.includes('.')) {
        const v4 = g.split('.').map(Number);
        out.push((((v4[0] ?? 0) << 8) | (v4[1] ?? 0)) >>> 0, (((v4[2] ?? 0) << 8) | (v4[3] ?? 0)) >>> 0);
      } else {
        out.push(parseInt(g, 16));
      }
    }
    return out;
  };
  const h = words(head);
  const t = words(tail);
  const all = dbl >= 0 ? [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t] : h;
  const bytes: number[] = [];
  for (const w of all) bytes.push((w >> 8) & 0xff, w & 0xff);
  return bytes;
}

/**
 * Contract: a comparator for IP literals: IPv4 first, then byte order;
 * strings that are not IP literals sort last, by plain string order.
 */
export function compareIp(a: string, b: string): number {
  const x = ipBytes(a);
  const y = ipBytes(b);
  if (x === null || y === null) {
    if (x !== null) return -1;
    if (y !== null) return 1;
    return a < b ? -1 : a > b ? 1 : 0;
  }
  if (x.length !== y.length) return x.length - y.length;
  for (let i = 0; i < x.length; i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return d;
  }
  return a < b ? -1 : a > b ? 1 : 0;
}
