/**
 * The two directions of the userspace data path, run together in the data-path worker (worker.ts).
 *
 * Transmit: libpcap captures the frames the kernel routed into the overlay veth; each IPv4 packet is looked
 * up by destination in the peers' subnets, prefixed with the peer's 22-byte VXLAN + inner Ethernet header
 * (nothing for flannel's udp format) and sent with dgram to the peer's PublicIP and port. The overlay
 * device keeps TCP segmentation offload on, so a TCP sender's 64 KiB frames arrive whole and are split here
 * into MTU-sized segments, and checksums that offload left unfinished are finished here.
 *
 * Receive: a dgram socket bound to our PublicIP and the port takes the datagrams; one is delivered only when
 * it comes from a peer's PublicIP, is well-formed for our VNI and VtepMAC, its inner destination is in our
 * subnet and its inner source in that peer's subnet. The inner packet (TTL decremented, as a router would)
 * goes to the kernel through an IPPROTO_RAW socket, which routes it to the container.
 *
 * Per packet: no allocation of our own beyond the Buffer views dgram needs, fields read in place, headers
 * prebuilt per peer, one copy on transmit (into a ring of send slots: libpcap reuses its buffer for the next
 * frame, and dgram may hold a send that the kernel could not take at once), none on receive. Every packet
 * that is not forwarded is counted under a drop reason; nothing a packet contains can throw out of the
 * handlers.
 */
import dgram from 'node:dgram';
import {
  ETHERNET_HEADER_LENGTH,
  ETHERTYPE_IPV4,
  Ipv4Net,
  VXLAN_ENCAP_LENGTH,
  completePartialChecksum,
  formatIpv4,
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
import { IPPROTO_RAW, loadCap, loadRawSocket, type CapHandle, type RawSocket, type RawSocketWrap } from './native.js';
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
} from './protocol.js';

/** A data-path socket or capture could not be opened. */
export class DataPathError extends WeftError {
  constructor(code: 'WEFT_USERSPACE_BIND' | 'WEFT_USERSPACE_CAPTURE' | 'WEFT_USERSPACE_RAW', message: string, cause?: unknown) {
    super(code, message, { cause });
  }
}

export type Report = (level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, string | number>) => void;

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
    const onError = (err: Error): void => reject(new DataPathError('WEFT_USERSPACE_BIND', `cannot bind UDP ${address}:${port}: ${err.message}`, err));
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

/** Reports the first occurrence of each kind of unexpected error, then every 1000th. */
class ErrorNotes {
  private readonly seen = new Map<string, number>();
  constructor(private readonly report: Report) {}

  note(kind: string, err: unknown): void {
    const count = (this.seen.get(kind) ?? 0) + 1;
    this.seen.set(kind, count);
    if (count === 1 || count % 1000 === 0) this.report('warn', `${kind}: ${(err as Error).message ?? String(err)}`, { kind, count });
  }
}

// ---------------------------------------------------------------------------------------------------
// Transmit

