/** A kernel that only answers the dumps KernelView.read makes, and builders of what those dumps hold. */
import type { DesiredObjects, FdbSpec, NeighbourSpec, RouteSpec, WireguardPeerSpec } from '../common/dataplane.js';
import { NetlinkError, type FdbEntry, type Kernel, type NeighbourInfo, type NexthopInfo, type RouteInfo } from '../agent/kernel/index.js';

export const OVERLAY = 7;

export function route(fields: Partial<RouteInfo> & { dst: string }): RouteInfo {
  return {
    family: 4,
    gateway: null,
    ifindex: null,
    onlink: false,
    flags: 0,
    protocol: 157,
    scope: 0,
    table: 254,
    type: 1,
    metric: null,
    prefsrc: null,
    multipath: false,
    nexthopId: null,
    ...fields,
  };
}

export function nexthop(fields: Partial<NexthopInfo> & { id: number }): NexthopInfo {
  return { family: 4, gateway: null, ifindex: null, onlink: false, protocol: 157, blackhole: false, group: false, fdb: false, ...fields };
}

export function neighbour(ip: string, mac: string | null, state = 0x80): NeighbourInfo {
  return { index: OVERLAY, family: 4, ip, mac, state, flags: 0, permanent: (state & 0x80) !== 0 };
}

export function fdb(mac: string, dst: string): FdbEntry {
  return { index: OVERLAY, mac, dst, vni: null, port: null, state: 0x80, flags: 2, permanent: true, self: true, masterIndex: null };
}

/** A kernel that only answers the dumps KernelView.read makes. */
export function fakeKernel(state: {
  neighbours?: NeighbourInfo[];
  fdb?: FdbEntry[];
  routes?: RouteInfo[];
  nexthops?: NexthopInfo[] | 'unsupported';
}): Kernel {
  const unused = (): never => {
    throw new Error('not used by KernelView.read');
  };
  return {
    listNeighbours: async () => state.neighbours ?? [],
    listFdb: async () => state.fdb ?? [],
    listRoutes: async () => state.routes ?? [],
    listNexthops: async () => {
      if (state.nexthops === 'unsupported') throw new NetlinkError('list nexthops', 95 /* EOPNOTSUPP */);
      return state.nexthops ?? [];
    },
    listLinks: unused,
    getLink: unused,
    createVxlan: unused,
    createLink: unused,
    deleteLink: unused,
    setLink: unused,
    listAddresses: unused,
    addAddress: unused,
    deleteAddress: unused,
    replaceNeighbour: unused,
    deleteNeighbour: unused,
    replaceFdb: unused,
    deleteFdb: unused,
    addRoute: unused,
    replaceRoute: unused,
    deleteRoute: unused,
    addNexthop: unused,
    replaceNexthop: unused,
    deleteNexthop: unused,
    flush: unused,
    close: unused,
    destroy: unused,
  };
}

/** The desired state as plain maps. */
export interface DesiredMaps extends DesiredObjects {
  neighbours: Map<string, NeighbourSpec>;
  fdb: Map<string, FdbSpec>;
  routes: Map<string, RouteSpec>;
  wireguardPeers: Map<string, WireguardPeerSpec>;
}

export function desired(peers: [string, string, string, string][], direct: [string, string][] = []): DesiredMaps {
  const state: DesiredMaps = { neighbours: new Map(), fdb: new Map(), routes: new Map(), wireguardPeers: new Map() };
  for (const [dst, gateway, mac, publicIP] of peers) {
    state.neighbours.set(gateway, { ip: gateway, mac });
    state.fdb.set(mac, { mac, dst: publicIP });
    state.routes.set(dst, { dst, gateway, device: 'overlay', onlink: true });
  }
  for (const [dst, publicIP] of direct) state.routes.set(dst, { dst, gateway: publicIP, device: 'public', onlink: false });
  return state;
}
