/**
 * The kernel shim: the only part of weft that talks rtnetlink (links, addresses, neighbours, FDB, routes).
 *
 * Every method sends its request right away (batched with the others made in the same tick) and returns a
 * promise, so callers get throughput by issuing many calls before awaiting any:
 *
 *   await Promise.all(peers.map((p) => kernel.replaceNeighbour(dev, p.ip, p.mac)));
 *
 * Requests reach the kernel in call order. Listing calls are one dump each, filtered to a device in the
 * kernel where it supports that (neighbours, FDB) and in the shim otherwise (routes, addresses).
 * Kernel refusals reject with NetlinkError (code WEFT_NETLINK, errnoName EEXIST / ENOENT / ...).
 */
import { FlagsNew, rt, type NetlinkMessage } from './netlink-parts.js';
import {
  addressDumpPayload,
  addressPayload,
  canonicalIp,
  canonicalPrefix,
  createLinkPayload,
  createVxlanPayload,
  fdbDumpPayload,
  fdbPayload,
  ipToBytes,
  linkByNamePayload,
  linkHeader,
  neighbourDumpPayload,
  neighbourPayload,
  nexthopDumpPayload,
  nexthopIdPayload,
  nexthopPayload,
  parseAddress,
  parseFdb,
  parseLink,
  parseNeighbour,
  parseNexthop,
  parseRoute,
  prefixToBytes,
  routeDumpPayload,
  routePayload,
  setLinkPayload,
} from './codec.js';
import { InvalidCidrError } from '../../common/errors.js';
import { NetlinkError, isNetlinkErrno } from './errors.js';
import { RtnlSocket, type RtnlSocketOptions, type RtnlStats } from './socket.js';
import {
  AF_INET,
  AF_INET6,
  RTN_UNICAST,
  RTPROT_BOOT,
  RT_SCOPE_LINK,
  RT_SCOPE_NOWHERE,
  RT_SCOPE_UNIVERSE,
  RT_TABLE_MAIN,
  type AddressInfo,
  type FdbEntry,
  type IpFamily,
  type LinkChanges,
  type LinkInfo,
  type LinkSpec,
  type NeighbourInfo,
  type NexthopInfo,
  type NexthopSpec,
  type RouteFilter,
  type RouteInfo,
  type RouteSelector,
  type RouteSpec,
  type VxlanSpec,
} from './types.js';

const T = rt.MessageType;
const CREATE_EXCL = FlagsNew.CREATE | FlagsNew.EXCL;
const CREATE_REPLACE = FlagsNew.CREATE | FlagsNew.REPLACE;

/** The kernel operations weft needs; the reconcile loop depends on this, tests may fake it. */
export interface Kernel {
  listLinks(): Promise<LinkInfo[]>;
  getLink(nameOrIndex: string | number): Promise<LinkInfo | null>;
  createVxlan(spec: VxlanSpec): Promise<LinkInfo>;
  /** Creates a link of a kind that needs no attributes of its own (`ip link add NAME type wireguard`). */
  createLink(spec: LinkSpec): Promise<LinkInfo>;
  deleteLink(index: number): Promise<void>;
  setLink(index: number, changes: LinkChanges): Promise<void>;

  listAddresses(index?: number, family?: IpFamily): Promise<AddressInfo[]>;
  addAddress(index: number, cidr: string): Promise<void>;
  deleteAddress(index: number, cidr: string): Promise<void>;

  listNeighbours(index?: number, family?: IpFamily): Promise<NeighbourInfo[]>;
  replaceNeighbour(index: number, ip: string, mac: string): Promise<void>;
  deleteNeighbour(index: number, ip: string): Promise<void>;

  listFdb(index?: number): Promise<FdbEntry[]>;
  replaceFdb(index: number, mac: string, dst: string): Promise<void>;
  deleteFdb(index: number, mac: string, dst?: string): Promise<void>;

  listRoutes(filter?: RouteFilter): Promise<RouteInfo[]>;
  addRoute(route: RouteSpec): Promise<void>;
  replaceRoute(route: RouteSpec): Promise<void>;
  deleteRoute(route: RouteSelector): Promise<void>;

  /** Nexthop objects, of one device when `index` is set (filtered in the kernel); EOPNOTSUPP before Linux 5.3. */
  listNexthops(index?: number): Promise<NexthopInfo[]>;
  /** Creates a nexthop; EEXIST when the id is taken. */
  addNexthop(nexthop: NexthopSpec): Promise<void>;
  /** Creates a nexthop or changes the one with that id in place (routes using it follow). */
  replaceNexthop(nexthop: NexthopSpec): Promise<void>;
  /** Deletes a nexthop; the kernel also removes every route that uses it (without RTM_DELROUTE notifications). */
  deleteNexthop(id: number): Promise<void>;

