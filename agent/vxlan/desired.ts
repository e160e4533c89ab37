/**
 * What the vxlan backend wants in the kernel for a peer, as flannel programs it: a permanent neighbour
 * `<subnet .0> → VtepMAC` on the device, a permanent FDB entry `VtepMAC → PublicIP`, and the route
 * `<subnet> via <subnet .0> dev <device> onlink`; with DirectRouting, towards a peer on a directly connected
 * subnet, the route `<subnet> via PublicIP` instead. On the userspace path (routesOnly) only the route.
 */
import { isDirect, type PeerObjects } from '../../common/dataplane.js';
import { parseVxlanBackendData } from '../../common/lease.js';

export const vxlanPeerObjects: PeerObjects = (context, { lease, subnet, publicIP }) => {
  const { family, config } = context;
  const dst = subnet.toString();
  if (config.backend.type === 'vxlan' && config.backend.directRouting && isDirect(publicIP, context.localPrefixes)) {
    return { kind: 'program', route: { dst, gateway: publicIP.toString(), device: 'public', onlink: false } };
  }
  let vtepMac: string;
  try {
    const data = family === 4 ? lease.attrs.backendData : lease.attrs.backendV6Data;
    vtepMac = parseVxlanBackendData(data, lease.name, family === 4 ? 'BackendData' : 'BackendV6Data').vtepMac;
  } catch (err) {
    return { kind: 'skip', reason: (err as Error).message, quiet: false };
  }
  const gateway = subnet.network.toString();
  if (context.routesOnly === true) return { kind: 'program', route: { dst, gateway, device: 'overlay', onlink: true } };
  return {
    kind: 'program',
    neighbour: { ip: gateway, mac: vtepMac },
    fdb: { mac: vtepMac, dst: publicIP.toString() },
    route: { dst, gateway, device: 'overlay', onlink: true },
  };
};
