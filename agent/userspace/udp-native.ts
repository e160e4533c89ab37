/**
 * The userspace data path's use of weft's addon (../native-addon.ts): sendmsg(2) with UDP_SEGMENT (UDP
 * GSO: a TSO frame's segments leave in one system call and cross the host's stack as one packet) and
 * recvmmsg(2) on a socket with UDP_GRO (a batch of datagrams per system call; a train of equal datagrams
 * from one sender arrives as one). Node's dgram has neither, and no maintained npm package offers them
 * (docs/userspace.md). It also reads the capture ring's drop count, which `cap` does not report. When the
 * addon is missing or does not load, the data path uses dgram (paths.ts).
 *
 * The addon returns -errno instead of throwing; only wrong argument types throw.
 */
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { constants } from 'node:os';
import { loadNativeAddon, type NativeAddon } from '../native-addon.js';

/** What the data path uses of the addon. */
export type UdpNative = Pick<NativeAddon, 'open' | 'close' | 'send' | 'receive' | 'stop' | 'captureDrops' | 'sendFrame'>;

/**
 * This process's AF_PACKET sockets (libpcap's, opened by `cap`, which does not expose its descriptor):
 * the descriptors whose socket inode /proc/net/packet lists.
 */
export function packetSocketDescriptors(): number[] {
  try {
    const inodes = new Set(
      readFileSync('/proc/net/packet', 'utf8')
        .split('\n')
        .slice(1)
        .map((line) => line.trim().split(/\s+/)[8])
        .filter((inode) => inode !== undefined && inode !== ''),
    );
    const out: number[] = [];
    for (const name of readdirSync('/proc/self/fd')) {
      let target: string;
      try {
        target = readlinkSync(`/proc/self/fd/${name}`);
      } catch {
        continue;
      }
      const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
      if (inode !== undefined && inodes.has(inode)) out.push(Number(name));
    }
    return out;
  } catch {
    return [];
  }
}

/**
 * The addon, or why it is not used: not built, failed to load, or turned off with
 * WEFT_USERSPACE_NATIVE_UDP=0 (for comparisons and for testing the fallback).
 */
export function loadUdpNative(): { native: UdpNative } | { error: string } {
  if (process.env['WEFT_USERSPACE_NATIVE_UDP'] === '0') return { error: 'turned off (WEFT_USERSPACE_NATIVE_UDP=0)' };
  const loaded = loadNativeAddon();
  return 'addon' in loaded ? { native: loaded.addon } : loaded;
}

/** errno values the data path tells apart (the addon returns them negated). */
export const { EAGAIN, ENOBUFS, EINVAL, EIO } = constants.errno;

/** Largest UDP payload in one send (IPv4), and the kernel's segment limit for one UDP GSO send. */
export const MAX_UDP_PAYLOAD = 65_507;
export const MAX_GSO_SEGMENTS = 64;

/** The 32-bit value of a dotted IPv4 address. */
export function ipv4Number(text: string): number {
  const parts = text.split('.');
  if (parts.length !== 4) throw new Error(`not an IPv4 address: ${text}`);
  let value = 0;
  for (const part of parts) {
    const byte = Number(part);
    if (!/^\d{1,3}$/.test(part) || byte > 255) throw new Error(`not an IPv4 address: ${text}`);
    value = value * 256 + byte;
  }
  return value;
}
