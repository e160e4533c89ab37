/**
 * Plain data types of the kernel shim. Addresses are canonical text ("198.18.2.0", "2001:db8::1"),
 * prefixes are "address/len", MACs are lower-case "aa:bb:cc:dd:ee:ff". Numbers that the kernel defines
 * (route protocol, scope, table, neighbour state) stay numbers; see the constants below.
 */

export type IpFamily = 4 | 6;

/** AF_INET, AF_INET6, AF_BRIDGE as the kernel numbers them. */
export const AF_INET = 2;
export const AF_INET6 = 10;
export const AF_BRIDGE = 7;

/** Route tables (RT_TABLE_*). */
export const RT_TABLE_MAIN = 254;

/** Route protocols (RTPROT_*). Values >= 5 are free for routing daemons; weft picks its own. */
export const RTPROT_KERNEL = 2;
export const RTPROT_BOOT = 3;

/** Route scopes (RT_SCOPE_*). */
export const RT_SCOPE_UNIVERSE = 0;
export const RT_SCOPE_LINK = 253;
export const RT_SCOPE_NOWHERE = 255;

/** Route types (RTN_*). */
export const RTN_UNICAST = 1;

/** Next-hop flags reported in rtm_flags (RTNH_F_*). */
export const RTNH_F_ONLINK = 4;

/** Neighbour states (NUD_*) and flags (NTF_*). */
export const NUD_FAILED = 0x20;
export const NUD_NOARP = 0x40;
export const NUD_PERMANENT = 0x80;
export const NTF_SELF = 0x02;

export interface VxlanAttrs {
  /** IFLA_VXLAN_ID */
  vni: number;
  /** IFLA_VXLAN_PORT (destination UDP port) */
  port: number;
  /** IFLA_VXLAN_LOCAL or IFLA_VXLAN_LOCAL6, null when unset */
  local: string | null;
  /** IFLA_VXLAN_LINK: index of the underlay device the VTEP is bound to, null when unbound */
  parentIndex: number | null;
  /** IFLA_VXLAN_LEARNING */
  learning: boolean;
  /** IFLA_VXLAN_GBP */
  gbp: boolean;
}

export interface LinkInfo {
  index: number;
  name: string;
  /** IFLA_INFO_KIND ("vxlan", "veth", "bridge", ...); null for devices without one (lo, physical NICs) */
  kind: string | null;
  mtu: number;
  /** IFF_UP (administratively up) */
  up: boolean;
  /** IFF_RUNNING (operationally up) */
  running: boolean;
  /** IFLA_ADDRESS as MAC text, null when the device has none */
  mac: string | null;
  /** IFLA_LINK (veth peer, vlan parent ...), null when absent */
  linkIndex: number | null;
  /** IFLA_MASTER (bridge the device is enslaved to), null when absent */
  masterIndex: number | null;
  /** Present when kind is "vxlan". */
  vxlan: VxlanAttrs | null;
}

/** A VXLAN device to create. Unset optional fields take the kernel defaults, except learning (off). */
export interface VxlanSpec {
  name: string;
  vni: number;
  /** default 8472 (flannel's and the kernel's default) */
  port?: number;
  /** the host's public IPv4 or IPv6 address */
  local?: string;
  /** index of the public interface */
  parentIndex?: number;
  /** default false, as flannel */
  learning?: boolean;
  /** default false */
  gbp?: boolean;
  mtu?: number;
  /** stable VtepMAC; the kernel picks a random one when unset */
  mac?: string;
  /** bring the device up in the same request */
  up?: boolean;
}

/** A link of a kind without attributes of its own, e.g. wireguard. */
export interface LinkSpec {
  name: string;
  kind: string;
  mtu?: number;
  up?: boolean;
}

export interface LinkChanges {
  up?: boolean;
  mtu?: number;
  mac?: string;
}

export interface AddressInfo {
  index: number;
  family: IpFamily;
  /** the interface address (IFA_LOCAL for IPv4, IFA_ADDRESS for IPv6) */
  address: string;
  prefixLen: number;
  /** "address/prefixLen" */
  cidr: string;
  scope: number;
  /** IFA_FLAGS (IFA_F_*) */
  flags: number;
  label: string | null;
}

export interface NeighbourInfo {
  index: number;
  family: IpFamily;
  ip: string;
  /** null for incomplete / failed entries */
  mac: string | null;
  /** NUD_* bit mask */
  state: number;
  /** NTF_* bit mask */
  flags: number;
  permanent: boolean;
}