  /**
   * Sends the requests made so far now. Without it they go at the end of the current task (all the requests of one
   * synchronous run in one sendmsg); a caller that has made every request it has for the moment calls it so that
   * the kernel does not wait for whatever else the task still runs.
   */
  flush(): void;

  /** Waits for outstanding requests, then closes the socket. */
  close(): Promise<void>;
  /** Closes now; outstanding requests fail with NetlinkClosedError. */
  destroy(): void;
}

export type KernelOptions = RtnlSocketOptions;

/** Opens an rtnetlink socket in the calling process's network namespace. */
export function openKernel(options: KernelOptions = {}): NetlinkKernel {
  return new NetlinkKernel(new RtnlSocket(options));
}

/**
 * Differences between an existing VXLAN device and the one weft wants, as attribute names
 * ("kind", "vni", "port", "local", "parentIndex", "learning", "gbp", "mtu", "mac"); empty means the
 * device can be adopted as is. Optional spec fields that are unset are not compared.
 */
export function vxlanMismatches(link: LinkInfo, spec: VxlanSpec): string[] {
  const out: string[] = [];
  const v = link.vxlan;
  if (link.kind !== 'vxlan' || !v) return ['kind'];
  if (v.vni !== spec.vni) out.push('vni');
  if (v.port !== (spec.port ?? 8472)) out.push('port');
  if (spec.local !== undefined && v.local !== canonicalIp(spec.local)) out.push('local');
  if (spec.parentIndex !== undefined && v.parentIndex !== spec.parentIndex) out.push('parentIndex');
  if (v.learning !== (spec.learning ?? false)) out.push('learning');
  if (v.gbp !== (spec.gbp ?? false)) out.push('gbp');
  if (spec.mtu !== undefined && link.mtu !== spec.mtu) out.push('mtu');
  if (spec.mac !== undefined && link.mac !== spec.mac.toLowerCase()) out.push('mac');
  return out;
}

/**
 * A synchronous throw of a request builder (a bad address, say) as a rejection. The hot request methods are
 * plain functions rather than `async` ones, and catch it themselves rather than through a closure: one
 * promise per request instead of two, and no closure, which matters when a reconcile sends tens of thousands.
 */
function rejection(err: unknown): Promise<void> {
  return Promise.reject(err instanceof Error ? err : new Error(String(err)));
}

export class NetlinkKernel implements Kernel {
  /** ifindex → name, learned from link answers; used only to word error messages. */
  private readonly names = new Map<number, string>();

  constructor(private readonly sock: RtnlSocket) {}

  /** Messages queued or unanswered. */
  get outstanding(): number {
    return this.sock.outstanding;
  }

  /** The netlink port id of the shim's socket (MonitorOptions.ignoreRequestsOf). */
  get portId(): number {
    return this.sock.portId;
  }

  /** Counters of the request engine (messages, sendmsg batches, most messages in flight at once). */
  stats(): RtnlStats {
    return this.sock.stats();
  }

  flush(): void {
    this.sock.flush();
  }

  close(): Promise<void> {
    return this.sock.close();
  }

  destroy(): void {
    this.sock.destroy();
  }

  // ------------------------------------------------------------------------------------------ links

  async listLinks(): Promise<LinkInfo[]> {
    return this.sock.dump(
      T.GETLINK,
      linkHeader(0),
      () => 'list links',
      (m) => {
        const link = m.type === T.NEWLINK ? parseLink(m.data) : null;
        return link && this.learn(link);
      },
    );
  }

  /** The link with that name or index, or null when there is none. */
  async getLink(nameOrIndex: string | number): Promise<LinkInfo | null> {
    const byName = typeof nameOrIndex === 'string';
    const payload = byName ? linkByNamePayload(nameOrIndex) : linkHeader(nameOrIndex);
    try {
      const msgs = await this.sock.get(T.GETLINK, payload, () => `get link ${byName ? nameOrIndex : `ifindex ${nameOrIndex}`}`);
      for (const m of msgs) {
        const link = m.type === T.NEWLINK ? parseLink(m.data) : null;
        if (link) return this.learn(link);
      }
      return null;
    } catch (err) {
      if (isNetlinkErrno(err, 'ENODEV')) return null;
      throw err;
    }
  }

