/**
 * Readers shared by the sections of the configuration (src/config/validate.ts):
 * addresses, CIDR lists, and the protocol names.
 */
import { parseHostPort } from '../net/address';
import { parseCidr } from '../net/cidr';
import { parseIPv6Into } from '../net/ip';
import { joinIndex } from './positions';
import type { Reader } from './reader';
import { describe } from './values';
import type { Cidr, HostPort, Protocol } from './schema';

export const PROTOCOLS: readonly Protocol[] = ['tcp', 'udp'];

/** Contract: a canonical "host:port" key for duplicate detection (IPv6 spelled as hex bytes). */
export function addressKey(hp: HostPort): string {
  if (hp.family === 6) {
    const b = new Uint8Array(16);
    if (parseIPv6Into(hp.host, b)) return `[${Buffer.from(b).toString('hex')}]:${hp.port}`;
  }
  return `${hp.host.toLowerCase()}:${hp.port}`;
}

/** Contract: reads `key` as "host:port" with port in minPort..65535; IP literal required when ipOnly. */
export function readHostPort(r: Reader, key: string, minPort: number, ipOnly: boolean): { text: string; hp: HostPort } | null {
  const v = r.get(key);
  if (v === undefined) return null;
  const what = ipOnly ? '"ip:port"' : '"host:port"';
  if (typeof v !== 'string') {
    r.sink.at(r.p(key), `expected ${what}, got ${describe(v)}`);
    return null;
  }
  const hp = parseHostPort(v);
  if (typeof hp === 'string') {
    const why = hp.startsWith('expected') ? '' : ` (${hp})`;
    r.sink.at(r.p(key), `expected ${what}, got ${describe(v)}${why}`);
    return null;
  }
  if (ipOnly && hp.family === 0) {
    r.sink.at(r.p(key), `expected an IP address (not a name) in ${what}, got ${describe(v)}`);
    return null;
  }
  if (hp.port < minPort) {
    r.sink.at(r.p(key), `expected a port between ${minPort} and 65535, got ${describe(v)}`);
    return null;
  }
  return { text: v, hp };
}

/** Contract: reads an optional array of CIDR strings; null when absent. */
export function readCidrs(r: Reader, key: string): Cidr[] | null {
  const v = r.get(key);
  if (v === undefined) return null;
  if (!Array.isArray(v)) {
    r.sink.at(r.p(key), `expected an array of CIDR strings such as ["10.0.0.0/8"], got ${describe(v)}`);
    return [];
  }
  const out: Cidr[] = [];
  v.forEach((item: unknown, i: number) => {
    const p = joinIndex(r.p(key), i);
    if (typeof item !== 'string') {
      r.sink.at(p, `expected a CIDR string such as "10.0.0.0/8", got ${describe(item)}`);
      return;
    }
    const c = parseCidr(item);
    if (typeof c === 'string') r.sink.at(p, `expected a CIDR such as "10.0.0.0/8" or "fd00::/8", got ${describe(item)} (${c})`);
    else out.push(c);
  });
  return out;
}

