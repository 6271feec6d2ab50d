/**
 * PROXY protocol encoders (HAProxy "The PROXY protocol", §2.1 v1, §2.2 v2).
 * Pure functions: no I/O, never throw for any input shape.
 */
import {
  formatIPv4, formatIPv6, IpBytes, isPort, mapV4ToV6, parseIp,
} from './addr';
import {
  EndpointLike, ProxyCommand, ProxyHeader, V2_ADDR_LEN_INET, V2_ADDR_LEN_INET6,
  V2_FIXED_HEADER, V2_SIGNATURE,
} from './types';

/** A pair of endpoints reduced to one family, ready to be written. */
interface Pair {
  readonly family: 4 | 6;
  readonly src: Buffer;
  readonly dst: Buffer;
  readonly sport: number;
  readonly dport: number;
}

const V1_UNKNOWN = 'PROXY UNKNOWN\r\n';

/**
 * Contract: reduce (src, dst) to one address family following our sending
 * rules, or null when an address or port is missing/unparsable:
 *  - IPv4-mapped IPv6 (::ffff:a.b.c.d) counts as IPv4 (zone ids are stripped);
 *  - both IPv4 -> family 4; both IPv6 -> family 6;
 *  - mixed -> the IPv4 one is mapped into ::ffff:a.b.c.d and family 6.
 */
function toPair(src: EndpointLike, dst: EndpointLike): Pair | null {
  if (src == null || dst == null) return null;
  if (!isPort(src.port) || !isPort(dst.port)) return null;
  const a = parseIp(src.address, true);
  const b = parseIp(dst.address, true);
  if (a === null || b === null) return null;
  if (a.family === b.family) {
    return { family: a.family, src: a.bytes, dst: b.bytes, sport: src.port, dport: dst.port };
  }
  const up = (x: IpBytes): Buffer => (x.family === 4 ? mapV4ToV6(x.bytes) : x.bytes);
  return { family: 6, src: up(a), dst: up(b), sport: src.port, dport: dst.port };
}

/** Contract: v1 line for a reduced pair (§2.1), always ending in CRLF and <= 107 bytes. */
function v1Line(p: Pair): Buffer {
  const fmt = p.family === 4 ? formatIPv4 : formatIPv6;
  const proto = p.family === 4 ? 'TCP4' : 'TCP6';
  return Buffer.from(`PROXY ${proto} ${fmt(p.src)} ${fmt(p.dst)} ${p.sport} ${p.dport}\r\n`, 'latin1');
}

/**
 * Contract: the 16-byte fixed part plus the address block for `p` (or an
 * empty block when `p` is null) with the given ver/cmd and transport nibble
 * (§2.2). Transport is 1 (STREAM) or 2 (DGRAM); ignored when `p` is null.
 */
function v2Bytes(cmd: ProxyCommand, p: Pair | null, transport: 1 | 2): Buffer {
  const addrLen = p === null ? 0 : p.family === 4 ? V2_ADDR_LEN_INET : V2_ADDR_LEN_INET6;
  const out = Buffer.allocUnsafe(V2_FIXED_HEADER + addrLen);
  V2_SIGNATURE.copy(out, 0);
  out[12] = cmd === 'LOCAL' ? 0x20 : 0x21;
  out[13] = p === null ? 0x00 : ((p.family === 4 ? 0x10 : 0x20) | transport);
  out.writeUInt16BE(addrLen, 14);
  if (p !== null) {
    const alen = p.family === 4 ? 4 : 16;
    p.src.copy(out, 16, 0, alen);
    p.dst.copy(out, 16 + alen, 0, alen);
    out.writeUInt16BE(p.sport, 16 + 2 * alen);
    out.writeUInt16BE(p.dport, 18 + 2 * alen);
  }
  return out;
}

/**
 * Contract (§2.1): `PROXY TCP4 <src> <dst> <sport> <dport>\r\n` or the TCP6
 * form, after the family rules of `toPair` (mapped -> IPv4, mixed -> TCP6
 * with the IPv4 side mapped). `PROXY UNKNOWN\r\n` when an address or port is
 * missing or unparsable. IPv6 text is RFC 5952 canonical. Never throws.
 */
export function encodeV1(src: EndpointLike, dst: EndpointLike): Buffer {
  const p = toPair(src, dst);
  return p === null ? Buffer.from(V1_UNKNOWN, 'latin1') : v1Line(p);
}

/**
 * Contract (§2.2): signature, 0x21 (PROXY) or 0x20 (LOCAL), family/transport
 * byte 0x11 (TCP/IPv4) or 0x21 (TCP/IPv6) — 0x12/0x22 when `transport` is
 * 'dgram' — big-endian length, then src addr, dst addr, src port, dst port.
 * Same family rules as encodeV1. LOCAL, or PROXY with a missing/unparsable
 * address or port, gives family byte 0x00 (AF_UNSPEC) and length 0.
 * Never throws.
 */
export function encodeV2(
  src: EndpointLike,
  dst: EndpointLike,
  command: ProxyCommand = 'PROXY',
  transport: 'stream' | 'dgram' = 'stream',
): Buffer {
  if (command === 'LOCAL') return v2Bytes('LOCAL', null, 1);
  return v2Bytes('PROXY', toPair(src, dst), transport === 'dgram' ? 2 : 1);
}

/**
 * Contract: encode a decoded header faithfully in its own version, keeping
 * its protocol (no mapped/mixed re-familying), so that for every header
 * `h` the parser returns, parse(encodeHeader(h)) yields a header deep-equal
 * to `h`. Used to forward a received header. v1 cannot express LOCAL or UDP:
 * those, and any address not valid for the stated protocol, become
 * `PROXY UNKNOWN\r\n` (v1) or PROXY/AF_UNSPEC (v2). Never throws.
 */
export function encodeHeader(h: ProxyHeader): Buffer {
  const p = faithfulPair(h);
  if (h.version === 1) {
    if (h.command === 'LOCAL' || p === null || h.protocol === 'UDP4' || h.protocol === 'UDP6') {
      return Buffer.from(V1_UNKNOWN, 'latin1');
    }
    return v1Line(p);
  }
  if (h.command === 'LOCAL') return v2Bytes('LOCAL', null, 1);
  const dgram = h.protocol === 'UDP4' || h.protocol === 'UDP6';
  return v2Bytes('PROXY', p, dgram ? 2 : 1);
}

/** Contract: the header's endpoints in the family its protocol names, or null. */
function faithfulPair(h: ProxyHeader): Pair | null {
  const s = h.source;
  const d = h.destination;
  if (s == null || d == null || !isPort(s.port) || !isPort(d.port)) return null;
  const want = h.protocol === 'TCP4' || h.protocol === 'UDP4' ? 4
    : h.protocol === 'TCP6' || h.protocol === 'UDP6' ? 6 : 0;
  if (want === 0) return null;
  const a = parseIp(s.address, false);
  const b = parseIp(d.address, false);
  if (a === null || b === null) return null;
  const fit = (x: IpBytes): Buffer | null =>
    x.family === want ? x.bytes : want === 6 ? mapV4ToV6(x.bytes) : null;
  const sa = fit(a);
  const da = fit(b);
  if (sa === null || da === null) return null;
  return { family: want, src: sa, dst: da, sport: s.port, dport: d.port };
}
