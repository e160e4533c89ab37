/**
 * The two directions of the userspace data path, run together in the data-path worker (worker.ts).
 *
 * Transmit: libpcap captures the frames the kernel routed into the overlay veth; each IPv4 packet is looked
 * up by destination in the peers' subnets, prefixed with the peer's 22-byte VXLAN + inner Ethernet header
 * (nothing for flannel's udp format) and sent to the peer's PublicIP and port: with weft's addon
 * (udp-native.ts) in UDP GSO trains, the datagrams for one peer gathered until the event loop turns;
 * without it, one dgram send per datagram. The overlay device keeps TCP segmentation offload on, so a TCP
 * sender's 64 KiB frames arrive whole and are split here into MTU-sized segments, and checksums that
 * offload left unfinished are finished here.
 *
 * Receive: a socket bound to our PublicIP and the port takes the datagrams (with the addon in recvmmsg
 * batches, UDP GRO trains split again; else with dgram); one is delivered only when it comes from a peer's
 * PublicIP, is well-formed for our VNI and VtepMAC, its inner destination is in our subnet and its inner
 * source belongs to that peer (the most specific peer subnet holding it is the sender's, and for VXLAN the
 * inner frame comes from the sender's VtepMAC). The inner packet goes back to the kernel as an Ethernet
 * frame sent out of the capture end: the overlay device receives it as a kernel VXLAN device receives a
 * decapsulated packet, so it passes PREROUTING, the forwarding decision (FORWARD, TTL) and POSTROUTING on
 * its way to the container, like kernel VXLAN traffic.
 *
 * Per packet: no allocation of our own (with dgram: beyond the Buffer views it needs), fields read in place,
 * headers prebuilt per peer, one copy on transmit (into the train, or with dgram into a ring of send slots:
 * libpcap reuses its buffer for the next frame, and dgram may hold a send that the kernel could not take at
 * once), none on receive for VXLAN (the inner Ethernet header is the delivered frame's; flannel's udp format
 * has none, and its packets are copied behind one). Every packet
 * that is not forwarded is counted under a drop reason; nothing a packet contains can throw out of the
 * handlers.
 */
import dgram from 'node:dgram';
import { ipv4Value } from '../../common/cidr.js';
import {
  ETHERNET_HEADER_LENGTH,
  ETHERTYPE_IPV4,
  Ipv4Net,
  VXLAN_ENCAP_LENGTH,
  VXLAN_HEADER_LENGTH,
  completePartialChecksum,
  ipPacketLength,
  ipPacketProblem,
  ipv4Destination,
  ipv4Source,
  parseMac,
  tcpSegmentCount,
  udpProblem,
  vxlanPrefix,
  vxlanProblem,
  writeTcpSegment,
} from '../../common/packet.js';
import { WeftError } from '../../common/errors.js';
import { errnoName } from '../kernel/errors.js';
import { loadCap, type CapHandle } from './native.js';
import {
  EAGAIN,
  EINVAL,
  EIO,
  ENOBUFS,
  MAX_GSO_SEGMENTS,
  MAX_UDP_PAYLOAD,
  ipv4Number,
  loadUdpNative,
  packetSocketDescriptors,
  type UdpNative,
} from './udp-native.js';
import type { ReceiverHandle } from '../native-addon.js';
import {
  RX_DROP_REASONS,
  TX_DROP_REASONS,
  emptyCounters,
  type PathCounters,
  type RxDropReason,
  type TxDropReason,
  type WireNet,
  type WirePeer,
  type WorkerConfig,
  type LogFields,
  type WireError,
} from './protocol.js';

/** A data-path socket or capture could not be opened. */
export class DataPathError extends WeftError {
  constructor(code: 'WEFT_USERSPACE_BIND' | 'WEFT_USERSPACE_CAPTURE' | 'WEFT_USERSPACE_RAW', message: string, cause?: unknown) {
    super(code, message, { cause });
  }
}

export type Report = (level: 'info' | 'warn' | 'error', message: string, fields?: LogFields) => void;

/** What the transmit path needs of its UDP socket (a dgram socket; tests pass a fake). */
export interface DatagramSender {
  send(buffer: Buffer, offset: number, length: number, port: number, address: string, callback: (err: Error | null) => void): void;
  getSendQueueCount(): number;
}

/** libpcap's snapshot length as cap sets it. */
const SNAPSHOT_LENGTH = 65535;

