/**
 * What the agent and its data-path worker (worker.ts) tell each other over the IPC channel, and the
 * counters it keeps. Plain JSON-serialisable data only.
 */
import { DECODE_PROBLEMS } from '../../common/packet.js';

/** Why the receive path dropped a datagram (label values of weft_userspace_dropped_packets_total). */
export const RX_DROP_REASONS = [
  /** not from the PublicIP of a peer we program */
  'unknown_peer',
  ...DECODE_PROBLEMS,
  /** an inner IPv6 packet: this agent routes IPv4 only */
  'not_ipv4',
  /** the inner destination is not in our subnet */
  'inner_dst',
  /** the inner source does not belong to the sender: the most specific peer subnet holding it is another host's, or there is none (spoofed) */
  'inner_src',
  /** the inner frame's source MAC is not the sending peer's VtepMAC (VXLAN) */
  'inner_src_mac',
  /** larger than the overlay MTU and not a TCP segment that could be split (TSO frames are split) */
  'oversize',
  /** the kernel refused the decapsulated packet (the send into the capture end failed) */
  'deliver_error',
] as const;
export type RxDropReason = (typeof RX_DROP_REASONS)[number];

/** Why the transmit path dropped a captured frame. */
export const TX_DROP_REASONS = [
  /** not a well-formed IPv4 packet */
  'malformed',
  /** an IPv6 or non-IP frame */
  'not_ipv4',
  /** larger than the overlay MTU, or cut short by the capture */
  'oversize',
  /** the kernel dropped the frame because the capture ring was full (read with the native addon only) */
  'capture_full',
  /** the destination is in no peer's subnet (a route went stale) */
  'no_peer',
  /** the socket's send queue is full */
  'queue_full',
  /** the kernel refused to send the datagram */
  'send_error',
] as const;
export type TxDropReason = (typeof TX_DROP_REASONS)[number];

export interface PathCounters {
  packets: number;
  bytes: number;
  drops: Record<string, number>;
}

export function emptyCounters(reasons: readonly string[]): PathCounters {
  return { packets: 0, bytes: 0, drops: Object.fromEntries(reasons.map((reason) => [reason, 0])) };
}

function addCounters(into: PathCounters, from: PathCounters): void {
  into.packets += from.packets;
  into.bytes += from.bytes;
  for (const [reason, count] of Object.entries(from.drops)) into.drops[reason] = (into.drops[reason] ?? 0) + count;
}

export type Encapsulation = { kind: 'vxlan'; vni: number; localMac: string } | { kind: 'udp' };

export interface WorkerConfig {
  encapsulation: Encapsulation;
  /** Our public IP: the receive socket binds it, the transmit socket sends from it. */
  localAddress: string;
  /** The receive port, and the port datagrams are sent to. */
  port: number;
  /** The capture end of the overlay veth pair: the transmit path captures there, the receive path delivers through it. */
  captureDevice: string;
  /** The overlay device's MAC, to which delivered frames are addressed (the VtepMAC for VXLAN). */
  overlayMac: string;
  /** The overlay MTU: the largest inner packet. */
  mtu: number;
  /** SO_SNDBUF / SO_RCVBUF to ask for (the kernel caps it at net.core.[rw]mem_max). */
  socketBufferBytes: number;
  /** libpcap's ring buffer. */
  captureBufferBytes: number;
}

/** An IPv4 subnet as integers (what the per-packet checks compare). */
export interface WireNet {
  network: number;
  length: number;
}

export interface WirePeer {
  /** The lease name, for logs. */
  name: string;
  publicIP: string;
  subnet: WireNet;
  /** The peer's VtepMAC (VXLAN). */
  vtepMac?: string;
}

export type ParentMessage =
  { t: 'start'; config: WorkerConfig } | { t: 'peers'; own: WireNet | null; peers: WirePeer[] } | { t: 'stats'; id: number };

/** What both directions have counted. */
export interface DataPathCounters {
  tx: PathCounters;
  rx: PathCounters;
}

export function emptyDataPathCounters(): DataPathCounters {
  return { tx: emptyCounters(TX_DROP_REASONS), rx: emptyCounters(RX_DROP_REASONS) };
}

export function addDataPathCounters(into: DataPathCounters, from: DataPathCounters): void {
  addCounters(into.tx, from.tx);
  addCounters(into.rx, from.rx);
}

export type WorkerMessage =
  | { t: 'ready' }
  | { t: 'failed'; code: string; message: string }
  | { t: 'stats'; id: number | null; counters: DataPathCounters }
  | { t: 'log'; level: 'info' | 'warn' | 'error'; message: string; fields: LogFields };

/** An error crossing from the worker to weftd's log, with what the log keeps of one. */
export interface WireError {
  type: string;
  message: string;
  stack?: string;
  code?: string;
}

/** The fields of a worker's log line; an error goes under `err`. */
export type LogFields = Record<string, string | number | WireError>;
