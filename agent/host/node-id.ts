import { randomUUID } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { WeftError } from '../../common/errors.js';

export const DEFAULT_NODE_ID_FILE = '/var/lib/weft/node-id';

const NODE_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export class NodeIdError extends WeftError {
  constructor(path: string, reason: string, cause?: unknown) {
    super('WEFT_NODE_ID', `${path}: ${reason}`, { cause });
  }
}

/**
 * This host's identity, kept on disk across restarts and reboots: it tells this host's own lease apart
 * from one that another host with the same public IP holds. Created (a random UUID) on first use.
 */
export async function loadNodeId(path: string = DEFAULT_NODE_ID_FILE): Promise<string> {
  let text: string | undefined;
  try {
    text = (await readFile(path, 'utf8')).trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new NodeIdError(path, (err as Error).message, err);
  }
  if (text !== undefined) {
    if (!NODE_ID.test(text)) throw new NodeIdError(path, `"${text.slice(0, 40)}" is not a node ID (a UUID); delete the file to get a new one`);
    return text;
  }
  const id = randomUUID();
  await mkdir(dirname(path), { recursive: true });
  const temporary = `${path}.${process.pid}.tmp`;
  await writeFile(temporary, `${id}\n`, { mode: 0o644 });
  await rename(temporary, path);
  return id;
}
