/** What a kernel monitor (monitor.ts, in a child process; monitor-native.ts, in weftd's) offers its consumer. */
import type { EventEmitter } from 'node:events';
import type { WeftError } from '../../common/errors.js';
import type { KernelChange } from './types.js';

export type MonitorGroup = 'link' | 'address' | 'neighbour' | 'route' | 'nexthop';

export interface MonitorOptions {
  /** default: all five (nexthop only where the kernel has nexthop objects) */
  groups?: MonitorGroup[];
  /** SO_RCVBUF to ask for (default 4 MiB; for the child process, capped by net.core.rmem_max) */
  recvBufferSize?: number;
  /**
   * A netlink port id (NetlinkKernel.portId) whose requests' notifications are not delivered: weft's own
   * requests, whose outcome it has from their answers. The kernel stamps a notification with the port of
   * the socket whose request caused it (links, addresses, neighbours, routes, nexthops); VXLAN FDB
   * notifications carry 0 whoever asked, and come through. With weft's addon the kernel drops them before
   * they are queued (a socket filter), so programming thousands of peers does not fill the monitor's socket.
   */
  ignoreRequestsOf?: number;
  /** keep the process alive while the monitor is open (default true) */
  ref?: boolean;
  /** give up opening after this long (default 10 s) */
  startTimeoutMs?: number;
}

export interface MonitorEvents {
  change: [KernelChange];
  /** notifications were lost: resync from dumps */
  overrun: [];
  /** the monitor could not be restarted and is closed */
  error: [WeftError];
  close: [];
}

/** A subscription to the kernel's change notifications. */
export interface KernelMonitor extends EventEmitter<MonitorEvents> {
  /** Number of times the socket was replaced after an overrun or a crash. */
  readonly restarts: number;
  /**
   * Keeps notifications back (undecoded) until resume(): for a consumer that is busy making thousands of
   * changes itself, whose echoes it would otherwise decode while it works. Pauses nest.
   */
  pause(): void;
  /** Ends a pause: the notifications that came meanwhile are delivered now, in order. */
  resume(): void;
  close(): void;
}
