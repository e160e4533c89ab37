/** What the host-gw backend wants for a peer: `<subnet> via PublicIP` on the public interface, which needs L2 adjacency. */
import { isDirect, type PeerObjects } from '../../common/dataplane.js';

export const hostGwPeerObjects: PeerObjects = (context, { subnet, publicIP }) => {
  if (!isDirect(publicIP, context.localPrefixes)) {
    return {
      kind: 'skip',
      reason: `public IP ${publicIP} is not on a directly connected subnet; host-gw needs L2 adjacency (use vxlan)`,
      quiet: false,
    };
  }
  return { kind: 'program', route: { dst: subnet.toString(), gateway: publicIP.toString(), device: 'public', onlink: false } };
};
