/**
 * A stable, numeric order for resolved IP addresses: IPv4 before IPv6, then
 * by address bytes (so 10.0.0.9 sorts before 10.0.0.10).
 */
import { ipBytes } from '../net/ip';

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
