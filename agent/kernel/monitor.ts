/**
 * Kernel change notifications: the link, address, neighbour, route and nexthop multicast groups of rtnetlink,
 * delivered as typed `change` events. The reconcile loop uses them to notice at once when someone deletes
 * weft's routes, neighbours or FDB entries by hand.
 *
 * With weft's addon the socket is read in this process (monitor-native.ts). Without it, the socket lives in
 * a small child process (monitor-child.ts, same network namespace as this process): `netlink` 0.3.0 aborts
 * the whole process when a netlink socket overruns, and a notification socket does overrun when the kernel
 * changes faster than it is read, e.g. while weft programs thousands of peers. When the child reports or
 * dies of an overrun, the monitor emits `overrun` and starts a new child. WEFT_KERNEL_MONITOR=child picks
 * the child even where the addon is built.
 *
 * Notifications are hints, not a replica: after `overrun` the consumer must re-read the kernel state, and
 * the kernel does not notify every implied change (IPv4 routes flushed because their device went down or
 * away produce no RTM_DELROUTE), so a periodic full resync is still needed.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { rt } from './netlink-parts.js';
import { WeftError } from '../../common/errors.js';
import { childEnvironment } from '../host/command.js';
import { loadNativeAddon } from '../native-addon.js';
import { PauseBacklog } from './pause-backlog.js';
import { NativeKernelMonitor } from './monitor-native.js';
import { decodeLine } from './monitor-lines.js';
import type { KernelMonitor, MonitorEvents, MonitorGroup, MonitorOptions } from './monitor-types.js';

const G = rt.MulticastGroups;
const GROUPS: Record<MonitorGroup, number[]> = {
  link: [G.LINK],
  address: [G.IPV4_IFADDR, G.IPV6_IFADDR],
  neighbour: [G.NEIGH], // IPv4 / IPv6 neighbours and AF_BRIDGE (FDB) entries alike
  route: [G.IPV4_ROUTE, G.IPV6_ROUTE],
  nexthop: [G.NEXTHOP],
};
/** Groups a kernel may not have (nexthop objects came with Linux 5.3): joined when possible, skipped otherwise. */
const OPTIONAL_GROUPS = new Set<number>([G.NEXTHOP]);

const CHILD = fileURLToPath(new URL('./monitor-child.js', import.meta.url));
const MAX_RESTARTS = 5;
const DEFAULT_RECV_BUFFER = 4 * 1024 * 1024;

type Child = ChildProcessByStdio<Writable, Readable, Readable>;
type Feed = (text: string, pausable: boolean) => void;

/** Opens a monitor in the calling process's network namespace; resolves once it is subscribed. */
export async function openMonitor(options: MonitorOptions = {}): Promise<KernelMonitor> {
  const groups = (options.groups ?? (Object.keys(GROUPS) as MonitorGroup[])).flatMap((g) => GROUPS[g]);
  const recvBufferSize = options.recvBufferSize ?? DEFAULT_RECV_BUFFER;
  const loaded = process.env['WEFT_KERNEL_MONITOR'] === 'child' ? undefined : loadNativeAddon();
  if (loaded !== undefined && 'addon' in loaded) {
    return new NativeKernelMonitor(loaded.addon, {
      groups,
      optional: OPTIONAL_GROUPS,
      recvBufferSize,
      ref: options.ref ?? true,
      ...(options.ignoreRequestsOf === undefined ? {} : { ignoreRequestsOf: options.ignoreRequestsOf }),
    });
  }
  const monitor = new ChildKernelMonitor(groups, recvBufferSize, options);
  await monitor.started;
  return monitor;
}

class ChildKernelMonitor extends EventEmitter<MonitorEvents> implements KernelMonitor {
  /** resolves when the first child is subscribed, rejects if it cannot start */
  readonly started: Promise<void>;
  private child: Child | null = null;
  private closed = false;
  private failedStarts = 0;
  private readonly args: string;

  constructor(
    groups: number[],
    recvBufferSize: number,
    private readonly options: MonitorOptions,
  ) {
    super();
    this.args = JSON.stringify({
      groups,
      optional: groups.filter((group) => OPTIONAL_GROUPS.has(group)),
      recvBufferSize,
      ignoreRequestsOf: options.ignoreRequestsOf,
    });
    this.started = this.start();
    this.started.catch(() => undefined); // reported to openMonitor's caller
  }

