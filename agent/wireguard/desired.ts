/**
 * What the wireguard backend wants for a peer: one peer on the WireGuard device, as flanneld configures it.
 * Which device holds the peers and which port it listens on follow the config's Mode.
 */
import type { Family, IpAddress, Prefix } from '../../common/cidr.js';
import type { NetworkConfig, WireguardBackendConfig } from '../../common/config.js';
import { rejectPeer, type PeerContext, type PeerObjects, type PeerPlan } from '../../common/dataplane.js';
import { parseWireguardBackendData, type Lease } from '../../common/lease.js';

/**
 * The family whose device holds the WireGuard peers: each family's own with Mode separate, else the one
 * device, which weft makes in the first enabled family's plane.
 */
export function wireguardDeviceFamily(config: NetworkConfig, family: Family, backend: WireguardBackendConfig): Family {
  return backend.mode === 'separate' ? family : config.ipv4 !== undefined ? 4 : 6;
}

/** The port a WireGuard device of this network listens on, for `family`'s device (Mode separate) or the one device. */
export function wireguardListenPort(backend: WireguardBackendConfig, family: Family): number {
  return backend.mode === 'separate' && family === 6 ? backend.listenPortV6 : backend.listenPort;
}

function subnetOf(lease: Lease, family: Family): Prefix | undefined {
  return family === 4 ? lease.subnets.ipv4 : lease.subnets.ipv6;
}

function publicIpOf(lease: Lease, family: Family): IpAddress | undefined {
  return family === 4 ? lease.attrs.publicIP : lease.attrs.publicIPv6;
}

function backendDataOf(lease: Lease, family: Family): Record<string, unknown> | undefined {
  return family === 4 ? lease.attrs.backendData : lease.attrs.backendV6Data;
}

/** RFC 1918 (flannel's IsPrivate for IPv4) or fc00::/7. */
function isPrivate(ip: IpAddress): boolean {
  const text = ip.toString();
  if (ip.family === 6) return /^f[cd]/i.test(text);
  const [a, b] = text.split('.').map(Number) as [number, number];
  return a === 10 || (a === 172 && (b & 0xf0) === 16) || (a === 192 && b === 168);
}

/** The family of a peer's endpoint on the one device (flanneld's modes auto, ipv4, ipv6). */
function endpointFamily(context: PeerContext, peer: Lease, backend: WireguardBackendConfig): Family {
  if (backend.mode === 'ipv4') return 4;
  if (backend.mode === 'ipv6') return 6;
  const { publicIP, publicIPv6 } = peer.attrs;
  const own = context.own.attrs;
  if (publicIPv6 === undefined) return 4;
  if (publicIP !== undefined && !isPrivate(publicIP) && own.publicIP !== undefined) return 4;
  if (!isPrivate(publicIPv6) && own.publicIPv6 !== undefined && !isPrivate(own.publicIPv6)) return 6;
  return publicIP === undefined ? 6 : 4;
}

/**
 * A WireGuard peer as flanneld configures it: endpoint `PublicIP:Port` (the lease's Port, else the network's
 * listen port), AllowedIPs the peer's subnet of the device's family or, on the one device of the modes other
 * than separate, its subnets of both families. The plane of a family whose peers live on the other family's
 * device programs nothing itself.
 */
export const wireguardPeerObjects: PeerObjects = (context, { lease: peer }): PeerPlan => {
  const { family, config } = context;
  const backend = config.backend;
  if (backend.type !== 'wireguard' || wireguardDeviceFamily(config, family, backend) !== family) return { kind: 'program' };
  const via = backend.mode === 'separate' ? family : endpointFamily(context, peer, backend);
  const field = via === 4 ? 'BackendData' : 'BackendV6Data';
  let data;
  try {
    data = parseWireguardBackendData(backendDataOf(peer, via) ?? backendDataOf(peer, via === 4 ? 6 : 4), peer.name, field);
  } catch (err) {
    return { kind: 'skip', reason: (err as Error).message, quiet: false };
  }
  const ownData = backendDataOf(context.own, via) ?? backendDataOf(context.own, via === 4 ? 6 : 4);
  if (ownData !== undefined && ownData.PublicKey === data.publicKey)
    return { kind: 'skip', reason: `uses our own public key ${data.publicKey}`, quiet: false };
  const address = publicIpOf(peer, via);
  if (address === undefined)
    return { kind: 'skip', reason: `has no IPv${via} public IP to reach it at (Backend.Mode ${backend.mode})`, quiet: false };
  const port = data.port ?? wireguardListenPort(backend, via);
  const endpoint = via === 4 ? `${address}:${port}` : `[${address}]:${port}`;
  const allowedIPs = [subnetOf(peer, family)!.toString()];
  if (backend.mode !== 'separate' && family === 4 && config.ipv6 !== undefined) {
    // the IPv6 subnet rides on this device too, if the IPv6 plane would take it
    const v6 = subnetOf(peer, 6);
    if (v6 !== undefined && rejectPeer({ ...context, family: 6 }, peer) === undefined) allowedIPs.push(v6.toString());
  }
  return { kind: 'program', wireguardPeer: { publicKey: data.publicKey, endpoint, allowedIPs } };
};
