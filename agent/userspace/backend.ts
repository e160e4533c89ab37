/**
 * A backend whose packets weft moves itself (the userspace path, docs/userspace.md): the overlay device is the
 * near end of a veth pair, the reconcile loop routes remote subnets onto it (routes only: no neighbour or
 * FDB entries), and a worker process carries the traffic (worker.ts): it captures what the kernel routed
 * into the pair and sends it to the peers, and takes the peers' datagrams and hands the inner packets back
 * to the kernel. Used by the vxlan backend when kernel VXLAN is unavailable or not wanted (VXLAN on the
 * wire, so kernel-VXLAN peers need not know) and by the udp backend (flannel's udp format).
 */
import type { BackendType } from '../../common/config.js';
import { WeftError } from '../../common/errors.js';
import type { PeerObjects } from '../../common/dataplane.js';
import type { Lease } from '../../common/lease.js';
import type { Backend, BackendContext, BackendDevices } from '../backend.js';
import type { UserspaceCounters, UserspacePath } from './path.js';
import { ensureNetworkAddress } from '../overlay-address.js';
import { ensureCapturePair, setFeatures } from '../kernel/index.js';
import { OVERLAY_FEATURES, OVERLAY_GSO_MAX_SIZE } from './overlay-device.js';
import type { Encapsulation, WireNet, WirePeer } from './protocol.js';
import { DataPathWorker } from './supervisor.js';

export interface UserspaceBackendOptions {
  type: Extract<BackendType, 'vxlan' | 'udp'>;
  /** The overlay device (near end of the veth pair). */
  deviceName: string;
  /** The capture device (far end). */
  captureName: string;
  port: number;
  mtu: number;
  /** MAC of the overlay device: the VtepMAC for VXLAN. */
  mac: string;
  encapsulation: Encapsulation;
  backendData: Record<string, unknown> | undefined;
  /** the backend's objects for a peer (routes only: the path takes no neighbours or FDB entries) */
  peerObjects: PeerObjects;
  /** SO_SNDBUF / SO_RCVBUF of the data-path sockets (default 4 MiB). */
  socketBufferBytes?: number;
  /** libpcap's ring buffer (default 32 MiB: libpcap gives every frame a 64 KiB slot, TSO frames need them). */
  captureBufferBytes?: number;
}

/** An IPv6 data plane was asked of the userspace path, which forwards IPv4 only. */
export class UserspaceIpv4OnlyError extends WeftError {
  constructor(message: string) {
    super('WEFT_USERSPACE_IPV4_ONLY', message);
  }
}

function wireNet(lease: Lease): WireNet | null {
  const subnet = lease.subnets.ipv4;
  return subnet === undefined ? null : { network: Number(subnet.base), length: subnet.length };
}

export class UserspaceBackend implements Backend, UserspacePath {
  readonly type: UserspaceBackendOptions['type'];
  readonly flannelPeersAnswerProbes = true;
  readonly dataPath = 'userspace' as const;
  dataPathReason: string | undefined = undefined;
  readonly backendData: Record<string, unknown> | undefined;
  readonly mtu: number;
  readonly peerObjects: PeerObjects;
  readonly deviceName: string;
  readonly userspace: UserspacePath = this;
  private readonly worker: DataPathWorker;
  /** The overlay device whose features were set last. */
  private featuresSetOn: number | undefined;
  private sentPeers = '';

  constructor(
    private readonly context: BackendContext,
    private readonly options: UserspaceBackendOptions,
  ) {
    if (context.publicInterface.address.family !== 4) {
      throw new UserspaceIpv4OnlyError(
        `the userspace data path carries IPv4 only: the IPv6 overlay (EnableIPv6) needs ${options.type === 'udp' ? 'the vxlan backend with ' : ''}kernel VXLAN ` +
          `on this host${options.type === 'vxlan' ? ' (Backend.Userspace "never", or --vxlan-userspace=never)' : ''}`,
      );
    }
    this.type = options.type;
    this.backendData = options.backendData;
    this.mtu = options.mtu;
    this.peerObjects = options.peerObjects;
    this.deviceName = options.deviceName;
    const config = {
      encapsulation: options.encapsulation,
      localAddress: context.publicInterface.publicAddress.toString(),
      port: options.port,
      captureDevice: options.captureName,
      overlayMac: options.mac,
      mtu: options.mtu,
      socketBufferBytes: options.socketBufferBytes ?? 4 * 1024 * 1024,
      captureBufferBytes: options.captureBufferBytes ?? 32 * 1024 * 1024,
    };
    this.worker = new DataPathWorker(config, context.log);
  }

  async ensureDevices(own: Lease): Promise<BackendDevices> {
    const { kernel, log } = this.context;
    const { near, created } = await ensureCapturePair(kernel, {
      name: this.options.deviceName,
      peerName: this.options.captureName,
      mtu: this.mtu,
      mac: this.options.mac,
      gsoMaxSize: OVERLAY_GSO_MAX_SIZE,
    });
    if (created)
      log.info(
        { device: this.deviceName, capture: this.options.captureName, mtu: this.mtu, mac: this.options.mac },
        'created the overlay veth pair',
      );
    if (created || this.featuresSetOn !== near.index) {
      const unset = await setFeatures(near.index, OVERLAY_FEATURES);
      if (unset.length > 0)
        log.warn(
          { device: this.deviceName, features: unset },
          'some offload settings did not take; frames the transmit worker cannot split are dropped (oversize)',
        );
      this.featuresSetOn = near.index;
    }
    await ensureNetworkAddress(kernel, near.index, own);
    // A new capture device means the running capture is on a device that is gone.
    if (created && this.worker.isRunning) await this.worker.restart();
    await this.worker.ensureRunning();
    const subnet = own.subnets.ipv4;
    const addresses = subnet === undefined ? [] : [`${subnet.network}/32`];
    return { overlayIndex: near.index, routesOnly: true, overlayState: { up: true, mtu: this.mtu, mac: this.options.mac, addresses } };
  }

  updatePeers(own: Lease, peers: readonly Lease[]): void {
    const wire: WirePeer[] = [];
    for (const peer of peers) {
      const subnet = peer.subnets.ipv4;
      const publicIP = peer.attrs.publicIP;
      if (subnet === undefined || publicIP === undefined) continue;
      const entry: WirePeer = {
        name: peer.name,
        publicIP: publicIP.toString(),
        subnet: { network: Number(subnet.base), length: subnet.length },
      };
      if (this.options.encapsulation.kind === 'vxlan') {
        const mac = peer.attrs.backendData?.VtepMAC;
        if (typeof mac !== 'string') continue;
        entry.vtepMac = mac.toLowerCase();
      }
      wire.push(entry);
    }
    const own4 = wireNet(own);
    const text = JSON.stringify([own4, wire]);
    if (text === this.sentPeers) return;
    this.sentPeers = text;
    this.worker.setPeers(own4, wire);
  }

  async counters(): Promise<UserspaceCounters> {
    const { tx, rx } = await this.worker.counters();
    return { tx, rx, restarts: this.worker.restarts };
  }

  async close(): Promise<void> {
    await this.worker.close();
  }

  async teardown(): Promise<void> {
    await this.close();
    const link = await this.context.kernel.getLink(this.deviceName);
    if (link !== null) await this.context.kernel.deleteLink(link.index);
  }
}
