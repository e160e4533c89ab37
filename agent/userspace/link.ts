/**
 * The devices of the userspace data path (design.md §2, "known-good capture shape"): a veth pair whose near
 * end is the overlay device the reconcile loop routes remote subnets onto (ARP off, so the kernel addresses
 * every frame to the device's own MAC without asking anyone), and whose far end is where libpcap captures
 * those frames; the kernel then drops them there as not-for-this-host.
 *
 * The near end's offloads are set through ethtool's netlink family (OVERLAY_FEATURES): TCP segmentation
 * offload on, so that TCP crosses the kernel in 64 KiB frames that the transmit worker splits itself, the
 * other segmentation offloads off.
 *
 * Requests go over a short-lived rtnetlink socket of their own (the kernel shim has no veth support and
 * these are a handful of requests at start-up and on repair), and one generic-netlink socket.
 */
import { createGenericNetlink, genl, Flags, FlagsNew, rt } from 'netlink';
import { WeftError } from '../../common/errors.js';
import { macToBytes, readU32, writeS32, writeU16, writeU32 } from '../kernel/codec.js';
import { NetlinkError, type Kernel, type LinkInfo } from '../kernel/index.js';
import { RtnlSocket } from '../kernel/socket.js';

const IFF_NOARP = 0x80;
const IFLA_ADDRESS = 1;
const IFLA_IFNAME = 3;
const IFLA_MTU = 4;
const IFLA_LINKINFO = 18;
const IFLA_GSO_MAX_SIZE = 41;
/**
 * Largest GSO frame the kernel may hand the overlay device: with the 14-byte Ethernet header it stays below
 * libpcap's 65535-byte snapshot length (cap's, fixed), which would otherwise cut the largest TSO frames.
 */
export const OVERLAY_GSO_MAX_SIZE = 60_000;
const IFLA_INFO_KIND = 1;
const IFLA_INFO_DATA = 2;
const VETH_INFO_PEER = 1;
const NLA_F_NESTED = 0x8000;
const IFINFOMSG_LENGTH = 16;

/** Something about the capture devices that the kernel would not do. */
export class CaptureDeviceError extends WeftError {
  constructor(message: string, cause?: unknown) {
    super('WEFT_CAPTURE_DEVICE', message, { cause });
  }
}

export interface CapturePairSpec {
  /** The overlay device (near end): carries the routes and the lease's .0/32. */
  name: string;
  /** The capture end (far end). */
  peerName: string;
  mtu: number;
  /** MAC of the near end (the VtepMAC for VXLAN: captured frames come from it). */
  mac: string;
}

export interface CapturePair {
  near: LinkInfo;
  far: LinkInfo;
  /** True when this call created (or recreated) the pair. */
  created: boolean;
}

// ---- payload encoding (ifinfomsg + attributes, host byte order as rtnetlink wants) ----

function attr(type: number, payload: Buffer): Buffer {
  const length = 4 + payload.length;
  const out = Buffer.alloc((length + 3) & ~3);
  writeU16(out, length, 0);
  writeU16(out, type, 2);
  payload.copy(out, 4);
  return out;
}

const cString = (text: string): Buffer => Buffer.concat([Buffer.from(text, 'utf8'), Buffer.alloc(1)]);

function u32(value: number): Buffer {
  const out = Buffer.alloc(4);
  writeU32(out, value, 0);
  return out;
}

function ifinfomsg(index: number, flags: number, change: number): Buffer {
  const out = Buffer.alloc(IFINFOMSG_LENGTH);
  writeS32(out, index, 4);
  writeU32(out, flags, 8);
  writeU32(out, change, 12);
  return out;
}

/**
 * RTM_NEWLINK payload for `ip link add <name> mtu <mtu> address <mac> arp off type veth peer name <peer> mtu <mtu>`.
 * Both ends come up afterwards: the kernel opens the peer before it links the pair (ENOTCONN when asked to).
 */
export function vethPayload(spec: CapturePairSpec): Buffer {
  const peer = Buffer.concat([ifinfomsg(0, 0, 0), attr(IFLA_IFNAME, cString(spec.peerName)), attr(IFLA_MTU, u32(spec.mtu))]);
  const linkinfo = Buffer.concat([attr(IFLA_INFO_KIND, cString('veth')), attr(IFLA_INFO_DATA | NLA_F_NESTED, attr(VETH_INFO_PEER, peer))]);
  return Buffer.concat([
    ifinfomsg(0, IFF_NOARP, IFF_NOARP),
    attr(IFLA_IFNAME, cString(spec.name)),
    attr(IFLA_MTU, u32(spec.mtu)),
    attr(IFLA_ADDRESS, macToBytes(spec.mac)),
    attr(IFLA_GSO_MAX_SIZE, u32(OVERLAY_GSO_MAX_SIZE)),
    attr(IFLA_LINKINFO | NLA_F_NESTED, linkinfo),
  ]);
}

