import { destination as fdDestination, pino, type DestinationStream, type Level, type Logger } from 'pino';

export type { Logger };

export const LOG_LEVELS: readonly Level[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'];

/** JSON lines on stderr (or `destination`), one logger per process with child loggers per component. */
export function createLogger(level: Level | 'silent' = 'info', destination?: DestinationStream): Logger {
  const options = { level, base: { name: 'weft' } };
  return destination === undefined ? pino(options, fdDestination(2)) : pino(options, destination);
}
