import { destination as fdDestination, pino, type DestinationStream, type Level, type Logger } from 'pino';

export type { Logger };

export const LOG_LEVELS: readonly Level[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'];

/** JSON lines on stderr (or `destination`), one logger per process with child loggers per component. */
export function createLogger(level: Level | 'silent' = 'info', destination?: DestinationStream): Logger {
  const options = { level, base: { name: 'weft' } };
  return destination === undefined ? pino(options, fdDestination(2)) : pino(options, destination);
}

/**
 * Lines about what others wrote (keys in etcd) are logged at most `burst` times per `intervalMs`: a writer that
 * fills etcd with junk must not flood the log. The next line that is logged says how many were left out
 * (`suppressed`).
 */
export class RateLimitedLog {
  private windowStart = -Infinity;
  private inWindow = 0;
  private suppressed = 0;

  constructor(
    private readonly log: Logger,
    private readonly burst = 10,
    private readonly intervalMs = 60_000,
  ) {}

  write(level: 'warn' | 'error', fields: Record<string, unknown>, message: string): void {
    const now = performance.now();
    if (now - this.windowStart >= this.intervalMs) {
      this.windowStart = now;
      this.inWindow = 0;
    }
    if (this.inWindow >= this.burst) {
      this.suppressed++;
      return;
    }
    this.inWindow++;
    const suppressed = this.suppressed;
    this.suppressed = 0;
    this.log[level](suppressed === 0 ? fields : { ...fields, suppressed }, message);
  }
}
