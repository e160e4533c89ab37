/**
 * weft's own N-API addon for the userspace data path's UDP I/O (native/weft_udp.c, built by
 * `npm run build` through node-gyp into build/Release/weft_udp.node): sendmsg(2) with UDP_SEGMENT (UDP
 * GSO: a TSO frame's segments leave in one system call and cross the host's stack as one packet) and
 * recvmmsg(2) on a socket with UDP_GRO (a batch of datagrams per system call; a train of equal datagrams
 * from one sender arrives as one). Node's dgram has neither, and no maintained npm package offers them
 * (docs/userspace.md). It also reads the capture ring's drop count, which `cap` does not report. When the
 * addon is missing or does not load, the data path uses dgram (paths.ts).
 *
 * The addon returns -errno instead of throwing; only wrong argument types throw.
 */
import { existsSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/** An opaque receiver handle. */
export type ReceiverHandle = object & { readonly __receiver: unique symbol };

export interface UdpNative {
  /** A non-blocking UDP socket bound to address:port (port 0: any), optionally with UDP_GRO; fd or -errno. */
  open(address: number, port: number, sendBuffer: number, receiveBuffer: number, gro: 0 | 1): number;
  close(fd: number): number;
  /** sendmsg of buffer[offset, offset + length) to address:port; with segment > 0 and length > segment, as
   * datagrams of `segment` bytes (UDP GSO). Bytes sent or -errno. */
  send(fd: number, buffer: Buffer, offset: number, length: number, segment: number, address: number, port: number): number;
  /** Polls fd; on readable, recvmmsg into `slots` slots of `slotSize` bytes of `buffer`, then
   * callback(count) with meta[4i..4i+3] = length, source address, GRO segment size (0: one datagram),
   * truncated (1); callback(-errno) on a socket error. */
  receive(fd: number, buffer: Buffer, slotSize: number, slots: number, meta: Int32Array, callback: (count: number) => void): ReceiverHandle | number;
  /** Stops a receiver (idempotent); close the fd afterwards. */
  stop(handle: ReceiverHandle): number;
  /** Frames the kernel dropped on packet socket `fd` (a full capture ring) since the last call, or -errno. */
  captureDrops(fd: number): number;
}

/**
 * This process's AF_PACKET sockets (libpcap's, opened by `cap`, which does not expose its descriptor):
 * the descriptors whose socket inode /proc/net/packet lists.
 */
export function packetSocketDescriptors(): number[] {
  try {
    const inodes = new Set(
      readFileSync('/proc/net/packet', 'utf8').split('\n').slice(1).map((line) => line.trim().split(/\s+/)[8]).filter((inode) => inode !== undefined && inode !== ''),
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

export const ADDON_PATH = fileURLToPath(new URL('../../../build/Release/weft_udp.node', import.meta.url));

const require = createRequire(import.meta.url);
let loaded: { native: UdpNative } | { error: string } | undefined;

/**
 * The addon, or why it is not used: not built, failed to load, or turned off with
 * WEFT_USERSPACE_NATIVE_UDP=0 (for comparisons and for testing the fallback).
 */
export function loadUdpNative(): { native: UdpNative } | { error: string } {
  if (loaded !== undefined) return loaded;
  if (process.env['WEFT_USERSPACE_NATIVE_UDP'] === '0') {
    loaded = { error: 'turned off (WEFT_USERSPACE_NATIVE_UDP=0)' };
  } else if (!existsSync(ADDON_PATH)) {
    loaded = { error: `${ADDON_PATH} is not built` };
  } else {
    try {
      loaded = { native: require(ADDON_PATH) as UdpNative };
    } catch (err) {
      loaded = { error: `${ADDON_PATH} does not load: ${(err as Error).message}` };
    }
  }
  return loaded;
}

/** errno values the data path tells apart. */
export const EAGAIN = 11;
export const ENOBUFS = 105;
export const EINVAL = 22;
export const EIO = 5;

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