/** Send slots in the transmit ring; at most half of them may be waiting in dgram's queue. */
const RING_SLOTS = 1024;
const MAX_QUEUED = RING_SLOTS / 2;

/** dgram resolves every destination through `lookup`; ours are IP literals, answered synchronously. */
function literalLookup(
  hostname: string,
  _options: unknown,
  callback: (err: NodeJS.ErrnoException | null, address: string, family: number) => void,
): void {
  callback(null, hostname, 4);
}

function bind(socket: dgram.Socket, address: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void =>
      reject(new DataPathError('WEFT_USERSPACE_BIND', `cannot bind UDP ${address}:${port}: ${err.message}`, err));
    socket.once('error', onError);
    socket.bind({ address, port, exclusive: true }, () => {
      socket.off('error', onError);
      resolve();
    });
  });
}

function toNet(wire: WireNet): Ipv4Net {
  return new Ipv4Net(wire.network, wire.length);
}

/** An error as the worker reports it to weftd's log (structured, as the log's `err` serializer keeps it). */
function wireError(err: unknown): WireError {
  const fields = err as Partial<Error> & { code?: unknown };
  return {
    type: err instanceof Error ? err.name : 'Error',
    message: typeof fields.message === 'string' ? fields.message : String(err),
    ...(typeof fields.stack === 'string' ? { stack: fields.stack } : {}),
    ...(typeof fields.code === 'string' ? { code: fields.code } : {}),
  };
}

/** Reports the first occurrence of each kind of unexpected error, then every 1000th. */
class ErrorNotes {
  private readonly seen = new Map<string, number>();
  constructor(private readonly report: Report) {}

  note(kind: string, err: unknown): void {
    const count = (this.seen.get(kind) ?? 0) + 1;
    this.seen.set(kind, count);
    if (count === 1 || count % 1000 === 0) this.report('warn', `${kind} failed`, { kind, count, err: wireError(err) });
  }
}

// ---------------------------------------------------------------------------------------------------
// Transmit

interface TxPeer {
  address: string;
  /** The same address as a number (the native addon's form). */
  addressNumber: number;
  /** What goes in front of the IP packet: VXLAN header + inner Ethernet header, or nothing (udp). */
  prefix: Buffer;
}

export class TxPath {
  private readonly counters = emptyCounters(TX_DROP_REASONS);
  private readonly drops = this.counters.drops as Record<TxDropReason, number>;
  /** libpcap copies each captured frame here (tests write frames here and call handleFrame). */
  readonly captureBuffer = Buffer.alloc(65536);
  private readonly slotSize: number;
  private readonly ring: Buffer;
  private slot = 0;
  private socket: dgram.Socket | undefined;
  private sender: DatagramSender | undefined;
  /** The native addon's socket (udp-native.ts), used instead of `sender` when the addon loads. */
  private native: { udp: UdpNative; fd: number } | undefined;
  /** Whether a send may carry several datagrams (UDP GSO); off for good after the kernel refuses one. */
  private gso = true;
  /** Where datagrams are assembled for a native send (synchronous: reused at once). */
  private readonly scratch: Buffer;
  private readonly report: Report;
  private cap: CapHandle | undefined;
  /** libpcap's packet socket(s), whose drop counts the native addon reads. */
  private captureDescriptors: number[] = [];
  /** Peers by subnet network address, one map per prefix length in use (longest first). */
  private tables: { mask: number; peers: Map<number, TxPeer> }[] = [];
  private readonly localMac: Buffer | undefined;
  private readonly errors: ErrorNotes;
  private readonly onSent = (err: Error | null): void => {
    if (err !== null) {
      this.drops.send_error++;
      this.errors.note('send', err);
    }
  };

  constructor(
    private readonly config: WorkerConfig,
    report: Report,
  ) {
    this.errors = new ErrorNotes(report);
    this.report = report;
    this.localMac = config.encapsulation.kind === 'vxlan' ? parseMac(config.encapsulation.localMac) : undefined;
    this.slotSize = (VXLAN_ENCAP_LENGTH + config.mtu + 63) & ~63;
    this.ring = Buffer.alloc(this.slotSize * RING_SLOTS);
    this.scratch = Buffer.alloc(MAX_UDP_PAYLOAD + this.slotSize);
  }

  /** How datagrams leave: "native" (sendmsg, UDP GSO while the kernel takes it) or "dgram". */
  get io(): string {
    return this.native === undefined ? 'dgram' : this.gso ? 'native (UDP GSO)' : 'native';
  }