export interface FdbEntry {
  index: number;
  mac: string;
  /** NDA_DST, the remote VTEP; null on entries without one */
  dst: string | null;
  /** NDA_VNI, null when the entry uses the device's VNI */
  vni: number | null;
  /** NDA_PORT, null when the entry uses the device's port */
  port: number | null;
  /** NUD_* bit mask */
  state: number;
  /** NTF_* bit mask */
  flags: number;
  permanent: boolean;
  self: boolean;
  /** NDA_MASTER, null when absent */
  masterIndex: number | null;
}

export interface RouteInfo {
  family: IpFamily;
  /** "prefix/len"; the default route is "0.0.0.0/0" or "::/0" */
  dst: string;
  gateway: string | null;
  /** RTA_OIF, null for multipath or device-less routes */
  ifindex: number | null;
  onlink: boolean;
  /** rtm_flags including next-hop flags (RTNH_F_*, RTM_F_*) */
  flags: number;
  protocol: number;
  scope: number;
  table: number;
  type: number;
  /** RTA_PRIORITY, null when absent */
  metric: number | null;
  prefsrc: string | null;
  /** RTA_MULTIPATH present (gateway / ifindex are then null) */
  multipath: boolean;
  /**
   * RTA_NH_ID: the route uses this nexthop object. The kernel still reports the nexthop's gateway, device and
   * onlink flag on the route unless net.ipv4.nexthop_compat_mode is 0; read them from the nexthop to be sure.
   */
  nexthopId: number | null;
}

/** A nexthop object (`ip nexthop`, Linux 5.3+): routes refer to it by id instead of carrying a gateway. */
export interface NexthopInfo {
  id: number;
  /** null for groups and blackholes (AF_UNSPEC) */
  family: IpFamily | null;
  gateway: string | null;
  /** NHA_OIF, null for groups and blackholes */
  ifindex: number | null;
  onlink: boolean;
  protocol: number;
  blackhole: boolean;
  /** a nexthop group (NHA_GROUP) rather than a single nexthop */
  group: boolean;
  /** an FDB nexthop (NHA_FDB) */
  fdb: boolean;
}

/** A single gateway nexthop to create or replace. */
export interface NexthopSpec {
  /** 1 .. 2^32-1, unique in the network namespace */
  id: number;
  gateway: string;
  ifindex: number;
  onlink?: boolean;
  /** default RTPROT_BOOT (3), as `ip nexthop` */
  protocol?: number;
}

export interface RouteSpec {
  /** "prefix/len" */
  dst: string;
  gateway?: string;
  ifindex?: number;
  /** RTNH_F_ONLINK: the gateway is on the link even though no address covers it */
  onlink?: boolean;
  /** default RTPROT_BOOT (3), as `ip route` */
  protocol?: number;
  /** default RT_TABLE_MAIN */
  table?: number;
  /** default: link scope for a device route without gateway, universe otherwise */
  scope?: number;
  metric?: number;
  /** default RTN_UNICAST */
  type?: number;
  /** use this nexthop object (RTA_NH_ID) instead of gateway / ifindex / onlink */
  nexthopId?: number;
}

/**
 * What identifies a route to delete. Unset fields match anything (the kernel's rule): a bare `dst` deletes
 * the first route to that prefix in the table; set `protocol`, `ifindex`, `gateway` or `metric` to be sure
 * to delete only the route you own.
 */
export interface RouteSelector {
  dst: string;
  gateway?: string;
  ifindex?: number;
  /** the route's nexthop object (a route with one matches no gateway or ifindex) */
  nexthopId?: number;
  protocol?: number;
  table?: number;
  metric?: number;
}

export interface RouteFilter {
  family?: IpFamily;
  /** default RT_TABLE_MAIN; null lists every table */
  table?: number | null;
  ifindex?: number;
  protocol?: number;
}

export type ChangeAction = 'new' | 'del';

export type KernelChange =
  | { kind: 'link'; action: ChangeAction; link: LinkInfo }
  | { kind: 'address'; action: ChangeAction; address: AddressInfo }
  | { kind: 'neighbour'; action: ChangeAction; neighbour: NeighbourInfo }
  | { kind: 'fdb'; action: ChangeAction; fdb: FdbEntry }
  | { kind: 'route'; action: ChangeAction; route: RouteInfo }
  | { kind: 'nexthop'; action: ChangeAction; nexthop: NexthopInfo };
