/** Device features (offloads) through ethtool's generic-netlink family, as `ethtool -K` sets them. */
import { createGenericNetlink, genl, Flags } from './netlink-parts.js';
import { CaptureDeviceError } from './errors.js';
import { attr, cString, NLA_F_NESTED, u32 } from './veth.js';

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

/** Walks netlink attributes: type (without the nested flag) → payload, last one wins. */
function attributes(buf: Buffer): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  for (let at = 0; at + 4 <= buf.length;) {
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
  for (let at = 0; at + 4 <= bits.length;) {
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
      attr(
        ETHTOOL_A_BITSET_BITS_BIT | NLA_F_NESTED,
        Buffer.concat([
          attr(ETHTOOL_A_BITSET_BIT_NAME, cString(name)),
          ...(value ? [attr(ETHTOOL_A_BITSET_BIT_VALUE, Buffer.alloc(0))] : []),
        ]),
      );
    const bits = [...profile.on.map((name) => bit(name, true)), ...profile.off.map((name) => bit(name, false))];
    const wanted = attr(ETHTOOL_A_FEATURES_WANTED | NLA_F_NESTED, attr(ETHTOOL_A_BITSET_BITS | NLA_F_NESTED, Buffer.concat(bits)));
    await sock.request(familyId, ETHTOOL_MSG_FEATURES_SET, 1, Buffer.concat([header, wanted]), {
      flags: Flags.REQUEST | Flags.ACK,
      timeout: 5000,
    });
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
