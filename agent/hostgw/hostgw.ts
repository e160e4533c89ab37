import type { Backend, BackendContext, BackendDevices } from '../backend.js';

/**
 * host-gw: no device of its own; every peer's subnet is routed via the peer's public IP on the public
 * interface, which needs the hosts to share a link (common/dataplane.ts refuses the others).
 */
export class HostGwBackend implements Backend {
  readonly type = 'host-gw' as const;
  readonly dataPath = 'kernel' as const;
  readonly backendData = undefined;
  readonly mtu: number;

  constructor(context: BackendContext) {
    this.mtu = context.publicInterface.mtu;
  }

  async ensureDevices(): Promise<BackendDevices> {
    return { overlayIndex: undefined };
  }

  async teardown(): Promise<void> {}
}
