/**
 * Running the checkout's programs as an unprivileged user (setpriv, uid 65534): that user must be able to
 * reach them. A checkout under a directory only root may enter (`mktemp -d` makes them 0700) would fail the
 * run with "cannot find module" instead of what the test is about; for the length of `body`, every directory
 * above `path` gets the search bit for others, and each one changed is put back afterwards.
 */
import { chmodSync, statSync } from 'node:fs';
import { dirname } from 'node:path';

export async function asReachableByOthers<T>(path: string, body: () => Promise<T>): Promise<T> {
  const changed: { dir: string; mode: number }[] = [];
  try {
    for (let dir = dirname(path); ; dir = dirname(dir)) {
      const mode = statSync(dir).mode & 0o7777;
      if ((mode & 0o001) === 0) {
        chmodSync(dir, mode | 0o001);
        changed.push({ dir, mode });
      }
      if (dirname(dir) === dir) break;
    }
    return await body();
  } finally {
    for (const { dir, mode } of changed) chmodSync(dir, mode);
  }
}
