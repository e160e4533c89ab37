/**
 * The reconcile loop's picture of weft's objects in the kernel, and the kernel operations a plan is made of.
 *
 * A full run reads the picture from dumps (`KernelView.read`); between full runs it is kept current by the
 * runs' own operations (`assume`, once agent/plan.ts has planned them) and by kernel notifications
 * (`observe`), so that an event path can plan only the keys that changed. Any failed operation makes the
 * loop fall back to a full run, which re-reads everything.
 *
 * Route form. flannel installs `<subnet> via <subnet .0> dev flannel.1 onlink`, one route per peer, each
 * with its own gateway. The kernel hashes a route's nexthop information (fib_info) by device, protocol,
 * scope, source and metric but not by gateway, so all those routes land in one hash chain and adding the
 * n-th costs O(n): 10000 peers take seconds of kernel time. weft installs the same route through a nexthop
 * object instead (`ip nexthop add id N via <subnet .0> dev weft.1 onlink` + `ip route add <subnet> nhid N`):
 * the packet path is identical (same gateway, device, onlink flag, neighbour and FDB lookups), `ip route`
 * shows the same route with an extra `nhid N`, and nothing changes on the wire; the route hash then
 * includes the nexthop id, so adding routes stays O(1). Kernels without nexthop objects (< 5.3) get the
 * inline form. Nexthops are weft's when they carry its route protocol on its devices and are of the plane's
 * family; ids are allocated from WEFT_NEXTHOP_ID_BASE (IPv6: WEFT_NEXTHOP_ID_BASE_IPV6) up, skipping every id
 * already used in the namespace.
 */
import type { Family } from '../../common/cidr.js';
import {
  emptyDirtyKeys,
  WEFT_ROUTE_PROTOCOL,
  type DesiredObjects,
  type DirtyKeys,
  type FdbSpec,
  type NeighbourSpec,
  type RouteDevice,
  type RouteSpec,
} from '../../common/dataplane.js';
import type { Kernel } from './kernel.js';
import { NUD_FAILED, NUD_NOARP, RTPROT_KERNEL, RT_TABLE_MAIN, type KernelChange, type NexthopInfo, type RouteInfo } from './types.js';

/** How routes are installed: through nexthop objects, or with the gateway in the route (flannel's form). */
export type RouteForm = 'nexthop' | 'inline';

/** First nexthop id weft hands out for IPv4 (ids are per namespace; others' ids are skipped). */
export const WEFT_NEXTHOP_ID_BASE = 1_570_000_000;
/**
 * Where the IPv6 plane's ids start: the two planes of a dual-stack host allocate at the same time, and
 * from one base they would pick the same free id.
 */
export const WEFT_NEXTHOP_ID_BASE_IPV6 = 1_580_000_000;

/** The overlay device as a backend's ensureDevices leaves it: notifications that match it are the echo of that set-up. */
export interface OverlayState {
  up: boolean;
  mtu: number;
  /** null for a device without one (TUN) */
  mac: string | null;
  /** the addresses ensureDevices keeps on the device ("198.18.5.0/32") */
  addresses: readonly string[];
}

export interface ViewDevices {
  family: Family;
  /** weft's overlay device (VXLAN); undefined for backends without one */
  overlayIndex: number | undefined;
  publicIndex: number;
  /** the overlay device takes routes only: its neighbours and FDB entries are not weft's */
  routesOnly?: boolean;
  /** the overlay device as ensureDevices left it: notifications that match it are echoes */
  overlayState?: OverlayState;
  /** destinations of the routes on the overlay device that ensureDevices keeps (not peers' routes) */
  deviceRoutes?: readonly string[];
}

/** A route of weft's as the kernel has it. */
export interface ViewRoute {
  spec: RouteSpec;
  /** the nexthop object it uses; undefined for an inline route */
  nexthopId: number | undefined;
  /** for deleting exactly this route */
  protocol: number;
  ifindex: number | undefined;
  metric: number | undefined;
}

