/**
 * weftd's full reconcile run without the sending: the desired state from the leases (DesiredState), weft's
 * objects read from the kernel (KernelView.read) and the operations that would make them equal (plan).
 * `weftctl doctor` prints these operations; the reconcile loop's full run makes the same three calls.
 */
import type { Family } from '../common/cidr.js';
import type { NetworkConfig } from '../common/config.js';
import { DesiredState, type PeerObjects } from '../common/dataplane.js';
import type { Lease } from '../common/lease.js';
import type { PublicInterface } from './host/interfaces.js';
import { KernelView, type Kernel, type PlannedOps, type RouteForm, type ViewRoute } from './kernel/index.js';
import { plan } from './plan.js';

export interface DryRunInput {
  kernel: Kernel;
  family: Family;
  config: NetworkConfig;
  own: Lease;
  /** the leases weftd programs: every lease the lease arbiter does not ignore */
  peers: Iterable<Lease>;
  publicInterface: PublicInterface;
  /** weft's overlay device; undefined for backends without one */
  overlayIndex: number | undefined;
  /** the overlay device takes routes only (the userspace path's veth, WireGuard) */
  routesOnly: boolean;
  /** routes on the overlay device the backend keeps itself (BackendDevices.deviceRoutes) */
  deviceRoutes?: readonly string[] | undefined;
  /** weftd's --nexthop-objects */
  routeForm: RouteForm;
  /** the backend's objects for a peer */
  peerObjects: PeerObjects;
}

export interface DryRun {
  desired: DesiredState;
  view: KernelView;
  /** second routes of weft's to a prefix, which the plan deletes */
  duplicates: ViewRoute[];
  ops: PlannedOps;
}

export async function dryRun(input: DryRunInput): Promise<DryRun> {
  const { kernel, family, config, own, publicInterface, overlayIndex, routesOnly } = input;
  const desired = new DesiredState(
    { family, config, own, localPrefixes: [publicInterface.prefix], routesOnly },
    input.peerObjects,
    input.peers,
  );
  const { view, duplicates } = await KernelView.read(
    kernel,
    {
      family,
      overlayIndex,
      publicIndex: publicInterface.index,
      routesOnly,
      ...(input.deviceRoutes === undefined ? {} : { deviceRoutes: input.deviceRoutes }),
    },
    input.routeForm,
    desired.state.routes,
  );
  return { desired, view, duplicates, ops: plan(desired.state, view, 'all', duplicates) };
}
