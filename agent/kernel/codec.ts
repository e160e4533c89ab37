/**
 * Encoding of rtnetlink request payloads (through the `netlink` package's formatters) and decoding of the
 * kernel's messages into the plain types of ./types.ts. Pure: no sockets here.
 *
 * Fixed headers (ifinfomsg, ifaddrmsg, ndmsg, rtmsg) are decoded by hand rather than with the package's
 * parsers, because those turn numbers into enum names ("BOOT", "LINK", ...) and the protocol / scope /
 * table numbers are exactly what weft compares. Attributes are walked with the package's TLV parser and
 * only the ones the shim reports are decoded, so an attribute a newer kernel adds cannot break a dump.
 */
import { endianness } from 'node:os';
import { AttrStream, ifla, putString, putU32, rt } from './netlink-parts.js';
import { InvalidCidrError, WeftError } from '../../common/errors.js';
import { IpAddress, ipv4Value } from '../../common/cidr.js';
import { parseMac } from '../../common/packet.js';
import {
  AF_BRIDGE,
  AF_INET,
  AF_INET6,
  NTF_SELF,
  NUD_PERMANENT,
  RTNH_F_ONLINK,
  type AddressInfo,
  type FdbEntry,
  type IpFamily,
  type KernelChange,
  type LinkChanges,
  type LinkInfo,
  type NeighbourInfo,
  type NexthopInfo,
  type RouteInfo,
  type VxlanAttrs,
  type LinkSpec,
  type VxlanSpec,
} from './types.js';

// ---------------------------------------------------------------------------------------------------
// Host-order integers (netlink uses host byte order)

const LE = endianness() === 'LE';
export const readU16 = (b: Buffer, o: number): number => (LE ? b.readUInt16LE(o) : b.readUInt16BE(o));
export const readU32 = (b: Buffer, o: number): number => (LE ? b.readUInt32LE(o) : b.readUInt32BE(o));
export const readS32 = (b: Buffer, o: number): number => (LE ? b.readInt32LE(o) : b.readInt32BE(o));
export const writeU16 = (b: Buffer, v: number, o: number): void => {
  if (LE) b.writeUInt16LE(v, o);
  else b.writeUInt16BE(v, o);
};
export const writeS32 = (b: Buffer, v: number, o: number): void => {
  if (LE) b.writeInt32LE(v, o);
  else b.writeInt32BE(v, o);
};
export const writeU32 = (b: Buffer, v: number, o: number): void => {
  if (LE) b.writeUInt32LE(v, o);
  else b.writeUInt32BE(v, o);
};

// ---------------------------------------------------------------------------------------------------
// Addresses

export interface IpBytes {
  family: IpFamily;
  bytes: Buffer;
}

export interface PrefixBytes extends IpBytes {
  len: number;
}

export function afOf(family: IpFamily): number {
  return family === 4 ? AF_INET : AF_INET6;
}

export function familyOfAf(af: number): IpFamily | null {
  return af === AF_INET ? 4 : af === AF_INET6 ? 6 : null;
}

export function ipToBytes(text: string): IpBytes {
  const v4 = ipv4Value(text);
  if (v4 >= 0) {
    const bytes = Buffer.allocUnsafe(4);
    bytes.writeUInt32BE(v4, 0);
    return { family: 4, bytes };
  }
  // one parser and one formatter for IPv6 with common/cidr: a text that differs from what a dump decodes to
  // would make the diff replace the object on every run
  const address = IpAddress.parse(text);
  return { family: address.family, bytes: address.toBytes() };
}

/** Texts of dumps and notifications are built with join(), as in IpAddress.format: a full run keeps them by the ten thousand. */
export function bytesToIp(bytes: Buffer): string {
  if (bytes.length === 4) return [bytes[0], bytes[1], bytes[2], bytes[3]].join('.');
  if (bytes.length === 16) return IpAddress.fromBytes(bytes).toString();
  throw new WeftError('WEFT_NETLINK_DECODE', `unexpected address length ${bytes.length}`);
}

