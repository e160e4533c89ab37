/**
 * The planner: the kernel operations that make weft's objects in the kernel (a KernelView) equal to the
 * desired state, for the keys that may differ. A pure function of (desired, view, keys): it reads the view
 * and changes nothing; the reconcile loop records the outcome with `view.assume(ops, …)` and sends the
 * operations, and `weftctl doctor` prints them instead (a dry run: "doctor: ok" when there are none).
 *
 * Route form. flannel installs `<subnet> via <subnet .0> dev flannel.1 onlink`, one route per peer, each
 * with its own gateway. The kernel hashes a route's nexthop information (fib_info) by device, protocol,
 * scope, source and metric but not by gateway, so all those routes land in one hash chain and adding the
 * n-th costs O(n): 10000 peers take seconds of kernel time. weft installs the same route through a nexthop
 * object instead (`ip nexthop add id N via <subnet .0> dev weft.1 onlink` + `ip route add <subnet> nhid N`):
 * the packet path is identical (same gateway, device, onlink flag, neighbour and FDB lookups), `ip route`
 * shows the same route with an extra `nhid N`, and nothing changes on the wire; the route hash then
 * includes the nexthop id, so adding routes stays O(1). Kernels without nexthop objects (< 5.3) get the
 * inline form (the view's `form`). One nexthop per gateway: the lowest id of weft's for it; routes on
 * another are moved to it and the other goes. New ids are the first free ones from the view's cursor.
 */
import { WEFT_ROUTE_PROTOCOL, type DesiredObjects, type DirtyKeys, type RouteSpec } from '../common/dataplane.js';
import {
  GatewayTable,
  emptyOps,
  sameRouteSpec,
  type KernelView,
  type PlannedOps,
  type ViewNexthop,
  type ViewRoute,
} from './kernel/index.js';

/**
 * The operations that make the kernel match `desired` for `keys` (every key of both sides for 'all'), in
 * the groups of PlannedOps. `duplicates` are second routes of weft's to a prefix (KernelView.read): they go.
 */
export function plan(
  desired: DesiredObjects,
  view: KernelView,
  keys: DirtyKeys | 'all',
  duplicates: readonly ViewRoute[] = [],
): PlannedOps {
  const ops = emptyOps();
  const { overlayIndex, routesOnly } = view.devices;
  const all = keys === 'all';
  ops.routeDel.push(...duplicates);
  if (overlayIndex !== undefined && routesOnly !== true) {
    for (const ip of all ? everyKey(desired.neighbours, view.neighbours) : keys.neighbours) {
      const want = desired.neighbours.get(ip);
      const have = view.neighbours.get(ip);
      if (want !== undefined && (have === undefined || have.mac !== want.mac)) ops.neighbourSet.push(want);
      else if (want === undefined && have !== undefined) ops.neighbourDel.push(have);
    }
    for (const mac of all ? everyKey(desired.fdb, view.fdb) : keys.fdb) {
      const want = desired.fdb.get(mac);
      const have = view.fdb.get(mac);
      if (want !== undefined && (have === undefined || have.dst !== want.dst)) ops.fdbSet.push(want);
      else if (want === undefined && have !== undefined) ops.fdbDel.push(have);
    }
  }
  const nexthops = new NexthopPlan(view, ops);
  for (const dst of all ? everyKey(desired.routes, view.routes) : keys.routes) {
    let want = desired.routes.get(dst);
    if (want !== undefined && want.device === 'overlay' && overlayIndex === undefined) want = undefined;
    const have = view.routes.get(dst);
    if (want === undefined) {
      if (view.blocked.has(dst)) ops.unblocked.push(dst);
      if (have === undefined) continue;
      ops.routeDel.push(have);
      nexthops.leave(have, 'deleted');
      continue;
    }
    if (have === undefined && view.foreignRoutes.has(dst)) {
      // weft never replaces a route it does not own
      if (!view.blocked.has(dst)) ops.blocked.push(dst);
      continue;
    }
    if (view.blocked.has(dst)) ops.unblocked.push(dst);
    const nexthopId = view.form === 'nexthop' ? nexthops.idFor(want) : undefined;
    if (have !== undefined && sameRouteSpec(have.spec, want) && have.nexthopId === nexthopId) continue;
    const route: ViewRoute = {
      spec: want,
      nexthopId,
      protocol: WEFT_ROUTE_PROTOCOL,
      ifindex: view.indexOf(want.device),
      metric: undefined,
    };
    (have === undefined ? ops.routeAdd : ops.routeSet).push(route);
    if (have !== undefined) nexthops.leave(have, 'moved');
    nexthops.use(route);
  }
  nexthops.removeUnused(all);
  return ops;
}

