import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../agent/log.js';

export interface LogRecord {
  level: number;
  msg: string;
  [field: string]: unknown;
}

/** A real pino logger whose records a test can read back. */
export function captureLogger(): { logger: Logger; records: LogRecord[] } {
  const records: LogRecord[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line.trim() !== '') records.push(JSON.parse(line) as LogRecord);
      done();
    },
  });
  return { logger: createLogger('debug', sink), records };
}

/** Warnings (pino level 40) and worse. */
export function warnings(records: LogRecord[]): LogRecord[] {
  return records.filter((record) => record.level >= 40);
}