export interface ViewNexthop {
  id: number;
  device: RouteDevice;
  gateway: string;
  onlink: boolean;
  /** the routes using it */
  users: RouteUsers;
}

/**
 * The destinations of the routes using a nexthop: none, one (the usual case: the destination string itself,
 * no Set per nexthop among thousands), or several. Read and changed only through the functions below.
 */
export type RouteUsers = string | Set<string> | undefined;

function usersCount(users: RouteUsers): number {
  return users === undefined ? 0 : typeof users === 'string' ? 1 : users.size;
}

function usersList(users: RouteUsers): string[] {
  return users === undefined ? [] : typeof users === 'string' ? [users] : [...users];
}

function withUser(users: RouteUsers, dst: string): RouteUsers {
  if (users === undefined) return dst;
  if (typeof users !== 'string') return users.add(dst);
  return users === dst ? users : new Set([users, dst]);
}

function withoutUser(users: RouteUsers, dst: string): RouteUsers {
  if (users === dst) return undefined;
  if (typeof users === 'object' && users.delete(dst) && users.size === 0) return undefined;
  return users;
}

/**
 * Something per gateway, for each of the four (route device, onlink) pairs: four maps keyed by the gateways'
 * own strings, so that with thousands of peers no key string is made per entry.
 */
export class GatewayTable<T> {
  private readonly maps = [new Map<string, T>(), new Map<string, T>(), new Map<string, T>(), new Map<string, T>()] as const;

  get(device: RouteDevice, onlink: boolean, gateway: string): T | undefined {
    return this.of(device, onlink).get(gateway);
  }

  set(device: RouteDevice, onlink: boolean, gateway: string, value: T): void {
    this.of(device, onlink).set(gateway, value);
  }

  delete(device: RouteDevice, onlink: boolean, gateway: string): void {
    this.of(device, onlink).delete(gateway);
  }

  private of(device: RouteDevice, onlink: boolean): Map<string, T> {
    return this.maps[(device === 'overlay' ? 0 : 2) + (onlink ? 1 : 0)];
  }
}

/** The kernel operations one run sends, in the order they must reach the kernel. */
export interface PlannedOps {
  routeDel: ViewRoute[];
  fdbDel: FdbSpec[];
  neighbourDel: NeighbourSpec[];
  neighbourSet: NeighbourSpec[];
  fdbSet: FdbSpec[];
  nexthopAdd: ViewNexthop[];
  /**
   * routes to create where weft has none (refused by the kernel if another route to the prefix appeared
   * meanwhile: weft never replaces a route it does not own), and routes of weft's to replace; the very
   * objects the view now holds
   */
  routeAdd: ViewRoute[];
  routeSet: ViewRoute[];
  /**
   * Nexthops no route uses any more (deleting one also removes the routes that use it): right after the
   * route deletions when their routes went, last when their routes moved to another nexthop.
   */
  nexthopDel: number[];
  nexthopDelLast: number[];
  /** Not kernel operations: prefixes newly left alone for another's route, and those no longer left alone. */
  blocked: string[];
  unblocked: string[];
}

export function emptyOps(): PlannedOps {
  return {
    routeDel: [],
    nexthopDel: [],
    fdbDel: [],
    neighbourDel: [],
    neighbourSet: [],
    fdbSet: [],
    nexthopAdd: [],
    routeAdd: [],
    routeSet: [],
    nexthopDelLast: [],
    blocked: [],
    unblocked: [],
  };
}

export function opsCount(ops: PlannedOps): number {
  return (
    ops.routeDel.length +
    ops.nexthopDel.length +
    ops.fdbDel.length +
    ops.neighbourDel.length +
    ops.neighbourSet.length +
    ops.fdbSet.length +
    ops.nexthopAdd.length +
    ops.routeAdd.length +
    ops.routeSet.length +
    ops.nexthopDelLast.length
  );
}

/** What a kernel notification means for the loop. */
export type Observation = 'ignore' | 'dirty' | 'full';

