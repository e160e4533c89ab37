/**
 * The wire formats of the userspace data path (VXLAN, RFC 7348, and flannel's udp format), pure and allocation-free on the per-packet
 * path:
 *
 * - VXLAN (RFC 7348): UDP payload = 8-byte header (flags 0x08 = VNI valid, 3 reserved bytes, 24-bit VNI,
 *   1 reserved byte) + inner Ethernet frame (dst = the receiving VTEP's VtepMAC, src = the sender's,
 *   EtherType 0x0800 / 0x86DD) + the IP packet;
 * - flannel's udp backend: the IP packet is the whole UDP payload;
 * - the few IPv4 header fields the anti-spoofing checks read, and the Internet checksum.
 *
 * `vxlanProblem` / `udpProblem` / `ipPacketProblem` look at a buffer in place and return what is wrong with
 * it (a DecodeProblem) or undefined: the data path calls them once per packet, they allocate nothing and
 * never throw.
 */
import type { Prefix } from './cidr.js';
import { WeftError } from './errors.js';

export const VXLAN_HEADER_LENGTH = 8;
export const ETHERNET_HEADER_LENGTH = 14;
/** What precedes the IP packet in a VXLAN UDP payload: the VXLAN header and the inner Ethernet header. */
export const VXLAN_ENCAP_LENGTH = VXLAN_HEADER_LENGTH + ETHERNET_HEADER_LENGTH;
/** The I flag: the VNI field is valid. */
export const VXLAN_FLAG_VNI = 0x08;
export const MAX_VNI = 0xffffff;
export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_IPV6 = 0x86dd;
export const IPV4_MIN_HEADER = 20;
export const IPV6_HEADER_LENGTH = 40;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

/** Why a received payload is not a packet to deliver, as far as its format goes (stable label values). */
export const DECODE_PROBLEMS = ['short', 'vni_flag', 'vni', 'ethertype', 'inner_mac', 'ip_header'] as const;
export type DecodeProblem = (typeof DECODE_PROBLEMS)[number];

// ---------------------------------------------------------------------------------------------------
// MAC addresses

const MAC_TEXT = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

/** "aa:bb:cc:dd:ee:ff" → 6 bytes; throws a WeftError WEFT_INVALID_MAC otherwise. */
export function parseMac(text: string): Buffer {
  if (!MAC_TEXT.test(text)) throw new WeftError('WEFT_INVALID_MAC', `"${text}" is not a MAC address`);
  return Buffer.from(text.replace(/:/g, ''), 'hex');
}

// ---------------------------------------------------------------------------------------------------
// IP headers

/** An unsigned 32-bit integer from 4 bytes, big-endian (network order). */
export function readU32(buf: Uint8Array, offset: number): number {
  return ((buf[offset] << 24) | (buf[offset + 1] << 16) | (buf[offset + 2] << 8) | buf[offset + 3]) >>> 0;
}

/** The IPv4 source address of the header at `offset`, as an unsigned 32-bit integer. */
export function ipv4Source(buf: Uint8Array, offset: number): number {
  return readU32(buf, offset + 12);
}

/** The IPv4 destination address of the header at `offset`, as an unsigned 32-bit integer. */
export function ipv4Destination(buf: Uint8Array, offset: number): number {
  return readU32(buf, offset + 16);
}

/** Dotted-quad text of an unsigned 32-bit IPv4 address. */
export function formatIpv4(address: number): string {
  return `${address >>> 24}.${(address >>> 16) & 0xff}.${(address >>> 8) & 0xff}.${address & 0xff}`;
}

/** An IPv4 prefix as two 32-bit integers, for membership tests on the per-packet path. */
export class Ipv4Net {
  readonly mask: number;
  readonly network: number;

  constructor(
    network: number,
    readonly length: number,
  ) {
    if (!Number.isInteger(length) || length < 0 || length > 32)
      throw new WeftError('WEFT_INVALID_CIDR', `prefix length ${length} is not 0-32`);
    this.mask = length === 0 ? 0 : (0xffffffff << (32 - length)) >>> 0;
    this.network = (network & this.mask) >>> 0;
  }

