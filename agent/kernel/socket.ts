/**
 * The request engine under the kernel shim: one rtnetlink socket with many requests in flight.
 *
 * Why not the `netlink` package's own request()/getX() helpers (0.3.0):
 * - its multipart reassembly has a single slot per socket, so an ACK that arrives between two parts of a
 *   dump ends the dump early ("Multipart message not terminated properly"): writes and dumps cannot be
 *   in flight together;
 * - its errors are plain `Error("Request rejected: ENODEV")`, the errno number is gone;
 * - it asks for an ACK per request, and nothing bounds the number of requests in flight, so a large burst
 *   overruns the receive buffer, which makes the package abort the whole process (see below).
 *
 * Callbacks from the package's native code must never throw either: an exception there also ends in
 * std::terminate. The handlers below catch everything.
 *
 * So this module uses the package's RawNetlinkSocket and message framing, and does its own bookkeeping:
 * - requests are queued FIFO and sent in batches: several netlink messages in one sendmsg(). The kernel
 *   processes them in order, synchronously inside sendmsg, and answers on this socket in the same order.
 * - only the last message of a batch carries NLM_F_ACK. A failing message is answered with an error even
 *   without the flag, so when the batch's last answer arrives, every message of the batch that got no
 *   error has succeeded.
 * - at most `maxInFlight` messages are unanswered at a time, and never more than the receive buffer can
 *   hold answers for: the package aborts the whole process (C++ terminate in its poll handler) when a
 *   netlink socket overruns, so an overrun must not happen at all. Replies are matched by sequence number.
 * - a dump is a barrier: nothing else is sent until it is complete. The kernel builds a dump in chunks as
 *   the answer is read, so a write sent meanwhile could show up in its later chunks; with the barrier a
 *   dump shows exactly the requests made before it (and the kernel's EBUSY for a second concurrent dump
 *   on one socket cannot happen). Writes made before a dump are still pipelined: the kernel has applied
 *   them by the time the dump request is sent, their answers may come later. A dump the kernel flags as
 *   interrupted (NLM_F_DUMP_INTR: the table changed meanwhile) is retried.
 * - should recvmsg() still report ENOBUFS, every unanswered request fails with errno ENOBUFS: its outcome
 *   is unknown and the caller should re-read the kernel state (the reconcile loop does).
 */
import { constants } from 'node:os';
import { Flags, FlagsGet, MessageType, Protocol, RawNetlinkSocket, parseMessages, type NetlinkMessage } from './netlink-parts.js';
import { readS32, writeU16, writeU32 } from './codec.js';
import { NetlinkClosedError, NetlinkError } from './errors.js';

export interface RtnlSocketOptions {
  /** Upper bound on unanswered messages (default 1024). */
  maxInFlight?: number;
  /** Upper bound on messages per sendmsg (default 256). */
  maxBatchMessages?: number;
  /** Upper bound on bytes per sendmsg (default 32 KiB). */
  maxBatchBytes?: number;
  /** SO_RCVBUF to ask for (default 4 MiB, at least 256 KiB; the kernel caps it at net.core.rmem_max). */
  recvBufferSize?: number;
}

/**
 * Receive-buffer space budgeted per unanswered message: an error answer echoes the request (< 300 bytes
 * for the shim's requests) and costs about 1.3 KiB of buffer (skb truesize); 4 KiB leaves a wide margin.
 */
const BYTES_PER_ANSWER = 4096;
/** Receive-buffer space kept free for dump chunks and GET answers. */
const RESERVED_BYTES = 256 * 1024;
const MIN_RECV_BUFFER = 256 * 1024;

export interface RtnlStats {
  /** netlink messages sent */
  messages: number;
  /** sendmsg() calls (batches) made */
  batches: number;
  /** most messages unanswered at once */
  maxPending: number;
  /** the in-flight bound in force: maxInFlight, lowered to what the receive buffer can hold */
  window: number;
  /** the receive buffer the kernel granted (SO_RCVBUF as read back) */
  recvBufferSize: number;
}

/** A lazily built description of a request, e.g. "add route 198.18.2.0/24 via ... dev weft.1". */
export type Describe = () => string;

export interface Reply {
  messages: NetlinkMessage[];
  /** NLM_F_DUMP_INTR was set on a part of the dump */
  interrupted: boolean;
}

