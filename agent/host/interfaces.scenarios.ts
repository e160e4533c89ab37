/** Run inside a network namespace by interfaces.test.ts: the default runner, no `ip netns exec` prefix. */
import { selectPublicInterface, type InterfaceSelection } from './interfaces.js';

export async function select(arg: Omit<InterfaceSelection, 'runner'>): Promise<Record<string, unknown>> {
  const iface = await selectPublicInterface(arg);
  return {
    name: iface.name,
    index: iface.index,
    mtu: iface.mtu,
    mac: iface.mac,
    address: iface.address.toString(),
    prefix: iface.prefix.toString(),
    publicAddress: iface.publicAddress.toString(),
    ipv6: iface.ipv6?.address.toString(),
  };
}