export const sameRouteSpec = (a: RouteSpec, b: RouteSpec): boolean =>
  a.gateway === b.gateway && a.device === b.device && a.onlink === b.onlink;

/** Errors that mean the kernel has no nexthop objects. */
const NO_NEXTHOPS = new Set(['EOPNOTSUPP', 'ENOTSUP', 'EINVAL', 'EAFNOSUPPORT', 'EPROTONOSUPPORT']);

export class KernelView {
  readonly neighbours = new Map<string, NeighbourSpec>();
  readonly fdb = new Map<string, FdbSpec>();
  readonly routes = new Map<string, ViewRoute>();
  /** weft's nexthops by id */
  private readonly nexthops = new Map<number, ViewNexthop>();
  /** The one nexthop id routes via a gateway should use (the lowest of weft's for it). */
  private readonly nexthopIds = new GatewayTable<number>();
  /** nexthop ids in the namespace that are not weft's */
  private readonly foreignIds = new Set<number>();
  private readonly idBase: number;
  /** where the search for a free nexthop id starts */
  private nextId: number;
  /** dirty keys that observe() found */
  readonly dirty: DirtyKeys = emptyDirtyKeys();
  /** Prefixes weft wants a route to where the main table has a route that is not weft's (read by `read`). */
  readonly foreignRoutes = new Set<string>();
  /** Of those, the ones weft leaves alone: it has no route there, and never replaces another's (kept by `assume`). */
  readonly blocked = new Set<string>();

  private constructor(
    readonly devices: ViewDevices,
    readonly form: RouteForm,
  ) {
    this.idBase = devices.family === 6 ? WEFT_NEXTHOP_ID_BASE_IPV6 : WEFT_NEXTHOP_ID_BASE;
    this.nextId = this.idBase;
  }

  /**
   * Reads weft's objects from the kernel with one dump per kind: everything on the overlay device, routes
   * on it or tagged with weft's protocol on the public interface, and weft's nexthops; and which prefixes of
   * `wanted` (the routes weft wants) have a route of someone else's. `form` is the wanted route form; the
   * view's form is 'inline' when the kernel has no nexthop objects.
   */
  static async read(
    kernel: Kernel,
    devices: ViewDevices,
    form: RouteForm,
    wanted: ReadonlyMap<string, unknown> = new Map(),
  ): Promise<{ view: KernelView; duplicates: ViewRoute[]; nexthopsSupported: boolean }> {
    const { family, overlayIndex } = devices;
    const l2 = overlayIndex !== undefined && devices.routesOnly !== true;
    // One dump at a time, each taken into the view before the next: with thousands of peers, holding all
    // four answers at once took several MB more. Nexthops come first: routes are resolved through them.
    const nexthops = await kernel.listNexthops().then(
      (list) => list as NexthopInfo[] | null,
      (err: unknown) => {
        if (NO_NEXTHOPS.has((err as { errnoName?: string }).errnoName ?? '')) return null;
        throw err;
      },
    );
    const view = new KernelView(devices, nexthops === null ? 'inline' : form);
    /** others' nexthops (weft's are in the view) */
    const foreign = new Map<number, NexthopInfo>();
    for (const nexthop of nexthops ?? []) {
      if (view.adoptNexthop(nexthop)) continue;
      foreign.set(nexthop.id, nexthop);
      view.foreignIds.add(nexthop.id);
    }
    if (l2) {
      // NOARP entries (multicast, broadcast; IPv6 creates them) are the kernel's own bookkeeping, never weft's.
      for (const entry of await kernel.listNeighbours(overlayIndex, family)) {
        // an entry that is not permanent is not the one weft wants, whatever its MAC: it gets replaced
        if ((entry.state & NUD_NOARP) === 0) view.neighbours.set(entry.ip, { ip: entry.ip, mac: entry.permanent ? (entry.mac ?? '') : '' });
      }
      for (const entry of await kernel.listFdb(overlayIndex))
        if (entry.self) view.fdb.set(entry.mac, { mac: entry.mac, dst: entry.dst ?? '' });
    }
    const duplicates: ViewRoute[] = [];
    for (const route of await kernel.listRoutes({ family })) {
      const own = view.ownRoute(route, foreign);
      if (own === undefined) {
        if (wanted.has(route.dst)) view.foreignRoutes.add(route.dst);
        continue;
      }
      if (view.routes.has(route.dst)) {
        // A second route of ours to the same prefix (e.g. left by a backend switch): it goes.
        duplicates.push(own);
        continue;
      }
      view.setRoute(own);
    }
    return { view, duplicates, nexthopsSupported: nexthops !== null };
  }

