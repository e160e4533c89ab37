import { destination as fdDestination, pino, type DestinationStream, type Level, type Logger } from 'pino';

export type { Logger };

export const LOG_LEVELS: readonly Level[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'];

/** The fields of an error that are logged besides type, message and stack: what says why, never a secret. */
const ERROR_FIELDS = [
  'code',
  'errno',
  'errnoName',
  'syscall',
  'path',
  'dest',
  'address',
  'port',
  'signal',
  'details',
  'key',
  'field',
  'flag',
] as const;

/**
 * An error as logged under `err`: its type, message, stack, code and the other fields of ERROR_FIELDS, and
 * its causes. Only those: an error object may carry anything (a request's options, credentials).
 */
function serializeError(err: unknown, depth = 0): unknown {
  if (typeof err !== 'object' || err === null) return err;
  const source = err as Record<string, unknown>;
  const out: Record<string, unknown> = {
    type: err instanceof Error ? err.name : typeof source.type === 'string' ? source.type : 'Error',
    // an error-like object's own toString may say why; a plain one prints as [object Object] either way
    // eslint-disable-next-line @typescript-eslint/no-base-to-string
    message: typeof source.message === 'string' ? source.message : String(err),
  };
  if (typeof source.stack === 'string') out.stack = source.stack;
  for (const field of ERROR_FIELDS) {
    const value = source[field];
    if (typeof value === 'string' || typeof value === 'number') out[field] = value;
  }
  if (source.cause !== undefined && depth < 4) out.cause = serializeError(source.cause, depth + 1);
  return out;
}

/**
 * JSON lines on stderr (or `destination`), one logger per process with child loggers per component; errors go under `err`.
 *
 * stderr is written synchronously, as node's own console does. Buffered, the lines still unwritten at an exit are
 * flushed by a loop that retries every 100 ms for as long as the write fails: with the reader of stderr gone (a
 * restarted journald, a closed pipe) each write fails with EPIPE and the process never exits. Written at once, the
 * first EPIPE turns the logger off and the process goes on without its log.
 */
export function createLogger(level: Level | 'silent' = 'info', destination?: DestinationStream): Logger {
  const options = { level, base: { name: 'weft' }, serializers: { err: (err: unknown) => serializeError(err) } };
  return destination === undefined ? pino(options, fdDestination({ dest: 2, sync: true })) : pino(options, destination);
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
