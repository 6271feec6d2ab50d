/**
 * Address value types shared by the configuration and the network code.
 * They live here, at the bottom of the import graph, so that `net/` needs
 * nothing from the layers above it.
 */

/** A host (IP literal or DNS name) and a port. */
export interface HostPort {
  readonly host: string;
  readonly port: number;
  /** 4 or 6 when host is an IP literal, 0 when it is a name. */
  readonly family: 0 | 4 | 6;
}

/** A parsed CIDR block. IPv4 blocks are kept as IPv4 (not mapped). */
export interface Cidr {
  /** As written, for logs and status. */
  readonly text: string;
  readonly family: 4 | 6;
  /** Network address bytes (4 or 16), host bits cleared. */
  readonly bytes: Uint8Array;
  readonly prefix: number;
}