interface TxPeer {
  address: string;
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
  private cap: CapHandle | undefined;
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
    this.localMac = config.encapsulation.kind === 'vxlan' ? parseMac(config.encapsulation.localMac) : undefined;
    this.slotSize = (VXLAN_ENCAP_LENGTH + config.mtu + 63) & ~63;
    this.ring = Buffer.alloc(this.slotSize * RING_SLOTS);
  }

  async start(): Promise<void> {
    const socket = dgram.createSocket({
      type: 'udp4',
      lookup: literalLookup,
      sendBufferSize: this.config.socketBufferBytes,
      recvBufferSize: 64 * 1024,
    });
    socket.on('error', (err) => this.errors.note('socket', err));
    // Sent from our PublicIP (peers accept datagrams from our lease's PublicIP only), any source port.
    await bind(socket, this.config.localAddress, 0);
    this.socket = socket;
    this.attachSender(socket);
    const { Cap } = loadCap();
    const cap = new Cap();
    try {
      const linkType = cap.open(this.config.captureDevice, 'ip', this.config.captureBufferBytes, this.captureBuffer);
      if (linkType !== 'ETHERNET') throw new Error(`link type ${linkType}, expected ETHERNET`);
    } catch (err) {
      socket.close();
      throw new DataPathError('WEFT_USERSPACE_CAPTURE', `cannot capture on ${this.config.captureDevice}: ${(err as Error).message}`, err);
    }
    cap.on('packet', (bytes, truncated) => this.handleFrame(bytes, truncated));
    this.cap = cap;
  }

  /** Sends through `sender` (start() attaches its dgram socket). */
  attachSender(sender: DatagramSender): void {
    this.sender = sender;
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
      if (table === undefined) byLength.set(net.length, (table = new Map()));
      table.set(net.network, { address: peer.publicIP, prefix });
    }
    this.tables = [...byLength.entries()]
      .sort(([a], [b]) => b - a)
      .map(([length, table]) => ({ mask: new Ipv4Net(0, length).mask, peers: table }));
  }

  snapshot(): PathCounters {
    return { packets: this.counters.packets, bytes: this.counters.bytes, drops: { ...this.counters.drops } };
  }

  close(): void {
    this.cap?.close();
    this.cap = undefined;
    this.socket?.close();
    this.socket = undefined;
  }

  private lookup(destination: number): TxPeer | undefined {
    const tables = this.tables;
    for (let i = 0; i < tables.length; i++) {
      const table = tables[i]!;
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
      if (bytes < ETHERNET_HEADER_LENGTH + 1 || ((frame[12]! << 8) | frame[13]!) !== ETHERTYPE_IPV4) {
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

interface RxPeer {
  subnet: Ipv4Net;
}

export class RxPath {
  private readonly counters = emptyCounters(RX_DROP_REASONS);
  private readonly drops = this.counters.drops as Record<RxDropReason, number>;
  private socket: dgram.Socket | undefined;
  private raw: RawSocket | undefined;
  private wrap: RawSocketWrap | undefined;
  private peers = new Map<string, RxPeer>();
  private own: Ipv4Net | undefined;
  /** Text of each destination address seen, for raw-socket's sendto (bounded by our subnet's size). */
  private readonly addresses = new Map<number, string>();
  private readonly vni: number;
  private readonly localMac: Buffer | undefined;
  private readonly errors: ErrorNotes;
  private readonly sent = (): void => undefined;
  /** Where TSO frames are split into segments of at most the MTU. */
  private readonly segment: Buffer;

  constructor(
    private readonly config: WorkerConfig,
    report: Report,
  ) {
    this.errors = new ErrorNotes(report);
    const encapsulation = config.encapsulation;
    this.vni = encapsulation.kind === 'vxlan' ? encapsulation.vni : -1;
    this.localMac = encapsulation.kind === 'vxlan' ? parseMac(encapsulation.localMac) : undefined;
    this.segment = Buffer.alloc(config.mtu);
  }

  async start(): Promise<void> {
    const { createSocket, SocketLevel, SocketOption } = loadRawSocket();
    let raw: RawSocket;
    try {
      raw = createSocket({ protocol: IPPROTO_RAW });
      raw.on('error', (err: Error) => this.errors.note('raw socket', err));
      // Creates the socket now, so that a missing CAP_NET_RAW shows at start.
      raw.setOption(SocketLevel.SOL_SOCKET, SocketOption.SO_SNDBUF, this.config.socketBufferBytes);
    } catch (err) {
      throw new DataPathError('WEFT_USERSPACE_RAW', `cannot open a raw IP socket: ${(err as Error).message}`, err);
    }
    const socket = dgram.createSocket({
      type: 'udp4',
      recvBufferSize: this.config.socketBufferBytes,
      sendBufferSize: 64 * 1024,
    });
    socket.on('error', (err) => this.errors.note('socket', err));
    try {
      await bind(socket, this.config.localAddress, this.config.port);
    } catch (err) {
      raw.close();
      throw err;
    }
    socket.on('message', (message, remote) => this.onDatagram(message, remote.address));
    this.raw = raw;
    this.attachDelivery(raw.wrap);
    this.socket = socket;
  }

  /** Delivers through `wrap` (start() attaches its raw socket's). */
  attachDelivery(wrap: RawSocketWrap): void {
    this.wrap = wrap;
  }

  setPeers(own: WireNet | null, peers: readonly WirePeer[]): void {
    const next = new Map<string, RxPeer>();
    for (const peer of peers) next.set(peer.publicIP, { subnet: toNet(peer.subnet) });
    this.peers = next;
    const ownNet = own === null ? undefined : toNet(own);
    if (ownNet?.toString() !== this.own?.toString()) this.addresses.clear();
    this.own = ownNet;
  }

  snapshot(): PathCounters {
    return { packets: this.counters.packets, bytes: this.counters.bytes, drops: { ...this.counters.drops } };
  }

  close(): void {
    this.socket?.close();
    this.socket = undefined;
    this.raw?.close();
    this.raw = undefined;
  }

  private deliverSegmented(message: Buffer, ip: number, length: number, address: string): void {
    const mtu = this.config.mtu;
    const count = tcpSegmentCount(message, ip, length, mtu);
    if (count === 0) {
      this.drops.oversize++;
      return;
    }
    const segment = this.segment;
    for (let i = 0; i < count; i++) {
      const segmentLength = writeTcpSegment(message, ip, length, mtu, i, segment, 0);
      try {
        this.wrap!.send(segment, 0, segmentLength, address, this.sent);
      } catch (err) {
        this.drops.deliver_error++;
        this.errors.note('deliver', err);
        continue;
      }
      this.counters.packets++;
      this.counters.bytes += segmentLength;
    }
  }

  private address(destination: number): string {
    let text = this.addresses.get(destination);
    if (text === undefined) {
      text = formatIpv4(destination);
      this.addresses.set(destination, text);
    }
    return text;
  }

  /** Delivers one datagram's inner packet (split into segments when it is a TSO frame), or counts why not; `source` is the sender's IP. Never throws. */
  onDatagram(message: Buffer, source: string): void {
    const drops = this.drops;
    try {
      const peer = this.peers.get(source);
      if (peer === undefined) {
        drops.unknown_peer++;
        return;
      }
      const length = message.length;
      let ip: number;
      if (this.localMac !== undefined) {
        const problem = vxlanProblem(message, length, this.vni, this.localMac);
        if (problem !== undefined) {
          drops[problem]++;
          return;
        }
        ip = VXLAN_ENCAP_LENGTH;
      } else {
        const problem = udpProblem(message, length);
        if (problem !== undefined) {
          drops[problem]++;
          return;
        }
        ip = 0;
      }
      if (message[ip]! >> 4 !== 4) {
        drops.not_ipv4++;
        return;
      }
      const destination = ipv4Destination(message, ip);
      const own = this.own;
      if (own === undefined || !own.contains(destination)) {
        drops.inner_dst++;
        return;
      }
      if (!peer.subnet.contains(ipv4Source(message, ip))) {
        drops.inner_src++;
        return;
      }
      const ttl = message[ip + 8]!;
      if (ttl <= 1) {
        drops.ttl++;
        return;
      }
      // Forwarding decrements the TTL; the kernel recomputes the header checksum of an IP_HDRINCL send.
      message[ip + 8] = ttl - 1;
      const packetLength = ipPacketLength(message, ip);
      const address = this.address(destination);
      if (packetLength > this.config.mtu) {
        // A TSO frame: kernel-VXLAN senders whose underlay is a veth (nested containers, this lab) hand their
        // GSO frames over unsegmented, and the socket receives them whole. Split them as the NIC would have.
        this.deliverSegmented(message, ip, packetLength, address);
        return;
      }
      // The same senders also leave TCP/UDP checksums unfinished (offload); the container would drop them.
      completePartialChecksum(message, ip, packetLength);
      try {
        this.wrap!.send(message, ip, packetLength, address, this.sent);
      } catch (err) {
        drops.deliver_error++;
        this.errors.note('deliver', err);
        return;
      }
      this.counters.packets++;
      this.counters.bytes += packetLength;
    } catch (err) {
      drops.deliver_error++;
      this.errors.note('receive', err);
    }
  }
}
