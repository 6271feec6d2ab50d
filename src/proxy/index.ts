/**
 * PROXY protocol v1/v2 wire codec (HAProxy "The PROXY protocol" §2.1, §2.2).
 * Pure: no sockets, no timers. The 5 s completion deadline and the
 * `proxy_protocol` close reason (SPEC §2) belong to the caller.
 */
export * from './types';
export { encodeV1, encodeV2, encodeHeader } from './encode';
export { ProxyHeaderParser, parseProxyHeader } from './parse';
export type { ProxyHeaderParserOptions } from './parse';
export { parseIPv4, parseIPv6, formatIPv4, formatIPv6 } from './addr';