  async start(): Promise<void> {
    const loaded = loadUdpNative();
    if ('native' in loaded) {
      // Sent from our PublicIP (peers accept datagrams from our lease's PublicIP only), any source port.
      const fd = loaded.native.open(ipv4Number(this.config.localAddress), 0, this.config.socketBufferBytes, 0, 0);
      if (fd < 0) throw new DataPathError('WEFT_USERSPACE_BIND', `cannot bind UDP ${this.config.localAddress}:0: ${errnoName(-fd)}`);
      this.attachNative(loaded.native, fd);
    } else {
      const socket = dgram.createSocket({
        type: 'udp4',
        lookup: literalLookup,
        sendBufferSize: this.config.socketBufferBytes,
        recvBufferSize: 64 * 1024,
      });
      socket.on('error', (err) => this.errors.note('socket', err));
      await bind(socket, this.config.localAddress, 0);
      this.socket = socket;
      this.attachSender(socket);
    }
    const { Cap } = loadCap();
    const cap = new Cap();
    try {
      const linkType = cap.open(this.config.captureDevice, 'ip', this.config.captureBufferBytes, this.captureBuffer);
      if (linkType !== 'ETHERNET') throw new Error(`link type ${linkType}, expected ETHERNET`);
    } catch (err) {
      this.closeSockets();
      throw new DataPathError('WEFT_USERSPACE_CAPTURE', `cannot capture on ${this.config.captureDevice}: ${(err as Error).message}`, err);
    }
    cap.on('packet', (bytes, truncated) => this.handleFrame(bytes, truncated));
    this.cap = cap;
    if (this.native !== undefined) {
      this.captureDescriptors = packetSocketDescriptors();
      if (this.captureDescriptors.length === 0)
        this.report('warn', 'cannot find the capture socket: frames dropped by a full capture ring are not counted');
    }
  }

  /** Sends through `sender` (start() attaches its dgram socket when the native addon is not used). */
  attachSender(sender: DatagramSender): void {
    this.sender = sender;
    this.native = undefined;
  }

  /** Sends through the native addon's socket `fd` (start() opens it when the addon loads). */
  attachNative(udp: UdpNative, fd: number): void {
    this.native = { udp, fd };
  }

  /**
   * Where the receive path delivers (see FrameSink): out of the capture end through libpcap's own packet
   * socket, whose capture does not see what it sends itself. With the addon, send(2) on that socket
   * straight from the receive buffer; without it, through `cap`, which takes a buffer from its start.
   */
  deliverySink(): FrameSink {
    const cap = this.cap;
    if (cap === undefined) throw new DataPathError('WEFT_USERSPACE_CAPTURE', 'the capture is not open');
    const device = this.config.captureDevice;
    if (this.native !== undefined && this.captureDescriptors.length === 1) {
      const { udp } = this.native;
      const fd = this.captureDescriptors[0];
      return {
        send(buffer, offset, length) {
          const sent = udp.sendFrame(fd, buffer, offset, length);
          if (sent < 0) throw new Error(`send on ${device}: errno ${-sent}`);
        },
      };
    }
    return { send: (buffer, offset, length) => cap.send(buffer.subarray(offset, offset + length)) };
  }

  setPeers(peers: readonly WirePeer[]): void {
    const byLength = new Map<number, Map<number, TxPeer>>();
    for (const peer of peers) {
      const net = toNet(peer.subnet);
      let prefix: Buffer;
      if (this.localMac !== undefined && this.config.encapsulation.kind === 'vxlan') {
        if (peer.vtepMac === undefined) continue;
        prefix = vxlanPrefix(this.config.encapsulation.vni, parseMac(peer.vtepMac), this.localMac, ETHERTYPE_IPV4);
      } else {
        prefix = Buffer.alloc(0);
      }
      let table = byLength.get(net.length);
      if (table === undefined) byLength.set(net.length, (table = new Map<number, TxPeer>()));
      table.set(net.network, { address: peer.publicIP, addressNumber: ipv4Number(peer.publicIP), prefix });
    }
    this.tables = [...byLength.entries()]
      .sort(([a], [b]) => b - a)
      .map(([length, table]) => ({ mask: new Ipv4Net(0, length).mask, peers: table }));
  }

