/**
 * The environment file weftd's systemd unit reads (deploy/weftd.env, installed as /etc/weft/weftd.env), parsed
 * the way systemd's EnvironmentFile= reads it: `KEY=VALUE` lines, `#` and `;` comments, blank lines, values
 * optionally in single or double quotes, an optional `export ` prefix. weftctl reads it so that on a node it
 * talks to the same etcd, with the same TLS files and ports, as the node's weftd.
 */
import { readFileSync } from 'node:fs';
import { WeftError } from '../../common/errors.js';

/** Where deploy/install.sh puts the environment file. */
export const DEFAULT_ENV_FILE = '/etc/weft/weftd.env';

export class EnvFileError extends WeftError {
  constructor(message: string) {
    super('WEFT_ENV_FILE', message);
  }
}

/** Parses environment-file text; a line that is not an assignment throws EnvFileError naming the line. */
export function parseEnvFile(text: string, source = 'environment file'): Record<string, string> {
  const env: Record<string, string> = {};
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) return;
    const match = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (match === null) throw new EnvFileError(`${source} line ${index + 1}: ${JSON.stringify(raw)} is not a NAME=value line`);
    let value = match[2];
    const quote = value[0];
    if ((quote === '"' || quote === "'") && value.length >= 2 && value.endsWith(quote)) {
      value = value.slice(1, -1);
      if (quote === '"') value = value.replace(/\\(["\\$`])/g, '$1');
    }
    env[match[1]] = value;
  });
  return env;
}

/**
 * Reads `path`; an empty path means "none". A missing file is no error when `optional` (the default file on a
 * machine where weft is not installed), otherwise it is.
 */
export function readEnvFile(path: string, optional: boolean): Record<string, string> {
  if (path === '') return {};
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (optional && code === 'ENOENT') return {};
    throw new EnvFileError(`--environment-file ${path}: ${code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  return parseEnvFile(text, path);
}
