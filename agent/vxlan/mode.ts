/**
 * The vxlan backend's two data paths and the choice between them (Backend.Userspace, or weftd's
 * --vxlan-userspace for one host): "never" is kernel VXLAN, "always" the userspace path, "auto" (default)
 * kernel VXLAN when the device can be created and the userspace path otherwise. Both publish the same
 * lease (BackendType vxlan, the same stable VtepMAC) and use the same MTU, so peers cannot tell them apart.
 */
import { captureDeviceName, type UserspaceMode, type VxlanBackendConfig } from '../../common/config.js';
import { stableVtepMac } from '../../common/dataplane.js';
import type { Lease } from '../../common/lease.js';
import type { Backend, BackendContext, BackendDevices, DataPath } from '../backend.js';
import type { UserspacePath } from '../userspace/path.js';
import { NetlinkError } from '../kernel/index.js';
import { UserspaceBackend, UserspaceIpv4OnlyError } from '../userspace/backend.js';
import { vxlanPeerObjects } from './desired.js';
import { VxlanBackend } from './vxlan.js';

/** Errors that say this kernel will not make a VXLAN device here (no module, a locked-down or sandboxed kernel). */
const UNAVAILABLE = new Set(['EOPNOTSUPP', 'ENOTSUP', 'EPROTONOSUPPORT', 'EAFNOSUPPORT', 'ENOSYS', 'EPERM', 'EACCES', 'EINVAL']);

/** Whether `err`, from creating the VXLAN device, means kernel VXLAN is unavailable (rather than, say, a clash). */
export function kernelVxlanUnavailable(err: unknown): err is NetlinkError {
  return err instanceof NetlinkError && UNAVAILABLE.has(err.errnoName);
}

/** The userspace path speaking VXLAN: overlay veth `weft.<VNI>`, capture end `weft.<VNI>.c`. */
export function userspaceVxlanBackend(context: BackendContext, options: VxlanBackendConfig): UserspaceBackend {
  const kernel = new VxlanBackend(context, options);
  const mac = stableVtepMac(context.publicInterface.publicAddress, options.vni);
  return new UserspaceBackend(context, {
    type: 'vxlan',
    deviceName: kernel.deviceName,
    captureName: captureDeviceName(kernel.deviceName),
    port: options.port,
    mtu: kernel.mtu,
    mac,
    encapsulation: { kind: 'vxlan', vni: options.vni, localMac: mac },
    backendData: kernel.backendData,
    peerObjects: vxlanPeerObjects,
  });
}

/**
 * Userspace "auto": decides on the first prepare() (the daemon calls it before it asks for a lease) by
 * creating the kernel VXLAN device; if the kernel refuses, the userspace path takes over for good.
 */
export class AutoVxlanBackend implements Backend {
  readonly type = 'vxlan' as const;
  readonly flannelPeersAnswerProbes = true;
  readonly peerObjects = vxlanPeerObjects;
  readonly backendData: Record<string, unknown>;
  readonly mtu: number;
  private readonly kernel: VxlanBackend;
  private chosen: Backend | undefined;
  private reason = 'not decided yet';

  constructor(
    private readonly context: BackendContext,
    private readonly options: VxlanBackendConfig,
  ) {
    this.kernel = new VxlanBackend(context, options);
    this.backendData = this.kernel.backendData;
    this.mtu = this.kernel.mtu;
  }

  get dataPath(): DataPath {
    return this.chosen?.dataPath ?? 'kernel';
  }

  get dataPathReason(): string {
    return this.reason;
  }

  async prepare(): Promise<void> {
    if (this.chosen !== undefined) return;
    try {
      await this.kernel.ensureLink();
      this.chosen = this.kernel;
      this.reason = 'Userspace "auto": kernel VXLAN works';
    } catch (err) {
      if (!kernelVxlanUnavailable(err)) throw err;
      const reason = `kernel VXLAN is unavailable (${err.message})`;
      try {
        this.chosen = userspaceVxlanBackend(this.context, this.options);
      } catch (fallback) {
        if (fallback instanceof UserspaceIpv4OnlyError) throw new UserspaceIpv4OnlyError(`${reason}, and ${fallback.message}`);
        throw fallback;
      }
      this.reason = `Userspace "auto": ${reason}`;
    }
  }

  async ensureDevices(own: Lease): Promise<BackendDevices> {
    await this.prepare();
    return this.chosen!.ensureDevices(own);
  }

  get userspace(): UserspacePath | undefined {
    return this.chosen?.userspace;
  }

  async close(): Promise<void> {
    await this.chosen?.close?.();
  }

  async teardown(): Promise<void> {
    await (this.chosen ?? this.kernel).teardown();
  }
}

/** The vxlan backend for `mode` (the host's --vxlan-userspace, else the config's Backend.Userspace). */
export function createVxlanBackend(context: BackendContext, options: VxlanBackendConfig, mode: UserspaceMode, source: string): Backend {
  switch (mode) {
    case 'never': {
      const backend = new VxlanBackend(context, options);
      backend.dataPathReason = `${source} "never"`;
      return backend;
    }
    case 'always': {
      const backend = userspaceVxlanBackend(context, options);
      backend.dataPathReason = `${source} "always"`;
      return backend;
    }
    case 'auto':
      return new AutoVxlanBackend(context, options);
  }
}
