/**
 * weft's overlay health probes on the wire: an IPv4 packet (don't-fragment set) carrying an ICMP echo
 * request whose payload says it is weft's, from which prober run (`instance`), which round and which size
 * class. The receiving kernel answers with an echo reply that copies identifier, sequence and payload, so
 * the reply names the probe it answers; a host also sees the probes its peers send it, which tells the
 * direction of a path that carries only one way.
 */
import { foldSum, ipv4HeaderChecksum, readU32, sum16 } from './packet.js';

export const IPV4_HEADER = 20;
export const ICMP_HEADER = 8;
const PAYLOAD_HEADER = 16;
/** The smallest probe: headers and weft's payload header, rounded up as ping's default is. */
export const SMALL_PROBE_BYTES = 64;
export const MIN_PROBE_BYTES = IPV4_HEADER + ICMP_HEADER + PAYLOAD_HEADER;
export const MAX_PROBE_BYTES = 65535;
/** "weft" */
const MAGIC = 0x77656674;
const VERSION = 1;
const ICMP_ECHO_REPLY = 0;
const ICMP_ECHO_REQUEST = 8;
const PROTOCOL_ICMP = 1;
const FLAG_DONT_FRAGMENT = 0x4000;

export type ProbeSize = 'small' | 'full';

export interface ProbeFields {
  /** Overlay addresses as unsigned 32-bit integers. */
  source: number;
  destination: number;
  /** ICMP identifier: the prober's, so that its replies are told from other pings'. */
  identifier: number;
  /** The prober run: replies and probes of an earlier run (before a restart) are not mistaken for this one's. */
  instance: number;
  /** The probe round of this peer (one small and one full probe per round). */
  round: number;
  size: ProbeSize;
  /** Total IPv4 packet length; at least MIN_PROBE_BYTES. */
  length: number;
}

/** An echo request or reply that carries weft's probe payload. */
export interface ProbeMessage {
  kind: 'request' | 'reply';
  /** IPv4 source and destination of the packet, unsigned 32-bit. */
  source: number;
  destination: number;
  identifier: number;
  instance: number;
  round: number;
  size: ProbeSize;
  length: number;
}

/** Writes a complete probe packet (IPv4 header with DF, ICMP echo request, payload) into a new buffer. */
export function encodeProbe(fields: ProbeFields): Buffer {
  const { length } = fields;
  if (!Number.isInteger(length) || length < MIN_PROBE_BYTES || length > MAX_PROBE_BYTES) {
    throw new RangeError(`a probe is ${MIN_PROBE_BYTES} to ${MAX_PROBE_BYTES} bytes, not ${length}`);
  }
  const packet = Buffer.alloc(length);
  packet[0] = 0x45;
  packet.writeUInt16BE(length, 2);
  packet.writeUInt16BE(fields.round & 0xffff, 4);
  packet.writeUInt16BE(FLAG_DONT_FRAGMENT, 6);
  packet[8] = 64;
  packet[9] = PROTOCOL_ICMP;
  packet.writeUInt32BE(fields.source >>> 0, 12);
  packet.writeUInt32BE(fields.destination >>> 0, 16);
  packet.writeUInt16BE(ipv4HeaderChecksum(packet, 0), 10);
  const icmp = IPV4_HEADER;
  packet[icmp] = ICMP_ECHO_REQUEST;
  packet.writeUInt16BE(fields.identifier & 0xffff, icmp + 4);
  packet.writeUInt16BE(((fields.round << 1) | (fields.size === 'full' ? 1 : 0)) & 0xffff, icmp + 6);
  const payload = icmp + ICMP_HEADER;
  packet.writeUInt32BE(MAGIC, payload);
  packet[payload + 4] = VERSION;
  packet[payload + 5] = fields.size === 'full' ? 1 : 0;
  packet.writeUInt32BE(fields.instance >>> 0, payload + 8);
  packet.writeUInt32BE(fields.round >>> 0, payload + 12);
  packet.writeUInt16BE(~foldSum(sum16(packet, icmp, length)) & 0xffff, icmp + 2);
  return packet;
}

/**
 * Reads an IPv4 packet as a raw ICMP socket delivers it (IP header included). Undefined for anything that
 * is not a well-formed, unfragmented echo request or reply carrying weft's probe payload — never throws.
 */
export function decodeProbe(packet: Uint8Array, length = packet.length): ProbeMessage | undefined {
  if (length < MIN_PROBE_BYTES || length > packet.length || packet[0] >> 4 !== 4) return undefined;
  const headerLength = (packet[0] & 0x0f) * 4;
  const total = (packet[2] << 8) | packet[3];
  if (headerLength < IPV4_HEADER || total > length || total < headerLength + ICMP_HEADER + PAYLOAD_HEADER) return undefined;
  if (packet[9] !== PROTOCOL_ICMP || (((packet[6] << 8) | packet[7]) & 0x3fff) !== 0) return undefined;
  const icmp = headerLength;
  const type = packet[icmp];
  if ((type !== ICMP_ECHO_REPLY && type !== ICMP_ECHO_REQUEST) || packet[icmp + 1] !== 0) return undefined;
  if (foldSum(sum16(packet, icmp, total)) !== 0xffff) return undefined;
  const payload = icmp + ICMP_HEADER;
  if (readU32(packet, payload) !== MAGIC || packet[payload + 4] !== VERSION || packet[payload + 5] > 1) return undefined;
  return {
    kind: type === ICMP_ECHO_REPLY ? 'reply' : 'request',
    source: readU32(packet, 12),
    destination: readU32(packet, 16),
    identifier: (packet[icmp + 4] << 8) | packet[icmp + 5],
    instance: readU32(packet, payload + 8),
    round: readU32(packet, payload + 12),
    size: packet[payload + 5] === 1 ? 'full' : 'small',
    length: total,
  };
}
