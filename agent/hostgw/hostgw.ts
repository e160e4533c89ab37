import type { Lease } from '../../common/lease.js';
import { Prefix } from '../../common/cidr.js';
import type { Backend, BackendContext, BackendDevices } from '../backend.js';
import { hostGwPeerObjects } from './desired.js';

/**
 * host-gw: no device of its own; every peer's subnet is routed via the peer's public IP on the public
 * interface, which needs the hosts to share a link (common/dataplane.ts refuses the others).
 *
 * The IPv4 plane holds the lease's network address (.0/32) on the loopback device, as the other backends
 * hold it on their overlay device: the peers' health probes are addressed to it, and reach it through
 * their route to this host's subnet. weft owns the /32 addresses of the overlay network on lo.
 */
export class HostGwBackend implements Backend {
  readonly type = 'host-gw' as const;
  /** a flanneld host-gw host holds no address in its subnet */
  readonly flannelPeersAnswerProbes = false;
  readonly dataPath = 'kernel' as const;
  readonly backendData = undefined;
  readonly peerObjects = hostGwPeerObjects;
  readonly mtu: number;

  constructor(private readonly context: BackendContext) {
    this.mtu = context.publicInterface.mtu;
  }

  async ensureDevices(own: Lease): Promise<BackendDevices> {
    if (this.context.publicInterface.address.family === 4) await this.keepProbeAddress(own.subnets.ipv4);
    return { overlayIndex: undefined };
  }

  async teardown(): Promise<void> {
    if (this.context.publicInterface.address.family === 4) await this.keepProbeAddress(undefined);
  }

  /** `subnet`'s .0/32 on lo and no other /32 of the overlay network there. */
  private async keepProbeAddress(subnet: Prefix | undefined): Promise<void> {
    const { kernel, config } = this.context;
    const network = config.ipv4?.network;
    const loopback = await kernel.getLink('lo');
    if (network === undefined || loopback === null) return;
    const wanted = subnet === undefined ? undefined : `${subnet.network}/32`;
    const present = (await kernel.listAddresses(loopback.index, 4)).filter(
      (address) => address.prefixLen === 32 && network.contains(Prefix.parse(address.cidr)),
    );
    for (const address of present) if (address.cidr !== wanted) await kernel.deleteAddress(loopback.index, address.cidr);
    if (wanted !== undefined && !present.some((address) => address.cidr === wanted)) await kernel.addAddress(loopback.index, wanted);
  }
}
