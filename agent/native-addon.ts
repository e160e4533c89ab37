/**
 * weft's own N-API addon (native/weft_native.c, built by `npm run build` through node-gyp into
 * build/Release/weft_native.node): the system calls that neither Node nor weft's npm dependencies offer.
 * The userspace data path uses its batched and segmented UDP I/O (userspace/udp-native.ts), the kernel
 * monitor its netlink notification socket (kernel/monitor-native.ts). Both work without it, slower: the data
 * path with dgram, the monitor in a child process. systemd's notifications (host/systemd-notify.ts) need it.
 *
 * The addon returns -errno instead of throwing; only wrong argument types throw.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/** An opaque receiver handle. */
export type ReceiverHandle = object & { readonly __receiver: unique symbol };

export interface NativeAddon {
  /** A non-blocking UDP socket bound to address:port (port 0: any), optionally with UDP_GRO; fd or -errno. */
  open(address: number, port: number, sendBuffer: number, receiveBuffer: number, gro: 0 | 1): number;
  close(fd: number): number;
  /** sendmsg of buffer[offset, offset + length) to address:port; with segment > 0 and length > segment, as
   * datagrams of `segment` bytes (UDP GSO). Bytes sent or -errno. */
  send(fd: number, buffer: Buffer, offset: number, length: number, segment: number, address: number, port: number): number;
  /** Polls fd; on readable, recvmmsg into `slots` slots of `slotSize` bytes of `buffer`, then
   * callback(count) with meta[4i..4i+3] = length, source address, GRO segment size (0: one datagram),
   * truncated (1); callback(-errno) on a socket error. At most `batchesPerEvent` recvmmsg calls per
   * readiness event before the event loop serves other handles. */
  receive(
    fd: number,
    buffer: Buffer,
    slotSize: number,
    slots: number,
    meta: Int32Array,
    callback: (count: number) => void,
    batchesPerEvent: number,
  ): ReceiverHandle | number;
  /** The receiver no longer keeps the event loop alive; nothing once it is stopped. */
  unref(handle: ReceiverHandle): number;
  /** Stops a receiver; close the fd afterwards. Safe to call again, and the handle stays safe to pass. */
  stop(handle: ReceiverHandle): number;
  /** Frames the kernel dropped on packet socket `fd` (a full capture ring) since the last call, or -errno. */
  captureDrops(fd: number): number;
  /** send(2) of buffer[offset, offset + length), a whole Ethernet frame, on packet socket `fd` (out of the
   * device it is bound to); bytes sent or -errno. */
  sendFrame(fd: number, buffer: Buffer, offset: number, length: number): number;
  /** A non-blocking rtnetlink socket with the receive buffer asked for (beyond net.core.rmem_max when
   * privileged), bound, in no group yet; fd or -errno. */
  netlinkOpen(receiveBuffer: number): number;
  /** Joins a multicast group (RTNLGRP_*); 0 or -errno. */
  netlinkJoin(fd: number, group: number): number;
  /** Has the kernel drop the notifications sent on behalf of netlink port `port` (its requests' echoes)
   * before they reach rtnetlink socket `fd`; 0 or -errno. */
  netlinkIgnorePort(fd: number, port: number): number;
  /** One datagram to an AF_UNIX datagram socket: `address` is sun_path's bytes (a path, or a NUL and an
   * abstract name); bytes sent or -errno (-EAGAIN when the receiver's queue is full). */
  unixDatagram(address: Buffer, message: Buffer): number;
}

export const ADDON_PATH = fileURLToPath(new URL('../../build/Release/weft_native.node', import.meta.url));

const require = createRequire(import.meta.url);
let loaded: { addon: NativeAddon } | { error: string } | undefined;

/** The addon, or why it is not there: not built, or it failed to load. */
export function loadNativeAddon(): { addon: NativeAddon } | { error: string } {
  if (loaded !== undefined) return loaded;
  if (!existsSync(ADDON_PATH)) {
    loaded = { error: `${ADDON_PATH} is not built` };
  } else {
    try {
      loaded = { addon: require(ADDON_PATH) as NativeAddon };
    } catch (err) {
      loaded = { error: `${ADDON_PATH} does not load: ${(err as Error).message}` };
    }
  }
  return loaded;
}