  /** Creates a VXLAN device (fails with EEXIST when the name is taken) and returns it as the kernel reports it. */
  async createVxlan(spec: VxlanSpec): Promise<LinkInfo> {
    const payload = createVxlanPayload(spec);
    const describe = (): string => {
      const parts = [`create vxlan ${spec.name} id ${spec.vni} dstport ${spec.port ?? 8472}`];
      if (spec.local !== undefined) parts.push(`local ${spec.local}`);
      if (spec.parentIndex !== undefined) parts.push(`dev ${this.dev(spec.parentIndex)}`);
      parts.push(spec.learning ? 'learning' : 'nolearning');
      if (spec.gbp) parts.push('gbp');
      if (spec.mtu !== undefined) parts.push(`mtu ${spec.mtu}`);
      if (spec.mac !== undefined) parts.push(`address ${spec.mac}`);
      return parts.join(' ');
    };
    await this.sock.write(T.NEWLINK, CREATE_EXCL, payload, describe);
    const link = await this.getLink(spec.name);
    if (!link) throw new NetlinkError(describe(), 19 /* ENODEV */, 'device vanished right after creation');
    return link;
  }

  async createLink(spec: LinkSpec): Promise<LinkInfo> {
    const describe = (): string => `create ${spec.kind} ${spec.name}${spec.mtu === undefined ? '' : ` mtu ${spec.mtu}`}`;
    await this.sock.write(T.NEWLINK, CREATE_EXCL, createLinkPayload(spec), describe);
    const link = await this.getLink(spec.name);
    if (!link) throw new NetlinkError(describe(), 19 /* ENODEV */, 'device vanished right after creation');
    return link;
  }

  async deleteLink(index: number): Promise<void> {
    return this.sock.write(T.DELLINK, 0, linkHeader(index), () => `delete link ${this.dev(index)}`);
  }

  async setLink(index: number, changes: LinkChanges): Promise<void> {
    const payload = setLinkPayload(index, changes);
    return this.sock.write(T.NEWLINK, 0, payload, () => {
      const parts = [`set link ${this.dev(index)}`];
      if (changes.up !== undefined) parts.push(changes.up ? 'up' : 'down');
      if (changes.mtu !== undefined) parts.push(`mtu ${changes.mtu}`);
      if (changes.mac !== undefined) parts.push(`address ${changes.mac}`);
      return parts.join(' ');
    });
  }

  // -------------------------------------------------------------------------------------- addresses

  async listAddresses(index?: number, family?: IpFamily): Promise<AddressInfo[]> {
    return this.sock.dump(
      T.GETADDR,
      addressDumpPayload(family),
      () => 'list addresses',
      (m) => {
        const a = m.type === T.NEWADDR ? parseAddress(m.data) : null;
        return a && (index === undefined || a.index === index) && (family === undefined || a.family === family) ? a : null;
      },
    );
  }

  /** Adds `cidr` (e.g. "198.18.5.0/32") to the link; EEXIST when it is already there. */
  async addAddress(index: number, cidr: string): Promise<void> {
    const payload = addressPayload(index, cidr);
    return this.sock.write(T.NEWADDR, CREATE_EXCL, payload, () => `add address ${cidr} dev ${this.dev(index)}`);
  }

  async deleteAddress(index: number, cidr: string): Promise<void> {
    const payload = addressPayload(index, cidr);
    return this.sock.write(T.DELADDR, 0, payload, () => `delete address ${cidr} dev ${this.dev(index)}`);
  }

  // ------------------------------------------------------------------------------------- neighbours

  /** IPv4 and IPv6 neighbours (or one family), of one device when `index` is set (filtered in the kernel). */
  async listNeighbours(index?: number, family?: IpFamily): Promise<NeighbourInfo[]> {
    const af = family === 4 ? AF_INET : family === 6 ? AF_INET6 : 0;
    const describe = () => (index === undefined ? 'list neighbours' : `list neighbours dev ${this.dev(index)}`);
    return this.sock.dump(T.GETNEIGH, neighbourDumpPayload(af, index), describe, (m) => {
      const n = m.type === T.NEWNEIGH ? parseNeighbour(m.data) : null;
      return n && (index === undefined || n.index === index) ? n : null;
    });
  }

  /** Creates or replaces a PERMANENT neighbour entry ip → mac (`ip neigh replace`). */
  replaceNeighbour(index: number, ip: string, mac: string): Promise<void> {
    try {
      const payload = neighbourPayload(index, ip, mac);
      return this.sock.write(T.NEWNEIGH, CREATE_REPLACE, payload, () => `replace neighbour ${ip} lladdr ${mac} dev ${this.dev(index)}`);
    } catch (err) {
      return rejection(err);
    }
  }

