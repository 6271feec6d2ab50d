/**
 * Shared types and constants for the PROXY protocol codec.
 *
 * Reference: HAProxy, "The PROXY protocol", versions 1 & 2
 * (doc/proxy-protocol.txt). Section numbers cited in this module refer to it:
 *   §2.1  human-readable header format (version 1)
 *   §2.2  binary header format (version 2), including the TLV vectors
 */

/** A transport endpoint as carried in a PROXY header. */
export interface Endpoint {
  readonly address: string;
  readonly port: number;
}

/**
 * What callers may hand to the encoders: typically `socket.remoteAddress` /
 * `socket.remotePort`, either of which Node may report as undefined.
 */
export type EndpointLike =
  | { readonly address?: string | undefined; readonly port?: number | undefined }
  | null
  | undefined;

export type ProxyCommand = 'PROXY' | 'LOCAL';
export type ProxyTransport = 'TCP4' | 'TCP6' | 'UDP4' | 'UDP6' | 'UNKNOWN';

/**
 * A decoded header. `source`/`destination` are present exactly when
 * `command === 'PROXY'` and `protocol !== 'UNKNOWN'`; otherwise the caller
 * uses the real connection endpoints (§2.1 UNKNOWN, §2.2 LOCAL / AF_UNSPEC).
 */
export interface ProxyHeader {
  readonly version: 1 | 2;
  readonly command: ProxyCommand;
  readonly protocol: ProxyTransport;
  readonly source?: Endpoint;
  readonly destination?: Endpoint;
}

export type ProxyErrorCode =
  | 'bad_signature' // first bytes start neither a v1 ("PROXY") nor a v2 signature
  | 'bad_v1'        // v1 line malformed (tokens, spacing, addresses, ports, lone CR/LF)
  | 'too_long'      // v1: no CRLF within 107 bytes; v2: announced length above the bound
  | 'bad_version'   // v2: version nibble is not 2
  | 'bad_command'   // v2: command nibble is neither LOCAL (0) nor PROXY (1)
  | 'bad_family'    // v2: address family nibble is not UNSPEC/INET/INET6/UNIX
  | 'bad_protocol'  // v2: transport nibble is not UNSPEC/STREAM/DGRAM
  | 'truncated'     // v2 length too small for the address block, or end() before the header completed
  | 'bad_tlv'       // v2: a TLV runs past the announced length
  | 'internal';     // unexpected input type or an exception inside the parser

export type ParseResult =
  | { readonly state: 'need-more' }
  | { readonly state: 'done'; readonly header: ProxyHeader; readonly rest: Buffer }
  | { readonly state: 'error'; readonly code: ProxyErrorCode; readonly message: string };

/** §2.1: a v1 header never exceeds 107 bytes including the trailing CRLF. */
export const V1_MAX_HEADER = 107;

/** §2.2: the fixed part of a v2 header (signature, ver/cmd, fam, len). */
export const V2_FIXED_HEADER = 16;

/**
 * Our bound on a whole v2 header (fixed part + announced length). The 16-bit
 * length field would allow 16 + 65535; we refuse anything above 65535 bytes in
 * total (i.e. length > 65519) with `too_long`, so the parser never holds more
 * than 65535 bytes. This is a deliberate, documented deviation.
 */
export const V2_MAX_HEADER = 65535;

/** §2.2: the 12-byte v2 signature. */
export const V2_SIGNATURE: Buffer = Buffer.from([
  0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
]);

/** §2.2: sizes of the address block per address family (AF_INET, AF_INET6, AF_UNIX). */
export const V2_ADDR_LEN_INET = 12;
export const V2_ADDR_LEN_INET6 = 36;
export const V2_ADDR_LEN_UNIX = 216;
