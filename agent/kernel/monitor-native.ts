/**
 * The kernel monitor in this process, on weft's addon (../native-addon.ts): an rtnetlink socket joined to
 * the notification groups and read with recvmmsg, a batch of notifications per callback, decoded here.
 * An overrun is ENOBUFS from recvmmsg: reported as `overrun`, and reading goes on from the same socket.
 * (monitor.ts falls back to a child process when the addon is not built.)
 */
import { EventEmitter } from 'node:events';
import { constants } from 'node:os';
import { parseMessages } from './netlink-parts.js';
import { WeftError } from '../../common/errors.js';
import type { NativeAddon, ReceiverHandle } from '../native-addon.js';
import { decodeChange } from './codec.js';
import { errnoName } from './errors.js';
import { PauseBacklog } from './pause-backlog.js';
import type { KernelMonitor, MonitorEvents } from './monitor-types.js';

/** A notification is one skb of at most a page or two; a slot holds any of them whole. */
const SLOT_SIZE = 16 * 1024;
const SLOTS = 64;
/**
 * The socket is drained in one go (up to 64 × 64 notifications): while weft programs thousands of peers,
 * each turn of the event loop causes about a thousand notifications, and reading only a few batches a turn
 * would let the socket overrun, which costs a full resync.
 */
const BATCHES_PER_EVENT = 64;
const { ENOBUFS } = constants.errno;
const NLMSG_HEADER = 16;

export interface NativeMonitorOptions {
  groups: readonly number[];
  /** groups an older kernel may lack: skipped when joining fails */
  optional: ReadonlySet<number>;
  recvBufferSize: number;
  ref: boolean;
  ignoreRequestsOf?: number;
}

function monitorError(what: string, errno: number): WeftError {
  return new WeftError('WEFT_NETLINK_MONITOR', `netlink monitor: cannot ${what}: ${errnoName(errno)}`);
}

export class NativeKernelMonitor extends EventEmitter<MonitorEvents> implements KernelMonitor {
  /** The socket is never replaced: an overrun does not end it. */
  readonly restarts = 0;
  private readonly buffer = Buffer.allocUnsafe(SLOT_SIZE * SLOTS);
  private readonly meta = new Int32Array(SLOTS * 4);
  private readonly fd: number;
  private readonly receiver: ReceiverHandle;
  /** -1: none (a port id is never negative) */
  private readonly ignoredPort: number;
  private closed = false;
  /** while held: the notifications' bytes, a message per entry, and overruns, in order */
  private readonly backlog = new PauseBacklog<Buffer | 'overrun'>();

  constructor(
    private readonly addon: NativeAddon,
    options: NativeMonitorOptions,
  ) {
    super();
    const fd = addon.netlinkOpen(options.recvBufferSize);
    if (fd < 0) throw monitorError('open an rtnetlink socket', -fd);
    for (const group of options.groups) {
      const joined = addon.netlinkJoin(fd, group);
      if (joined < 0 && !options.optional.has(group)) {
        addon.close(fd);
        throw monitorError(`join rtnetlink group ${group}`, -joined);
      }
    }
    if (options.ignoreRequestsOf !== undefined) {
      const filtered = addon.netlinkIgnorePort(fd, options.ignoreRequestsOf);
      if (filtered < 0) {
        addon.close(fd);
        throw monitorError('filter its own requests out of the rtnetlink socket', -filtered);
      }
    }
    const receiver = addon.receive(fd, this.buffer, SLOT_SIZE, SLOTS, this.meta, (count) => this.onBatch(count), BATCHES_PER_EVENT);
    if (typeof receiver === 'number') {
      addon.close(fd);
      throw monitorError('poll the rtnetlink socket', -receiver);
    }
    if (!options.ref) addon.unref(receiver);
    this.fd = fd;
    this.receiver = receiver;
    this.ignoredPort = options.ignoreRequestsOf ?? -1;
  }

  pause(): void {
    this.backlog.pause();
  }

  resume(): void {
    this.backlog.resume((entry) => {
      if (this.closed) return false;
      if (entry === 'overrun') this.emit('overrun');
      else this.emitChanges(entry);
      return true;
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.backlog.clear();
    this.addon.stop(this.receiver);
    this.addon.close(this.fd);
    this.emit('close');
  }

  private onBatch(count: number): void {
    if (this.closed) return;
    if (count < 0) {
      if (count === -ENOBUFS) this.overrun();
      else this.fail(-count);
      return;
    }
    const meta = this.meta;
    let lost = false;
    for (let i = 0; i < count && !this.closed; i++) {
      // a notification cut short by its slot is as good as lost
      if (meta[i * 4 + 3] === 1) {
        lost = true;
        continue;
      }
      const datagram = this.buffer.subarray(i * SLOT_SIZE, i * SLOT_SIZE + meta[i * 4]);
      if (this.backlog.paused) this.keep(datagram);
      else this.emitChanges(datagram);
    }
    if (lost) this.overrun();
  }

  /** Copies a datagram's messages into the backlog, but for the ones that are echoes of ignored requests. */
  private keep(datagram: Buffer): void {
    let offset = 0;
    while (offset + NLMSG_HEADER <= datagram.length) {
      const length = datagram.readUInt32LE(offset);
      const end = offset + ((length + 3) & ~3);
      if (length < NLMSG_HEADER || end > datagram.length + 3) break;
      if (datagram.readUInt32LE(offset + 12) !== this.ignoredPort)
        this.backlog.keep(Buffer.from(datagram.subarray(offset, Math.min(end, datagram.length))));
      offset = end;
    }
  }

  /** Decodes whole netlink messages laid end to end (one datagram, or a message of a held one). */
  private emitChanges(bytes: Buffer): void {
    let messages;
    try {
      messages = parseMessages(bytes);
    } catch {
      return; // an undecodable notification is skipped; the consumer's periodic resync covers it
    }
    for (const message of messages) {
      if (this.closed) return;
      if (message.port === this.ignoredPort) continue;
      let change;
      try {
        change = decodeChange(message.type, message.data);
      } catch {
        continue;
      }
      if (change) this.emit('change', change);
    }
  }

  private overrun(): void {
    if (this.backlog.paused) this.backlog.keep('overrun');
    else this.emit('overrun');
  }

  private fail(errno: number): void {
    const err = monitorError('read the rtnetlink socket', errno);
    if (this.listenerCount('error') > 0) this.emit('error', err);
    this.close();
  }
}