  static fromPrefix(prefix: Prefix): Ipv4Net {
    if (prefix.family !== 4) throw new WeftError('WEFT_INVALID_CIDR', `${prefix} is not an IPv4 prefix`);
    return new Ipv4Net(Number(prefix.base), prefix.length);
  }

  contains(address: number): boolean {
    return (address & this.mask) >>> 0 === this.network;
  }

  toString(): string {
    return `${formatIpv4(this.network)}/${this.length}`;
  }
}

/**
 * What is wrong with the IP packet at buf[offset, end), or undefined: too short for its header ('short'),
 * or a version other than `version` (4 or 6; either when undefined), an IPv4 header length below 20 bytes,
 * or a total length that disagrees with the header or overruns the buffer ('ip_header').
 */
export function ipPacketProblem(buf: Uint8Array, offset: number, end: number, version?: 4 | 6): DecodeProblem | undefined {
  const available = end - offset;
  if (available < 1) return 'short';
  const actual = buf[offset] >> 4;
  if (actual === 4 && (version === undefined || version === 4)) {
    if (available < IPV4_MIN_HEADER) return 'short';
    const headerLength = (buf[offset] & 0x0f) * 4;
    const totalLength = (buf[offset + 2] << 8) | buf[offset + 3];
    if (headerLength < IPV4_MIN_HEADER || totalLength < headerLength || totalLength > available) return 'ip_header';
    return undefined;
  }
  if (actual === 6 && (version === undefined || version === 6)) {
    if (available < IPV6_HEADER_LENGTH) return 'short';
    const payloadLength = (buf[offset + 4] << 8) | buf[offset + 5];
    if (IPV6_HEADER_LENGTH + payloadLength > available) return 'ip_header';
    return undefined;
  }
  return 'ip_header';
}

/**
 * The length the header of the (well-formed, see ipPacketProblem) IP packet at `offset` gives, without
 * link-layer padding after it.
 */
export function ipPacketLength(buf: Uint8Array, offset: number): number {
  if (buf[offset] >> 4 === 4) return (buf[offset + 2] << 8) | buf[offset + 3];
  return IPV6_HEADER_LENGTH + ((buf[offset + 4] << 8) | buf[offset + 5]);
}

// ---------------------------------------------------------------------------------------------------
// VXLAN

/**
 * What is wrong with the VXLAN UDP payload buf[start, start + length), or undefined when it carries an IP
 * packet for VNI `vni` (and, when `localMac` is given, addressed to that MAC).
 */
export function vxlanProblem(buf: Uint8Array, length: number, vni: number, localMac?: Uint8Array, start = 0): DecodeProblem | undefined {
  if (length < VXLAN_ENCAP_LENGTH) return 'short';
  if ((buf[start] & VXLAN_FLAG_VNI) === 0) return 'vni_flag';
  if (((buf[start + 4] << 16) | (buf[start + 5] << 8) | buf[start + 6]) !== vni) return 'vni';
  const etherType = (buf[start + 20] << 8) | buf[start + 21];
  if (etherType !== ETHERTYPE_IPV4 && etherType !== ETHERTYPE_IPV6) return 'ethertype';
  if (localMac !== undefined) {
    for (let i = 0; i < 6; i++) if (buf[start + VXLAN_HEADER_LENGTH + i] !== localMac[i]) return 'inner_mac';
  }
  return ipPacketProblem(buf, start + VXLAN_ENCAP_LENGTH, start + length, etherType === ETHERTYPE_IPV4 ? 4 : 6);
}

/**
 * The 22 bytes that precede an IP packet sent to one VTEP: VXLAN header and inner Ethernet header. The data
 * path builds one per peer and family and sends it with the packet as a two-part datagram.
 */
export function vxlanPrefix(vni: number, dstMac: Uint8Array, srcMac: Uint8Array, etherType: number): Buffer {
  if (!Number.isInteger(vni) || vni < 0 || vni > MAX_VNI) throw new WeftError('WEFT_INVALID_VNI', `VNI ${vni} is not 0-${MAX_VNI}`);
  if (dstMac.length !== 6 || srcMac.length !== 6) throw new WeftError('WEFT_INVALID_MAC', 'a MAC address has 6 bytes');
  const prefix = Buffer.alloc(VXLAN_ENCAP_LENGTH);
  prefix[0] = VXLAN_FLAG_VNI;
  prefix[4] = vni >>> 16;
  prefix[5] = (vni >>> 8) & 0xff;
  prefix[6] = vni & 0xff;
  prefix.set(dstMac, VXLAN_HEADER_LENGTH);
  prefix.set(srcMac, VXLAN_HEADER_LENGTH + 6);
  prefix.writeUInt16BE(etherType, 20);
  return prefix;
}