  deleteNeighbour(index: number, ip: string): Promise<void> {
    try {
      const payload = neighbourPayload(index, ip, null);
      return this.sock.write(T.DELNEIGH, 0, payload, () => `delete neighbour ${ip} dev ${this.dev(index)}`);
    } catch (err) {
      return rejection(err);
    }
  }

  // -------------------------------------------------------------------------------------------- FDB

  /** Forwarding entries (AF_BRIDGE neighbours) of one device when `index` is set, else of all devices. */
  async listFdb(index?: number): Promise<FdbEntry[]> {
    const describe = () => (index === undefined ? 'list fdb' : `list fdb dev ${this.dev(index)}`);
    return this.sock.dump(T.GETNEIGH, fdbDumpPayload(index), describe, (m) => {
      const e = m.type === T.NEWNEIGH ? parseFdb(m.data) : null;
      return e && (index === undefined || e.index === index) ? e : null;
    });
  }

  /** Creates or replaces a PERMANENT `self` entry mac → remote VTEP dst (`bridge fdb replace ... self permanent`). */
  replaceFdb(index: number, mac: string, dst: string): Promise<void> {
    try {
      const payload = fdbPayload(index, mac, dst, true);
      return this.sock.write(
        T.NEWNEIGH,
        CREATE_REPLACE,
        payload,
        () => `replace fdb ${mac} dst ${dst} dev ${this.dev(index)} self permanent`,
      );
    } catch (err) {
      return rejection(err);
    }
  }

  /** Deletes the entry for mac (only its remote `dst` when given). */
  deleteFdb(index: number, mac: string, dst?: string): Promise<void> {
    try {
      const payload = fdbPayload(index, mac, dst ?? null, false);
      return this.sock.write(T.DELNEIGH, 0, payload, () => `delete fdb ${mac}${dst ? ` dst ${dst}` : ''} dev ${this.dev(index)} self`);
    } catch (err) {
      return rejection(err);
    }
  }

  // ----------------------------------------------------------------------------------------- routes

  /** Routes of the main table by default (`table: null` for all), optionally of one family / device / protocol. */
  async listRoutes(filter: RouteFilter = {}): Promise<RouteInfo[]> {
    const families: IpFamily[] = filter.family ? [filter.family] : [4, 6];
    const table = filter.table === undefined ? RT_TABLE_MAIN : filter.table;
    const take = (m: NetlinkMessage): RouteInfo | null => {
      const r = m.type === T.NEWROUTE ? parseRoute(m.data) : null;
      if (!r) return null;
      if (table !== null && r.table !== table) return null;
      if (filter.ifindex !== undefined && r.ifindex !== filter.ifindex) return null;
      if (filter.protocol !== undefined && r.protocol !== filter.protocol) return null;
      return r;
    };
    const dumps = families.map((f) =>
      this.sock.dump(T.GETROUTE, routeDumpPayload(f === 4 ? AF_INET : AF_INET6), () => `list routes (IPv${f})`, take),
    );
    return (await Promise.all(dumps)).flat();
  }

  /** Adds a route; EEXIST when one to the same prefix (and metric) exists in the table. */
  addRoute(route: RouteSpec): Promise<void> {
    try {
      return this.writeRoute('add', CREATE_EXCL, route);
    } catch (err) {
      return rejection(err);
    }
  }

  /** Adds a route or replaces the one to the same prefix (and metric) (`ip route replace`). */
  replaceRoute(route: RouteSpec): Promise<void> {
    try {
      return this.writeRoute('replace', CREATE_REPLACE, route);
    } catch (err) {
      return rejection(err);
    }
  }

  deleteRoute(sel: RouteSelector): Promise<void> {
    try {
      const dst = prefixToBytes(sel.dst);
      const payload = routePayload({
        family: dst.family,
        dst,
        gateway: sel.gateway !== undefined ? this.gatewayBytes(sel.gateway, dst.family, sel.dst) : undefined,
        ifindex: sel.ifindex,
        protocol: sel.protocol ?? 0, // 0 and the scope / type below are wildcards for the kernel
        table: sel.table ?? RT_TABLE_MAIN,
        scope: RT_SCOPE_NOWHERE,
        type: 0,
        metric: sel.metric,
        nexthopId: sel.nexthopId,
      });
      return this.sock.write(T.DELROUTE, 0, payload, () => `delete route ${this.describeRoute(sel)}`);
    } catch (err) {
      return rejection(err);
    }
  }