  snapshot(): PathCounters {
    if (this.native !== undefined) {
      for (const fd of this.captureDescriptors) {
        const drops = this.native.udp.captureDrops(fd);
        if (drops > 0) this.drops.capture_full += drops;
      }
    }
    return { packets: this.counters.packets, bytes: this.counters.bytes, drops: { ...this.counters.drops } };
  }

  close(): void {
    this.captureDescriptors = [];
    this.cap?.close();
    this.cap = undefined;
    this.closeSockets();
  }

  private closeSockets(): void {
    if (this.native !== undefined && this.train.count > 0) this.flush();
    this.socket?.close();
    this.socket = undefined;
    if (this.native !== undefined) this.native.udp.close(this.native.fd);
    this.native = undefined;
  }

  private lookup(destination: number): TxPeer | undefined {
    const tables = this.tables;
    for (let i = 0; i < tables.length; i++) {
      const table = tables[i];
      const peer = table.peers.get((destination & table.mask) >>> 0);
      if (peer !== undefined) return peer;
    }
    return undefined;
  }

  /** Forwards the frame of `bytes` bytes in captureBuffer, or counts why not. Never throws. */
  handleFrame(bytes: number, truncated: boolean): void {
    try {
      const frame = this.captureBuffer;
      const drops = this.drops;
      // Cut short by the buffer, or by libpcap's snapshot length (cap's, 65535) which `truncated` does not report.
      if (truncated || bytes >= SNAPSHOT_LENGTH) {
        drops.oversize++;
        return;
      }
      if (bytes < ETHERNET_HEADER_LENGTH + 1 || ((frame[12] << 8) | frame[13]) !== ETHERTYPE_IPV4) {
        drops.not_ipv4++;
        return;
      }
      const ip = ETHERNET_HEADER_LENGTH;
      if (ipPacketProblem(frame, ip, bytes, 4) !== undefined) {
        drops.malformed++;
        return;
      }
      const length = ipPacketLength(frame, ip);
      const peer = this.lookup(ipv4Destination(frame, ip));
      if (peer === undefined) {
        drops.no_peer++;
        return;
      }
      if (this.native !== undefined) {
        this.sendNative(frame, ip, length, peer);
        return;
      }
      const mtu = this.config.mtu;
      if (length <= mtu) {
        // Checksum offload is on for the overlay device: finish what the kernel left to the "hardware".
        completePartialChecksum(frame, ip, length);
        const offset = this.nextSlot();
        if (offset < 0) return;
        const prefix = peer.prefix;
        prefix.copy(this.ring, offset);
        frame.copy(this.ring, offset + prefix.length, ip, ip + length);
        this.transmit(offset, prefix.length + length, peer.address, length);
        return;
      }
      // A TSO frame: split it as the NIC would, straight into the send slots.
      const count = tcpSegmentCount(frame, ip, length, mtu);
      if (count === 0) {
        drops.oversize++;
        return;
      }
      const prefix = peer.prefix;
      for (let i = 0; i < count; i++) {
        const offset = this.nextSlot();
        if (offset < 0) return;
        prefix.copy(this.ring, offset);
        const segment = writeTcpSegment(frame, ip, length, mtu, i, this.ring, offset + prefix.length);
        this.transmit(offset, prefix.length + segment, peer.address, segment);
      }
    } catch (err) {
      this.drops.send_error++;
      this.errors.note('transmit', err);
    }
  }

  /**
   * Queues the packet at frame[ip, ip + length) for `peer` on the native socket: one datagram, or a TSO
   * frame's segments. Datagrams are laid end to end in the scratch buffer while they can leave together as
   * one UDP GSO train (same peer, same size, the last one may be shorter, at most 64 and 65507 bytes); the
   * train is sent when the next datagram does not fit it, and at the latest once the event loop has
   * handled what is ready now (setImmediate): libpcap hands over everything in its ring in one poll
   * callback, so a burst of a TCP flow's segments, or of its ACKs, leaves in one system call.
   */
  private sendNative(frame: Buffer, ip: number, length: number, peer: TxPeer): void {
    const mtu = this.config.mtu;
    const prefixLength = peer.prefix.length;
    if (length <= mtu) {
      completePartialChecksum(frame, ip, length);
      const at = this.reserve(peer, prefixLength + length);
      peer.prefix.copy(this.scratch, at);
      frame.copy(this.scratch, at + prefixLength, ip, ip + length);
      this.append(prefixLength + length, length);
      return;
    }
    const count = tcpSegmentCount(frame, ip, length, mtu);
    if (count === 0) {
      this.drops.oversize++;
      return;
    }
    for (let i = 0; i < count; i++) {
      // Every segment but the last is exactly `mtu` bytes long.
      const at = this.reserve(peer, prefixLength + mtu);
      peer.prefix.copy(this.scratch, at);
      const segment = writeTcpSegment(frame, ip, length, mtu, i, this.scratch, at + prefixLength);
      this.append(prefixLength + segment, segment);
    }
  }

