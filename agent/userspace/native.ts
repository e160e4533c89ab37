/**
 * Typed access to `cap` (libpcap), the userspace data path's capture, which ships no TypeScript types; the
 * interface below describes exactly what weft calls (cap 0.2.1). `open(device, filter, bufferSize, buffer)`
 * copies every captured frame into `buffer` and emits `packet(bytes, truncated)` synchronously from its
 * poll callback: the frame must be consumed before the listener returns. A listener that throws becomes an
 * uncaught exception, so the data path's listener catches everything. It registers its handle on the main
 * thread's libuv loop, so it must live on the main thread.
 */
import type { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';

export interface CapHandle extends EventEmitter {
  /** Starts capturing on `device` with a BPF `filter`; returns the link type ("ETHERNET", ...). */
  open(device: string, filter: string, bufferSize: number, buffer: Buffer): string;
  /** Stops capturing; false when it was not open. */
  close(): boolean;
  /** pcap_sendpacket: sends the whole of `buffer`, an Ethernet frame, out of the device; throws on error. */
  send(buffer: Buffer, length?: number): void;
  on(event: 'packet', listener: (bytes: number, truncated: boolean) => void): this;
}

interface CapModule {
  Cap: new () => CapHandle;
}

const require = createRequire(import.meta.url);
let capModule: CapModule | undefined;

/** Loads `cap` on first use (its addon needs libpcap). */
export function loadCap(): CapModule {
  capModule ??= require('cap') as CapModule;
  return capModule;
}
