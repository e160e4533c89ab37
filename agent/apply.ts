/**
 * Sending a plan (agent/plan.ts) to the kernel: each kind of operation in the order that keeps every step
 * valid, pipelined through the kernel shim with a bounded number outstanding.
 */
import { WEFT_ROUTE_PROTOCOL, type RouteDevice } from '../common/dataplane.js';
import { NetlinkError, type Kernel, type KernelView, type PlannedOps } from './kernel/index.js';

/**
 * Requests one run keeps outstanding at most: one batch of the kernel shim (256 messages to a sendmsg). The
 * kernel applies a batch before sendmsg returns, so waiting for its answer before making the next costs no
 * throughput; and requests that live no longer than that mostly die in V8's young generation, where a
 * window of thousands kept each alive long enough to be promoted and to swell the old one.
 */
const APPLY_WINDOW = 256;

/** Deleting something already gone is not a failure. */
const GONE = new Set(['ENOENT', 'ESRCH', 'ENODEV']);

/** What sending a plan did: failed operations, and results per kind ("route.set" → "ok": 12, "EEXIST": 1). */
export interface ApplyResult {
  failures: number;
  tally: { kind: string; result: string; count: number }[];
}

/**
 * Sends the planned operations in the order that keeps each step valid: removals (routes, then the
 * nexthops only they used, FDB entries, neighbours), then neighbours and FDB entries, the nexthops routes
 * need, the routes, and last the nexthops that routes moved away from. The kernel shim pipelines them and
 * the kernel applies them in that order. At most APPLY_WINDOW are outstanding at a time, which bounds the
 * memory a run over thousands of peers takes without slowing it (see APPLY_WINDOW).
 */
export async function applyPlan(
  kernel: Kernel,
  view: KernelView,
  ops: PlannedOps,
  failed: (kind: string, err: unknown) => void,
): Promise<ApplyResult> {
  const steps = stepsOf(kernel, view, ops).filter((step) => step.items.length > 0);
  const tally: ApplyResult['tally'] = [];
  if (steps.length === 0) return { failures: 0, tally };
  let failures = 0;
  await new Promise<void>((resolve) => {
    let current = 0;
    let next = 0;
    let outstanding = 0;
    const pump = (): void => {
      while (outstanding < APPLY_WINDOW && current < steps.length) {
        const step = steps[current];
        if (next >= step.items.length) {
          current++;
          next = 0;
          continue;
        }
        outstanding++;
        step.start(step.items[next++]).then(step.ok, step.failed);
      }
      if (current >= steps.length && outstanding === 0) resolve();
    };
    for (const step of steps) {
      step.ok = () => {
        step.counts.set('ok', (step.counts.get('ok') ?? 0) + 1);
        outstanding--;
        pump();
      };
      step.failed = (err: unknown) => {
        const name = err instanceof NetlinkError ? err.errnoName : 'error';
        if (step.removal && GONE.has(name)) {
          step.ok();
          return;
        }
        failures++;
        step.counts.set(name, (step.counts.get(name) ?? 0) + 1);
        failed(step.kind, err);
        outstanding--;
        pump();
      };
    }
    pump();
    // The first window goes now, not after the rest of the task that planned it (a lease event's listeners, the
    // etcd client's own work). Later requests, made as answers come, go in one batch at the end of their task.
    kernel.flush();
  });
  for (const step of steps) for (const [result, count] of step.counts) tally.push({ kind: step.kind, result, count });
  return { failures, tally };
}

/**
 * The kernel requests of a plan, one step per kind in the order they must reach the kernel: removals
 * (routes, the nexthops only they used, FDB entries, neighbours), then neighbours and FDB entries, the
 * nexthops routes need, the routes, and last the nexthops routes moved away from.
 */
function stepsOf(kernel: Kernel, view: KernelView, ops: PlannedOps): ApplyStep[] {
  const { overlayIndex } = view.devices;
  const step = <T>(kind: string, removal: boolean, items: readonly T[], start: (item: T) => Promise<void>): ApplyStep => ({
    kind,
    removal,
    items,
    start: start as (item: unknown) => Promise<void>,
    counts: new Map(),
    ok: () => undefined,
    failed: () => undefined,
  });
  const steps: ApplyStep[] = [
    step('route.del', true, ops.routeDel, (route) => {
      const exactly = { dst: route.spec.dst, protocol: route.protocol, ...(route.metric === undefined ? {} : { metric: route.metric }) };
      return route.nexthopId !== undefined
        ? kernel.deleteRoute({ ...exactly, nexthopId: route.nexthopId })
        : kernel.deleteRoute({ ...exactly, ifindex: route.ifindex });
    }),
    step('nexthop.del', true, ops.nexthopDel, (id) => kernel.deleteNexthop(id)),
  ];
  if (overlayIndex !== undefined) {
    steps.push(
      step('fdb.del', true, ops.fdbDel, (entry) => kernel.deleteFdb(overlayIndex, entry.mac)),
      step('neighbour.del', true, ops.neighbourDel, (entry) => kernel.deleteNeighbour(overlayIndex, entry.ip)),
      step('neighbour.set', false, ops.neighbourSet, (entry) => kernel.replaceNeighbour(overlayIndex, entry.ip, entry.mac)),
      step('fdb.set', false, ops.fdbSet, (entry) => kernel.replaceFdb(overlayIndex, entry.mac, entry.dst)),
    );
  }
  const placed = <T extends { device: RouteDevice }>(items: readonly T[]) =>
    items.filter((item) => view.indexOf(item.device) !== undefined);
  steps.push(
    step('nexthop.add', false, placed(ops.nexthopAdd), (nexthop) =>
      kernel.addNexthop({
        id: nexthop.id,
        gateway: nexthop.gateway,
        ifindex: view.indexOf(nexthop.device)!,
        onlink: nexthop.onlink,
        protocol: WEFT_ROUTE_PROTOCOL,
      }),
    ),
    step(
      'route.add',
      false,
      ops.routeAdd.filter((route) => view.indexOf(route.spec.device) !== undefined),
      ({ spec, nexthopId }) =>
        nexthopId !== undefined
          ? kernel.addRoute({ dst: spec.dst, nexthopId, protocol: WEFT_ROUTE_PROTOCOL })
          : kernel.addRoute({
              dst: spec.dst,
              gateway: spec.gateway,
              ifindex: view.indexOf(spec.device)!,
              onlink: spec.onlink,
              protocol: WEFT_ROUTE_PROTOCOL,
            }),
    ),
    step(
      'route.set',
      false,
      ops.routeSet.filter((route) => view.indexOf(route.spec.device) !== undefined),
      ({ spec, nexthopId }) =>
        nexthopId !== undefined
          ? kernel.replaceRoute({ dst: spec.dst, nexthopId, protocol: WEFT_ROUTE_PROTOCOL })
          : kernel.replaceRoute({
              dst: spec.dst,
              gateway: spec.gateway,
              ifindex: view.indexOf(spec.device)!,
              onlink: spec.onlink,
              protocol: WEFT_ROUTE_PROTOCOL,
            }),
    ),
    step('nexthop.del', true, ops.nexthopDelLast, (id) => kernel.deleteNexthop(id)),
  );
  return steps;
}

/** One kind of request of a run: its items, how to send one, and its tally by result. */
interface ApplyStep {
  kind: string;
  removal: boolean;
  items: readonly unknown[];
  start: (item: unknown) => Promise<void>;
  counts: Map<string, number>;
  ok: () => void;
  failed: (err: unknown) => void;
}