  restarts = 0;
  private everReady = false;
  /** the previous child died: report `overrun` once the new one is subscribed */
  private lostEvents = false;

  /**
   * What the child wrote during a pause, as it came (one string per read, not one per line: echoes of a full
   * run come by the ten thousand), with the line splitter of the child that wrote it.
   */
  private readonly backlog = new PauseBacklog<{ feed: Feed; text: string }>();

  pause(): void {
    this.backlog.pause();
  }

  resume(): void {
    this.backlog.resume(({ feed, text }) => {
      if (this.closed) return false;
      feed(text, false);
      return true;
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    const child = this.child;
    this.child = null;
    if (child) {
      child.stdin.end();
      child.kill('SIGTERM');
    }
    this.emit('close');
  }

  private start(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      // no core dump when the package aborts the child
      const child = spawn('/bin/sh', ['-c', 'ulimit -c 0; exec "$0" "$@"', process.execPath, CHILD, this.args], {
        stdio: ['pipe', 'pipe', 'pipe'],
        env: childEnvironment(),
      });
      this.child = child;
      if (this.options.ref === false) {
        child.unref();
        for (const s of [child.stdin, child.stdout, child.stderr]) (s as unknown as Socket).unref();
      }
      let ready = false;
      let stderr = '';
      const timer = setTimeout(() => {
        if (!ready) child.kill('SIGKILL');
      }, this.options.startTimeoutMs ?? 10_000);
      timer.unref();
      child.stderr.setEncoding('utf8').on('data', (d: string) => {
        stderr = (stderr + d).slice(-2000);
      });
      child.stdin.on('error', () => undefined); // EPIPE when the child is gone
      let partial = '';
      /** Splits what the child wrote into lines and handles them; while paused (`pausable`) keeps the rest for resume(). */
      const feed: Feed = (text, pausable) => {
        const all = partial + text;
        partial = '';
        let start = 0;
        for (;;) {
          if (pausable && this.backlog.paused && ready) {
            this.backlog.keep({ feed, text: all.slice(start) });
            return;
          }
          const end = all.indexOf('\n', start);
          if (end < 0) break;
          onLine(all.slice(start, end));
          start = end + 1;
        }
        partial = all.slice(start);
      };
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        if (this.child === child && !this.closed) feed(chunk, true);
      });
      const onLine = (line: string): void => {
        if (this.closed) return;
        const msg = decodeLine(line);
        if (msg === undefined) return;
        if (msg.t === 'change') this.emit('change', msg.c);
        else if (msg.t === 'overrun') this.emit('overrun');
        else if (msg.t === 'ready' && !ready) {
          ready = true;
          this.everReady = true;
          this.failedStarts = 0;
          clearTimeout(timer);
          resolve();
          if (this.lostEvents) {
            this.lostEvents = false;
            this.emit('overrun');
          }
        }
      };
      child.on('error', () => undefined); // spawn failures also end in 'close'
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        if (this.child !== child || this.closed) return;
        this.child = null;
        const why = `netlink monitor exited (code ${code}, signal ${signal})${stderr ? `: ${stderr.trim()}` : ''}`;
        if (!ready) reject(new WeftError('WEFT_NETLINK_MONITOR', why));
        if (!this.everReady) {
          // never subscribed: openMonitor() reports it, nothing to keep alive
          this.closed = true;
          return;
        }
        // most likely the package's abort on overrun: notifications were lost
        this.lostEvents = true;
        if (!ready && ++this.failedStarts > MAX_RESTARTS) {
          this.fail(why);
          return;
        }
        this.restarts++;
        const delay = setTimeout(() => {
          if (!this.closed) this.start().catch(() => undefined); // a failed restart lands here again
        }, 50 * this.failedStarts);
        if (this.options.ref === false) delay.unref();
      });
    });
  }

  private fail(why: string): void {
    if (this.closed) return;
    const err = new WeftError('WEFT_NETLINK_MONITOR', `${why}; giving up after ${MAX_RESTARTS} restarts`);
    if (this.listenerCount('error') > 0) this.emit('error', err);
    this.close();
  }
}
