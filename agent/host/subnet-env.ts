/**
 * subnet.env on disk: written atomically (temp file in the same directory, fsync, rename, fsync of the
 * directory), read back tolerant of what other writers put there. Text format: common/subnet-env.ts.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { formatSubnetEnv, parseSubnetEnv, type SubnetEnv, type SubnetEnvContent } from '../../common/subnet-env.js';

export { InvalidSubnetEnvError, type SubnetEnv, type SubnetEnvContent } from '../../common/subnet-env.js';

/** Where flanneld writes it, and where the flannel CNI plugin looks by default. */
export const DEFAULT_SUBNET_ENV_PATH = '/run/flannel/subnet.env';

/**
 * Writes `content` to `path` so that a reader sees either the old file or the whole new one, never a part.
 * Creates the directory (mode 0755) when missing; the file gets mode 0644.
 */
export async function writeSubnetEnv(path: string, content: SubnetEnvContent): Promise<void> {
  const text = formatSubnetEnv(content);
  const dir = dirname(path);
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const temp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const file = await open(temp, 'wx', 0o644);
  try {
    try {
      await file.writeFile(text, 'utf8');
      await file.chmod(0o644); // whatever the umask: the CNI plugin and others read it
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temp, path);
  } catch (err) {
    await unlink(temp).catch(() => {});
    throw err;
  }
  // make the rename itself durable; some filesystems refuse fsync on a directory, which is harmless here
  const dirHandle = await open(dir, 'r').catch(() => undefined);
  if (dirHandle) {
    await dirHandle.sync().catch(() => {});
    await dirHandle.close();
  }
}

/**
 * Reads `path`; undefined when the file does not exist. A malformed file throws InvalidSubnetEnvError
 * naming the path and line (the agent logs it and goes on without a hint).
 */
export async function readSubnetEnv(path: string = DEFAULT_SUBNET_ENV_PATH): Promise<SubnetEnv | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  return parseSubnetEnv(text, path);
}
