import type { BackendType, NetworkConfig } from '../common/config.js';
import type { Lease } from '../common/lease.js';
import type { PublicInterface } from './host/interfaces.js';
import type { Kernel } from './kernel/index.js';
import type { Logger } from './log.js';

export interface BackendContext {
  kernel: Kernel;
  log: Logger;
  config: NetworkConfig;
  publicInterface: PublicInterface;
}

/** The devices a reconcile run programs peers onto. */
export interface BackendDevices {
  /** The overlay device (VXLAN); undefined for backends that route over the public interface only. */
  overlayIndex: number | undefined;
}

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
  /** Creates, repairs or adopts the backend's devices for our lease. Idempotent; runs on every reconcile. */
  ensureDevices(own: Lease): Promise<BackendDevices>;
  /** Removes the devices this backend created (on --release-on-exit). */
  teardown(): Promise<void>;
}