async function withRtnl<T>(use: (sock: RtnlSocket) => Promise<T>): Promise<T> {
  const sock = new RtnlSocket({ recvBufferSize: 256 * 1024 });
  try {
    return await use(sock);
  } finally {
    sock.destroy();
  }
}

/** IFF_* flags of a device, or undefined when there is none by that index. */
async function linkFlags(sock: RtnlSocket, index: number): Promise<number | undefined> {
  try {
    const messages = await sock.get(rt.MessageType.GETLINK, ifinfomsg(index, 0, 0), () => `show link ${index}`);
    const newLink: number = rt.MessageType.NEWLINK;
    const message = messages.find((m) => m.type === newLink && m.data.length >= IFINFOMSG_LENGTH);
    return message === undefined ? undefined : readU32(message.data, 8);
  } catch (err) {
    if (err instanceof NetlinkError && err.errnoName === 'ENODEV') return undefined;
    throw err;
  }
}

/**
 * Creates the pair, or checks and repairs it: a device of that name that is not the near end of a veth
 * whose far end is `peerName` (a kernel VXLAN device left by the other mode, say) is deleted and the pair
 * made anew; MTU, MAC, ARP off and up are put right in place. Idempotent.
 */
export async function ensureCapturePair(kernel: Kernel, spec: CapturePairSpec): Promise<CapturePair> {
  let near = await kernel.getLink(spec.name);
  let far = near?.linkIndex === null || near?.linkIndex === undefined ? null : await kernel.getLink(near.linkIndex);
  if (near !== null && (near.kind !== 'veth' || far === null || far.name !== spec.peerName)) {
    await kernel.deleteLink(near.index);
    near = null;
  }
  let created = false;
  if (near === null) {
    const stray = await kernel.getLink(spec.peerName);
    if (stray !== null) await kernel.deleteLink(stray.index);
    await withRtnl((sock) =>
      sock.write(rt.MessageType.NEWLINK, FlagsNew.CREATE | FlagsNew.EXCL, vethPayload(spec), () =>
        `create veth ${spec.name} peer ${spec.peerName} mtu ${spec.mtu} address ${spec.mac} arp off`),
    );
    near = await kernel.getLink(spec.name);
    far = await kernel.getLink(spec.peerName);
    if (near === null || far === null) throw new CaptureDeviceError(`${spec.name} / ${spec.peerName} vanished right after creation`);
    created = true;
  }
  if (far === null) throw new CaptureDeviceError(`${spec.peerName} is missing`);
  const changes: { mtu?: number; mac?: string; up?: boolean } = {};
  if (near.mtu !== spec.mtu) changes.mtu = spec.mtu;
  if (near.mac !== spec.mac) changes.mac = spec.mac;
  if (!near.up) changes.up = true;
  if (Object.keys(changes).length > 0) {
    await kernel.setLink(near.index, changes);
    near = { ...near, ...changes, up: true };
  }
  if (far.mtu < spec.mtu) await kernel.setLink(far.index, { mtu: spec.mtu });
  if (!far.up) await kernel.setLink(far.index, { up: true });
  const nearIndex = near.index;
  await withRtnl(async (sock) => {
    const flags = await linkFlags(sock, nearIndex);
    if (flags !== undefined && (flags & IFF_NOARP) === 0) {
      await sock.write(rt.MessageType.NEWLINK, 0, ifinfomsg(nearIndex, IFF_NOARP, IFF_NOARP), () => `set link ${spec.name} arp off`);
    }
  });
  return { near, far, created };
}

// ---- ethtool (generic netlink): transmit offloads ----

const ETHTOOL_MSG_FEATURES_GET = 11;
const ETHTOOL_MSG_FEATURES_SET = 12;
const ETHTOOL_A_HEADER_DEV_INDEX = 1;
const ETHTOOL_A_FEATURES_HEADER = 1;
const ETHTOOL_A_FEATURES_WANTED = 3;
const ETHTOOL_A_FEATURES_ACTIVE = 4;
const ETHTOOL_A_BITSET_NOMASK = 1;
const ETHTOOL_A_BITSET_BITS = 3;
const ETHTOOL_A_BITSET_BITS_BIT = 1;
const ETHTOOL_A_BITSET_BIT_NAME = 2;
const ETHTOOL_A_BITSET_BIT_VALUE = 3;

/** A set of device features to have on and off, by ethtool's names (as `ethtool -k` shows them). */
export interface FeatureProfile {
  on: readonly string[];
  off: readonly string[];
}

/**
 * The overlay device (near end): checksum offload and TCP segmentation offload stay on, so that a TCP
 * sender's 64 KiB GSO frames cross the kernel's forwarding path once and reach libpcap whole — the
 * transmit worker splits them into MTU-sized segments itself (and finishes checksums, which offload leaves
 * to it). Every other segmentation offload is off: the kernel then segments those frames in software
 * before the device, since the worker splits TCP over IPv4 only.
 */