  /** The pending GSO train: its peer, datagram size, datagrams, bytes, inner bytes, and whether it is closed (a shorter last one). */
  private train: { peer: TxPeer | undefined; size: number; count: number; bytes: number; packetBytes: number; closed: boolean } = {
    peer: undefined,
    size: 0,
    count: 0,
    bytes: 0,
    packetBytes: 0,
    closed: false,
  };
  private flushScheduled = false;
  private readonly flushNow = (): void => {
    this.flushScheduled = false;
    try {
      this.flush();
    } catch (err) {
      this.errors.note('transmit', err);
    }
  };

  /** Where in scratch a datagram of at most `size` bytes for `peer` goes: after the pending train if it can join it, else at 0 after sending the train. */
  private reserve(peer: TxPeer, size: number): number {
    const train = this.train;
    if (train.count > 0) {
      const joins =
        train.peer === peer &&
        !train.closed &&
        size <= train.size &&
        train.count < MAX_GSO_SEGMENTS &&
        train.bytes + size <= MAX_UDP_PAYLOAD &&
        this.gso;
      if (!joins) this.flush();
    }
    if (train.count === 0) train.peer = peer;
    return train.bytes;
  }

  /** Adds the datagram of `size` bytes just written at the train's end (see reserve). */
  private append(size: number, packetBytes: number): void {
    const train = this.train;
    if (train.count === 0) train.size = size;
    else if (size < train.size) train.closed = true;
    train.count++;
    train.bytes += size;
    train.packetBytes += packetBytes;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushNow);
    }
  }

  /** Sends the pending train (one sendmsg, UDP GSO when it holds more than one datagram) and counts the outcome. */
  flush(): void {
    const train = this.train;
    const peer = train.peer;
    const count = train.count;
    if (count === 0 || peer === undefined) return;
    const { size, bytes, packetBytes } = train;
    train.count = 0;
    train.bytes = 0;
    train.packetBytes = 0;
    train.closed = false;
    train.peer = undefined;
    if (this.native === undefined) {
      this.drops.send_error += count;
      return;
    }
    const { udp, fd } = this.native;
    const port = this.config.port;
    const sent = udp.send(fd, this.scratch, 0, bytes, count > 1 ? size : 0, peer.addressNumber, port);
    if (count > 1 && (sent === -EIO || sent === -EINVAL)) {
      // The kernel does not take UDP GSO here (no checksum offload on the route's device, an old kernel):
      // from now on one datagram per system call.
      this.gso = false;
      this.report('warn', `UDP GSO refused (${errnoName(-sent)}): sending one datagram per system call`, { errno: errnoName(-sent) });
      for (let offset = 0; offset < bytes; offset += size) {
        const length = Math.min(size, bytes - offset);
        this.account(udp.send(fd, this.scratch, offset, length, 0, peer.addressNumber, port), 1, length - peer.prefix.length);
      }
      return;
    }
    this.account(sent, count, packetBytes);
  }

  private account(result: number, count: number, packetBytes: number): void {
    if (result >= 0) {
      this.counters.packets += count;
      this.counters.bytes += packetBytes;
    } else if (result === -EAGAIN || result === -ENOBUFS) {
      this.drops.queue_full += count;
    } else {
      this.drops.send_error += count;
      this.errors.note('send', Object.assign(new Error(`sendmsg: ${errnoName(-result)}`), { code: errnoName(-result) }));
    }
  }

  /** The ring offset of the next send slot, or -1 (counted) when dgram already holds too many unsent. */
  private nextSlot(): number {
    if (this.sender!.getSendQueueCount() >= MAX_QUEUED) {
      this.drops.queue_full++;
      return -1;
    }
    const offset = this.slot * this.slotSize;
    this.slot = this.slot + 1 === RING_SLOTS ? 0 : this.slot + 1;
    return offset;
  }

  private transmit(offset: number, length: number, address: string, packetLength: number): void {
    this.sender!.send(this.ring, offset, length, this.config.port, address, this.onSent);
    this.counters.packets++;
    this.counters.bytes += packetLength;
  }
}