export function prefixToBytes(text: string): PrefixBytes {
  const slash = text.indexOf('/');
  const addr = slash < 0 ? text : text.slice(0, slash);
  const { family, bytes } = ipToBytes(addr);
  const max = family === 4 ? 32 : 128;
  const len = slash < 0 ? max : prefixLength(text, slash + 1);
  if (len < 0 || len > max) throw new InvalidCidrError(`"${text}" has an invalid prefix length`);
  return { family, bytes, len };
}

/** The decimal number of 1 to 3 digits that ends `text` from `start`, or -1 (by hand: a route is encoded per peer). */
function prefixLength(text: string, start: number): number {
  const digits = text.length - start;
  if (digits < 1 || digits > 3) return -1;
  let len = 0;
  for (let i = start; i < text.length; i++) {
    const c = text.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return -1;
    len = len * 10 + c;
  }
  return len;
}

/** Canonical text of a prefix ("198.18.2.0/24", "2001:db8:100::/64"); host bits are kept as given. */
export function canonicalPrefix(text: string): string {
  const p = prefixToBytes(text);
  return `${bytesToIp(p.bytes)}/${p.len}`;
}

/** Canonical text of an address. */
export function canonicalIp(text: string): string {
  return bytesToIp(ipToBytes(text).bytes);
}

const HEX_BYTE = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

export function bytesToMac(bytes: Buffer): string {
  if (bytes.length === 6) {
    return [HEX_BYTE[bytes[0]], HEX_BYTE[bytes[1]], HEX_BYTE[bytes[2]], HEX_BYTE[bytes[3]], HEX_BYTE[bytes[4]], HEX_BYTE[bytes[5]]].join(
      ':',
    );
  }
  const parts: string[] = [];
  for (const b of bytes) parts.push(HEX_BYTE[b]);
  return parts.join(':');
}

// ---------------------------------------------------------------------------------------------------
// Attribute helpers

const be16 = (n: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n, 0);
  return b;
};

function streamToBuffer(fill: (s: AttrStream) => void): Buffer {
  const s = new AttrStream();
  fill(s);
  return Buffer.concat(s.bufs);
}

/** Walks the attributes of `b` from `offset` into a map type → payload (last one wins). */
function attrsOf(b: Buffer, offset: number): Map<number, Buffer> {
  // A hand loop rather than the package's parseAttributes (two buffer views and an object per attribute):
  // dumps and notifications bring tens of thousands of messages when weft programs many peers.
  const map = new Map<number, Buffer>();
  while (offset + 4 <= b.length) {
    const length = readU16(b, offset);
    if (length < 4 || offset + length > b.length) break;
    map.set(readU16(b, offset + 2) & 0x3fff, b.subarray(offset + 4, offset + length));
    offset += (length + 3) & ~3;
  }
  return map;
}

function cString(b: Buffer): string {
  const nul = b.indexOf(0);
  return b.toString('utf8', 0, nul < 0 ? b.length : nul);
}

const optU32 = (b: Buffer | undefined): number | null => (b && b.length >= 4 ? readU32(b, 0) : null);

/**
 * Hand-rolled encoding for the requests weft sends by the thousand (neighbours, FDB entries, nexthops,
 * routes): one zeroed buffer per payload, attributes written in place. The `netlink` package's formatters
 * build the same bytes through several intermediate buffers and cost ~10 µs a message.
 */
const NLA_ALIGN = (n: number): number => (n + 3) & ~3;

function zeroed(size: number): Buffer {
  // a slice of node's shared pool: Buffer.alloc would make a new ArrayBuffer (and garbage) per message
  return Buffer.allocUnsafe(size).fill(0);
}

function putAttrBytes(b: Buffer, offset: number, type: number, data: Buffer): number {
  writeU16(b, 4 + data.length, offset);
  writeU16(b, type, offset + 2);
  data.copy(b, offset + 4);
  return offset + NLA_ALIGN(4 + data.length);
}

/**
 * An address to encode: the IPv4 address as a number (no buffer made for it), or else the parsed IPv6 one.
 * Throws for a text that is neither.
 */
interface AddressToPut {
  v4: number;
  v6: IpBytes | undefined;
}

function addressToPut(ip: string): AddressToPut {
  const v4 = ipv4Value(ip);
  return { v4, v6: v4 >= 0 ? undefined : ipToBytes(ip) };
}

const ipAttrSize = (a: AddressToPut): number => (a.v6 === undefined ? 8 : attrSize(a.v6.bytes));

