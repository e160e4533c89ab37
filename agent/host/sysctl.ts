/**
 * Kernel parameters under /proc/sys. /proc/sys/net is per network namespace: it shows the namespace of the
 * process that opens it, so running weftd inside a namespace changes that namespace only.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import { SysctlError } from './errors.js';

export const IPV4_FORWARD = 'net.ipv4.ip_forward';
export const IPV6_FORWARD = 'net.ipv6.conf.all.forwarding';

/** "net.ipv4.ip_forward" → "<root>/net/ipv4/ip_forward" (names may also be given with slashes). */
export function sysctlPath(name: string, root = '/proc/sys'): string {
  if (!/^[A-Za-z0-9_./-]+$/.test(name) || name.split(/[./]/).some((part) => part === '' || part === '..')) {
    throw new SysctlError(name, 'not a sysctl name');
  }
  return join(root, name.includes('/') ? name : name.replace(/\./g, '/'));
}

/** The value, trimmed. */
export async function readSysctl(name: string, root?: string): Promise<string> {
  try {
    return (await readFile(sysctlPath(name, root), 'utf8')).trim();
  } catch (err) {
    if (err instanceof SysctlError) throw err;
    throw new SysctlError(name, `cannot read: ${(err as Error).message}`, { cause: err });
  }
}

/** Writes `value` and reads it back; throws SysctlError when the write fails or the kernel shows another value. */
export async function writeSysctl(name: string, value: string, root?: string): Promise<void> {
  try {
    await writeFile(sysctlPath(name, root), `${value}\n`);
  } catch (err) {
    if (err instanceof SysctlError) throw err;
    throw new SysctlError(name, `cannot write ${value}: ${(err as Error).message}`, { cause: err });
  }
  const actual = await readSysctl(name, root);
  if (actual !== value) throw new SysctlError(name, `wrote ${value} but it reads back as ${actual}`);
}

export interface ForwardingOptions {
  ipv4?: boolean;
  ipv6?: boolean;
  logger?: Logger;
  /** Tests point this at a directory of fake files. */
  root?: string;
}

/** What enableForwarding found and did, per sysctl. */
export interface ForwardingResult {
  [sysctl: string]: { before: string; after: string };
}

/**
 * Turns on packet forwarding for the enabled families (ipv4 defaults to true, ipv6 to false), writing only
 * when the value is not already 1 so that a read-only /proc/sys that is already right is fine.
 */
export async function enableForwarding(options: ForwardingOptions = {}): Promise<ForwardingResult> {
  const names = [...((options.ipv4 ?? true) ? [IPV4_FORWARD] : []), ...(options.ipv6 ? [IPV6_FORWARD] : [])];
  const result: ForwardingResult = {};
  for (const name of names) {
    const before = await readSysctl(name, options.root);
    if (before !== '1') {
      await writeSysctl(name, '1', options.root);
      options.logger?.info({ sysctl: name, before }, `enabled ${name}`);
    }
    result[name] = { before, after: await readSysctl(name, options.root) };
  }
  return result;
}
