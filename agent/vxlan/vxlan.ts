import type { Family } from '../../common/cidr.js';
import { vxlanDeviceName, type VxlanBackendConfig } from '../../common/config.js';
import { stableVtepMac, vxlanOverhead } from '../../common/dataplane.js';
import { WeftError } from '../../common/errors.js';
import type { Lease } from '../../common/lease.js';
import { isNetlinkErrno, vxlanMismatches, type LinkInfo, type VxlanSpec } from '../kernel/index.js';
import { ensureNetworkAddress } from '../overlay-address.js';
import type { Backend, BackendContext, BackendDevices } from '../backend.js';
import { vxlanPeerObjects } from './desired.js';

export class VxlanDeviceError extends WeftError {
  constructor(message: string, cause?: unknown) {
    super('WEFT_VXLAN_DEVICE', message, { cause });
  }
}

/**
 * Kernel VXLAN, as flannel sets it up: one device per VNI bound to the public interface, learning off,
 * the lease's network address (.0) as a /32, and a VtepMAC that survives restarts and reboots.
 */
export class VxlanBackend implements Backend {
  readonly type = 'vxlan' as const;
  readonly flannelPeersAnswerProbes = true;
  readonly dataPath = 'kernel' as const;
  dataPathReason: string | undefined = undefined;
  readonly backendData: Record<string, unknown>;
  readonly mtu: number;
  readonly peerObjects = vxlanPeerObjects;
  readonly deviceName: string;
  private readonly family: Family;
  /** The device as this backend creates it (weftctl doctor compares the kernel's with it). */
  readonly spec: VxlanSpec;

  constructor(
    private readonly context: BackendContext,
    options: VxlanBackendConfig,
  ) {
    const { publicInterface } = context;
    const mac = stableVtepMac(publicInterface.publicAddress, options.vni);
    this.mtu = (options.mtu ?? publicInterface.mtu) - vxlanOverhead(publicInterface.address.family);
    this.family = publicInterface.address.family;
    // flannel names them flannel.<VNI> and flannel-v6.<VNI>.
    this.deviceName = vxlanDeviceName(this.family, options.vni);
    this.spec = {
      name: this.deviceName,
      vni: options.vni,
      port: options.port,
      local: publicInterface.address.toString(),
      parentIndex: publicInterface.index,
      learning: options.learning,
      gbp: options.gbp,
      mtu: this.mtu,
      mac,
      up: true,
    };
    this.backendData = { VNI: options.vni, VtepMAC: mac };
  }

  async ensureDevices(own: Lease): Promise<BackendDevices> {
    const link = await this.ensureLink();
    await ensureNetworkAddress(this.context.kernel, link.index, own, this.family);
    const subnet = this.family === 4 ? own.subnets.ipv4 : own.subnets.ipv6;
    const addresses = subnet === undefined ? [] : [`${subnet.network}/${subnet.bits}`];
    return { overlayIndex: link.index, overlayState: { up: true, mtu: this.mtu, mac: this.spec.mac!, addresses } };
  }

  /** Creates, repairs or adopts the VXLAN device (everything but the lease's address). */
  async ensureLink(): Promise<LinkInfo> {
    const { kernel, log } = this.context;
    let link = await kernel.getLink(this.deviceName);
    if (link !== null) {
      const wrong = vxlanMismatches(link, this.spec).filter((name) => name !== 'mtu' && name !== 'mac');
      if (wrong.length > 0) {
        log.warn({ device: this.deviceName, differs: wrong }, 'the VXLAN device does not match the config; recreating it');
        await kernel.deleteLink(link.index);
        link = null;
      }
    }
    return link === null ? await this.create() : await this.repair(link);
  }

  async teardown(): Promise<void> {
    const link = await this.context.kernel.getLink(this.deviceName);
    if (link !== null) await this.context.kernel.deleteLink(link.index);
  }

  private async create(): Promise<LinkInfo> {
    try {
      const link = await this.context.kernel.createVxlan(this.spec);
      this.context.log.info({ device: this.deviceName, vni: this.spec.vni, mac: this.spec.mac, mtu: this.mtu }, 'created the VXLAN device');
      return link;
    } catch (err) {
      if (isNetlinkErrno(err, 'EEXIST')) {
        const flannel = `${this.family === 4 ? 'flannel' : 'flannel-v6'}.${this.spec.vni}`;
        throw new VxlanDeviceError(
          `cannot create ${this.deviceName}: another device already uses VNI ${this.spec.vni} on port ${this.spec.port} ` +
            `(a ${flannel} left by flanneld? delete it with: ip link del ${flannel})`,
          err,
        );
      }
      throw err;
    }
  }

  private async repair(link: LinkInfo): Promise<LinkInfo> {
    const changes: { mtu?: number; mac?: string; up?: boolean } = {};
    if (link.mtu !== this.mtu) changes.mtu = this.mtu;
    if (link.mac !== this.spec.mac) changes.mac = this.spec.mac!;
    if (!link.up) changes.up = true;
    if (Object.keys(changes).length === 0) return link;
    this.context.log.info({ device: this.deviceName, changes }, 'repairing the VXLAN device');
    await this.context.kernel.setLink(link.index, changes);
    return { ...link, ...changes, up: true };
  }
}