// ---------------------------------------------------------------------------------------------------
// Receive

/** Where the receive path hands decapsulated packets back to the kernel. */
export interface FrameSink {
  /**
   * Sends buffer[offset, offset + length), an Ethernet frame addressed to the overlay device, out of the
   * capture end: the overlay device receives it as a kernel VXLAN device receives a decapsulated packet.
   * Throws when the kernel refuses it.
   */
  send(buffer: Buffer, offset: number, length: number): void;
}

/** The sending host a subnet belongs to, as the receive path checks it. */
interface RxOwner {
  /** Its PublicIP. */
  address: number;
  /** Its VtepMAC (VXLAN): the source MAC of the frames it sends. */
  mac: Buffer | undefined;
}

/** Receive slots per recvmmsg, and their size: a GRO train or a kernel sender's GSO frame takes up to 64 KiB + headers. */
export const RECEIVE_SLOTS = 16;
export const RECEIVE_SLOT_SIZE = 68 * 1024;
/** recvmmsg batches per readiness event, before the worker serves the capture and its IPC. */
export const RECEIVE_BATCHES_PER_EVENT = 4;

export class RxPath {
  private readonly counters = emptyCounters(RX_DROP_REASONS);
  private readonly drops = this.counters.drops as Record<RxDropReason, number>;
  private socket: dgram.Socket | undefined;
  private native: { udp: UdpNative; fd: number; receiver: ReceiverHandle | undefined; gro: boolean } | undefined;
  /** Where recvmmsg puts datagrams (RECEIVE_SLOTS slots), and what it says of each (4 numbers a slot). */
  batch: Buffer = Buffer.alloc(0);
  readonly batchMeta = new Int32Array(RECEIVE_SLOTS * 4);
  private sink: FrameSink | undefined;
  /** The peers' PublicIPs: datagrams from anywhere else are not looked at. */
  private senders = new Set<number>();
  /** Who owns each peer subnet, by network address, one map per prefix length in use (longest first). */
  private owners: { mask: number; peers: Map<number, RxOwner> }[] = [];
  private own: Ipv4Net | undefined;
  private readonly vni: number;
  private readonly localMac: Buffer | undefined;
  private readonly errors: ErrorNotes;
  /**
   * Where a frame is assembled behind an Ethernet header addressed to the overlay device: a segment of a
   * TSO frame, or a packet in flannel's udp format (which carries no Ethernet header).
   */
  private readonly frame: Buffer;

  constructor(
    private readonly config: WorkerConfig,
    report: Report,
  ) {
    this.errors = new ErrorNotes(report);
    const encapsulation = config.encapsulation;
    this.vni = encapsulation.kind === 'vxlan' ? encapsulation.vni : -1;
    this.localMac = encapsulation.kind === 'vxlan' ? parseMac(encapsulation.localMac) : undefined;
    this.frame = Buffer.alloc(ETHERNET_HEADER_LENGTH + config.mtu);
    const overlayMac = parseMac(config.overlayMac);
    overlayMac.copy(this.frame, 0);
    overlayMac.copy(this.frame, 6);
    this.frame.writeUInt16BE(ETHERTYPE_IPV4, 12);
  }

  async start(): Promise<void> {
    const loaded = loadUdpNative();
    if ('native' in loaded) {
      const udp = loaded.native;
      const address = ipv4Number(this.config.localAddress);
      let gro = true;
      let fd = udp.open(address, this.config.port, 0, this.config.socketBufferBytes, 1);
      if (fd < 0 && fd !== -98 /* EADDRINUSE */) {
        // A kernel without UDP_GRO (before 5.0): one datagram per slot, still a batch per system call.
        gro = false;
        fd = udp.open(address, this.config.port, 0, this.config.socketBufferBytes, 0);
      }
      if (fd < 0)
        throw new DataPathError(
          'WEFT_USERSPACE_BIND',
          `cannot bind UDP ${this.config.localAddress}:${this.config.port}: ${errnoName(-fd)}`,
        );
      this.batch = Buffer.alloc(RECEIVE_SLOTS * RECEIVE_SLOT_SIZE);
      const receiver = udp.receive(
        fd,
        this.batch,
        RECEIVE_SLOT_SIZE,
        RECEIVE_SLOTS,
        this.batchMeta,
        (count) => this.onBatch(count),
        RECEIVE_BATCHES_PER_EVENT,
      );
      if (typeof receiver === 'number') {
        udp.close(fd);
        throw new DataPathError(
          'WEFT_USERSPACE_BIND',
          `cannot poll UDP ${this.config.localAddress}:${this.config.port}: ${errnoName(-receiver)}`,
        );
      }
      this.native = { udp, fd, receiver, gro };
    } else {
      const socket = dgram.createSocket({
        type: 'udp4',
        recvBufferSize: this.config.socketBufferBytes,
        sendBufferSize: 64 * 1024,
      });
      socket.on('error', (err) => this.errors.note('socket', err));
      await bind(socket, this.config.localAddress, this.config.port);
      socket.on('message', (message, remote) => this.onDatagram(message, remote.address));
      this.socket = socket;
    }
  }

