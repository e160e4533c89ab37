/**
 * What `weftctl doctor` and the backends' own checks (each backend folder's doctor.ts) share: the finding
 * a check reports, the words for "weftd repairs this", and the check of the address every overlay device
 * carries.
 */
import type { Family } from '../common/cidr.js';
import type { NetworkConfig, UserspaceMode, WireguardHostOptions } from '../common/config.js';
import type { Lease } from '../common/lease.js';
import type { Backend } from './backend.js';
import type { CommandRunner } from './host/command.js';
import type { PublicInterface } from './host/interfaces.js';
import { RT_SCOPE_LINK, type Kernel, type LinkInfo } from './kernel/index.js';

export type Severity = 'ok' | 'warn' | 'fail' | 'skip';

export interface Finding {
  /** What was checked: etcd, config, interface, lease, subnet.env, ip_forward, device, mtu, dataplane, route, nexthop, fdb, neighbour, peer, wireguard, iptables, ip6tables, flanneld, ingress, weftd. */
  check: string;
  severity: Severity;
  message: string;
  /** How to fix it (for warn and fail). */
  fix?: string;
}

export const RESTART = 'restart weftd (systemctl restart weftd) and look at its log (journalctl -u weftd)';
export const HEALS =
  'a running weftd puts it back within seconds (on the kernel event, else on its --resync-interval); if it stays, weftd is not running or failing: systemctl status weftd, journalctl -u weftd';
export const HEALS_ON_RESYNC =
  'a running weftd puts it back on its next full reconcile (--resync-interval); if it stays, weftd is not running or failing: systemctl status weftd, journalctl -u weftd';

/** One family's plane as a backend's device check sees it. */
export interface DeviceCheckInput {
  kernel: Kernel;
  config: NetworkConfig;
  family: Family;
  /** the public interface as this family sees it */
  view: PublicInterface;
  own: Lease | undefined;
  /** every link of the host (empty for backends without a device) */
  links: readonly LinkInfo[];
  /** the leases weftd programs */
  leases: readonly Lease[];
  /** weftd's --vxlan-userspace */
  vxlanUserspace: UserspaceMode | undefined;
  /** weftd's --wireguard-* flags; undefined: the defaults */
  wireguard: WireguardHostOptions | undefined;
  runner?: CommandRunner | undefined;
  /** reports a finding */
  add(check: string, severity: Severity, message: string, fix?: string): void;
}

/** What a backend's device check found out about the plane, for the MTU and data-plane checks after it. */
export interface DeviceCheck {
  /** the backend as weftd would make it here (its MTU for subnet.env); undefined when weftd could not */
  backend: Backend | undefined;
  /** the overlay device: undefined for a backend without one, null when it is missing or unusable */
  overlay: LinkInfo | null | undefined;
  /** the overlay device takes routes only (the userspace path's veth) */
  routesOnly: boolean;
  /** bytes the backend's encapsulation adds to a packet */
  overhead: number;
  /** routes on the overlay device the backend keeps itself, not peers' (BackendDevices.deviceRoutes) */
  deviceRoutes?: readonly string[];
}

/**
 * The lease's network address as a host address (.0/32, or ::/128) and no other address of the family on
 * the overlay device, as ensureNetworkAddress keeps it (link-local addresses are the kernel's). A mismatch goes
 * to `fail`: the device check's own, which counts it among the device's problems.
 */
export async function checkOverlayAddress(
  input: DeviceCheckInput,
  link: LinkInfo,
  fail: (message: string, fix: string) => void,
): Promise<void> {
  const { own, family } = input;
  const subnet = own === undefined ? undefined : family === 4 ? own.subnets.ipv4 : own.subnets.ipv6;
  if (subnet === undefined) return;
  const want = `${subnet.network}/${subnet.bits}`;
  const addresses = (await input.kernel.listAddresses(link.index, family))
    .filter((address) => address.scope !== RT_SCOPE_LINK)
    .map((address) => address.cidr);
  if (!addresses.includes(want) || addresses.length !== 1) {
    fail(
      `${link.name} has IPv${family} addresses [${addresses.join(', ')}], want exactly ${want}`,
      `${HEALS}; by hand: ip -${family} addr flush dev ${link.name} scope global; ip addr add ${want} dev ${link.name}`,
    );
  }
}
