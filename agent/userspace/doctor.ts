/** doctor's checks of the userspace data path's devices, for the backends that forward through it. */
import { checkOverlayAddress, HEALS, RESTART, type DeviceCheckInput } from '../doctor-check.js';
import type { LinkInfo } from '../kernel/index.js';
import { UserspaceIpv4OnlyError } from './backend.js';

/**
 * Reports weftd's refusal to run an IPv6 plane on the userspace path, in its words; false when `err` is
 * another error.
 */
export function reportIpv4Only(input: DeviceCheckInput, err: unknown): boolean {
  if (!(err instanceof UserspaceIpv4OnlyError)) return false;
  input.add(
    'device',
    'fail',
    `weftd cannot run this node's IPv6 plane: ${err.message}`,
    'weftd does not start like this: give the IPv6 plane kernel VXLAN as the message says, or turn IPv6 off in the config (EnableIPv6)',
  );
  return true;
}

/**
 * The userspace data path's overlay device: the near end of a veth pair (`<name>.c` is the capture end),
 * with the MTU, MAC (`mac`, when the path has one to keep) and address weftd gives it. Returns the device,
 * or null when it is missing.
 */
export async function checkUserspaceDevice(
  input: DeviceCheckInput,
  name: string,
  mtu: number,
  mac: string | undefined,
): Promise<LinkInfo | null> {
  const { links } = input;
  const link = links.find((candidate) => candidate.name === name) ?? null;
  if (link === null) {
    input.add('device', 'fail', `${name} does not exist (the userspace data path's veth)`, `weftd creates it: ${RESTART}`);
    return null;
  }
  let problems = 0;
  const fail = (message: string, fix: string): void => {
    problems++;
    input.add('device', 'fail', message, fix);
  };
  if (link.kind !== 'veth')
    fail(`${name} is a ${link.kind ?? 'plain'} device, want the near end of a veth pair`, `ip link del ${name}, then ${RESTART}`);
  if (!links.some((candidate) => candidate.name === `${name}.c`))
    fail(`${name}.c, the capture end of ${name}, does not exist`, `weftd creates the pair: ${RESTART}`);
  if (!link.up) fail(`${name} is down`, `${HEALS}; by hand: ip link set ${name} up`);
  if (link.mtu !== mtu) fail(`${name} mtu is ${link.mtu}, want ${mtu}`, `${HEALS}; by hand: ip link set ${name} mtu ${mtu}`);
  if (mac !== undefined && link.mac !== mac)
    fail(`${name} has MAC ${link.mac ?? '(none)'}, want the VtepMAC ${mac}`, `weftd sets it: ${RESTART}`);
  await checkOverlayAddress(input, link, fail);
  if (problems === 0) {
    input.add(
      'device',
      'ok',
      `${name}: userspace data path (veth pair with ${name}.c), MTU ${link.mtu}${mac === undefined ? '' : `, VtepMAC ${link.mac}`}, up`,
    );
  }
  return link;
}
