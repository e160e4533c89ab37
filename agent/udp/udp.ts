/**
 * flannel's udp backend: the IP packet is the whole UDP payload, port 8285 by default, MTU = the public
 * interface's minus 28 (outer IPv4 + UDP headers). The lease carries BackendType "udp" and the PublicIP, no
 * BackendData. flanneld uses a TUN device; weft uses the userspace path's veth pair (overlay device
 * `weft.udp`, capture end `weft.udp.c`), which puts the same bytes on the wire.
 */
import { captureDeviceName, type UdpBackendConfig } from '../../common/config.js';
import { stableVtepMac } from '../../common/dataplane.js';
import type { BackendContext } from '../backend.js';
import { UserspaceBackend } from '../userspace/backend.js';
import { udpPeerObjects } from './desired.js';

/** Outer IPv4 header + UDP header. */
export const UDP_ENCAP_OVERHEAD = 28;
const UDP_DEVICE = 'weft.udp';

export function createUdpBackend(context: BackendContext, options: UdpBackendConfig): UserspaceBackend {
  const { publicInterface } = context;
  const backend = new UserspaceBackend(context, {
    type: 'udp',
    deviceName: UDP_DEVICE,
    captureName: captureDeviceName(UDP_DEVICE),
    port: options.port,
    mtu: (options.mtu ?? publicInterface.mtu) - UDP_ENCAP_OVERHEAD,
    // Never on the wire (the format has no Ethernet header); stable so that restarts do not change the device.
    mac: stableVtepMac(publicInterface.publicAddress, options.port),
    encapsulation: { kind: 'udp' },
    backendData: undefined,
    peerObjects: udpPeerObjects,
  });
  backend.dataPathReason = 'Backend.Type "udp" is forwarded in userspace';
  return backend;
}
