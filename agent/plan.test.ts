/**
 * KernelView and the planner without a kernel: what the view reads as weft's, what plan() makes of it, what
 * the view assumes afterwards, and how it takes notifications. The reconcile loop's tests
 * (reconciler.test.ts) run the same code against the real kernel.
 */
import assert from 'node:assert/strict';
import type { DesiredObjects, DirtyKeys, RouteSpec } from '../common/dataplane.js';
import { OVERLAY, desired, fakeKernel, fdb, neighbour, nexthop, route } from '../test/fake-kernel.js';
import {
  KernelView,
  WEFT_NEXTHOP_ID_BASE,
  WEFT_NEXTHOP_ID_BASE_IPV6,
  opsCount,
  type KernelChange,
  type PlannedOps,
  type ViewDevices,
  type ViewRoute,
} from './kernel/index.js';
import { plan } from './plan.js';

const PUBLIC = 2;
const DEVICES: ViewDevices = {
  family: 4,
  overlayIndex: OVERLAY,
  publicIndex: PUBLIC,
  overlayState: { up: true, mtu: 1450, mac: '02:00:00:00:00:01', addresses: ['198.18.1.0/32'] },
};

const A: [string, string, string, string] = ['198.18.2.0/24', '198.18.2.0', '0a:00:00:00:00:02', '192.0.2.12'];
const B: [string, string, string, string] = ['198.18.3.0/24', '198.18.3.0', '0a:00:00:00:00:03', '203.0.113.5'];

/** plan() and, as the reconcile loop does, the view's record of its outcome. */
function planned(view: KernelView, want: DesiredObjects, keys: DirtyKeys | 'all', duplicates: readonly ViewRoute[] = []): PlannedOps {
  const ops = plan(want, view, keys, duplicates);
  view.assume(ops, want, keys);
  return ops;
}

function kinds(ops: PlannedOps): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [kind, list] of Object.entries(ops)) if ((list as unknown[]).length > 0) out[kind] = (list as unknown[]).length;
  return out;
}