// ---------------------------------------------------------------------------------------------------
// flannel's udp backend

/** What is wrong with a flannel-udp UDP payload buf[start, start + length) (it must be one IP packet), or undefined. */
export function udpProblem(buf: Uint8Array, length: number, start = 0): DecodeProblem | undefined {
  return ipPacketProblem(buf, start, start + length);
}

// ---------------------------------------------------------------------------------------------------
// Checksums

/** The one's-complement sum of buf[start, end) as 16-bit big-endian words (odd tail padded), unfolded. */
export function sum16(buf: Uint8Array, start: number, end: number, initial = 0): number {
  let sum = initial;
  let i = start;
  // Four bytes per step; the accumulator stays far below 2^53 for any IP packet.
  for (; i + 3 < end; i += 4) sum += ((buf[i] << 8) | buf[i + 1]) + ((buf[i + 2] << 8) | buf[i + 3]);
  if (i + 1 < end) {
    sum += (buf[i] << 8) | buf[i + 1];
    i += 2;
  }
  if (i < end) sum += buf[i] << 8;
  return sum;
}

/** Folds a sum16 accumulator to 16 bits with end-around carry. */
export function foldSum(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/** The IPv4 header checksum field a header at `offset` should carry. */
export function ipv4HeaderChecksum(buf: Uint8Array, offset: number): number {
  const headerLength = (buf[offset] & 0x0f) * 4;
  const sum = sum16(buf, offset, offset + 10) + sum16(buf, offset + 12, offset + headerLength);
  return ~foldSum(sum) & 0xffff;
}

function pseudoHeaderSum(buf: Uint8Array, offset: number, protocol: number, l4Length: number): number {
  return sum16(buf, offset + 12, offset + 20) + protocol + l4Length;
}

/**
 * Fills in the TCP or UDP checksum of the IPv4 packet at buf[offset, offset + length) when it holds only
 * the pseudo-header sum, as packets handed over with checksum offload (CHECKSUM_PARTIAL) do when they cross
 * veth devices and are read by a socket or libpcap. A complete checksum is left as it is (one that happens
 * to equal the pseudo-header sum is recomputed to the same value). Returns whether it wrote. The packet must
 * be well-formed (ipPacketProblem); fragments are left alone.
 */
export function completePartialChecksum(buf: Uint8Array, offset: number, length: number): boolean {
  if (buf[offset] >> 4 !== 4) return false;
  const protocol = buf[offset + 9];
  if (protocol !== IPPROTO_TCP && protocol !== IPPROTO_UDP) return false;
  // More-fragments set or a fragment offset: the checksum covers the reassembled datagram.
  if (((buf[offset + 6] & 0x3f) | buf[offset + 7]) !== 0) return false;
  const headerLength = (buf[offset] & 0x0f) * 4;
  const l4 = offset + headerLength;
  const l4Length = length - headerLength;
  const field = l4 + (protocol === IPPROTO_TCP ? 16 : 6);
  if (l4Length < (protocol === IPPROTO_TCP ? 20 : 8)) return false;
  const stored = (buf[field] << 8) | buf[field + 1];
  // UDP over IPv4 may carry no checksum at all.
  if (protocol === IPPROTO_UDP && stored === 0) return false;
  const pseudo = pseudoHeaderSum(buf, offset, protocol, l4Length);
  const partial = foldSum(pseudo);
  if (stored !== partial && !(stored === 0xffff && partial === 0) && !(stored === 0 && partial === 0xffff)) return false;
  buf[field] = 0;
  buf[field + 1] = 0;
  let checksum = ~foldSum(sum16(buf, l4, offset + length, pseudo)) & 0xffff;
  if (protocol === IPPROTO_UDP && checksum === 0) checksum = 0xffff;
  buf[field] = checksum >>> 8;
  buf[field + 1] = checksum & 0xff;
  return true;
}

// ---------------------------------------------------------------------------------------------------
// TCP segmentation

const TCP_FIN = 0x01;
const TCP_PSH = 0x08;
const TCP_CWR = 0x80;

/**
 * How many segments of at most `maxLength` bytes (IP header included) the IPv4 TCP packet at
 * buf[offset, offset + length) splits into, as TCP segmentation offload would split it; 0 when it cannot
 * be split (not TCP, a fragment, or headers that leave no room for payload).
 */
export function tcpSegmentCount(buf: Uint8Array, offset: number, length: number, maxLength: number): number {
  if (buf[offset] >> 4 !== 4 || buf[offset + 9] !== IPPROTO_TCP) return 0;
  if (((buf[offset + 6] & 0x3f) | buf[offset + 7]) !== 0) return 0;
  const ipHeader = (buf[offset] & 0x0f) * 4;
  if (length < ipHeader + 20) return 0;
  const headers = ipHeader + (buf[offset + ipHeader + 12] >> 4) * 4;
  const segmentPayload = maxLength - headers;
  if (headers > length || segmentPayload <= 0) return 0;
  return Math.max(1, Math.ceil((length - headers) / segmentPayload));
}

/**
 * Writes segment `index` (of tcpSegmentCount) of the IPv4 TCP packet at buf[offset, offset + length) to
 * out[outOffset…] and returns its length. What TSO does: the headers are copied; total length, IP ID (+index),
 * IP header checksum, sequence number and TCP checksum are rewritten; CWR stays on the first segment
 * only, FIN and PSH on the last only. The packet's checksums need not be valid (a GSO packet's are not).
 */
export function writeTcpSegment(
  buf: Uint8Array,
  offset: number,
  length: number,
  maxLength: number,
  index: number,
  out: Uint8Array,
  outOffset: number,
): number {
  const ipHeader = (buf[offset] & 0x0f) * 4;
  const tcp = offset + ipHeader;
  const headers = ipHeader + (buf[tcp + 12] >> 4) * 4;
  const segmentPayload = maxLength - headers;
  const payload = length - headers;
  const start = index * segmentPayload;
  const chunk = Math.min(segmentPayload, payload - start);
  const last = start + chunk >= payload;
  out.set(buf.subarray(offset, offset + headers), outOffset);
  out.set(buf.subarray(offset + headers + start, offset + headers + start + chunk), outOffset + headers);
  const total = headers + chunk;
  out[outOffset + 2] = total >>> 8;
  out[outOffset + 3] = total & 0xff;
  const id = (((buf[offset + 4] << 8) | buf[offset + 5]) + index) & 0xffff;
  out[outOffset + 4] = id >>> 8;
  out[outOffset + 5] = id & 0xff;
  out[outOffset + 10] = 0;
  out[outOffset + 11] = 0;
  const ipChecksum = ipv4HeaderChecksum(out, outOffset);
  out[outOffset + 10] = ipChecksum >>> 8;
  out[outOffset + 11] = ipChecksum & 0xff;
  const outTcp = outOffset + ipHeader;
  const seq = (readU32(buf, tcp + 4) + start) >>> 0;
  out[outTcp + 4] = seq >>> 24;
  out[outTcp + 5] = (seq >>> 16) & 0xff;
  out[outTcp + 6] = (seq >>> 8) & 0xff;
  out[outTcp + 7] = seq & 0xff;
  let flags = buf[tcp + 13];
  if (index > 0) flags &= ~TCP_CWR;
  if (!last) flags &= ~(TCP_FIN | TCP_PSH);
  out[outTcp + 13] = flags;
  out[outTcp + 16] = 0;
  out[outTcp + 17] = 0;
  const sum = sum16(out, outTcp, outOffset + total, pseudoHeaderSum(out, outOffset, IPPROTO_TCP, total - ipHeader));
  const checksum = ~foldSum(sum) & 0xffff;
  out[outTcp + 16] = checksum >>> 8;
  out[outTcp + 17] = checksum & 0xff;
  return total;
}
