/**
 * Veth pairs, which the kernel shim's Kernel interface does not make: `ip link add <name> type veth peer
 * name <peer>` with ARP off on the near end, and the checks and repairs that keep such a pair as asked.
 * The userspace data path uses one as its overlay device (near end) and capture device (far end).
 *
 * Requests go over a short-lived rtnetlink socket of their own (a handful of requests at start-up and on
 * repair).
 */
import { FlagsNew, rt } from './netlink-parts.js';
import { parseMac } from '../../common/packet.js';
import { readU32, writeS32, writeU16, writeU32 } from './codec.js';
import { CaptureDeviceError, NetlinkError } from './errors.js';
import type { Kernel } from './kernel.js';
import { RtnlSocket } from './socket.js';
import type { LinkInfo } from './types.js';

const IFF_NOARP = 0x80;
const IFLA_ADDRESS = 1;
const IFLA_IFNAME = 3;
const IFLA_MTU = 4;
const IFLA_LINKINFO = 18;
const IFLA_GSO_MAX_SIZE = 41;
const IFLA_INFO_KIND = 1;
const IFLA_INFO_DATA = 2;
const VETH_INFO_PEER = 1;
export const NLA_F_NESTED = 0x8000;
const IFINFOMSG_LENGTH = 16;

export interface CapturePairSpec {
  /** The overlay device (near end): carries the routes and the lease's .0/32. */
  name: string;
  /** The capture end (far end). */
  peerName: string;
  mtu: number;
  /** MAC of the near end (the VtepMAC for VXLAN: captured frames come from it). */
  mac: string;
  /** Largest GSO frame the kernel may hand the near end (IFLA_GSO_MAX_SIZE). */
  gsoMaxSize: number;
}

export interface CapturePair {
  near: LinkInfo;
  far: LinkInfo;
  /** True when this call created (or recreated) the pair. */
  created: boolean;
}

// ---- payload encoding (ifinfomsg + attributes, host byte order as rtnetlink wants) ----

export function attr(type: number, payload: Buffer): Buffer {
  const length = 4 + payload.length;
  const out = Buffer.alloc((length + 3) & ~3);
  writeU16(out, length, 0);
  writeU16(out, type, 2);
  payload.copy(out, 4);
  return out;
}

export const cString = (text: string): Buffer => Buffer.concat([Buffer.from(text, 'utf8'), Buffer.alloc(1)]);

export function u32(value: number): Buffer {
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
    attr(IFLA_ADDRESS, parseMac(spec.mac)),
    attr(IFLA_GSO_MAX_SIZE, u32(spec.gsoMaxSize)),
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
      sock.write(
        rt.MessageType.NEWLINK,
        FlagsNew.CREATE | FlagsNew.EXCL,
        vethPayload(spec),
        () => `create veth ${spec.name} peer ${spec.peerName} mtu ${spec.mtu} address ${spec.mac} arp off`,
      ),
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