  /** How datagrams arrive: "native (recvmmsg, UDP GRO)", "native (recvmmsg)" or "dgram". */
  get io(): string {
    return this.native === undefined ? 'dgram' : this.native.gro ? 'native (recvmmsg, UDP GRO)' : 'native (recvmmsg)';
  }

  /** Delivers through `sink` (the worker attaches the transmit path's capture, TxPath.deliverySink); until then every packet counts as deliver_error. */
  attachDelivery(sink: FrameSink): void {
    this.sink = sink;
  }

  setPeers(own: WireNet | null, peers: readonly WirePeer[]): void {
    const senders = new Set<number>();
    const byLength = new Map<number, Map<number, RxOwner>>();
    for (const peer of peers) {
      const address = ipv4Value(peer.publicIP);
      let mac: Buffer | undefined;
      try {
        mac = this.localMac === undefined || peer.vtepMac === undefined ? undefined : parseMac(peer.vtepMac);
      } catch {
        mac = undefined;
      }
      // A VXLAN peer without a usable VtepMAC cannot be checked: none of its datagrams are taken.
      if (address < 0 || (this.localMac !== undefined && mac === undefined)) continue;
      senders.add(address);
      const net = toNet(peer.subnet);
      let table = byLength.get(net.length);
      if (table === undefined) byLength.set(net.length, (table = new Map<number, RxOwner>()));
      table.set(net.network, { address, mac });
    }
    this.senders = senders;
    this.owners = [...byLength.entries()]
      .sort(([a], [b]) => b - a)
      .map(([length, table]) => ({ mask: new Ipv4Net(0, length).mask, peers: table }));
    this.own = own === null ? undefined : toNet(own);
  }

  snapshot(): PathCounters {
    return { packets: this.counters.packets, bytes: this.counters.bytes, drops: { ...this.counters.drops } };
  }

  close(): void {
    this.socket?.close();
    this.socket = undefined;
    if (this.native !== undefined) {
      if (this.native.receiver !== undefined) this.native.udp.stop(this.native.receiver);
      this.native.udp.close(this.native.fd);
      this.native = undefined;
    }
  }

  /** The peer whose most specific subnet holds `source`: the one host that may send from that address. */
  private owner(source: number): RxOwner | undefined {
    const owners = this.owners;
    for (let i = 0; i < owners.length; i++) {
      const table = owners[i];
      const owner = table.peers.get((source & table.mask) >>> 0);
      if (owner !== undefined) return owner;
    }
    return undefined;
  }

  /** Hands buffer[offset, offset + length), a frame, to the kernel and counts its packet, or counts the refusal. */
  private deliver(buffer: Buffer, offset: number, length: number): void {
    try {
      this.sink!.send(buffer, offset, length);
    } catch (err) {
      this.drops.deliver_error++;
      this.errors.note('deliver', err);
      return;
    }
    this.counters.packets++;
    this.counters.bytes += length - ETHERNET_HEADER_LENGTH;
  }

  private deliverSegmented(message: Buffer, ip: number, length: number): void {
    const mtu = this.config.mtu;
    const count = tcpSegmentCount(message, ip, length, mtu);
    if (count === 0) {
      this.drops.oversize++;
      return;
    }
    const frame = this.frame;
    for (let i = 0; i < count; i++) {
      const segmentLength = writeTcpSegment(message, ip, length, mtu, i, frame, ETHERNET_HEADER_LENGTH);
      this.deliver(frame, 0, ETHERNET_HEADER_LENGTH + segmentLength);
    }
  }

