/**
 * One error family with stable codes. Tests check `code`, never wording.
 */
export type ErrorCode =
  | 'ERR_L4LB_CONFIG'          // configuration missing, unreadable, not TOML or invalid (exit 78)
  | 'ERR_L4LB_BIND'            // a listener or the admin endpoint could not bind (exit 1)
  | 'ERR_L4LB_NATIVE'          // splice = "on" but the addon cannot load (exit 1)
  | 'ERR_L4LB_START';          // any other failure to start (exit 1)

export class L4lbError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'L4lbError';
  }
}

/** One problem found in a configuration file, with where it is. */
export interface ConfigIssue {
  readonly file: string;
  /** 1-based; 0 when unknown. */
  readonly line: number;
  /** 1-based; 0 when unknown. */
  readonly col: number;
  /** Key path such as `pools.web.backends[1].address`; "" for the whole file. */
  readonly path: string;
  readonly message: string;
}

export function formatConfigIssue(i: ConfigIssue): string {
  const where = i.line > 0 ? `${i.file}:${i.line}:${i.col}` : i.file;
  return i.path ? `${where}: ${i.path}: ${i.message}` : `${where}: ${i.message}`;
}

/** Thrown by config loading with every problem found, not only the first. */
export class ConfigError extends L4lbError {
  readonly issues: readonly ConfigIssue[];
  constructor(issues: readonly ConfigIssue[]) {
    super('ERR_L4LB_CONFIG', issues.map(formatConfigIssue).join('\n'));
    this.issues = issues;
    this.name = 'ConfigError';
  }
}

export const EXIT = Object.freeze({ OK: 0, FAILURE: 1, USAGE: 64, CONFIG: 78 });