describe("agent/plan and agent/kernel/view: the planner and the loop's picture of the kernel", function () {
  it('plans neighbour, FDB entry, nexthop and route per peer on an empty device, then nothing', async function () {
    const { view } = await KernelView.read(fakeKernel({}), DEVICES, 'nexthop');
    const want = desired([A, B]);
    const ops = planned(view, want, 'all');
    assert.deepEqual(kinds(ops), { neighbourSet: 2, fdbSet: 2, nexthopAdd: 2, routeAdd: 2 });
    assert.deepEqual(
      ops.nexthopAdd.map((n) => [n.id, n.gateway, n.onlink]),
      [
        [WEFT_NEXTHOP_ID_BASE, '198.18.2.0', true],
        [WEFT_NEXTHOP_ID_BASE + 1, '198.18.3.0', true],
      ],
    );
    assert.deepEqual(
      ops.routeAdd.map((r) => [r.spec.dst, r.nexthopId]),
      [
        ['198.18.2.0/24', WEFT_NEXTHOP_ID_BASE],
        ['198.18.3.0/24', WEFT_NEXTHOP_ID_BASE + 1],
      ],
    );
    assert.equal(opsCount(planned(view, want, 'all')), 0, 'the view records what the plan does');
  });

  it('plans without changing the view: the same plan twice, until the view assumes it', async function () {
    const nh = nexthop({ id: 9, gateway: '198.18.2.0', ifindex: OVERLAY, onlink: true });
    const { view } = await KernelView.read(
      fakeKernel({ nexthops: [nh], routes: [route({ dst: A[0], nexthopId: 9 })] }),
      DEVICES,
      'nexthop',
    );
    const want = desired([A, B]);
    const first = plan(want, view, 'all');
    const second = plan(want, view, 'all');
    assert.deepEqual(second, first);
    assert.equal(view.routes.size, 1);
    assert.equal(view.neighbours.size, 0);
    view.assume(first, want, 'all');
    assert.equal(opsCount(plan(want, view, 'all')), 0);
  });

  it('falls back to inline routes when the kernel has no nexthop objects', async function () {
    const { view, nexthopsSupported } = await KernelView.read(fakeKernel({ nexthops: 'unsupported' }), DEVICES, 'nexthop');
    assert.equal(nexthopsSupported, false);
    assert.equal(view.form, 'inline');
    const ops = planned(view, desired([A]), 'all');
    assert.deepEqual(kinds(ops), { neighbourSet: 1, fdbSet: 1, routeAdd: 1 });
    assert.equal(ops.routeAdd[0].nexthopId, undefined);
  });

  it("reads only what is weft's, resolves routes through their nexthop, and drops duplicates and unused nexthops", async function () {
    const kernel = fakeKernel({
      neighbours: [neighbour('198.18.2.0', '0a:00:00:00:00:02')],
      fdb: [fdb('0a:00:00:00:00:02', '192.0.2.12')],
      nexthops: [
        nexthop({ id: 5, gateway: '198.18.2.0', ifindex: OVERLAY, onlink: true }),
        nexthop({ id: 6, gateway: '198.18.9.0', ifindex: OVERLAY, onlink: true }), // weft's, unused
        nexthop({ id: WEFT_NEXTHOP_ID_BASE, gateway: '192.0.2.1', ifindex: PUBLIC, protocol: 186 }), // someone else's
      ],
      routes: [
        // compat mode off: the route carries only its nexthop id
        route({ dst: '198.18.2.0/24', nexthopId: 5 }),
        route({ dst: '198.18.2.0/24', gateway: '198.18.2.0', ifindex: OVERLAY, onlink: true, metric: 10 }), // a second one
        route({ dst: '198.51.100.0/24', gateway: '192.0.2.1', ifindex: PUBLIC, protocol: 4 }), // not weft's
        route({ dst: '198.18.1.0/32', ifindex: OVERLAY, protocol: 2, table: 255 }), // the kernel's own
      ],
    });
    const { view, duplicates } = await KernelView.read(kernel, DEVICES, 'nexthop');
    assert.deepEqual(
      [...view.routes.values()].map((r) => [r.spec, r.nexthopId]),
      [[{ dst: '198.18.2.0/24', gateway: '198.18.2.0', device: 'overlay', onlink: true }, 5]],
    );
    assert.equal(duplicates.length, 1);
    const ops = planned(view, desired([A, B]), 'all', duplicates);
    assert.deepEqual(kinds(ops), { routeDel: 1, nexthopDel: 1, neighbourSet: 1, fdbSet: 1, nexthopAdd: 1, routeAdd: 1 });
    assert.deepEqual(ops.nexthopDel, [6]);
    // a fresh id: the base is taken by someone else's nexthop
    assert.equal(ops.nexthopAdd[0].id, WEFT_NEXTHOP_ID_BASE + 1);
  });

  it("keeps to its own family's nexthops: the IPv6 plane of a dual-stack host-gw host leaves the IPv4 plane's alone", async function () {
    const devices: ViewDevices = { family: 6, overlayIndex: undefined, publicIndex: PUBLIC };
    const ipv4 = nexthop({ id: WEFT_NEXTHOP_ID_BASE, gateway: '192.0.2.12', ifindex: PUBLIC });
    const unusedIpv6 = nexthop({ id: WEFT_NEXTHOP_ID_BASE_IPV6, family: 6, gateway: '2001:db8:0:1::13', ifindex: PUBLIC });
    const { view } = await KernelView.read(fakeKernel({ nexthops: [ipv4, unusedIpv6] }), devices, 'nexthop');
    const ops = planned(view, desired([], [['2001:db8:100:2::/64', '2001:db8:0:1::12']]), 'all');
    assert.deepEqual(kinds(ops), { nexthopAdd: 1, routeAdd: 1, nexthopDel: 1 });
    assert.deepEqual(ops.nexthopDel, [WEFT_NEXTHOP_ID_BASE_IPV6]);
    // its ids come from its own base, past the ones taken
    assert.equal(ops.nexthopAdd[0].id, WEFT_NEXTHOP_ID_BASE_IPV6 + 1);
    // the other plane's new nexthop is nothing to act on
    assert.equal(
      view.observe({ kind: 'nexthop', action: 'new', nexthop: { ...ipv4, id: WEFT_NEXTHOP_ID_BASE + 1 } }, desired([])),
      'ignore',
    );
  });

  it('plans only the keys it is given, and deletes a nexthop after its route, or after the route that moved off it', async function () {
    const { view } = await KernelView.read(fakeKernel({}), DEVICES, 'nexthop');
    planned(view, desired([A, B]), 'all');
    const onlyB = desired([B]);
    const gone = planned(view, onlyB, {
      neighbours: new Set([A[1]]),
      fdb: new Set([A[2]]),
      routes: new Set([A[0]]),
      wireguardPeers: new Set(),
    });
    assert.deepEqual(kinds(gone), { routeDel: 1, nexthopDel: 1, fdbDel: 1, neighbourDel: 1 });
    // B's gateway moves to the public interface (DirectRouting): the route moves, its old nexthop goes last
    const direct = desired([], [[B[0], '203.0.113.5']]);
    const moved = planned(view, direct, {
      neighbours: new Set([B[1]]),
      fdb: new Set([B[2]]),
      routes: new Set([B[0]]),
      wireguardPeers: new Set(),
    });
    assert.deepEqual(kinds(moved), { fdbDel: 1, neighbourDel: 1, nexthopAdd: 1, routeSet: 1, nexthopDelLast: 1 });
    assert.equal(moved.routeSet[0].spec.device, 'public');
  });

  it('takes its own echo as nothing to do and anything else as work', async function () {
    const { view } = await KernelView.read(fakeKernel({}), DEVICES, 'nexthop');
    const want = desired([A]);
    const ops = planned(view, want, 'all');
    const id = ops.nexthopAdd[0].id;
    const spec: RouteSpec = want.routes.get(A[0])!;
    const echo: KernelChange[] = [
      { kind: 'neighbour', action: 'new', neighbour: neighbour(A[1], A[2]) },
      { kind: 'fdb', action: 'new', fdb: fdb(A[2], A[3]) },
      { kind: 'nexthop', action: 'new', nexthop: nexthop({ id, gateway: A[1], ifindex: OVERLAY, onlink: true }) },
      { kind: 'route', action: 'new', route: route({ dst: spec.dst, gateway: A[1], ifindex: OVERLAY, onlink: true, nexthopId: id }) },
      {
        kind: 'link',
        action: 'new',
        link: {
          index: OVERLAY,
          name: 'weft.1',
          kind: 'vxlan',
          mtu: 1450,
          up: true,
          running: true,
          mac: '02:00:00:00:00:01',
          linkIndex: null,
          masterIndex: null,
          vxlan: null,
        },
      },
      {
        kind: 'address',
        action: 'new',
        address: {
          index: OVERLAY,
          family: 4,
          address: '198.18.1.0',
          prefixLen: 32,
          cidr: '198.18.1.0/32',
          scope: 0,
          flags: 0,
          label: null,
        },
      },
      {
        kind: 'address',
        action: 'new',
        address: { index: OVERLAY, family: 6, address: 'fe80::1', prefixLen: 64, cidr: 'fe80::1/64', scope: 253, flags: 0, label: null },
      },
      // deleting a permanent neighbour weft no longer wants: the kernel says FAILED first
      { kind: 'neighbour', action: 'new', neighbour: neighbour('198.18.9.0', null, 0x20) },
      { kind: 'route', action: 'new', route: route({ dst: '198.51.100.0/24', gateway: '192.0.2.1', ifindex: PUBLIC, protocol: 4 }) },
    ];
    for (const change of echo) assert.equal(view.observe(change, want), 'ignore', JSON.stringify(change));
    assert.deepEqual(view.takeDirty(), { neighbours: new Set(), fdb: new Set(), routes: new Set(), wireguardPeers: new Set() });

    assert.equal(
      view.observe({ kind: 'route', action: 'del', route: route({ dst: spec.dst, ifindex: OVERLAY, nexthopId: id }) }, want),
      'dirty',
    );
    assert.equal(view.observe({ kind: 'neighbour', action: 'new', neighbour: neighbour(A[1], '0e:00:00:00:99:99') }, want), 'dirty');
    assert.equal(view.observe({ kind: 'fdb', action: 'del', fdb: fdb(A[2], A[3]) }, want), 'dirty');
    const dirty = view.takeDirty();
    assert.deepEqual([...dirty.routes, ...dirty.neighbours, ...dirty.fdb], [A[0], A[1], A[2]]);
    assert.deepEqual(kinds(planned(view, want, dirty)), { neighbourSet: 1, fdbSet: 1, routeAdd: 1 });

    // someone deletes the nexthop: the kernel drops its routes without a word, so they are dirty
    assert.equal(
      view.observe({ kind: 'nexthop', action: 'del', nexthop: nexthop({ id, gateway: A[1], ifindex: OVERLAY, onlink: true }) }, want),
      'dirty',
    );
    assert.deepEqual([...view.takeDirty().routes], [A[0]]);
    // and device changes that are not weft's own doing need a full run
    assert.equal(
      view.observe(
        {
          kind: 'link',
          action: 'new',
          link: {
            index: OVERLAY,
            name: 'weft.1',
            kind: 'vxlan',
            mtu: 1400,
            up: true,
            running: true,
            mac: '02:00:00:00:00:01',
            linkIndex: null,
            masterIndex: null,
            vxlan: null,
          },
        },
        want,
      ),
      'full',
    );
    assert.equal(
      view.observe(
        {
          kind: 'link',
          action: 'del',
          link: {
            index: OVERLAY,
            name: 'weft.1',
            kind: 'vxlan',
            mtu: 1450,
            up: false,
            running: false,
            mac: null,
            linkIndex: null,
            masterIndex: null,
            vxlan: null,
          },
        },
        want,
      ),
      'full',
    );
    assert.equal(
      view.observe(
        {
          kind: 'address',
          action: 'del',
          address: {
            index: OVERLAY,
            family: 4,
            address: '198.18.1.0',
            prefixLen: 32,
            cidr: '198.18.1.0/32',
            scope: 0,
            flags: 0,
            label: null,
          },
        },
        want,
      ),
      'full',
    );
  });

  it("leaves a prefix alone where a route that is not weft's is, and takes it once that route goes", async function () {
    const foreign = route({ dst: A[0], gateway: '192.0.2.1', ifindex: PUBLIC, protocol: 4 });
    const want = desired([A, B]);
    const { view } = await KernelView.read(fakeKernel({ routes: [foreign] }), DEVICES, 'nexthop', want.routes);
    assert.deepEqual([...view.foreignRoutes], [A[0]]);
    const ops = planned(view, want, 'all');
    assert.deepEqual(
      ops.routeAdd.map((r) => r.spec.dst),
      [B[0]],
      "no route to the other's prefix, not even a create",
    );
    assert.deepEqual(
      ops.nexthopAdd.map((n) => n.gateway),
      [B[1]],
    );
    assert.deepEqual([...view.blocked], [A[0]]);
    // its route changing or going is someone else's doing at a prefix weft wants: a full run looks again
    assert.equal(view.observe({ kind: 'route', action: 'del', route: foreign }, want), 'full');
    assert.equal(
      view.observe({ kind: 'route', action: 'new', route: route({ dst: B[0], gateway: '192.0.2.1', ifindex: PUBLIC, protocol: 4 }) }, want),
      'full',
    );
    const { view: after } = await KernelView.read(fakeKernel({}), DEVICES, 'nexthop', want.routes);
    assert.deepEqual(
      planned(after, want, 'all').routeAdd.map((r) => r.spec.dst),
      [A[0], B[0]],
    );
    assert.equal(after.blocked.size, 0);
  });

  it('replaces only routes of its own and creates the others exclusively', async function () {
    const ours = route({ dst: A[0], gateway: '198.18.2.99', ifindex: OVERLAY, onlink: true });
    const { view } = await KernelView.read(fakeKernel({ routes: [ours] }), DEVICES, 'inline', desired([A, B]).routes);
    const ops = planned(view, desired([A, B]), 'all');
    assert.deepEqual(
      ops.routeSet.map((r) => r.spec.dst),
      [A[0]],
    );
    assert.deepEqual(
      ops.routeAdd.map((r) => r.spec.dst),
      [B[0]],
    );
  });
});
