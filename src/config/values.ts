/**
 * Small value helpers for validation: durations, primes, describing a value
 * for "got ..." messages, and "did you mean" suggestions.
 */

const DURATION = /^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * Contract: parses a duration string with a unit ("250ms", "2s", "1.5m",
 * "1h", "0s") into whole milliseconds (rounded to the nearest ms). Returns
 * null when the text is not of that form (no unit, negative, spaces, other
 * units) or the result exceeds 2^31-1 ms (timer limit, about 24.8 days).
 */
export function parseDuration(text: string): number | null {
  const m = DURATION.exec(text);
  if (m === null || m[1] === undefined || m[2] === undefined) return null;
  const ms = Math.round(Number(m[1]) * (UNIT_MS[m[2]] ?? NaN));
  if (!Number.isFinite(ms) || ms > 0x7fffffff) return null;
  return ms;
}

/** Contract: true when n is an integer prime (trial division; fine up to ~10^12). */
export function isPrime(n: number): boolean {
  if (!Number.isInteger(n) || n < 2) return false;
  if (n < 4) return true;
  if (n % 2 === 0 || n % 3 === 0) return false;
  for (let d = 5; d * d <= n; d += 6) if (n % d === 0 || n % (d + 2) === 0) return false;
  return true;
}

/** Contract: a short human description of a parsed TOML value for messages. */
export function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Date || (typeof v === 'object' && v !== null && v.constructor?.name === 'TomlDate')) return 'a date';
  if (typeof v === 'object' && v !== null) return 'a table';
  return String(v);
}

/** Contract: Levenshtein edit distance between a and b. */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      cur[j] = Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost);
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}

/**
 * Contract: the known key closest to `key` when it is a near miss (edit
 * distance <= 2, or <= 1/3 of its length for long keys, or the same apart
 * from '-' vs '_' and case), else null.
 */
export function suggest(key: string, known: readonly string[]): string | null {
  const norm = key.toLowerCase().replace(/-/g, '_');
  let best: string | null = null;
  let bestD = Infinity;
  for (const k of known) {
    const d = k === norm ? 0 : editDistance(norm, k);
    if (d < bestD) { bestD = d; best = k; }
  }
  const limit = Math.max(2, Math.floor(key.length / 3));
  return bestD <= limit ? best : null;
}

/**
 * Contract: decodes hex text ("0a1B ff", upper or lower case; spaces, tabs
 * and newlines between digits are ignored) into bytes. Returns a string
 * saying what is wrong for a character that is not a hex digit or an odd
 * number of digits. "" gives an empty buffer. Pure.
 */
export function parseHex(text: string): Buffer | string {
  const digits = text.replace(/[ \t\r\n]+/g, '');
  const bad = /[^0-9a-fA-F]/.exec(digits);
  if (bad !== null) return `${JSON.stringify(bad[0])} is not a hex digit`;
  if (digits.length % 2 !== 0) return `odd number of hex digits (${digits.length})`;
  return Buffer.from(digits, 'hex');
}
