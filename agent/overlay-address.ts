/** The one address every overlay device carries, shared by the backends that have a device. */
import type { Family } from '../common/cidr.js';
import type { Lease } from '../common/lease.js';
import { RT_SCOPE_LINK, type Kernel } from './kernel/index.js';

/**
 * The lease's network address as a host address on the overlay device (flannel's convention: .0/32, or
 * ::/128), and no other address of the family (link-local IPv6 addresses are the kernel's and stay).
 */
export async function ensureNetworkAddress(kernel: Kernel, index: number, own: Lease, family: Family = 4): Promise<void> {
  const subnet = family === 4 ? own.subnets.ipv4 : own.subnets.ipv6;
  if (subnet === undefined) return;
  const wanted = `${subnet.network}/${subnet.bits}`;
  const present = (await kernel.listAddresses(index, family)).filter((address) => address.scope !== RT_SCOPE_LINK);
  for (const address of present) if (address.cidr !== wanted) await kernel.deleteAddress(index, address.cidr);
  if (!present.some((address) => address.cidr === wanted)) await kernel.addAddress(index, wanted);
}
