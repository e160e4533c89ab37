/**
 * Whole-packet VXLAN and flannel-udp codecs for tests, and the MAC text and checksum checks they use: they allocate and throw, unlike the data path's
 * in-place checks in common/packet.ts, on which they are built.
 */
import { WeftError } from '../common/errors.js';
import {
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  VXLAN_ENCAP_LENGTH,
  VXLAN_HEADER_LENGTH,
  IPPROTO_UDP,
  ipPacketLength,
  udpProblem,
  vxlanPrefix,
  vxlanProblem,
  type DecodeProblem,
} from '../common/packet.js';

/** "aa:bb:cc:dd:ee:ff" from the 6 bytes at `offset`. */
export function formatMac(bytes: Uint8Array, offset = 0): string {
  const parts: string[] = [];
  for (let i = offset; i < offset + 6; i++) parts.push((bytes[i] ?? 0).toString(16).padStart(2, '0'));
  return parts.join(':');
}

/**
 * Whether the TCP or UDP checksum of the IPv4 packet at buf[offset, offset + length) verifies (a UDP
 * checksum of 0 means none). Summed word by word here, apart from the data path's own sums, which it checks.
 */
export function transportChecksumValid(buf: Uint8Array, offset: number, length: number): boolean {
  const protocol = buf[offset + 9];
  const start = offset + (buf[offset] & 0x0f) * 4;
  const end = offset + length;
  if (protocol === IPPROTO_UDP && buf[start + 6] === 0 && buf[start + 7] === 0) return true;
  let sum = protocol + (end - start);
  for (let i = offset + 12; i < offset + 20; i += 2) sum += (buf[i] << 8) | buf[i + 1];
  for (let i = start; i < end; i += 2) sum += (buf[i] << 8) | (i + 1 < end ? buf[i + 1] : 0);
  while (sum > 0xffff) sum = (sum % 0x10000) + Math.floor(sum / 0x10000);
  return sum === 0xffff;
}

export interface VxlanFrame {
  vni: number;
  dstMac: string;
  srcMac: string;
  etherType: number;
  /** The inner IP packet (a view of the input, without link-layer padding). */
  packet: Buffer;
}

export interface VxlanDecodeOptions {
  /** The VNI we accept. */
  vni: number;
  /** Our VtepMAC: when given, a frame addressed to another MAC is rejected ('inner_mac'). */
  localMac?: Uint8Array;
}

/** Decodes a VXLAN UDP payload; throws PacketDecodeError. */
export function decodeVxlan(payload: Uint8Array, options: VxlanDecodeOptions): VxlanFrame {
  const buf = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  const problem = vxlanProblem(buf, buf.length, options.vni, options.localMac);
  if (problem !== undefined) throw new PacketDecodeError(problem, describeVxlan(buf, problem, options));
  const offset = VXLAN_ENCAP_LENGTH;
  return {
    vni: (buf[4] << 16) | (buf[5] << 8) | buf[6],
    dstMac: formatMac(buf, VXLAN_HEADER_LENGTH),
    srcMac: formatMac(buf, VXLAN_HEADER_LENGTH + 6),
    etherType: (buf[20] << 8) | buf[21],
    packet: buf.subarray(offset, offset + ipPacketLength(buf, offset)),
  };
}

function describeVxlan(buf: Buffer, problem: DecodeProblem, options: VxlanDecodeOptions): string {
  switch (problem) {
    case 'short':
      return buf.length < VXLAN_ENCAP_LENGTH
        ? `${buf.length} bytes, a VXLAN header and an inner Ethernet header take ${VXLAN_ENCAP_LENGTH}`
        : `${buf.length - VXLAN_ENCAP_LENGTH} bytes after the inner Ethernet header`;
    case 'vni_flag':
      return `flags 0x${buf[0].toString(16).padStart(2, '0')}`;
    case 'vni':
      return `VNI ${(buf[4] << 16) | (buf[5] << 8) | buf[6]}, expected ${options.vni}`;
    case 'ethertype':
      return `EtherType 0x${buf.readUInt16BE(20).toString(16).padStart(4, '0')}`;
    case 'inner_mac':
      return `to ${formatMac(buf, VXLAN_HEADER_LENGTH)}, ours is ${formatMac(options.localMac ?? new Uint8Array(6))}`;
    case 'ip_header':
      return describeIp(buf, VXLAN_ENCAP_LENGTH);
  }
}

function describeIp(buf: Uint8Array, offset: number): string {
  const version = buf[offset] >> 4;
  if (version === 4)
    return `IPv4 header length ${(buf[offset] & 0x0f) * 4}, total length ${(buf[offset + 2] << 8) | buf[offset + 3]}, ${buf.length - offset} bytes`;
  if (version === 6) return `IPv6 payload length ${(buf[offset + 4] << 8) | buf[offset + 5]}, ${buf.length - offset} bytes`;
  return `IP version ${version}`;
}

export interface VxlanEncodeOptions {
  vni: number;
  /** The receiving VTEP's VtepMAC. */
  dstMac: Uint8Array;
  /** Our VtepMAC. */
  srcMac: Uint8Array;
  /** An IPv4 or IPv6 packet; its version picks the EtherType. */
  packet: Uint8Array;
}

/** A whole VXLAN UDP payload (allocates; the data path uses vxlanPrefix instead). */
export function encodeVxlan(options: VxlanEncodeOptions): Buffer {
  const { packet } = options;
  const version = packet.length > 0 ? packet[0] >> 4 : 0;
  if (version !== 4 && version !== 6) throw new WeftError('WEFT_INVALID_PACKET', `IP version ${version} cannot be sent over VXLAN`);
  const prefix = vxlanPrefix(options.vni, options.dstMac, options.srcMac, version === 4 ? ETHERTYPE_IPV4 : ETHERTYPE_IPV6);
  return Buffer.concat([prefix, packet]);
}

/** Decodes a flannel-udp payload to its IP packet (a view, without trailing bytes); throws PacketDecodeError. */
export function decodeUdp(payload: Uint8Array): Buffer {
  const buf = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  const problem = udpProblem(buf, buf.length);
  if (problem !== undefined) {
    throw new PacketDecodeError(problem, problem === 'short' ? `${buf.length} bytes` : describeIp(buf, 0));
  }
  return buf.subarray(0, ipPacketLength(buf, 0));
}

/** A flannel-udp payload: the IP packet itself (a copy). */
export function encodeUdp(packet: Uint8Array): Buffer {
  const problem = udpProblem(packet, packet.length);
  if (problem !== undefined) throw new WeftError('WEFT_INVALID_PACKET', `not an IP packet: ${PROBLEM_TEXT[problem]}`);
  return Buffer.from(packet);
}

const PROBLEM_TEXT: Record<DecodeProblem, string> = {
  short: 'shorter than its headers',
  vni_flag: 'the VXLAN I flag (VNI valid) is clear',
  vni: 'carries another VNI',
  ethertype: 'the inner frame is not IPv4 or IPv6',
  inner_mac: 'the inner frame is not addressed to our VtepMAC',
  ip_header: 'the inner IP header is malformed',
};

/** A payload that is not a well-formed VXLAN or flannel-udp packet; `reason` is one of DECODE_PROBLEMS. */
export class PacketDecodeError extends WeftError {
  readonly reason: DecodeProblem;
  constructor(reason: DecodeProblem, detail: string) {
    super('WEFT_PACKET_DECODE', `${PROBLEM_TEXT[reason]} (${detail})`);
    this.reason = reason;
  }
}
