import { createHash } from 'node:crypto';
import type { Family, IpAddress, Prefix } from './cidr.js';
import type { BackendConfig, NetworkConfig } from './config.js';
import { parseVxlanBackendData, type Lease } from './lease.js';
import { diffSnapshots } from './snapshot-diff.js';

/**
 * Route protocol number weft tags its routes with (`ip route ... proto 157`), so that it can tell its
 * routes on a shared interface (host-gw, DirectRouting) from everyone else's and delete only its own.
 */
export const WEFT_ROUTE_PROTOCOL = 157;

/** Which device a route goes out of: weft's VXLAN device, or the host's public interface. */
export type RouteDevice = 'overlay' | 'public';

export interface NeighbourSpec {
  ip: string;
  mac: string;
}

export interface FdbSpec {
  mac: string;
  dst: string;
}

export interface RouteSpec {
  dst: string;
  gateway: string;
  device: RouteDevice;
  onlink: boolean;
}

/** The kernel objects weft wants for one address family, keyed the way the kernel identifies them. */
export interface FamilyState {
  /** Permanent neighbours on the overlay device, by IP. */
  neighbours: Map<string, NeighbourSpec>;
  /** Permanent FDB entries on the overlay device, by MAC. */
  fdb: Map<string, FdbSpec>;
  /** Routes to remote subnets, by destination prefix. */
  routes: Map<string, RouteSpec>;
}

export interface SkippedLease {
  lease: Lease;
  reason: string;
}

export interface DesiredInput {
  family: Family;
  config: NetworkConfig;
  own: Lease;
  peers: Iterable<Lease>;
  /** On-link prefixes of the public interface: peers inside them are directly reachable (host-gw, DirectRouting). */
  localPrefixes: readonly Prefix[];
}

export function emptyFamilyState(): FamilyState {
  return { neighbours: new Map(), fdb: new Map(), routes: new Map() };
}

function subnetOf(lease: Lease, family: Family): Prefix | undefined {
  return family === 4 ? lease.subnets.ipv4 : lease.subnets.ipv6;
}

function publicIpOf(lease: Lease, family: Family): IpAddress | undefined {
  return family === 4 ? lease.attrs.publicIP : lease.attrs.publicIPv6;
}

function isDirect(ip: IpAddress, localPrefixes: readonly Prefix[]): boolean {
  return localPrefixes.some((prefix) => prefix.contains(ip));
}

/**
 * Why a peer lease cannot be programmed for `family`, or undefined when it can. A lease that is ours,
 * claims our public IP or overlaps our subnet is never programmed: it would hijack our own traffic.
 */
function rejectPeer(input: DesiredInput, peer: Lease, backend: BackendConfig): string | undefined {
  const { family, config, own } = input;
  const plan = family === 4 ? config.ipv4 : config.ipv6;
  const subnet = subnetOf(peer, family);
  const ownSubnet = subnetOf(own, family);
  const publicIP = publicIpOf(peer, family);
  const ownPublicIP = publicIpOf(own, family);
  if (plan === undefined || subnet === undefined || ownSubnet === undefined) return 'has no subnet of this family';
  if (peer.name === own.name) return 'is our own lease';
  if (publicIP === undefined) return `has no IPv${family} public IP`;
  if (ownPublicIP !== undefined && publicIP.equals(ownPublicIP)) return `claims our own public IP ${publicIP}`;
  if (subnet.overlaps(ownSubnet)) return `overlaps our subnet ${ownSubnet}`;
  if (!plan.network.contains(subnet)) return `is outside the network ${plan.network}`;
  if (peer.attrs.backendType !== backend.type) {
    return `uses backend ${peer.attrs.backendType}, not ${backend.type}`;
  }
  if (backend.type === 'host-gw' && !isDirect(publicIP, input.localPrefixes)) {
    return `public IP ${publicIP} is not on a directly connected subnet; host-gw needs L2 adjacency (use vxlan)`;
  }
  return undefined;
}

