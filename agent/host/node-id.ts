import { randomBytes, randomUUID } from 'node:crypto';
import { link, mkdir, open, readFile, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { WeftError } from '../../common/errors.js';

export const DEFAULT_NODE_ID_FILE = '/var/lib/weft/node-id';

const NODE_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export class NodeIdError extends WeftError {
  constructor(path: string, reason: string, cause?: unknown) {
    super('WEFT_NODE_ID', `${path}: ${reason}`, { cause });
  }
}

/** The id in `path`, or undefined when there is no such file. */
async function readNodeId(path: string): Promise<string | undefined> {
  let text: string;
  try {
    text = (await readFile(path, 'utf8')).trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new NodeIdError(path, (err as Error).message, err);
  }
  if (!NODE_ID.test(text))
    throw new NodeIdError(path, `"${text.slice(0, 40)}" is not a node ID (a UUID); delete the file to get a new one`);
  return text;
}

/** fsync of a file or directory, so that what was written to it (a new name in it) survives a crash. */
async function sync(path: string, flags: string): Promise<void> {
  const handle = await open(path, flags);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * This host's identity, kept on disk across restarts and reboots: it tells this host's own lease apart
 * from one that another host with the same public IP holds. Created (a random UUID) on first use.
 *
 * Two first starts at once agree on one id: each writes its id whole to a file of its own (O_EXCL) and
 * syncs it, then links it to `path`, which only the first can (link(2) does not replace); the other reads
 * the winner's id. So `path` never holds a partial id, even after a crash, and the id is on disk (the file
 * and the directory entry synced) before it is used.
 */
export async function loadNodeId(path: string = DEFAULT_NODE_ID_FILE): Promise<string> {
  const existing = await readNodeId(path);
  if (existing !== undefined) return existing;
  const directory = dirname(path);
  try {
    await mkdir(directory, { recursive: true });
    const id = randomUUID();
    const temporary = join(directory, `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}`);
    const handle = await open(temporary, 'wx', 0o644);
    try {
      await handle.writeFile(`${id}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await link(temporary, path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    } finally {
      await unlink(temporary);
    }
    await sync(directory, 'r');
  } catch (err) {
    throw new NodeIdError(path, `cannot create it: ${(err as Error).message}`);
  }
  const id = await readNodeId(path);
  if (id === undefined) throw new NodeIdError(path, 'vanished right after it was created');
  return id;
}
