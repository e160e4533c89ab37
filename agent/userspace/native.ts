/**
 * Typed access to the two native packages of the userspace data path. Neither ships TypeScript types;
 * the interfaces below describe exactly what weft calls (cap 0.2.1, raw-socket 1.8.1).
 *
 * - `cap` (libpcap): `open(device, filter, bufferSize, buffer)` copies every captured frame into `buffer`
 *   and emits `packet(bytes, truncated)` synchronously from its poll callback: the frame must be consumed
 *   before the listener returns. A listener that throws becomes an uncaught exception, so the data path's
 *   listener catches everything.
 * - `raw-socket`: its Socket queues sends and writes one per event-loop turn when the socket polls
 *   writable, far too slow for a data path; weft calls the socket's native wrap directly, whose `send` is a
 *   synchronous sendto(2) on the non-blocking socket that throws on error (EAGAIN, EPERM, ...).
 *
 * Both register their handles on the main thread's libuv loop, so they must live on the main thread.
 */
import type { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';

export interface CapHandle extends EventEmitter {
  /** Starts capturing on `device` with a BPF `filter`; returns the link type ("ETHERNET", ...). */
  open(device: string, filter: string, bufferSize: number, buffer: Buffer): string;
  /** Stops capturing; false when it was not open. */
  close(): boolean;
  on(event: 'packet', listener: (bytes: number, truncated: boolean) => void): this;
}

interface CapModule {
  Cap: new () => CapHandle;
}

export interface RawSocketWrap {
  /** sendto(2) of buffer[offset, offset + length) to `address`; calls `done(bytes)` before returning; throws on error. */
  send(buffer: Buffer, offset: number, length: number, address: string, done: (bytes: number) => void): void;
}

export interface RawSocket extends EventEmitter {
  readonly wrap: RawSocketWrap;
  setOption(level: number, option: number, value: number): void;
  close(): void;
}

interface RawSocketModule {
  createSocket(options: { protocol: number; addressFamily?: number; bufferSize?: number }): RawSocket;
  AddressFamily: { IPv4: number; IPv6: number };
  SocketLevel: { SOL_SOCKET: number; IPPROTO_IP: number };
  SocketOption: { SO_SNDBUF: number; SO_RCVBUF: number; IP_HDRINCL: number };
}

const require = createRequire(import.meta.url);
let capModule: CapModule | undefined;
let rawModule: RawSocketModule | undefined;

/** Loads `cap` on first use (its addon needs libpcap). */
export function loadCap(): CapModule {
  capModule ??= require('cap') as CapModule;
  return capModule;
}

/** Loads `raw-socket` on first use. */
export function loadRawSocket(): RawSocketModule {
  rawModule ??= require('raw-socket') as RawSocketModule;
  return rawModule;
}

/** IPPROTO_RAW: a raw socket that sends whole IP packets, header included (IP_HDRINCL implied). */
export const IPPROTO_RAW = 255;
