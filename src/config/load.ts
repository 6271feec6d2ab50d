/**
 * Loading a configuration file: read, parse TOML (smol-toml), map key paths
 * to positions, validate. Every failure is a ConfigError (ERR_L4LB_CONFIG).
 */
import { readFileSync } from 'node:fs';
import { parse, TomlError } from 'smol-toml';
import { ConfigError } from '../errors';
import { scanPositions } from './positions';
import type { Config } from './schema';
import { validateConfig, type ValidateOptions } from './validate';

export type LoadOptions = ValidateOptions;

/**
 * Contract: parses and validates TOML `text` that came from `file` (used in
 * messages only). Throws ConfigError with one issue (file:line:col) on a TOML
 * syntax error, or with every validation issue found.
 */
export function parseConfig(text: string, file: string, opts: LoadOptions = {}): Config {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    const e = err as Partial<TomlError> & { message?: string };
    const first = String(e.message ?? err).split('\n')[0] ?? '';
    const message = `not valid TOML: ${first.replace(/^Invalid TOML document:\s*/, '')}`;
    const line = typeof e.line === 'number' ? e.line : 0;
    const col = typeof e.column === 'number' ? e.column : 0;
    throw new ConfigError([{ file, line, col: line > 0 ? col : 0, path: '', message }]);
  }
  return validateConfig(doc, file, scanPositions(text), opts);
}

/**
 * Contract: reads `path` as UTF-8 and returns parseConfig() of it. A missing
 * or unreadable file (or a directory) throws ConfigError with one issue.
 */
export function loadConfigFile(path: string, opts: LoadOptions = {}): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const reason = e.code === 'ENOENT' ? 'no such file' : e.code === 'EISDIR' ? 'is a directory' : e.code === 'EACCES' ? 'permission denied' : e.message;
    throw new ConfigError([{ file: path, line: 0, col: 0, path: '', message: `cannot read the configuration file: ${reason}` }]);
  }
  return parseConfig(text, path, opts);
}