/**
 * The nexthops of one plan: the ids routes will use (the view's, or new ones it plans), and how many routes
 * use each once the plan is applied, so that the nexthops no route uses any more are deleted.
 */
class NexthopPlan {
  /** new nexthops by gateway */
  private readonly added = new GatewayTable<ViewNexthop>();
  private readonly addedIds = new Set<number>();
  /** change in the number of routes using a nexthop */
  private readonly usersDelta = new Map<number, number>();
  /** nexthops whose last route went (deleted early) or moved to another nexthop (deleted last) */
  private readonly releasedByDeletion: number[] = [];
  private readonly releasedByMove: number[] = [];
  private cursor: number;
  private readonly base: number;

  constructor(
    private readonly view: KernelView,
    private readonly ops: PlannedOps,
  ) {
    const { next, base } = view.nexthopIdCursor;
    this.cursor = next;
    this.base = base;
  }

  /** The nexthop id a route should use, planning its creation when there is none. */
  idFor(route: RouteSpec): number {
    const existing = this.view.nexthopIdFor(route.device, route.onlink, route.gateway);
    if (existing !== undefined) return existing;
    const planned = this.added.get(route.device, route.onlink, route.gateway);
    if (planned !== undefined) return planned.id;
    while (this.view.nexthopIdTaken(this.cursor) || this.addedIds.has(this.cursor)) {
      this.cursor = this.cursor >= 0xffffffff ? this.base : this.cursor + 1;
    }
    const nexthop: ViewNexthop = { id: this.cursor, device: route.device, gateway: route.gateway, onlink: route.onlink, users: undefined };
    this.added.set(route.device, route.onlink, route.gateway, nexthop);
    this.addedIds.add(nexthop.id);
    this.ops.nexthopAdd.push(nexthop);
    return nexthop.id;
  }

  use(route: ViewRoute): void {
    if (route.nexthopId !== undefined) this.usersDelta.set(route.nexthopId, (this.usersDelta.get(route.nexthopId) ?? 0) + 1);
  }

  /** The view's route `route` goes ('deleted') or is replaced by another ('moved'). */
  leave(route: ViewRoute, how: 'deleted' | 'moved'): void {
    const id = route.nexthopId;
    if (id === undefined || this.view.nexthopUsers(id) === undefined) return;
    const delta = (this.usersDelta.get(id) ?? 0) - 1;
    this.usersDelta.set(id, delta);
    if (this.users(id) === 0) (how === 'deleted' ? this.releasedByDeletion : this.releasedByMove).push(id);
  }

  /**
   * Plans the deletion of the nexthops no route uses any more: right after the route deletions when their
   * routes went, last when their routes moved; in a full run also every other nexthop of weft's no route uses.
   */
  removeUnused(all: boolean): void {
    const unused = new Set(this.releasedByDeletion);
    if (all) for (const id of this.view.unusedNexthops()) if (this.users(id) === 0) unused.add(id);
    const done = new Set<number>();
    for (const id of [...unused, ...this.releasedByMove]) {
      if (done.has(id) || this.users(id) !== 0) continue;
      done.add(id);
      (unused.has(id) ? this.ops.nexthopDel : this.ops.nexthopDelLast).push(id);
    }
  }

  /** Routes using nexthop `id` once the plan is applied. */
  private users(id: number): number {
    return (this.view.nexthopUsers(id) ?? 0) + (this.usersDelta.get(id) ?? 0);
  }
}

/**
 * Every key of `desired`, then every other key `have` holds, each once (without a set of them all:
 * thousands).
 */
function* everyKey(desired: ReadonlyMap<string, unknown>, have: ReadonlyMap<string, unknown>): Generator<string> {
  yield* desired.keys();
  for (const key of have.keys()) if (!desired.has(key)) yield key;
}