interface Pending {
  seq: number;
  type: number;
  /** NLM_F_* bits of the request; NLM_F_REQUEST, and NLM_F_ACK where needed, are added as it is sent */
  flags: number;
  payload: Buffer;
  dump: boolean;
  /** ask for an ACK even in the middle of a batch (requests with a data answer) */
  ack: boolean;
  describe: Describe;
  /** answer messages of a GET, made on the first one */
  messages: NetlinkMessage[] | null;
  /** a dump's answer messages go here as they come, and are not kept */
  each: ((m: NetlinkMessage) => void) | null;
  interrupted: boolean;
  batch: Pending[] | null;
  /** a GET's or a dump's answer; null for a write, whose answer is only success or an error */
  resolve: ((reply: Reply) => void) | null;
  reject: ((err: Error) => void) | null;
  /** instead of resolve and reject: a write's outcome, null on success */
  done: ((err: Error | null) => void) | null;
}

/** A request's outcome is an error. */
function fail(p: Pending, err: Error): void {
  if (p.done !== null) p.done(err);
  else p.reject?.(err);
}

const HEADER_LEN = 16;
const NLMSG_ALIGN = (n: number): number => (n + 3) & ~3;
const NO_PAYLOAD = Buffer.alloc(0);
const { ENOBUFS, EIO } = constants.errno;
const EBUSY = 16;

/** A FIFO with O(1) shift. */
class Queue<T> {
  private items: (T | undefined)[] = [];
  private head = 0;
  get length(): number {
    return this.items.length - this.head;
  }
  push(item: T): void {
    this.items.push(item);
  }
  peek(): T | undefined {
    return this.items[this.head];
  }
  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head];
    // a request taken out must not stay reachable from here: a dump's holds every message of its answer
    this.items[this.head++] = undefined;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }
  drain(): T[] {
    const rest = this.items.slice(this.head) as T[];
    this.items = [];
    this.head = 0;
    return rest;
  }
}

export class RtnlSocket {
  private readonly raw: RawNetlinkSocket;
  private readonly maxInFlight: number;
  private readonly maxBatchMessages: number;
  private readonly maxBatchBytes: number;
  private readonly queue = new Queue<Pending>();
  private readonly pending = new Map<number, Pending>();
  private seq = 0;
  private dumpInFlight = false;
  private flushScheduled = false;
  private referenced = true;
  private closed = false;
  private closing = false;
  private drainWaiters: (() => void)[] = [];
  private readonly counters = { messages: 0, batches: 0, maxPending: 0 };
  private readonly recvBufferSize: number;

  constructor(options: RtnlSocketOptions = {}) {
    this.raw = new RawNetlinkSocket(Protocol.ROUTE, {
      recvBufferSize: Math.max(MIN_RECV_BUFFER, options.recvBufferSize ?? 4 * 1024 * 1024),
      sendBufferSize: 0, // keep the default
    });
    // what the kernel granted (doubled, capped by net.core.rmem_max) decides how much may be in flight
    this.recvBufferSize = this.raw.getRecvBufferSize();
    const fits = Math.floor((this.recvBufferSize - RESERVED_BYTES) / BYTES_PER_ANSWER);
    this.maxInFlight = Math.max(1, Math.min(options.maxInFlight ?? 1024, fits));
    this.maxBatchMessages = Math.max(1, options.maxBatchMessages ?? 256);
    this.maxBatchBytes = Math.max(4096, options.maxBatchBytes ?? 32 * 1024);
    this.raw.on('message', (buf) => this.onData(buf));
    this.raw.on('error', (err) => {
      try {
        this.onSocketError(err);
      } catch {
        // never into the native caller
      }
    });
    this.updateRef();
  }

  /** Messages queued or unanswered. */
  get outstanding(): number {
    return this.queue.length + this.pending.size;
  }

  /** The socket's netlink port id: the kernel stamps the notifications its requests cause with it. */
  get portId(): number {
    return this.raw.address().port;
  }

  stats(): RtnlStats {
    return { ...this.counters, window: this.maxInFlight, recvBufferSize: this.recvBufferSize };
  }

  /**
   * Sends a request that the kernel answers with an ACK or an error (create / replace / delete).
   * `flags` are the request-specific NLM_F_* bits (CREATE, EXCL, REPLACE, ...).
   */
  write(type: number, flags: number, payload: Buffer, describe: Describe): Promise<void> {
    if (this.closing) return Promise.reject(new NetlinkClosedError(describe()));
    return new Promise<void>((resolve, reject) =>
      this.enqueue(type, flags, payload, describe, false, false, null, null, (err) => (err === null ? resolve() : reject(err))),
    );
  }

  /** Sends a non-dump GET; resolves with the answer's messages (usually one). */
  get(type: number, payload: Buffer, describe: Describe): Promise<NetlinkMessage[]> {
    return this.request(type, 0, payload, describe, false, true).then((r) => r.messages);
  }

