/**
 * The datagram transport under the request engine (socket.ts): weft's addon when it loads, else the
 * `netlink` package's RawNetlinkSocket. The kernel handles rtnetlink requests inside sendmsg (about 0.3 s
 * for the 40 000 requests of 10 000 peers); the addon makes that call on a libuv pool thread, so the event
 * loop reads answers and makes the next requests meanwhile, where the package's socket makes it on the
 * event loop.
 */
import { Protocol, RawNetlinkSocket } from 'netlink';
import { loadNativeAddon, type NativeAddon, type ReceiverHandle } from '../native-addon.js';
import { errnoName, NetlinkError } from './errors.js';

export type TransportKind = 'addon' | 'netlink-package';

export type TransportError = Error & { errno?: number; code?: string };

export interface TransportHandlers {
  /** a datagram of answers; its bytes stay valid */
  data(datagram: Buffer): void;
  /** a socket error: ENOBUFS when answers were dropped, anything else ends the socket */
  error(err: TransportError): void;
}

export interface RtnlTransport {
  readonly kind: TransportKind;
  /** SO_RCVBUF as the kernel granted it */
  readonly recvBufferSize: number;
  /** the netlink port id: the kernel stamps the notifications of this socket's requests with it */
  readonly portId: number;
  /** Sends one datagram of requests, then done(0) or done(errno). Datagrams reach the kernel in this order. */
  send(datagram: Buffer, done: (errno: number) => void): void;
  ref(): void;
  unref(): void;
  close(): void;
}

const ENOBUFS = 105;
const EIO = 5;

/** Opens the addon's transport, or the package's when the addon is not there or `kind` asks for it. */
export function openTransport(recvBufferSize: number, handlers: TransportHandlers, kind?: TransportKind): RtnlTransport {
  if (kind !== 'netlink-package') {
    const loaded = loadNativeAddon();
    if ('addon' in loaded) return new AddonTransport(loaded.addon, recvBufferSize, handlers);
    if (kind === 'addon') throw new NetlinkError(`open an rtnetlink socket through weft's addon (${loaded.error})`, EIO);
  }
  return new PackageTransport(recvBufferSize, handlers);
}

class PackageTransport implements RtnlTransport {
  readonly kind = 'netlink-package';
  readonly recvBufferSize: number;
  private readonly raw: RawNetlinkSocket;

  constructor(recvBufferSize: number, handlers: TransportHandlers) {
    this.raw = new RawNetlinkSocket(Protocol.ROUTE, { recvBufferSize, sendBufferSize: 0 });
    this.recvBufferSize = this.raw.getRecvBufferSize();
    this.raw.on('message', (datagram) => handlers.data(datagram));
    this.raw.on('error', (err) => handlers.error(err));
  }

  get portId(): number {
    return this.raw.address().port;
  }

  send(datagram: Buffer, done: (errno: number) => void): void {
    this.raw.send(datagram, { port: 0 }, (err) => done(err ? Math.abs(err.errno ?? EIO) : 0));
  }

  ref(): void {
    this.raw.ref();
  }

  unref(): void {
    this.raw.unref();
  }

  close(): void {
    this.raw.close();
  }
}

/** A dump's datagrams are at most 32 KiB (the kernel's cap), answers to writes far less. */
const SLOT_SIZE = 64 * 1024;
const SLOTS = 16;
const BATCHES_PER_EVENT = 16;

class AddonTransport implements RtnlTransport {
  readonly kind = 'addon';
  readonly recvBufferSize: number;
  readonly portId: number;
  private readonly fd: number;
  private readonly receiver: ReceiverHandle;
  private readonly buffer = Buffer.allocUnsafe(SLOT_SIZE * SLOTS);
  private readonly meta = new Int32Array(SLOTS * 4);
  private readonly waiting: { datagram: Buffer; done: (errno: number) => void }[] = [];
  private sending = false;
  private closed = false;

  constructor(
    private readonly addon: NativeAddon,
    recvBufferSize: number,
    private readonly handlers: TransportHandlers,
  ) {
    const fd = addon.netlinkOpen(recvBufferSize);
    if (fd < 0) throw new NetlinkError('open an rtnetlink socket', -fd);
    const granted = addon.receiveBufferSize(fd);
    const portId = addon.netlinkPortId(fd);
    const receiver = granted < 0 || portId < 0 ? granted : addon.receive(fd, this.buffer, SLOT_SIZE, SLOTS, this.meta, (count) => this.onBatch(count), BATCHES_PER_EVENT);
    if (typeof receiver === 'number') {
      addon.close(fd);
      throw new NetlinkError('set up an rtnetlink socket', -Math.min(receiver, portId));
    }
    this.fd = fd;
    this.recvBufferSize = granted;
    this.portId = portId;
    this.receiver = receiver;
  }

  send(datagram: Buffer, done: (errno: number) => void): void {
    if (this.closed) return;
    this.waiting.push({ datagram, done });
    if (!this.sending) this.sendNext();
  }

  ref(): void {
    if (!this.closed) this.addon.ref(this.receiver);
  }

  unref(): void {
    if (!this.closed) this.addon.unref(this.receiver);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.waiting.length = 0;
    this.addon.stop(this.receiver);
    // a send still on its pool thread uses the descriptor: it is closed when that send is back
    if (!this.sending) this.addon.close(this.fd);
  }

  private sendNext(): void {
    const next = this.waiting.shift();
    if (next === undefined) return;
    this.sending = true;
    const queued = this.addon.netlinkSend(this.fd, next.datagram, (result) => {
      this.sending = false;
      if (this.closed) {
        this.addon.close(this.fd);
        return;
      }
      next.done(result < 0 ? -result : 0);
      if (!this.sending) this.sendNext();
    });
    if (queued < 0) {
      this.sending = false;
      queueMicrotask(() => next.done(-queued));
    }
  }

  private onBatch(count: number): void {
    if (this.closed) return;
    if (count < 0) {
      this.handlers.error(Object.assign(new Error(`rtnetlink socket: ${errnoName(-count)}`), { errno: -count, code: errnoName(-count) }));
      return;
    }
    for (let i = 0; i < count && !this.closed; i++) {
      if (this.meta[i * 4 + 3] === 1) {
        // an answer cut short is an answer lost
        this.handlers.error(Object.assign(new Error('rtnetlink socket: answer truncated'), { errno: ENOBUFS, code: 'ENOBUFS' }));
        continue;
      }
      this.handlers.data(Buffer.from(this.buffer.subarray(i * SLOT_SIZE, i * SLOT_SIZE + this.meta[i * 4]!)));
    }
  }
}