  /**
   * Records the outcome of `ops` (planned by agent/plan.ts against this view) as if every operation
   * succeeded; a failure makes the loop re-read the kernel. Of the planned `keys` (every key for 'all'), an
   * object the kernel has as wanted is then recorded as the desired object itself, not the copy a dump made:
   * after a full run re-read thousands of them, the view shares them with the desired state again.
   */
  assume(ops: PlannedOps, desired: DesiredObjects, keys: DirtyKeys | 'all'): void {
    for (const entry of ops.neighbourDel) this.neighbours.delete(entry.ip);
    for (const entry of ops.neighbourSet) this.neighbours.set(entry.ip, entry);
    for (const entry of ops.fdbDel) this.fdb.delete(entry.mac);
    for (const entry of ops.fdbSet) this.fdb.set(entry.mac, entry);
    for (const nexthop of ops.nexthopAdd) {
      this.nexthops.set(nexthop.id, nexthop);
      this.nexthopIds.set(nexthop.device, nexthop.onlink, nexthop.gateway, nexthop.id);
      this.nextId = nexthop.id;
    }
    // a duplicate route is not in the view: only the route the view holds is forgotten
    for (const route of ops.routeDel) if (this.routes.get(route.spec.dst) === route) this.deleteRoute(route.spec.dst);
    for (const list of [ops.routeAdd, ops.routeSet]) {
      for (const route of list) {
        this.deleteRoute(route.spec.dst);
        this.setRoute(route);
      }
    }
    for (const id of ops.nexthopDel) this.forgetNexthop(id);
    for (const id of ops.nexthopDelLast) this.forgetNexthop(id);
    for (const dst of ops.blocked) this.blocked.add(dst);
    for (const dst of ops.unblocked) this.blocked.delete(dst);
    const all = keys === 'all';
    for (const ip of all ? desired.neighbours.keys() : keys.neighbours) {
      const want = desired.neighbours.get(ip);
      const have = this.neighbours.get(ip);
      if (want !== undefined && have !== undefined && have !== want && have.mac === want.mac) this.neighbours.set(ip, want);
    }
    for (const mac of all ? desired.fdb.keys() : keys.fdb) {
      const want = desired.fdb.get(mac);
      const have = this.fdb.get(mac);
      if (want !== undefined && have !== undefined && have !== want && have.dst === want.dst) this.fdb.set(mac, want);
    }
    for (const dst of all ? desired.routes.keys() : keys.routes) {
      const want = desired.routes.get(dst);
      const have = this.routes.get(dst);
      if (want !== undefined && have !== undefined && have.spec !== want && sameRouteSpec(have.spec, want)) have.spec = want;
    }
  }

  /** The id of the nexthop routes via `gateway` on `device` should use (the lowest of weft's), if there is one. */
  nexthopIdFor(device: RouteDevice, onlink: boolean, gateway: string): number | undefined {
    return this.nexthopIds.get(device, onlink, gateway);
  }

  /** Whether a nexthop id is in use in the namespace, by weft or another. */
  nexthopIdTaken(id: number): boolean {
    return this.nexthops.has(id) || this.foreignIds.has(id);
  }

  /** Where the search for a free nexthop id starts, and where it wraps to. */
  get nexthopIdCursor(): { next: number; base: number } {
    return { next: this.nextId, base: this.idBase };
  }

  /** How many of the view's routes use nexthop `id`; undefined when it is not one of weft's. */
  nexthopUsers(id: number): number | undefined {
    const nexthop = this.nexthops.get(id);
    return nexthop === undefined ? undefined : usersCount(nexthop.users);
  }