  private writeRoute(verb: string, flags: number, route: RouteSpec): Promise<void> {
    const dst = prefixToBytes(route.dst);
    if (route.nexthopId !== undefined && (route.gateway !== undefined || route.ifindex !== undefined)) {
      throw new InvalidCidrError(`route ${route.dst}: a route with a nexthop id has no gateway or device of its own`);
    }
    const gateway = route.gateway !== undefined ? this.gatewayBytes(route.gateway, dst.family, route.dst) : undefined;
    const payload = routePayload({
      family: dst.family,
      dst,
      gateway,
      ifindex: route.ifindex,
      onlink: route.onlink ?? false,
      protocol: route.protocol ?? RTPROT_BOOT,
      table: route.table ?? RT_TABLE_MAIN,
      scope: route.scope ?? (gateway === undefined && route.ifindex !== undefined ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE),
      type: route.type ?? RTN_UNICAST,
      metric: route.metric,
      nexthopId: route.nexthopId,
    });
    return this.sock.write(T.NEWROUTE, flags, payload, () => `${verb} route ${this.describeRoute(route)}`);
  }

  private gatewayBytes(gateway: string, family: IpFamily, dst: string): Buffer {
    const gw = ipToBytes(gateway);
    if (gw.family !== family) throw new InvalidCidrError(`route ${dst}: gateway ${gateway} is not of the same family`);
    return gw.bytes;
  }

  private describeRoute(r: RouteSpec | RouteSelector): string {
    const parts = [canonicalPrefix(r.dst)];
    if ('nexthopId' in r && r.nexthopId !== undefined) parts.push(`nhid ${r.nexthopId}`);
    if (r.gateway !== undefined) parts.push(`via ${r.gateway}`);
    if (r.ifindex !== undefined) parts.push(`dev ${this.dev(r.ifindex)}`);
    if ('onlink' in r && r.onlink) parts.push('onlink');
    if (r.protocol !== undefined) parts.push(`proto ${r.protocol}`);
    if (r.table !== undefined) parts.push(`table ${r.table}`);
    if (r.metric !== undefined) parts.push(`metric ${r.metric}`);
    return parts.join(' ');
  }

  // --------------------------------------------------------------------------------------- nexthops

  async listNexthops(index?: number): Promise<NexthopInfo[]> {
    const describe = () => (index === undefined ? 'list nexthops' : `list nexthops dev ${this.dev(index)}`);
    return this.sock.dump(T.GETNEXTHOP, nexthopDumpPayload(index), describe, (m) => {
      const n = m.type === T.NEWNEXTHOP ? parseNexthop(m.data) : null;
      return n && (index === undefined || n.ifindex === index) ? n : null;
    });
  }

  addNexthop(nexthop: NexthopSpec): Promise<void> {
    try {
      return this.writeNexthop('add', CREATE_EXCL, nexthop);
    } catch (err) {
      return rejection(err);
    }
  }

  replaceNexthop(nexthop: NexthopSpec): Promise<void> {
    try {
      return this.writeNexthop('replace', CREATE_REPLACE, nexthop);
    } catch (err) {
      return rejection(err);
    }
  }

  deleteNexthop(id: number): Promise<void> {
    try {
      return this.sock.write(T.DELNEXTHOP, 0, nexthopIdPayload(id), () => `delete nexthop id ${id}`);
    } catch (err) {
      return rejection(err);
    }
  }

  private writeNexthop(verb: string, flags: number, nexthop: NexthopSpec): Promise<void> {
    const gw = ipToBytes(nexthop.gateway);
    const payload = nexthopPayload({
      id: nexthop.id,
      family: gw.family,
      gateway: gw.bytes,
      ifindex: nexthop.ifindex,
      onlink: nexthop.onlink ?? false,
      protocol: nexthop.protocol ?? RTPROT_BOOT,
    });
    return this.sock.write(
      T.NEWNEXTHOP,
      flags,
      payload,
      () =>
        `${verb} nexthop id ${nexthop.id} via ${nexthop.gateway} dev ${this.dev(nexthop.ifindex)}${nexthop.onlink ? ' onlink' : ''}` +
        `${nexthop.protocol !== undefined ? ` proto ${nexthop.protocol}` : ''}`,
    );
  }

  // ---------------------------------------------------------------------------------------- helpers

  private learn(link: LinkInfo): LinkInfo {
    this.names.set(link.index, link.name);
    return link;
  }

  private dev(index: number): string {
    return this.names.get(index) ?? `ifindex ${index}`;
  }
}
