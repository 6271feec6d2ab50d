/** The [pools.<name>.health_check] table (SPEC §2, §8.1). */
import { joinIndex } from './positions';
import type { Reader } from './reader';
import { describe, parseHex } from './values';
import { DEFAULTS, type HealthCheckConfig, type HealthCheckType } from './schema';
import { PROTOCOLS } from './validate-common';

export const HEALTH_KEYS = [
  'enabled', 'interval', 'timeout', 'rise', 'fall', 'port',
  'type', 'protocol', 'send', 'send_hex', 'expect', 'expect_regex', 'path', 'expect_status',
];
const HEALTH_TYPES: readonly HealthCheckType[] = ['connect', 'send-expect', 'http'];

/** Contract: validates [pools.<name>.health_check]; absent = defaults. */
export function readHealth(r: Reader | null): HealthCheckConfig {
  const d = DEFAULTS.healthCheck;
  if (r === null) return { enabled: d.enabled, intervalMs: 2000, timeoutMs: 1000, rise: d.rise, fall: d.fall, port: null, ...DEFAULT_PROBE_KIND };
  r.checkKeys(HEALTH_KEYS);
  return {
    enabled: r.bool('enabled', d.enabled),
    intervalMs: r.duration('interval', d.interval, 1),
    timeoutMs: r.duration('timeout', d.timeout, 1),
    rise: r.int('rise', d.rise, 1),
    fall: r.int('fall', d.fall, 1),
    port: r.has('port') ? r.int('port', 0, 1, 65535) || null : null,
    ...readProbeKind(r),
  };
}

type ProbeKind = Pick<HealthCheckConfig, 'type' | 'protocol' | 'sendHex' | 'expect' | 'expectRegex' | 'path' | 'expectStatus'>;

const DEFAULT_PROBE_KIND: ProbeKind = {
  type: DEFAULTS.healthCheck.type, protocol: DEFAULTS.healthCheck.protocol, sendHex: '', expect: null, expectRegex: null,
  path: DEFAULTS.healthCheck.path, expectStatus: null,
};

/**
 * Contract: validates the probe kind keys of SPEC §8.1 (type, protocol,
 * send / send_hex, expect / expect_regex, path, expect_status): each key
 * belongs to one type (a key of another type is an error, so a forgotten
 * `type` is not silently a connect check); at most one of send / send_hex
 * and of expect / expect_regex is non-empty; hex and regex are checked here;
 * a UDP send-expect must send something.
 */
function readProbeKind(r: Reader): ProbeKind {
  const d = DEFAULTS.healthCheck;
  const type = r.oneOf('type', HEALTH_TYPES, d.type);
  const only = (key: string, want: HealthCheckType): void => {
    if (r.has(key) && type !== want) r.sink.at(r.p(key), `${key} applies to type = "${want}" only; this health check has type = "${type}"`);
  };
  for (const k of ['protocol', 'send', 'send_hex', 'expect', 'expect_regex']) only(k, 'send-expect');
  for (const k of ['path', 'expect_status']) only(k, 'http');
  const protocol = r.oneOf('protocol', PROTOCOLS, d.protocol);
  const send = r.str('send', '');
  const sendHexText = r.str('send_hex', '');
  let sendHex = '';
  if (send !== '' && sendHexText !== '') r.sink.at(r.p('send_hex'), 'at most one of send / send_hex may be set');
  if (sendHexText !== '') {
    const bytes = parseHex(sendHexText);
    if (typeof bytes === 'string') r.sink.at(r.p('send_hex'), `expected hex bytes such as "0a1b2c", got ${describe(sendHexText)} (${bytes})`);
    else sendHex = bytes.toString('hex');
  } else if (send !== '') {
    sendHex = Buffer.from(send, 'utf8').toString('hex');
  }
  const expect = r.str('expect', '');
  const expectRegex = r.str('expect_regex', '');
  if (expect !== '' && expectRegex !== '') r.sink.at(r.p('expect_regex'), 'at most one of expect / expect_regex may be set');
  if (expectRegex !== '') {
    try {
      new RegExp(expectRegex);
    } catch (err) {
      r.sink.at(r.p('expect_regex'), `expected a JavaScript regular expression, got ${describe(expectRegex)} (${(err as Error).message})`);
    }
  }
  if (type === 'send-expect' && protocol === 'udp' && sendHex === '') {
    r.sink.at(r.p('protocol'), 'protocol = "udp" needs send or send_hex: a UDP probe must send a datagram to get a reply');
  }
  const path = r.str('path', d.path);
  if (r.has('path') && typeof r.get('path') === 'string' && !/^\/[\x21-\x7e]*$/.test(path)) {
    r.sink.at(r.p('path'), `expected a path starting with "/" without spaces or control characters, got ${describe(path)}`);
  }
  let expectStatus: number[] | null = null;
  const es = r.get('expect_status');
  if (es !== undefined) {
    if (!Array.isArray(es) || es.length === 0) {
      r.sink.at(r.p('expect_status'), `expected a non-empty array of HTTP status codes such as [200], got ${describe(es)}`);
    } else {
      expectStatus = [];
      es.forEach((v: unknown, i: number) => {
        if (typeof v === 'number' && Number.isInteger(v) && v >= 100 && v <= 599) expectStatus!.push(v);
        else r.sink.at(joinIndex(r.p('expect_status'), i), `expected an HTTP status code between 100 and 599, got ${describe(v)}`);
      });
    }
  }
  return {
    type,
    protocol,
    sendHex,
    expect: expect === '' ? null : expect,
    expectRegex: expectRegex === '' ? null : expectRegex,
    path,
    expectStatus,
  };
}