function putAttrIp(b: Buffer, offset: number, type: number, a: AddressToPut): number {
  if (a.v6 !== undefined) return putAttrBytes(b, offset, type, a.v6.bytes);
  writeU16(b, 8, offset);
  writeU16(b, type, offset + 2);
  b.writeUInt32BE(a.v4, offset + 4);
  return offset + 8;
}

const MAC_ATTR_SIZE = NLA_ALIGN(4 + 6);

/**
 * An attribute holding the MAC address `mac` ("aa:bb:cc:dd:ee:ff", case-insensitive), parsed into place;
 * a WeftError WEFT_INVALID_MAC for anything else, as parseMac.
 */
function putAttrMac(b: Buffer, offset: number, type: number, mac: string): number {
  if (mac.length !== 17) throw invalidMac(mac);
  for (let i = 0; i < 6; i++) {
    const hi = hexValue(mac.charCodeAt(i * 3));
    const lo = hexValue(mac.charCodeAt(i * 3 + 1));
    if (hi < 0 || lo < 0 || (i < 5 && mac.charCodeAt(i * 3 + 2) !== 58)) throw invalidMac(mac);
    b[offset + 4 + i] = hi * 16 + lo;
  }
  writeU16(b, 10, offset);
  writeU16(b, type, offset + 2);
  return offset + MAC_ATTR_SIZE;
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

function invalidMac(mac: string): WeftError {
  return new WeftError('WEFT_INVALID_MAC', `"${mac}" is not a MAC address`);
}

function putAttrU32(b: Buffer, offset: number, type: number, value: number): number {
  writeU16(b, 8, offset);
  writeU16(b, type, offset + 2);
  writeU32(b, value >>> 0, offset + 4);
  return offset + 8;
}

const attrSize = (data: Buffer | undefined): number => (data === undefined ? 0 : NLA_ALIGN(4 + data.length));

// ---------------------------------------------------------------------------------------------------
// Links

const IFF_UP = 0x1;
const IFF_RUNNING = 0x40;
const IFLA_ADDRESS = 1;
const IFLA_IFNAME = 3;
const IFLA_MTU = 4;
const IFLA_LINK = 5;
const IFLA_MASTER = 10;
const IFLA_LINKINFO = 18;
const IFLA_INFO_KIND = 1;
const IFLA_INFO_DATA = 2;
const IFLINKMSG_LEN = 16;

/** ifinfomsg selecting a link by index (and/or family, for AF_BRIDGE FDB dumps), no attributes. */
export function linkHeader(index: number, family = 0): Buffer {
  return rt.formatLink({ family, index });
}

export function linkByNamePayload(name: string): Buffer {
  return streamToBuffer((s) => rt.formatLinkMessage({ kind: 'link', data: {}, attrs: { ifname: name } }, s));
}

function vxlanData(spec: VxlanSpec): ifla.Vxlan {
  const data: ifla.Vxlan = {
    id: spec.vni,
    port: be16(spec.port ?? 8472),
    // absent IFLA_VXLAN_LEARNING means learning ON in the kernel, so always send it
    learning: spec.learning ? 1 : 0,
  };
  if (spec.local !== undefined) {
    const local = ipToBytes(spec.local);
    if (local.family === 4) data.local = local.bytes;
    else data.local6 = local.bytes;
  }
  if (spec.parentIndex !== undefined) data.link = spec.parentIndex;
  // formatVxlan emits the GBP flag for any defined value, false included
  if (spec.gbp) data.gbp = true;
  return data;
}

export function createVxlanPayload(spec: VxlanSpec): Buffer {
  const linkinfo = streamToBuffer((s) => {
    s.push(IFLA_INFO_KIND, putString('vxlan'));
    s.push(IFLA_INFO_DATA, ifla.formatVxlan(vxlanData(spec)));
  });
  const attrs: ifla.LinkAttrs = { ifname: spec.name, linkinfo };
  if (spec.mtu !== undefined) attrs.mtu = spec.mtu;
  if (spec.mac !== undefined) attrs.address = parseMac(spec.mac);
  const data: rt.Link = spec.up ? { flags: { up: true }, change: { up: true } } : {};
  return streamToBuffer((s) => rt.formatLinkMessage({ kind: 'link', data, attrs }, s));
}

export function createLinkPayload(spec: LinkSpec): Buffer {
  const linkinfo = streamToBuffer((s) => s.push(IFLA_INFO_KIND, putString(spec.kind)));
  const attrs: ifla.LinkAttrs = { ifname: spec.name, linkinfo };
  if (spec.mtu !== undefined) attrs.mtu = spec.mtu;
  const data: rt.Link = spec.up ? { flags: { up: true }, change: { up: true } } : {};
  return streamToBuffer((s) => rt.formatLinkMessage({ kind: 'link', data, attrs }, s));
}

export function setLinkPayload(index: number, changes: LinkChanges): Buffer {
  const data: rt.Link = { index };
  if (changes.up !== undefined) {
    data.flags = changes.up ? { up: true } : {};
    data.change = { up: true };
  }
  const attrs: ifla.LinkAttrs = {};
  if (changes.mtu !== undefined) attrs.mtu = changes.mtu;
  if (changes.mac !== undefined) attrs.address = parseMac(changes.mac);
  return streamToBuffer((s) => rt.formatLinkMessage({ kind: 'link', data, attrs }, s));
}

function parseVxlanAttrs(data: Buffer): VxlanAttrs {
  const v = ifla.parseVxlan(data);
  const local = v.local ?? v.local6;
  return {
    vni: v.id ?? 0,
    port: v.port && v.port.length === 2 ? v.port.readUInt16BE(0) : 8472,
    local: local ? bytesToIp(local) : null,
    parentIndex: v.link ? v.link : null,
    learning: v.learning === 1,
    gbp: v.gbp === true,
  };
}

export function parseLink(b: Buffer): LinkInfo | null {
  if (b.length < IFLINKMSG_LEN) return null;
  const index = readS32(b, 4);
  const flags = readU32(b, 8);
  const a = attrsOf(b, IFLINKMSG_LEN);
  let kind: string | null = null;
  let vxlan: VxlanAttrs | null = null;
  const linkinfo = a.get(IFLA_LINKINFO);
  if (linkinfo) {
    const info = attrsOf(linkinfo, 0);
    const k = info.get(IFLA_INFO_KIND);
    if (k) kind = cString(k);
    const d = info.get(IFLA_INFO_DATA);
    if (kind === 'vxlan' && d) vxlan = parseVxlanAttrs(d);
  }
  const mac = a.get(IFLA_ADDRESS);
  const name = a.get(IFLA_IFNAME);
  return {
    index,
    name: name ? cString(name) : '',
    kind,
    mtu: optU32(a.get(IFLA_MTU)) ?? 0,
    up: (flags & IFF_UP) !== 0,
    running: (flags & IFF_RUNNING) !== 0,
    mac: mac && mac.length > 0 ? bytesToMac(mac) : null,
    linkIndex: optU32(a.get(IFLA_LINK)),
    masterIndex: optU32(a.get(IFLA_MASTER)),
    vxlan,
  };
}

// ---------------------------------------------------------------------------------------------------
// Addresses

const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
const IFA_LABEL = 3;
const IFA_FLAGS = 8;
const IFADDRMSG_LEN = 8;

export function addressPayload(index: number, cidr: string): Buffer {
  const p = prefixToBytes(cidr);
  return streamToBuffer((s) =>
    rt.formatAddressMessage(
      { kind: 'address', data: { family: afOf(p.family), prefixlen: p.len, index }, attrs: { local: p.bytes, address: p.bytes } },
      s,
    ),
  );
}

export function addressDumpPayload(family: IpFamily | undefined): Buffer {
  return rt.formatAddress({ family: family ? afOf(family) : 0 });
}

export function parseAddress(b: Buffer): AddressInfo | null {
  if (b.length < IFADDRMSG_LEN) return null;
  const family = familyOfAf(b[0]);
  if (!family) return null;
  const a = attrsOf(b, IFADDRMSG_LEN);
  const addr = a.get(IFA_LOCAL) ?? a.get(IFA_ADDRESS);
  if (!addr) return null;
  const address = bytesToIp(addr);
  const prefixLen = b[1];
  const label = a.get(IFA_LABEL);
  return {
    index: readU32(b, 4),
    family,
    address,
    prefixLen,
    cidr: `${address}/${prefixLen}`,
    scope: b[3],
    flags: optU32(a.get(IFA_FLAGS)) ?? b[2],
    label: label ? cString(label) : null,
  };
}

// ---------------------------------------------------------------------------------------------------
// Neighbours and FDB (both are RTM_*NEIGH; FDB is family AF_BRIDGE)

const NDA_DST = 1;
const NDA_LLADDR = 2;
const NDA_PORT = 6;
const NDA_VNI = 7;
const NDA_MASTER = 9;
const NDMSG_LEN = 12;

export function neighbourPayload(index: number, ip: string, mac: string | null): Buffer {
  const address = addressToPut(ip);
  const b = zeroed(NDMSG_LEN + ipAttrSize(address) + (mac === null ? 0 : MAC_ATTR_SIZE));
  b[0] = afOf(address.v6?.family ?? 4);
  writeS32(b, index, 4);
  if (mac !== null) writeU16(b, NUD_PERMANENT, 8);
  const offset = putAttrIp(b, NDMSG_LEN, NDA_DST, address);
  if (mac !== null) putAttrMac(b, offset, NDA_LLADDR, mac);
  return b;
}

/** A dump of family `af` (0 = IPv4 and IPv6) filtered in the kernel to one device when index is set. */
export function neighbourDumpPayload(af: number, index: number | undefined): Buffer {
  const attrs: rt.NeighborAttrs = {};
  if (index !== undefined) attrs.ifindex = putU32(index);
  return streamToBuffer((s) => rt.formatNeighborMessage({ kind: 'neighbor', data: { family: af }, attrs }, s));
}

export function fdbPayload(index: number, mac: string, dst: string | null, add: boolean): Buffer {
  const remote = dst === null ? undefined : addressToPut(dst);
  const b = zeroed(NDMSG_LEN + MAC_ATTR_SIZE + (remote === undefined ? 0 : ipAttrSize(remote)));
  b[0] = AF_BRIDGE;
  writeS32(b, index, 4);
  if (add) writeU16(b, NUD_PERMANENT, 8);
  b[10] = NTF_SELF;
  const offset = putAttrMac(b, NDMSG_LEN, NDA_LLADDR, mac);
  if (remote !== undefined) putAttrIp(b, offset, NDA_DST, remote);
  return b;
}

/**
 * An AF_BRIDGE neighbour dump for one device. The kernel's legacy (non strict-check) parser only reads the
 * port filter when the header is an ifinfomsg (16 bytes), which is what `bridge fdb show dev X` sends.
 */
export function fdbDumpPayload(index: number | undefined): Buffer {
  return linkHeader(index ?? 0, AF_BRIDGE);
}

export function parseNeighbour(b: Buffer): NeighbourInfo | null {
  if (b.length < NDMSG_LEN) return null;
  const family = familyOfAf(b[0]);
  if (!family) return null;
  const a = attrsOf(b, NDMSG_LEN);
  const dst = a.get(NDA_DST);
  if (!dst) return null;
  const lladdr = a.get(NDA_LLADDR);
  const state = readU16(b, 8);
  return {
    index: readS32(b, 4),
    family,
    ip: bytesToIp(dst),
    mac: lladdr && lladdr.length > 0 ? bytesToMac(lladdr) : null,
    state,
    flags: b[10],
    permanent: (state & NUD_PERMANENT) !== 0,
  };
}

export function parseFdb(b: Buffer): FdbEntry | null {
  if (b.length < NDMSG_LEN || b[0] !== AF_BRIDGE) return null;
  const a = attrsOf(b, NDMSG_LEN);
  const lladdr = a.get(NDA_LLADDR);
  if (!lladdr) return null;
  const dst = a.get(NDA_DST);
  const port = a.get(NDA_PORT);
  const state = readU16(b, 8);
  const flags = b[10];
  return {
    index: readS32(b, 4),
    mac: bytesToMac(lladdr),
    dst: dst ? bytesToIp(dst) : null,
    vni: optU32(a.get(NDA_VNI)),
    port: port && port.length === 2 ? port.readUInt16BE(0) : null,
    state,
    flags,
    permanent: (state & NUD_PERMANENT) !== 0,
    self: (flags & NTF_SELF) !== 0,
    masterIndex: optU32(a.get(NDA_MASTER)),
  };
}

// ---------------------------------------------------------------------------------------------------
// Routes

const RTA_DST = 1;
const RTA_OIF = 4;
const RTA_GATEWAY = 5;
const RTA_PRIORITY = 6;
const RTA_PREFSRC = 7;
const RTA_MULTIPATH = 9;
const RTA_TABLE = 15;
const RTA_NH_ID = 30;
const RTMSG_LEN = 12;

export interface RouteMessageFields {
  family: IpFamily;
  dst: PrefixBytes;
  gateway?: Buffer | undefined;
  ifindex?: number | undefined;
  onlink?: boolean;
  protocol: number;
  table: number;
  scope: number;
  type: number;
  metric?: number | undefined;
  /** RTA_NH_ID: the route uses this nexthop object (then no gateway or ifindex) */
  nexthopId?: number | undefined;
}

/** An rtmsg with RTA_TABLE, RTA_DST, RTA_GATEWAY, RTA_OIF, RTA_PRIORITY, RTA_NH_ID (those that are set, in that order). */
export function routePayload(r: RouteMessageFields): Buffer {
  const dst = r.dst.len > 0 ? r.dst.bytes : undefined;
  const size =
    RTMSG_LEN +
    8 +
    attrSize(dst) +
    attrSize(r.gateway) +
    (r.ifindex !== undefined ? 8 : 0) +
    (r.metric !== undefined ? 8 : 0) +
    (r.nexthopId !== undefined ? 8 : 0);
  const b = zeroed(size);
  b[0] = afOf(r.family);
  b[1] = r.dst.len;
  // rtm_table is a u8: tables above 255 live only in RTA_TABLE (as iproute2 does)
  b[4] = r.table < 256 ? r.table : 0;
  b[5] = r.protocol;
  b[6] = r.scope;
  b[7] = r.type;
  writeU32(b, r.onlink ? RTNH_F_ONLINK : 0, 8);
  let offset = putAttrU32(b, RTMSG_LEN, RTA_TABLE, r.table);
  if (dst !== undefined) offset = putAttrBytes(b, offset, RTA_DST, dst);
  if (r.gateway !== undefined) offset = putAttrBytes(b, offset, RTA_GATEWAY, r.gateway);
  if (r.ifindex !== undefined) offset = putAttrU32(b, offset, RTA_OIF, r.ifindex);
  if (r.metric !== undefined) offset = putAttrU32(b, offset, RTA_PRIORITY, r.metric);
  if (r.nexthopId !== undefined) putAttrU32(b, offset, RTA_NH_ID, r.nexthopId);
  return b;
}

export function routeDumpPayload(af: number): Buffer {
  return rt.formatRoute({ family: af });
}

export function parseRoute(b: Buffer): RouteInfo | null {
  if (b.length < RTMSG_LEN) return null;
  const family = familyOfAf(b[0]);
  if (!family) return null;
  const dstLen = b[1];
  const flags = readU32(b, 8);
  const a = attrsOf(b, RTMSG_LEN);
  const dst = a.get(RTA_DST);
  const gw = a.get(RTA_GATEWAY);
  const prefsrc = a.get(RTA_PREFSRC);
  return {
    family,
    dst: [dst ? bytesToIp(dst) : family === 4 ? '0.0.0.0' : '::', dstLen].join('/'),
    gateway: gw ? bytesToIp(gw) : null,
    ifindex: optU32(a.get(RTA_OIF)),
    onlink: (flags & RTNH_F_ONLINK) !== 0,
    flags,
    protocol: b[5],
    scope: b[6],
    table: optU32(a.get(RTA_TABLE)) ?? b[4],
    type: b[7],
    metric: optU32(a.get(RTA_PRIORITY)),
    prefsrc: prefsrc ? bytesToIp(prefsrc) : null,
    multipath: a.has(RTA_MULTIPATH),
    nexthopId: optU32(a.get(RTA_NH_ID)),
  };
}

// ---------------------------------------------------------------------------------------------------
// Nexthop objects (RTM_*NEXTHOP, Linux 5.3+)

const NHMSG_LEN = 8;
const NHA_ID = 1;
const NHA_GROUP = 2;
const NHA_BLACKHOLE = 4;
const NHA_OIF = 5;
const NHA_GATEWAY = 6;
const NHA_FDB = 11;

export interface NexthopMessageFields {
  id: number;
  family: IpFamily;
  gateway: Buffer;
  ifindex: number;
  onlink: boolean;
  protocol: number;
}

/** A gateway nexthop: nhmsg + NHA_ID, NHA_OIF, NHA_GATEWAY (`ip nexthop add id N via GW dev DEV [onlink] proto P`). */
export function nexthopPayload(n: NexthopMessageFields): Buffer {
  const b = zeroed(NHMSG_LEN + 8 + 8 + attrSize(n.gateway));
  b[0] = afOf(n.family);
  b[2] = n.protocol;
  writeU32(b, n.onlink ? RTNH_F_ONLINK : 0, 4);
  let offset = putAttrU32(b, NHMSG_LEN, NHA_ID, n.id);
  offset = putAttrU32(b, offset, NHA_OIF, n.ifindex);
  putAttrBytes(b, offset, NHA_GATEWAY, n.gateway);
  return b;
}

/** Selects a nexthop by id (delete, get). */
export function nexthopIdPayload(id: number): Buffer {
  const b = zeroed(NHMSG_LEN + 8);
  putAttrU32(b, NHMSG_LEN, NHA_ID, id);
  return b;
}

/** A nexthop dump, filtered in the kernel to one device when index is set. */
export function nexthopDumpPayload(index: number | undefined): Buffer {
  const b = zeroed(NHMSG_LEN + (index === undefined ? 0 : 8));
  if (index !== undefined) putAttrU32(b, NHMSG_LEN, NHA_OIF, index);
  return b;
}

export function parseNexthop(b: Buffer): NexthopInfo | null {
  if (b.length < NHMSG_LEN) return null;
  const a = attrsOf(b, NHMSG_LEN);
  const id = optU32(a.get(NHA_ID));
  if (id === null) return null;
  const gw = a.get(NHA_GATEWAY);
  return {
    id,
    family: familyOfAf(b[0]),
    gateway: gw ? bytesToIp(gw) : null,
    ifindex: optU32(a.get(NHA_OIF)),
    onlink: (readU32(b, 4) & RTNH_F_ONLINK) !== 0,
    protocol: b[2],
    blackhole: a.has(NHA_BLACKHOLE),
    group: a.has(NHA_GROUP),
    fdb: a.has(NHA_FDB),
  };
}

// ---------------------------------------------------------------------------------------------------
// Notifications

const RTM = rt.MessageType;

/** Decodes one rtnetlink notification, or null for message types / families the shim does not report. */
export function decodeChange(type: number, data: Buffer): KernelChange | null {
  switch (type) {
    case RTM.NEWLINK:
    case RTM.DELLINK: {
      const link = parseLink(data);
      return link && { kind: 'link', action: type === RTM.NEWLINK ? 'new' : 'del', link };
    }
    case RTM.NEWADDR:
    case RTM.DELADDR: {
      const address = parseAddress(data);
      return address && { kind: 'address', action: type === RTM.NEWADDR ? 'new' : 'del', address };
    }
    case RTM.NEWNEIGH:
    case RTM.DELNEIGH: {
      const action = type === RTM.NEWNEIGH ? 'new' : 'del';
      if (data[0] === AF_BRIDGE) {
        const fdb = parseFdb(data);
        return fdb && { kind: 'fdb', action, fdb };
      }
      const neighbour = parseNeighbour(data);
      return neighbour && { kind: 'neighbour', action, neighbour };
    }
    case RTM.NEWROUTE:
    case RTM.DELROUTE: {
      const route = parseRoute(data);
      return route && { kind: 'route', action: type === RTM.NEWROUTE ? 'new' : 'del', route };
    }
    case RTM.NEWNEXTHOP:
    case RTM.DELNEXTHOP: {
      const nexthop = parseNexthop(data);
      return nexthop && { kind: 'nexthop', action: type === RTM.NEWNEXTHOP ? 'new' : 'del', nexthop };
    }
    default:
      return null;
  }
}