  /**
   * Handles `count` datagrams that recvmmsg put in `batch` (slot i at i * RECEIVE_SLOT_SIZE), described by
   * batchMeta[4i…4i+3]: length, source address, GRO segment size (0: one datagram), truncated. A GRO
   * train is split back into its datagrams, each checked on its own. Never throws.
   */
  onBatch(count: number): void {
    if (count < 0) {
      this.errors.note('socket', Object.assign(new Error(`recvmmsg: ${errnoName(-count)}`), { code: errnoName(-count) }));
      return;
    }
    const meta = this.batchMeta;
    const buffer = this.batch;
    for (let i = 0; i < count; i++) {
      try {
        const length = meta[i * 4];
        const source = meta[i * 4 + 1] >>> 0;
        const segment = meta[i * 4 + 2];
        const start = i * RECEIVE_SLOT_SIZE;
        const datagrams = segment > 0 && length > segment ? Math.ceil(length / segment) : 1;
        if (meta[i * 4 + 3] !== 0) {
          this.drops.oversize += datagrams;
          continue;
        }
        if (!this.senders.has(source)) {
          this.drops.unknown_peer += datagrams;
          continue;
        }
        if (datagrams === 1) {
          this.forward(buffer, start, length, source);
        } else {
          for (let offset = 0; offset < length; offset += segment)
            this.forward(buffer, start + offset, Math.min(segment, length - offset), source);
        }
      } catch (err) {
        this.drops.deliver_error++;
        this.errors.note('receive', err);
      }
    }
  }

  /** Delivers one datagram's inner packet (split into segments when it is a TSO frame), or counts why not; `source` is the sender's IP. Never throws. */
  onDatagram(message: Buffer, source: string): void {
    const address = ipv4Value(source);
    if (!this.senders.has(address)) {
      this.drops.unknown_peer++;
      return;
    }
    this.forward(message, 0, message.length, address);
  }

  /**
   * Delivers the inner packet of the datagram at message[start, start + length) from the peer at `source`,
   * or counts why not. The inner source must belong to that peer: its most specific subnet among the
   * peers' is the sender's own, and (VXLAN) the inner frame comes from the sender's VtepMAC. Never throws.
   */
  private forward(message: Buffer, start: number, length: number, source: number): void {
    const drops = this.drops;
    try {
      let ip: number;
      if (this.localMac !== undefined) {
        const problem = vxlanProblem(message, length, this.vni, this.localMac, start);
        if (problem !== undefined) {
          drops[problem]++;
          return;
        }
        ip = start + VXLAN_ENCAP_LENGTH;
      } else {
        const problem = udpProblem(message, length, start);
        if (problem !== undefined) {
          drops[problem]++;
          return;
        }
        ip = start;
      }
      if (message[ip] >> 4 !== 4) {
        drops.not_ipv4++;
        return;
      }
      const own = this.own;
      if (own === undefined || !own.contains(ipv4Destination(message, ip))) {
        drops.inner_dst++;
        return;
      }
      const owner = this.owner(ipv4Source(message, ip));
      if (owner === undefined || owner.address !== source) {
        drops.inner_src++;
        return;
      }
      if (owner.mac !== undefined && owner.mac.compare(message, start + VXLAN_HEADER_LENGTH + 6, start + VXLAN_HEADER_LENGTH + 12) !== 0) {
        drops.inner_src_mac++;
        return;
      }
      const packetLength = ipPacketLength(message, ip);
      if (packetLength > this.config.mtu) {
        // A TSO frame: kernel-VXLAN senders whose underlay is a veth (nested containers, this lab) hand their
        // GSO frames over unsegmented, and the socket receives them whole. Split them as the NIC would have.
        this.deliverSegmented(message, ip, packetLength);
        return;
      }
      // The same senders also leave TCP/UDP checksums unfinished (offload); the container would drop them.
      completePartialChecksum(message, ip, packetLength);
      if (this.localMac !== undefined) {
        // The inner Ethernet header, checked above, is the frame's: to our VtepMAC (the overlay device's) from the peer's.
        this.deliver(message, ip - ETHERNET_HEADER_LENGTH, ETHERNET_HEADER_LENGTH + packetLength);
        return;
      }
      message.copy(this.frame, ETHERNET_HEADER_LENGTH, ip, ip + packetLength);
      this.deliver(this.frame, 0, ETHERNET_HEADER_LENGTH + packetLength);
    } catch (err) {
      drops.deliver_error++;
      this.errors.note('receive', err);
    }
  }
}
