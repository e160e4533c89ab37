/**
 * What weftd and weftctl say about a failure beyond its message: the file flag it concerns, and that it
 * needs root when the kernel or a root-only file (/run/flannel/…, /var/lib/weft/…, a TLS key) refused.
 */
import { accessSync, constants } from 'node:fs';
import { UsageError } from './env.js';

const PERMISSION = new Set(['EACCES', 'EPERM']);
const FILE_ERRORS: Readonly<Record<string, string>> = {
  ENOENT: 'no such file',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EISDIR: 'a directory, not a file',
  ENOTDIR: 'a path through something that is not a directory',
};

/** The errno name an error carries (a Node system error's `code`, a NetlinkError's `errnoName`), also through its causes. */
export function errnoOf(err: unknown): string | undefined {
  for (let current = err, depth = 0; current instanceof Error && depth < 8; current = current.cause, depth++) {
    const fields = current as Error & { code?: unknown; errnoName?: unknown };
    if (typeof fields.errnoName === 'string') return fields.errnoName;
    if (typeof fields.code === 'string' && /^E[A-Z0-9]+$/.test(fields.code)) return fields.code;
  }
  return undefined;
}

/** What a command (nft, iptables) prints when the kernel refuses a user, as the errno it stands for. */
function refusalIn(err: unknown): string | undefined {
  const message = err instanceof Error ? err.message : '';
  if (/operation not permitted|must be root/i.test(message)) return 'EPERM';
  if (/permission denied/i.test(message)) return 'EACCES';
  return undefined;
}

/** " (EPERM: … run it with sudo …)" when `err` is a permission refusal and the program is not root; else "". */
export function rootHint(err: unknown, program: 'weftd' | 'weftctl'): string {
  const errno = errnoOf(err) ?? refusalIn(err);
  if (errno === undefined || !PERMISSION.has(errno) || process.getuid?.() === 0) return '';
  return ` (${errno}: ${program} needs root for this: run it with sudo, e.g. sudo ${program} …)`;
}

/** Each file given for a flag can be read; else a UsageError that names the flag, the file and why. */
export function checkReadable(files: Readonly<Record<string, string | undefined>>, program: 'weftd' | 'weftctl'): void {
  for (const [flag, path] of Object.entries(files)) {
    if (path === undefined) continue;
    try {
      accessSync(path, constants.R_OK);
    } catch (err) {
      const errno = errnoOf(err) ?? 'EIO';
      const hint = PERMISSION.has(errno)
        ? `: ${program} reads it as the user it runs as; run it as root (sudo ${program} …) or make the file readable`
        : '';
      throw new UsageError(flag, `cannot read ${path}: ${FILE_ERRORS[errno] ?? (err as Error).message} (${errno})${hint}`);
    }
  }
}