  /** weft's nexthops that no route uses. */
  *unusedNexthops(): Generator<number> {
    for (const nexthop of this.nexthops.values()) if (nexthop.users === undefined) yield nexthop.id;
  }

  /**
   * Takes a kernel notification into the view. Returns 'ignore' when it changes nothing weft needs to act on
   * (typically the echo of weft's own request), 'dirty' when the keys it names were added to `dirty` for
   * the event path to re-plan, 'full' when only a full run can tell what to do.
   */
  observe(change: KernelChange, desired: DesiredObjects): Observation {
    const { family, overlayIndex, publicIndex } = this.devices;
    switch (change.kind) {
      case 'link': {
        const link = change.link;
        if (link.index === publicIndex) return 'full';
        if (link.index !== overlayIndex) return 'ignore';
        const expected = this.devices.overlayState;
        // the device as weft set it up (a notification also comes for carrier and statistics changes)
        if (
          change.action === 'new' &&
          expected !== undefined &&
          link.up === expected.up &&
          link.mtu === expected.mtu &&
          link.mac === expected.mac
        )
          return 'ignore';
        return 'full';
      }
      case 'address': {
        const address = change.address;
        if (address.index !== overlayIndex) return 'ignore';
        // the kernel's own IPv6 link-local address comes and goes with the device
        if (address.family === 6 && address.address.toLowerCase().startsWith('fe80:')) return 'ignore';
        const expected = this.devices.overlayState?.addresses;
        if (expected === undefined) return 'full';
        const ours = expected.includes(address.cidr);
        // ours appearing, or another address going (ensureDevices removes them), is weft's own doing
        return (change.action === 'new') === ours ? 'ignore' : 'full';
      }
      case 'neighbour': {
        const n = change.neighbour;
        if (n.index !== overlayIndex || overlayIndex === undefined || n.family !== family || this.devices.routesOnly === true)
          return 'ignore';
        if ((n.state & NUD_NOARP) !== 0) return 'ignore'; // the kernel's own (multicast, broadcast), as in read()
        const want = desired.neighbours.get(n.ip);
        if (change.action === 'del') {
          this.neighbours.delete(n.ip);
          return this.mark(this.dirty.neighbours, n.ip, want !== undefined);
        }
        if ((n.state & NUD_FAILED) !== 0 && want === undefined) {
          // Deleting a permanent entry notifies it as FAILED first, then deleted: nothing to do.
          this.neighbours.delete(n.ip);
          return 'ignore';
        }
        const known = this.neighbours.get(n.ip);
        // the echo of weft's own request: the view says so already, and so does the desired state
        if (n.permanent && known !== undefined && known.mac === n.mac && want !== undefined && want.mac === n.mac) return 'ignore';
        const have: NeighbourSpec = { ip: n.ip, mac: n.permanent ? (n.mac ?? '') : '' };
        this.neighbours.set(n.ip, have);
        return this.mark(this.dirty.neighbours, n.ip, want === undefined || want.mac !== have.mac);
      }
      case 'fdb': {
        const f = change.fdb;
        if (f.index !== overlayIndex || overlayIndex === undefined || !f.self || this.devices.routesOnly === true) return 'ignore';
        const want = desired.fdb.get(f.mac);
        if (change.action === 'del') {
          this.fdb.delete(f.mac);
          return this.mark(this.dirty.fdb, f.mac, want !== undefined);
        }
        const known = this.fdb.get(f.mac);
        if (known !== undefined && known.dst === f.dst && want !== undefined && want.dst === f.dst) return 'ignore';
        const have: FdbSpec = { mac: f.mac, dst: f.dst ?? '' };
        this.fdb.set(f.mac, have);
        return this.mark(this.dirty.fdb, f.mac, want === undefined || want.dst !== have.dst);
      }
      case 'route': {
        const r = change.route;
        if (r.family !== family || r.table !== RT_TABLE_MAIN) return 'ignore';
        // the device's own route going is for ensureDevices to repair
        if (r.ifindex === overlayIndex && this.devices.deviceRoutes?.includes(r.dst) === true)
          return change.action === 'del' ? 'full' : 'ignore';
        if (r.nexthopId !== null && r.ifindex === null && !this.nexthops.has(r.nexthopId)) {
          // compat mode off and a nexthop we do not know: can't tell whose route this is
          return r.protocol === WEFT_ROUTE_PROTOCOL ? 'full' : 'ignore';
        }
        const own = this.ownRoute(r, undefined);
        // someone else's route to a prefix weft wants came or went: a full run sees whether weft may route it
        if (own === undefined) return desired.routes.has(r.dst) || this.foreignRoutes.has(r.dst) ? 'full' : 'ignore';
        const want = desired.routes.get(r.dst);
        const expected =
          want === undefined || this.form !== 'nexthop' ? undefined : this.nexthopIds.get(want.device, want.onlink, want.gateway);
        const same = want !== undefined && sameRouteSpec(own.spec, want) && own.nexthopId === expected;
        const known = this.routes.get(r.dst);
        if (
          change.action === 'new' &&
          same &&
          known !== undefined &&
          sameRouteSpec(known.spec, own.spec) &&
          known.nexthopId === own.nexthopId
        )
          return 'ignore';
        // A nexthop this leaves unused stays until a plan reuses it or a full run removes it.
        this.deleteRoute(r.dst);
        if (change.action === 'del') return this.mark(this.dirty.routes, r.dst, want !== undefined);
        this.setRoute(own);
        return this.mark(this.dirty.routes, r.dst, !same);
      }
      case 'nexthop': {
        const n = change.nexthop;
        const known = this.nexthops.get(n.id);
        if (change.action === 'del') {
          this.foreignIds.delete(n.id);
          if (known === undefined) return 'ignore';
          // The kernel removed every route using it, silently: they need adding again.
          const users = usersList(known.users);
          for (const dst of users) {
            this.routes.delete(dst);
            this.dirty.routes.add(dst);
          }
          known.users = undefined;
          this.forgetNexthop(n.id);
          return users.length > 0 ? 'dirty' : 'ignore';
        }
        if (known !== undefined) {
          const device = this.deviceOf(n.ifindex);
          return device === known.device && n.gateway === known.gateway && n.onlink === known.onlink ? 'ignore' : 'full';
        }
        this.foreignIds.add(n.id);
        return this.isOwnFamilyNexthop(n) && this.deviceOf(n.ifindex) !== undefined ? 'full' : 'ignore';
      }
    }
  }

