#!/usr/bin/env node
/**
 * Command line (SPEC §1): argv → config → Server → signals → exit codes.
 *   0  clean exit (also after a graceful drain)
 *   78 configuration missing, unreadable, not TOML or invalid
 *   64 bad command-line usage
 *   1  any other failure to start or run
 */
import { Command, CommanderError } from 'commander';
import { loadConfigFile } from './config/load';
import { ConfigError, EXIT, L4lbError, formatConfigIssue } from './errors';
import { Server } from './server';
import { VERSION } from './version';
import { inheritedSockets } from './systemd/activation';
import type { ListenerConfig } from './config/schema';
import { createLogger } from './log';
import { requestReload } from './admin/reload-client';
import { requestUpgrade } from './upgrade/client';
import { UpgradeChild } from './upgrade/new';

const DEFAULT_CONFIG = '/etc/l4lb/lb.toml';

interface Options {
  config?: string;
  check?: boolean;
  reload?: boolean;
  upgrade?: boolean;
}

function parseArgs(argv: string[]): Options {
  const program = new Command('l4lb')
    .description('A Layer-4 TCP/UDP load balancer')
    .option('-c, --config <file>', `configuration file (default: $L4LB_CONFIG, then ${DEFAULT_CONFIG})`)
    .option('--check', 'validate the configuration, print one line per listener, exit')
    .option('--reload', "ask the running instance (through the file's [admin]) to reload; exit 0 done, 78 invalid file, 1 no answer")
    .option('--upgrade', "ask the running instance (through the file's [admin]) to hand everything to a new process; exit 0 done, 78 invalid file, 1 failed or no answer")
    .version(VERSION, '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show this help')
    .allowExcessArguments(false)
    .exitOverride();
  try {
    program.parse(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') process.exit(EXIT.OK);
      process.exit(EXIT.USAGE);
    }
    throw err;
  }
  return program.opts<Options>();
}

function fail(code: number, message: string): never {
  process.stderr.write(`${message}\n`);
  process.exit(code);
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv);
  const path = opts.config ?? process.env.L4LB_CONFIG ?? DEFAULT_CONFIG;
  // Started by an upgrade (SPEC §8.5): the old process waits on this channel.
  const upgrading = UpgradeChild.detect();

  let config;
  try {
    config = loadConfigFile(path);
  } catch (err) {
    const msg = err instanceof ConfigError ? err.issues.map(formatConfigIssue).join('\n') : `l4lb: ${path}: ${(err as Error).message}`;
    if (upgrading !== null) await upgrading.fail(`configuration invalid: ${msg}`);
    fail(EXIT.CONFIG, msg);
  }

  if (opts.upgrade) {
    const r = await requestUpgrade(config.admin, path);
    process.stdout.write(r.stdout);
    process.stderr.write(r.stderr);
    process.exit(r.code);
  }

  if (opts.reload) {
    const r = await requestReload(config.admin, path);
    process.stdout.write(r.stdout);
    process.stderr.write(r.stderr);
    process.exit(r.code);
  }

  if (opts.check) {
    for (const l of config.listeners) process.stdout.write(`listener ${l.name}: ${l.protocol} ${l.bindText} -> ${checkTarget(l)}\n`);
    process.exit(EXIT.OK);
  }

  // Signals are handled from the start: one that arrives while listeners are
  // still binding is acted on as soon as the server exists.
  let server: Server | null = null;
  let signals = 0;
  let stopRequested: NodeJS.Signals | null = null;
  const stop = (signal: NodeJS.Signals): void => {
    signals++;
    if (signals > 1) {
      server?.log.warn({ signal }, 'second signal: exiting at once');
      process.exit(EXIT.FAILURE);
    }
    if (server === null) {
      stopRequested = signal;
      return;
    }
    const s = server;
    s.log.info({ signal }, 'shutting down');
    s.drain().then(
      () => process.exit(EXIT.OK),
      (err: unknown) => {
        s.log.error({ err: String(err) }, 'drain failed');
        process.exit(EXIT.FAILURE);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('SIGHUP', () => {
    if (server !== null) void server.reload();
  });
  // SPEC §8.5: hand everything to a new process started from the program on disk.
  process.on('SIGUSR2', () => {
    if (server !== null) void server.upgrade();
  });

  const log = createLogger(config.global.logLevel);
  try {
    const fds = inheritedSockets();
    if (upgrading !== null) {
      const inherited = await upgrading.receive(config);
      for (const [name, fd] of inherited.fds) fds.set(name, fd);
      server = await Server.start({ configPath: path, config, fds, log, inherited });
    } else server = await Server.start({ configPath: path, config, fds, log });
  } catch (err) {
    const msg = err instanceof L4lbError ? err.message : String((err as Error)?.message ?? err);
    const e = err as { listener?: string; address?: string; port?: number; code?: string };
    log.error({ listener: e.listener ?? null, address: e.address, port: e.port, code: e.code, err: msg }, 'start failed');
    if (upgrading !== null) await upgrading.fail(`start failed: ${msg}`);
    fail(EXIT.FAILURE, `l4lb: ${msg}`);
  }
  if (upgrading !== null) {
    const r = await upgrading.takeOver(server);
    log.info({ from_pid: upgrading.oldPid, connections: r.connections, sessions: r.sessions }, 'upgrade taken over');
    // Under systemd this process is the service's main process from now on.
    void server.notifier.send(`MAINPID=${process.pid}`);
  }
  void server.notifier.ready();
  if (stopRequested !== null) {
    signals = 0;
    stop(stopRequested);
  }
}

main().catch((err: unknown) => fail(EXIT.FAILURE, `l4lb: ${String((err as Error)?.stack ?? err)}`));

/** `--check`: where a listener sends its clients (its pool, or its SNI routes and fallback). */
function checkTarget(l: ListenerConfig): string {
  if (l.routeBy !== 'sni') return `pool ${l.pool}`;
  const routes = l.routes.map((r) => `${r.sni} => ${r.pool}`).join(', ');
  return `sni routes [${routes}], fallback ${l.pool === '' ? 'none (no_route)' : `pool ${l.pool}`}`;
}