  /**
   * Sends a dump request; resolves with what `take` makes of each message of the dump (in order, nulls left
   * out), retrying interrupted dumps. Each message is taken as it comes and not kept: a dump of tens of
   * thousands of objects would otherwise hold all their messages until the last one came.
   */
  async dump<T>(type: number, payload: Buffer, describe: Describe, take: (m: NetlinkMessage) => T | null): Promise<T[]> {
    const attempts = 5;
    for (let attempt = 1; ; attempt++) {
      const taken: T[] = [];
      let failed = false;
      let failure: unknown;
      const each = (m: NetlinkMessage): void => {
        if (failed) return;
        try {
          const item = take(m);
          if (item !== null) taken.push(item);
        } catch (err) {
          // never into the socket's reader: the dump is read to its end, then fails
          failed = true;
          failure = err;
        }
      };
      try {
        const reply = await this.request(type, FlagsGet.DUMP, payload, describe, true, false, each);
        if (failed) throw failure;
        if (!reply.interrupted) return taken;
        if (attempt >= attempts) throw new NetlinkError(describe(), 4 /* EINTR */, 'dump kept being interrupted');
      } catch (err) {
        // EBUSY: the kernel is still finishing a dump whose answer we dropped after an overrun
        if (!(err instanceof NetlinkError && err.errno === EBUSY) || attempt >= attempts) throw err;
        await new Promise((r) => setTimeout(r, 10 * attempt));
      }
    }
  }

