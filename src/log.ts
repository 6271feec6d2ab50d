/**
 * The pino root logger (control path only: nothing per chunk or per packet).
 * JSON lines on stdout with `level`, `time`, `msg` as SPEC §7.
 */
import pino from 'pino';
import type { LogLevel } from './config/schema';

export type Logger = pino.Logger;

export function createLogger(level: LogLevel = 'info', destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: undefined, // no pid/hostname noise: the fields are the event's own
      formatters: { level: (label) => ({ level: label }) },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination ?? pino.destination({ dest: 1, sync: true }),
  );
}