/** The desired kernel state for one family: a pure function of the config, our lease and the peers'. */
export function desiredFamilyState(input: DesiredInput): { state: FamilyState; skipped: SkippedLease[] } {
  const { family, config } = input;
  const backend = config.backend;
  const state = emptyFamilyState();
  const skipped: SkippedLease[] = [];
  for (const peer of input.peers) {
    const reason = rejectPeer(input, peer, backend);
    if (reason !== undefined) {
      if (peer.name !== input.own.name) skipped.push({ lease: peer, reason });
      continue;
    }
    const subnet = subnetOf(peer, family)!;
    const publicIP = publicIpOf(peer, family)!.toString();
    const dst = subnet.toString();
    if (backend.type === 'host-gw' || (backend.type === 'vxlan' && backend.directRouting && isDirect(publicIpOf(peer, family)!, input.localPrefixes))) {
      state.routes.set(dst, { dst, gateway: publicIP, device: 'public', onlink: false });
      continue;
    }
    if (backend.type !== 'vxlan') continue;
    let vtepMac: string;
    try {
      const data = family === 4 ? peer.attrs.backendData : peer.attrs.backendV6Data;
      vtepMac = parseVxlanBackendData(data, peer.name, family === 4 ? 'BackendData' : 'BackendV6Data').vtepMac;
    } catch (err) {
      skipped.push({ lease: peer, reason: (err as Error).message });
      continue;
    }
    // Two peers must never share a VtepMAC: one FDB entry can point at one host only.
    const clash = state.fdb.get(vtepMac);
    if (clash !== undefined) {
      skipped.push({ lease: peer, reason: `VtepMAC ${vtepMac} is already used by the peer at ${clash.dst}` });
      continue;
    }
    const gateway = subnet.network.toString();
    state.neighbours.set(gateway, { ip: gateway, mac: vtepMac });
    state.fdb.set(vtepMac, { mac: vtepMac, dst: publicIP });
    state.routes.set(dst, { dst, gateway, device: 'overlay', onlink: true });
  }
  return { state, skipped };
}

export interface ObjectOps<T> {
  add: T[];
  replace: T[];
  remove: T[];
}

export interface FamilyOps {
  neighbours: ObjectOps<NeighbourSpec>;
  fdb: ObjectOps<FdbSpec>;
  routes: ObjectOps<RouteSpec>;
}

function diffObjects<T>(actual: ReadonlyMap<string, T>, desired: ReadonlyMap<string, T>, same: (a: T, b: T) => boolean): ObjectOps<T> {
  const ops: ObjectOps<T> = { add: [], replace: [], remove: [] };
  for (const change of diffSnapshots(actual, desired, same)) {
    if (change.kind === 'added') ops.add.push(change.value);
    else if (change.kind === 'changed') ops.replace.push(change.value);
    else ops.remove.push(change.previous);
  }
  return ops;
}

const sameNeighbour = (a: NeighbourSpec, b: NeighbourSpec) => a.mac === b.mac;
const sameFdb = (a: FdbSpec, b: FdbSpec) => a.dst === b.dst;
const sameRoute = (a: RouteSpec, b: RouteSpec) => a.gateway === b.gateway && a.device === b.device && a.onlink === b.onlink;

/** The minimal operations that turn `actual` (weft's objects as read from the kernel) into `desired`. */
export function diffFamilyState(actual: FamilyState, desired: FamilyState): FamilyOps {
  return {
    neighbours: diffObjects(actual.neighbours, desired.neighbours, sameNeighbour),
    fdb: diffObjects(actual.fdb, desired.fdb, sameFdb),
    routes: diffObjects(actual.routes, desired.routes, sameRoute),
  };
}

export function countOps(ops: FamilyOps): number {
  let total = 0;
  for (const kind of [ops.neighbours, ops.fdb, ops.routes]) total += kind.add.length + kind.replace.length + kind.remove.length;
  return total;
}

/**
 * A VtepMAC derived from the public IP and VNI: the same after an agent restart or a reboot, so peers
 * never hold a stale MAC, and distinct between hosts. Locally administered, unicast.
 */
export function stableVtepMac(publicIP: IpAddress, vni: number): string {
  const digest = createHash('sha256').update(`weft-vtep:${publicIP.toString()}:${vni}`).digest();
  const bytes = [...digest.subarray(0, 6)];
  bytes[0] = (bytes[0]! & 0xfe) | 0x02;
  return bytes.map((byte) => byte.toString(16).padStart(2, '0')).join(':');
}

/** VXLAN encapsulation overhead: outer IP + UDP + VXLAN header + inner Ethernet. */
export function vxlanOverhead(underlay: Family): number {
  return (underlay === 4 ? 20 : 40) + 8 + 8 + 14;
}