  /** Forgets the keys observe() marked dirty, handing them over. */
  takeDirty(): DirtyKeys {
    const taken: DirtyKeys = {
      ...emptyDirtyKeys(),
      neighbours: new Set(this.dirty.neighbours),
      fdb: new Set(this.dirty.fdb),
      routes: new Set(this.dirty.routes),
    };
    this.dirty.neighbours.clear();
    this.dirty.fdb.clear();
    this.dirty.routes.clear();
    return taken;
  }

  /** The ifindex of a route device. */
  indexOf(device: RouteDevice): number | undefined {
    return device === 'overlay' ? this.devices.overlayIndex : this.devices.publicIndex;
  }

  // ------------------------------------------------------------------------------------------------

  private mark(set: Set<string>, key: string, dirty: boolean): Observation {
    if (!dirty) return 'ignore';
    set.add(key);
    return 'dirty';
  }

  private deviceOf(ifindex: number | null | undefined): RouteDevice | undefined {
    if (ifindex === null || ifindex === undefined) return undefined;
    if (ifindex === this.devices.overlayIndex) return 'overlay';
    if (ifindex === this.devices.publicIndex) return 'public';
    return undefined;
  }

  /** The route as weft's, resolving a nexthop id (through the view's nexthops or `foreign`), or undefined when it is not weft's. */
  private ownRoute(route: RouteInfo, foreign: Map<number, NexthopInfo> | undefined): ViewRoute | undefined {
    if (route.table !== RT_TABLE_MAIN || route.multipath) return undefined;
    let ifindex = route.ifindex;
    let gateway = route.gateway;
    let onlink = route.onlink;
    if (route.nexthopId !== null) {
      const nexthop = this.nexthops.get(route.nexthopId) ?? foreign?.get(route.nexthopId);
      if (nexthop !== undefined) {
        const index = 'ifindex' in nexthop ? nexthop.ifindex : this.indexOf(nexthop.device);
        ifindex = index ?? null;
        gateway = nexthop.gateway;
        onlink = nexthop.onlink;
      }
    }
    const { overlayIndex, publicIndex } = this.devices;
    const onOverlay =
      overlayIndex !== undefined &&
      ifindex === overlayIndex &&
      route.protocol !== RTPROT_KERNEL &&
      this.devices.deviceRoutes?.includes(route.dst) !== true;
    const tagged = route.protocol === WEFT_ROUTE_PROTOCOL && ifindex === publicIndex;
    if (!onOverlay && !tagged) return undefined;
    return {
      spec: { dst: route.dst, gateway: gateway ?? '', device: onOverlay ? 'overlay' : 'public', onlink },
      nexthopId: route.nexthopId ?? undefined,
      protocol: route.protocol,
      ifindex: ifindex ?? undefined,
      metric: route.metric ?? undefined,
    };
  }

