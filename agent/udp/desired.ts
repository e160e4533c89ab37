/**
 * What flannel's udp backend wants for a peer: weft's userspace path forwards, so the peer needs only its
 * route onto the overlay device.
 */
import type { PeerObjects } from '../../common/dataplane.js';

export const udpPeerObjects: PeerObjects = (_context, { subnet }) => ({
  kind: 'program',
  route: { dst: subnet.toString(), gateway: subnet.network.toString(), device: 'overlay', onlink: true },
});
