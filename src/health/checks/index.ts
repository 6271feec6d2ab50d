/**
 * Chooses the probe of a pool's `[health_check]` (SPEC §8.1): `connect`
 * (a TCP connect, the default), `send-expect` (TCP or UDP) or `http`.
 * Built once per (backend, health check configuration); the probe keeps
 * the compiled matcher and the bytes to send.
 */
import type { HealthCheckConfig } from '../../config/schema';
import type { ProbeFn } from '../probe';
import { probeTcp } from '../tcp-probe';
import { httpProbe } from './http';
import { makeMatcher, sendExpectProbe } from './send-expect';

/** Contract: the probe for `hc` (validated: its regex compiles). Never throws for a validated config. */
export function createProbe(hc: HealthCheckConfig): ProbeFn {
  switch (hc.type) {
    case 'send-expect':
      return sendExpectProbe({ protocol: hc.protocol, send: Buffer.from(hc.sendHex, 'hex'), match: makeMatcher(hc.expect, hc.expectRegex) });
    case 'http':
      return httpProbe({ path: hc.path, expectStatus: hc.expectStatus });
    default:
      return probeTcp;
  }
}

/** Contract: true when the probe of `hc` uses UDP (it can run on a UDP-only pool without a `port`). */
export function probesOverUdp(hc: HealthCheckConfig): boolean {
  return hc.type === 'send-expect' && hc.protocol === 'udp';
}
