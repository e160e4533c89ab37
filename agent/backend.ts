import type { BackendType, NetworkConfig, UserspaceMode, WireguardHostOptions } from '../common/config.js';
import type { DesiredObjects, PeerObjects } from '../common/dataplane.js';
import type { Lease } from '../common/lease.js';
import type { UserspacePath } from './userspace/path.js';
import type { PublicInterface } from './host/interfaces.js';
import type { Kernel, OverlayState } from './kernel/index.js';
import type { Logger } from './log.js';

export interface BackendContext {
  kernel: Kernel;
  log: Logger;
  config: NetworkConfig;
  publicInterface: PublicInterface;
  /** This host's VXLAN data path (weftd --vxlan-userspace), overriding the config's Backend.Userspace. */
  vxlanUserspace?: UserspaceMode | undefined;
  /** This host's WireGuard settings (weftd --wireguard-*); undefined: the defaults. */
  wireguard?: WireguardHostOptions | undefined;
}

/** The devices a reconcile run programs peers onto. */
export interface BackendDevices {
  /** The overlay device (VXLAN); undefined for backends that route over the public interface only. */
  overlayIndex: number | undefined;
  /**
   * The overlay device takes routes only: weft programs no neighbour or FDB entries on it and owns none
   * there (a userspace path's veth, where the kernel makes its own NOARP neighbours).
   */
  routesOnly?: boolean;
  /**
   * What the overlay device looks like once ensureDevices is done, so that the reconcile loop can tell the
   * kernel's echo of that set-up from someone changing the device. Without it every link or address
   * notification for the device makes a full reconcile.
   */
  overlayState?: OverlayState;
  /**
   * Destinations of routes on the overlay device that ensureDevices keeps itself (WireGuard's route for the
   * whole network): not peers' routes, left alone by the reconcile loop, and a full run when one goes.
   */
  deviceRoutes?: readonly string[];
}

/** Who forwards the overlay traffic: the kernel (a VXLAN device, plain routes) or weft's own processes. */
export type DataPath = 'kernel' | 'userspace';

/**
 * One way of carrying overlay traffic between hosts. The peers' neighbours, FDB entries and routes are
 * the reconcile loop's business (common/dataplane.ts); a backend owns its devices and its lease data.
 */
export interface Backend {
  readonly type: BackendType;
  /** What this host publishes in its lease's BackendData. */
  readonly backendData: Record<string, unknown> | undefined;
  /** MTU for the containers' interfaces (subnet.env FLANNEL_MTU). */
  readonly mtu: number;
  /**
   * Whether flanneld hosts of this backend answer health probes: they hold their subnet's network address
   * (flannel.<VNI>, flannel0). When not (host-gw), only weft hosts, whose lease names a WeftNodeID, are probed.
   */
  readonly flannelPeersAnswerProbes: boolean;
  /** The kernel objects this backend wants for a peer (its desired.ts); the reconcile loop keeps them. */
  readonly peerObjects: PeerObjects;
  /** Creates, repairs or adopts the backend's devices for our lease. Idempotent; runs on every reconcile. */
  ensureDevices(own: Lease): Promise<BackendDevices>;
  /** Removes the devices this backend created (on --release-on-exit). */
  teardown(): Promise<void>;
  readonly dataPath: DataPath;
  /** Why this data path (e.g. 'Userspace "auto": kernel VXLAN is unavailable (…)'), for logs and /readyz. */
  readonly dataPathReason?: string | undefined;
  /** Settles what can be settled before the lease is known (vxlan "auto" picks its data path here). */
  prepare?(): Promise<void>;
  /** The userspace data path a backend forwards through, when it does (dataPath 'userspace'). */
  readonly userspace?: UserspacePath | undefined;
  /** Stops the backend's own processes (not its devices) when the agent stops. */
  close?(): Promise<void>;
  /** Backends whose device holds peers of its own (WireGuard): the reconcile loop keeps them as the desired state says. */
  readonly devicePeers?: DevicePeers;
}

/** What one sync of a device's peers did: operations sent (a set of many peers counts once per peer) and failed. */
export interface DevicePeersResult {
  operations: number;
  failures: number;
}

/**
 * The peers a backend's device holds, kept equal to the desired state's `wireguardPeers` by the reconcile
 * loop: a full run re-reads the device and compares every peer, an incremental one only the keys that
 * changed. Peers on the device the desired state does not name are removed: the device is weft's.
 */
export interface DevicePeers {
  sync(desired: DesiredObjects['wireguardPeers'], keys: ReadonlySet<string> | 'all'): Promise<DevicePeersResult>;
}
