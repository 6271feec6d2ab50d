/**
 * Runs the real CLI as a child process on a config written to a temp dir,
 * and reads its JSON log lines.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { withTimeout } from './net';

export const CLI = join(__dirname, '..', '..', 'src', 'cli.js');

export interface LogLine {
  level: string;
  msg: string;
  [k: string]: unknown;
}

export class L4lbProcess {
  readonly child: ChildProcess;
  readonly dir: string;
  readonly configPath: string;
  readonly logs: LogLine[] = [];
  stderr = '';
  exitCode: number | null = null;
  private readonly exited: Promise<number>;
  private waiters: { pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];

  /**
   * `launcher` runs an installed l4lb instead of this checkout's: config path → command and arguments.
   * `wrap`: a command prefix the CLI runs under, e.g. ['ip', 'netns', 'exec', 'ns1'] (it must exec, not fork).
   */
  constructor(config: string, opts: { env?: NodeJS.ProcessEnv; args?: string[]; uid?: number; gid?: number; launcher?: (configPath: string) => [string, string[]]; wrap?: string[] } = {}) {
    this.dir = mkdtempSync(join(tmpdir(), 'l4lb-test-'));
    this.configPath = join(this.dir, 'lb.toml');
    writeFileSync(this.configPath, config);
    if (opts.uid !== undefined) chmodSync(this.dir, 0o755); // readable by the unprivileged user
    const [file, argv] = opts.launcher ? opts.launcher(this.configPath) : [process.execPath, [CLI, '-c', this.configPath]];
    const [cmd, ...pre] = [...(opts.wrap ?? []), file];
    this.child = spawn(cmd as string, [...pre, ...argv, ...(opts.args ?? [])], {
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.gid ?? opts.uid } : {}),
    });
    let buf = '';
    this.child.stdout!.setEncoding('utf8');
    this.child.stdout!.on('data', (d: string) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        let obj: LogLine;
        try {
          obj = JSON.parse(line) as LogLine;
        } catch {
          continue;
        }
        this.logs.push(obj);
        this.waiters = this.waiters.filter((w) => {
          if (w.pred(obj)) {
            w.resolve(obj);
            return false;
          }
          return true;
        });
      }
    });
    this.child.stderr!.setEncoding('utf8');
    this.child.stderr!.on('data', (d: string) => (this.stderr += d));
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.exitCode = code ?? (signal ? 128 : -1);
        resolve(this.exitCode);
      });
    });
  }

  /** Resolves with the first log line (past or future) matching `pred`. */
  waitForLog(pred: (l: LogLine) => boolean, timeoutMs = 10000, what = 'log line'): Promise<LogLine> {
    const found = this.logs.find(pred);
    if (found) return Promise.resolve(found);
    return withTimeout(
      new Promise<LogLine>((resolve, reject) => {
        this.waiters.push({ pred, resolve });
        void this.exited.then((code) => reject(new Error(`l4lb exited (${code}) before ${what}; stderr: ${this.stderr}`)));
      }),
      timeoutMs,
      `${what}; stderr: ${this.stderr}`,
    );
  }

  /** Port bound by a listener, from its `listening` log line. */
  async port(listener: string, timeoutMs = 10000): Promise<number> {
    const l = await this.waitForLog((x) => x.msg === 'listening' && x.listener === listener, timeoutMs, `listening ${listener}`);
    return l.port as number;
  }

  writeConfig(config: string): void {
    writeFileSync(this.configPath, config);
  }

  signal(sig: NodeJS.Signals): void {
    if (this.exitCode === null) this.child.kill(sig);
  }

  waitExit(timeoutMs = 15000): Promise<number> {
    return withTimeout(this.exited, timeoutMs, 'l4lb exit');
  }

  /** Stops the process (SIGKILL if it does not exit on SIGTERM in time) and removes the temp dir. */
  async stop(): Promise<void> {
    if (this.exitCode === null) {
      this.child.kill('SIGTERM');
      try {
        await withTimeout(this.exited, 10000, 'exit after SIGTERM');
      } catch {
        this.child.kill('SIGKILL');
        await this.exited;
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Runs the CLI to completion (for --check, --version, bad configs). */
export function runCli(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 15000): Promise<{ code: number; stdout: string; stderr: string }> {
  return withTimeout(
    new Promise((resolve) => {
      const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      child.on('exit', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    }),
    timeoutMs,
    `l4lb ${args.join(' ')}`,
  );
}

export function tempConfig(text: string): { path: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'l4lb-cfg-'));
  const path = join(dir, 'lb.toml');
  writeFileSync(path, text);
  return { path, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