export const OVERLAY_FEATURES: FeatureProfile = {
  on: ['tx-scatter-gather', 'tx-checksum-ip-generic', 'tx-tcp-segmentation', 'tx-tcp-ecn-segmentation', 'tx-tcp-mangleid-segmentation'],
  off: [
    'tx-tcp6-segmentation', 'tx-udp-segmentation', 'tx-gso-list', 'tx-gso-partial', 'tx-udp_tnl-segmentation', 'tx-udp_tnl-csum-segmentation',
    'tx-gre-segmentation', 'tx-gre-csum-segmentation', 'tx-ipxip4-segmentation', 'tx-ipxip6-segmentation', 'tx-sctp-segmentation',
    'tx-esp-segmentation',
  ],
};

/** Walks netlink attributes: type (without the nested flag) → payload, last one wins. */
function attributes(buf: Buffer): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  for (let at = 0; at + 4 <= buf.length; ) {
    const length = buf.readUInt16LE(at);
    if (length < 4 || at + length > buf.length) break;
    out.set(buf.readUInt16LE(at + 2) & ~NLA_F_NESTED, buf.subarray(at + 4, at + length));
    at += (length + 3) & ~3;
  }
  return out;
}

/**
 * The feature names a verbose ethtool bitset reports as on: with NOMASK (how FEATURES_GET answers) every
 * listed bit is on, otherwise the listed bits that carry the VALUE flag.
 */
function enabledBits(bitset: Buffer): Set<string> {
  const on = new Set<string>();
  const top = attributes(bitset);
  const nomask = top.has(ETHTOOL_A_BITSET_NOMASK);
  const bits = top.get(ETHTOOL_A_BITSET_BITS);
  if (bits === undefined) return on;
  for (let at = 0; at + 4 <= bits.length; ) {
    const length = bits.readUInt16LE(at);
    if (length < 4 || at + length > bits.length) break;
    if ((bits.readUInt16LE(at + 2) & ~NLA_F_NESTED) === ETHTOOL_A_BITSET_BITS_BIT) {
      const bit = attributes(bits.subarray(at + 4, at + length));
      const name = bit.get(ETHTOOL_A_BITSET_BIT_NAME);
      if (name !== undefined && (nomask || bit.has(ETHTOOL_A_BITSET_BIT_VALUE))) on.add(name.toString('utf8').replace(/\0.*$/s, ''));
    }
    at += (length + 3) & ~3;
  }
  return on;
}

/**
 * Sets the features of device `index` to `profile` and returns the ones that did not take (empty when all
 * did), e.g. a feature the device cannot change. Throws CaptureDeviceError when the kernel has no ethtool
 * netlink family (before Linux 5.6) or refuses.
 */
export async function setFeatures(index: number, profile: FeatureProfile): Promise<string[]> {
  const sock = createGenericNetlink();
  try {
    const [family] = await sock.ctrlRequest(genl.Commands.GET_FAMILY, { familyName: 'ethtool' }, { flags: Flags.REQUEST, timeout: 5000 });
    const familyId = family?.familyId;
    if (familyId === undefined) throw new CaptureDeviceError('the kernel has no ethtool netlink family');
    const header = attr(ETHTOOL_A_FEATURES_HEADER | NLA_F_NESTED, attr(ETHTOOL_A_HEADER_DEV_INDEX, u32(index)));
    const bit = (name: string, value: boolean) =>
      attr(ETHTOOL_A_BITSET_BITS_BIT | NLA_F_NESTED, Buffer.concat([attr(ETHTOOL_A_BITSET_BIT_NAME, cString(name)), ...(value ? [attr(ETHTOOL_A_BITSET_BIT_VALUE, Buffer.alloc(0))] : [])]));
    const bits = [...profile.on.map((name) => bit(name, true)), ...profile.off.map((name) => bit(name, false))];
    const wanted = attr(ETHTOOL_A_FEATURES_WANTED | NLA_F_NESTED, attr(ETHTOOL_A_BITSET_BITS | NLA_F_NESTED, Buffer.concat(bits)));
    await sock.request(familyId, ETHTOOL_MSG_FEATURES_SET, 1, Buffer.concat([header, wanted]), { flags: Flags.REQUEST | Flags.ACK, timeout: 5000 });
    const [replies] = await sock.request(familyId, ETHTOOL_MSG_FEATURES_GET, 1, header, { flags: Flags.REQUEST, timeout: 5000 });
    const active = attributes(replies[0]?.data ?? Buffer.alloc(0)).get(ETHTOOL_A_FEATURES_ACTIVE);
    if (active === undefined) throw new CaptureDeviceError(`ethtool reported no active features for device ${index}`);
    const on = enabledBits(active);
    return [...profile.on.filter((name) => !on.has(name)), ...profile.off.filter((name) => on.has(name))];
  } catch (err) {
    if (err instanceof CaptureDeviceError) throw err;
    throw new CaptureDeviceError(`cannot set the offloads of device ${index}: ${(err as Error).message}`, err);
  } finally {
    sock.socket.close();
  }
}