  /** Waits until everything queued has been answered, then closes the socket. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closing = true;
    if (this.outstanding > 0) await new Promise<void>((r) => this.drainWaiters.push(r));
    this.destroy();
  }

  /** Closes the socket now; queued and unanswered requests fail with NetlinkClosedError. */
  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    this.closing = true;
    this.raw.close();
    const victims = [...this.pending.values(), ...this.queue.drain()];
    this.pending.clear();
    for (const p of victims) fail(p, new NetlinkClosedError(p.describe()));
    this.notifyDrained();
  }

  // -------------------------------------------------------------------------------------------------

  private request(
    type: number,
    flags: number,
    payload: Buffer,
    describe: Describe,
    dump: boolean,
    ack: boolean,
    each: Pending['each'] = null,
  ): Promise<Reply> {
    if (this.closing) return Promise.reject(new NetlinkClosedError(describe()));
    return new Promise<Reply>((resolve, reject) => this.enqueue(type, flags, payload, describe, dump, ack, resolve, reject, null, each));
  }

  private enqueue(
    type: number,
    flags: number,
    payload: Buffer,
    describe: Describe,
    dump: boolean,
    ack: boolean,
    resolve: Pending['resolve'],
    reject: Pending['reject'],
    done: Pending['done'],
    each: Pending['each'] = null,
  ): void {
    this.seq = this.seq >= 0xffffffff ? 1 : this.seq + 1;
    const seq = this.seq;
    this.queue.push({
      seq,
      type,
      flags,
      payload,
      dump,
      ack,
      describe,
      messages: null,
      each,
      interrupted: false,
      batch: null,
      resolve,
      reject,
      done,
    });
    this.updateRef();
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // a microtask: every request made in the same synchronous run goes into the same batches
    queueMicrotask(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  /**
   * Sends what is queued, as far as the in-flight bound and a dump in flight allow (the rest goes as answers
   * come). Requests are otherwise sent in a microtask (scheduleFlush); a caller that has made all its requests
   * for the moment sends them at once with this.
   */
  flush(): void {
    while (!this.closed && this.queue.length > 0 && this.pending.size < this.maxInFlight) {
      if (this.dumpInFlight) return; // barrier, see above
      const head = this.queue.peek()!;
      if (head.dump) {
        this.queue.shift();
        this.dumpInFlight = true;
        this.sendBatch([head], NLMSG_ALIGN(HEADER_LEN + head.payload.length));
        continue;
      }
      const batch: Pending[] = [];
      let bytes = 0;
      for (;;) {
        const next = this.queue.peek();
        if (!next || next.dump) break;
        if (batch.length >= this.maxBatchMessages || this.pending.size + batch.length >= this.maxInFlight) break;
        const size = NLMSG_ALIGN(HEADER_LEN + next.payload.length);
        if (batch.length > 0 && bytes + size > this.maxBatchBytes) break;
        this.queue.shift();
        batch.push(next);
        bytes += size;
      }
      this.sendBatch(batch, bytes);
    }
  }

  /** Sends `batch` in one sendmsg: its messages, `bytes` in all, framed one after the other in one buffer. */
  private sendBatch(batch: Pending[], bytes: number): void {
    const last = batch[batch.length - 1];
    const data = Buffer.allocUnsafe(bytes);
    let offset = 0;
    for (const p of batch) {
      const length = HEADER_LEN + p.payload.length;
      const ack = !p.dump && (p.ack || p === last);
      writeU32(data, length, offset);
      writeU16(data, p.type, offset + 4);
      writeU16(data, p.flags | Flags.REQUEST | (ack ? Flags.ACK : 0), offset + 6);
      writeU32(data, p.seq, offset + 8);
      writeU32(data, 0, offset + 12); // nlmsg_pid 0: the kernel does not look at it
      p.payload.copy(data, offset + HEADER_LEN);
      const end = offset + NLMSG_ALIGN(length);
      if (end > offset + length) data.fill(0, offset + length, end);
      offset = end;
      p.payload = NO_PAYLOAD; // sent: the answer needs only the sequence number
      p.batch = batch;
      this.pending.set(p.seq, p);
    }
    this.counters.messages += batch.length;
    this.counters.batches += 1;
    if (this.pending.size > this.counters.maxPending) this.counters.maxPending = this.pending.size;
    this.raw.send(data, { port: 0 }, (err) => {
      if (!err) return;
      try {
        for (const p of batch) {
          if (this.pending.get(p.seq) === p) this.settle(p, new NetlinkError(p.describe(), err.errno, 'sendmsg failed'));
        }
        this.afterReplies();
      } catch (e) {
        this.onSocketError(e instanceof Error ? e : new Error(String(e)));
      }
    });
  }

  private onData(buf: Buffer): void {
    let messages: NetlinkMessage[];
    try {
      messages = parseMessages(buf);
    } catch {
      return; // a malformed datagram answers nothing we could match
    }
    try {
      for (const m of messages) this.dispatch(m);
      this.afterReplies();
    } catch (err) {
      this.onSocketError(err instanceof Error ? err : new Error(String(err)));
    }
  }

  private dispatch(m: NetlinkMessage): void {
    const p = this.pending.get(m.seq);
    if (!p) return; // late answer to a request already failed (overrun) or a stray message
    if (m.flags & Flags.DUMP_INTR) p.interrupted = true;
    if (m.type === MessageType.ERROR) {
      const errno = m.data.length >= 4 ? -readS32(m.data, 0) : 0;
      const batch = p.batch;
      this.settle(p, errno > 0 ? new NetlinkError(p.describe(), errno) : null);
      if (batch && p === batch[batch.length - 1]) {
        // the batch's last answer: every earlier message without an error has succeeded
        for (const q of batch) if (this.pending.get(q.seq) === q) this.settle(q, null);
      }
    } else if (m.type === MessageType.DONE) {
      const errno = m.data.length >= 4 ? -readS32(m.data, 0) : 0;
      this.settle(p, errno > 0 ? new NetlinkError(p.describe(), errno) : null);
    } else if (m.type !== MessageType.NOOP) {
      if (p.each !== null) p.each(m);
      else (p.messages ??= []).push(m);
    }
  }

  private settle(p: Pending, err: Error | null): void {
    this.pending.delete(p.seq);
    p.batch = null;
    if (p.dump) this.dumpInFlight = false;
    if (err) fail(p, err);
    else if (p.done !== null) p.done(null);
    else p.resolve?.({ messages: p.messages ?? [], interrupted: p.interrupted });
  }

  private onSocketError(err: Error & { errno?: number; code?: string }): void {
    if (this.closed) return;
    if (err.errno === ENOBUFS || err.code === 'ENOBUFS') {
      // answers were dropped; we cannot know which, so nothing unanswered can be trusted
      const victims = [...this.pending.values()];
      for (const p of victims) {
        this.settle(p, new NetlinkError(p.describe(), ENOBUFS, 'receive buffer overrun, outcome unknown'));
      }
      this.afterReplies();
      return;
    }
    const errno = typeof err.errno === 'number' ? Math.abs(err.errno) : EIO;
    const victims = [...this.pending.values(), ...this.queue.drain()];
    this.pending.clear();
    this.closed = true;
    this.closing = true;
    try {
      this.raw.close();
    } catch {
      // already closed by the native side
    }
    for (const p of victims) fail(p, new NetlinkError(p.describe(), errno, `socket failed: ${err.message}`));
    this.notifyDrained();
  }

  private afterReplies(): void {
    if (this.queue.length > 0) this.flush();
    this.updateRef();
    if (this.outstanding === 0) this.notifyDrained();
  }

  private notifyDrained(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiters) w();
  }

  /** Keep the event loop alive only while something is outstanding, so an idle socket never blocks exit. */
  private updateRef(): void {
    if (this.closed) return;
    const want = this.outstanding > 0;
    if (want === this.referenced) return;
    this.referenced = want;
    if (want) this.raw.ref();
    else this.raw.unref();
  }
}