  /** Takes the nexthop into the view if it is weft's; says whether it is. */
  private adoptNexthop(n: NexthopInfo): boolean {
    if (!this.isOwnFamilyNexthop(n) || n.group || n.blackhole || n.fdb || n.gateway === null) return false;
    const device = this.deviceOf(n.ifindex);
    if (device === undefined) return false;
    this.nexthops.set(n.id, { id: n.id, device, gateway: n.gateway, onlink: n.onlink, users: undefined });
    // one id per gateway: the lowest; routes on another one are moved to it and the other goes
    const current = this.nexthopIds.get(device, n.onlink, n.gateway);
    if (current === undefined || n.id < current) this.nexthopIds.set(device, n.onlink, n.gateway, n.id);
    return true;
  }

  /**
   * Weft's, and this plane's: a dual-stack host-gw host has both planes' nexthops on the public interface,
   * and each plane leaves the other's alone (to it they are others' ids).
   */
  private isOwnFamilyNexthop(n: NexthopInfo): boolean {
    return n.protocol === WEFT_ROUTE_PROTOCOL && n.family === this.devices.family;
  }

  private forgetNexthop(id: number): void {
    const nexthop = this.nexthops.get(id);
    if (nexthop === undefined) return;
    this.nexthops.delete(id);
    const { device, onlink, gateway } = nexthop;
    if (this.nexthopIds.get(device, onlink, gateway) === id) {
      this.nexthopIds.delete(device, onlink, gateway);
      for (const other of this.nexthops.values()) {
        if (other.gateway !== gateway || other.device !== device || other.onlink !== onlink) continue;
        const current = this.nexthopIds.get(device, onlink, gateway);
        if (current === undefined || other.id < current) this.nexthopIds.set(device, onlink, gateway, other.id);
      }
    }
  }

  private setRoute(route: ViewRoute): void {
    const dst = route.spec.dst;
    this.routes.set(dst, route);
    const nexthop = route.nexthopId === undefined ? undefined : this.nexthops.get(route.nexthopId);
    if (nexthop === undefined) return;
    nexthop.users = withUser(nexthop.users, dst);
  }

  /** Forgets the route to `dst` (and its use of a nexthop). */
  private deleteRoute(dst: string): void {
    const route = this.routes.get(dst);
    if (route === undefined) return;
    this.routes.delete(dst);
    const nexthop = route.nexthopId === undefined ? undefined : this.nexthops.get(route.nexthopId);
    if (nexthop === undefined) return;
    nexthop.users = withoutUser(nexthop.users, dst);
  }
}
