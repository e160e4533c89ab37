/**
 * flannel's wireguard backend: an encrypted overlay. Per address family a WireGuard device (`weft-wg`,
 * `weft-wg-v6`; flanneld names them flannel-wg and flannel-wg-v6) holding the lease's network address as a
 * /32 (/128), one route for the whole network onto it, MTU = the underlay's − 80, and one peer per host:
 * its public key, endpoint `PublicIP:Port`, its subnet as AllowedIPs, the network's PSK and keepalive. With
 * Mode auto, ipv4 or ipv6 one device carries both families (made by the first enabled family's plane; the
 * other plane adds its address and route to it). The lease carries `{"PublicKey","Port"}` per family.
 *
 * The device is kernel WireGuard where the kernel makes one, else wireguard-go on a TUN device, weftd's
 * child (--wireguard-implementation: auto, kernel, userspace). wireguard-go is driven over its UAPI socket,
 * kernel WireGuard with `wg` (see wg-tool.ts).
 */
import type { Family, Prefix } from '../../common/cidr.js';
import { WIREGUARD_OVERHEAD, type WireguardBackendConfig, type WireguardHostOptions } from '../../common/config.js';
import { WeftError } from '../../common/errors.js';
import type { Lease } from '../../common/lease.js';
import type { Backend, BackendContext, BackendDevices, DataPath } from '../backend.js';
import { createCommandRunner } from '../host/command.js';
import { NetlinkError, RT_SCOPE_LINK, type LinkInfo } from '../kernel/index.js';
import { ensureNetworkAddress } from '../overlay-address.js';
import { wireguardDeviceFamily, wireguardListenPort, wireguardPeerObjects } from './desired.js';
import { DEFAULT_WIREGUARD_KEY_FILE, keyToHex, loadOrCreateKeys, type WireguardKeys } from './keys.js';
import { WireguardPeerTable, type WireguardControl } from './peers.js';
import { UapiClient } from './uapi.js';
import { WgToolControl } from './wg-tool.js';
import { WIREGUARD_SOCKET_DIR, WireguardGo } from './wireguard-go.js';

export const DEFAULT_WIREGUARD_HOST_OPTIONS: WireguardHostOptions = {
  implementation: 'auto',
  keyFile: DEFAULT_WIREGUARD_KEY_FILE,
  socketDir: WIREGUARD_SOCKET_DIR,
};

export class WireguardDeviceError extends WeftError {
  constructor(message: string, cause?: unknown) {
    super('WEFT_WIREGUARD_DEVICE', message, { cause });
  }
}

/** Errors that say this kernel will not make a WireGuard device (no module, a sandboxed kernel). */
const KERNEL_UNAVAILABLE = new Set(['EOPNOTSUPP', 'ENOTSUP', 'EPROTONOSUPPORT', 'EAFNOSUPPORT', 'ENOSYS', 'EPERM', 'EACCES', 'EINVAL']);

/** The device name of a family's plane: weft-wg, or weft-wg-v6 for IPv6 with Mode separate. */
export function wireguardDeviceName(family: Family, backend: WireguardBackendConfig): string {
  return backend.mode === 'separate' && family === 6 ? 'weft-wg-v6' : 'weft-wg';
}

/** The lease's BackendData for one family: `{"PublicKey","Port"}` as flanneld writes it. */
export function wireguardBackendData(publicKey: string, backend: WireguardBackendConfig, family: Family): Record<string, unknown> {
  return { PublicKey: publicKey, Port: wireguardListenPort(backend, family) };
}

export class WireguardBackend implements Backend {
  readonly type = 'wireguard' as const;
  readonly flannelPeersAnswerProbes = true;
  readonly mtu: number;
  readonly peerObjects = wireguardPeerObjects;
  readonly deviceName: string;
  readonly devicePeers: WireguardPeerTable | undefined;
  private readonly family: Family;
  /** This plane makes the device (else it adds its family to the one the other plane made). */
  private readonly ownsDevice: boolean;
  private readonly listenPort: number;
  private readonly host: WireguardHostOptions;
  private keys: WireguardKeys | undefined;
  private implementation: 'kernel' | 'userspace' | undefined;
  private reason = 'not decided yet';
  private readonly wireguardGo: WireguardGo;
  private control: WireguardControl | undefined;

  constructor(
    private readonly context: BackendContext,
    private readonly options: WireguardBackendConfig,
  ) {
    const { publicInterface } = context;
    this.family = publicInterface.address.family;
    this.host = context.wireguard ?? DEFAULT_WIREGUARD_HOST_OPTIONS;
    this.mtu = (options.mtu ?? publicInterface.mtu) - WIREGUARD_OVERHEAD;
    this.deviceName = wireguardDeviceName(this.family, options);
    this.ownsDevice = wireguardDeviceFamily(context.config, this.family, options) === this.family;
    this.listenPort = wireguardListenPort(options, this.family);
    this.wireguardGo = new WireguardGo({ device: this.deviceName, socketDir: this.host.socketDir, log: context.log });
    const settings = {
      presharedKeyHex: options.psk === undefined ? undefined : keyToHex(options.psk),
      persistentKeepalive: options.persistentKeepaliveInterval,
    };
    // The device's peers are read and set through whichever control the implementation has, once known.
    const control: WireguardControl = {
      get: () => this.requireControl().get(),
      set: (change) => this.requireControl().set(change),
    };
    this.devicePeers = this.ownsDevice ? new WireguardPeerTable(control, settings, context.log) : undefined;
  }

  get backendData(): Record<string, unknown> | undefined {
    // With one device for both families (modes other than separate) both families' data name its one port.
    return this.keys === undefined ? undefined : wireguardBackendData(this.keys.publicKey, this.options, this.family);
  }

  get dataPath(): DataPath {
    return this.implementation === 'userspace' ? 'userspace' : 'kernel';
  }

  get dataPathReason(): string {
    return this.reason;
  }

  /** Loads (or makes) the key and settles the implementation, making the device to find out whether the kernel can. */
  async prepare(): Promise<void> {
    if (this.keys === undefined) {
      const loaded = await loadOrCreateKeys(this.host.keyFile);
      this.keys = loaded.keys;
      const fields = { file: this.host.keyFile, publicKey: loaded.keys.publicKey };
      if (loaded.created) this.context.log.info(fields, 'made a WireGuard key');
      if ((loaded.mode & 0o077) !== 0)
        this.context.log.warn({ ...fields, mode: loaded.mode.toString(8) }, 'the WireGuard key file is readable by others: chmod 600 it');
    }
    if (this.implementation !== undefined) return;
    if (!this.ownsDevice) {
      await this.adoptOtherPlanesDevice();
      return;
    }
    const { implementation } = this.host;
    const existing = await this.context.kernel.getLink(this.deviceName);
    if (implementation === 'auto' && existing?.kind === 'tun') {
      // an earlier weftd's wireguard-go (weftd was killed): the userspace path again, without disturbing it first
      this.reason = `--wireguard-implementation "auto": ${this.deviceName} is wireguard-go's TUN device from an earlier start, wireguard-go again`;
    } else if (implementation !== 'userspace') {
      try {
        await this.ensureKernelLink();
        this.choose(
          'kernel',
          `--wireguard-implementation "${implementation}"${implementation === 'auto' ? ': kernel WireGuard works' : ''}`,
        );
        return;
      } catch (err) {
        const unavailable = err instanceof NetlinkError && KERNEL_UNAVAILABLE.has(err.errnoName);
        if (unavailable && implementation === 'kernel') {
          throw new WireguardDeviceError(
            `--wireguard-implementation "kernel": kernel WireGuard is unavailable (${err.message}); load the wireguard module (Linux ≥ 5.6) or use --wireguard-implementation=auto or userspace (wireguard-go)`,
            err,
          );
        }
        if (!unavailable) throw err;
        this.reason = `--wireguard-implementation "auto": kernel WireGuard is unavailable (${err.message}), wireguard-go on TUN instead`;
      }
    } else {
      this.reason = '--wireguard-implementation "userspace": wireguard-go on TUN';
    }
    this.choose('userspace', this.reason);
    await this.ensureUserspaceLink();
  }

  async ensureDevices(own: Lease): Promise<BackendDevices> {
    await this.prepare();
    const { kernel } = this.context;
    let link: LinkInfo | null;
    if (!this.ownsDevice) {
      link = await kernel.getLink(this.deviceName);
      if (link === null || !link.up)
        throw new WireguardDeviceError(`${this.deviceName} is not set up yet: the IPv4 plane makes it (Backend.Mode ${this.options.mode})`);
    } else {
      link = this.implementation === 'kernel' ? await this.ensureKernelLink() : await this.ensureUserspaceLink();
      await this.ensureDeviceKeyAndPort();
      link = await this.repairLink(link);
    }
    await ensureNetworkAddress(kernel, link.index, own, this.family);
    const network = this.network();
    await this.ensureNetworkRoute(link.index, network);
    const subnet = this.family === 4 ? own.subnets.ipv4 : own.subnets.ipv6;
    return {
      overlayIndex: link.index,
      routesOnly: true,
      overlayState: { up: true, mtu: this.mtu, mac: link.mac, addresses: subnet === undefined ? [] : [`${subnet.network}/${subnet.bits}`] },
      deviceRoutes: [network.toString()],
    };
  }

  async teardown(): Promise<void> {
    if (!this.ownsDevice) return;
    await this.wireguardGo.stop();
    const link = await this.context.kernel.getLink(this.deviceName);
    if (link !== null) await this.context.kernel.deleteLink(link.index);
  }

  /** wireguard-go stops with weftd, and its TUN device with it; a kernel device stays. */
  async close(): Promise<void> {
    await this.wireguardGo.stop();
  }

  private choose(implementation: 'kernel' | 'userspace', reason: string): void {
    this.implementation = implementation;
    this.reason = reason;
    this.control =
      implementation === 'userspace'
        ? new UapiClient(this.wireguardGo.socketPath)
        : new WgToolControl(this.deviceName, createCommandRunner(), this.host.socketDir);
  }

  private requireControl(): WireguardControl {
    if (this.control === undefined) throw new WireguardDeviceError(`${this.deviceName} is not set up yet`);
    return this.control;
  }

  /** Mode auto/ipv4/ipv6, the IPv6 plane: the IPv4 plane made the device; report what it is. */
  private async adoptOtherPlanesDevice(): Promise<void> {
    const link = await this.context.kernel.getLink(this.deviceName);
    const kind = link?.kind === 'wireguard' ? 'kernel' : 'userspace';
    this.implementation = kind;
    this.reason = `Backend.Mode "${this.options.mode}": IPv6 rides on the IPv4 plane's ${this.deviceName} (${kind === 'kernel' ? 'kernel WireGuard' : 'wireguard-go'})`;
  }

  private network(): Prefix {
    const plan = this.family === 4 ? this.context.config.ipv4 : this.context.config.ipv6;
    if (plan === undefined) throw new WireguardDeviceError(`IPv${this.family} is not enabled in the network config`);
    return plan.network;
  }

  /** Creates the kernel WireGuard device, or adopts the one there; a device of another kind under the name is replaced. */
  private async ensureKernelLink(): Promise<LinkInfo> {
    const { kernel, log } = this.context;
    const link = await kernel.getLink(this.deviceName);
    if (link !== null && link.kind === 'wireguard') return link;
    if (link !== null) {
      log.warn({ device: this.deviceName, kind: link.kind }, "a device of another kind has the WireGuard device's name; replacing it");
      await kernel.deleteLink(link.index);
    }
    const created = await kernel.createLink({ name: this.deviceName, kind: 'wireguard', mtu: this.mtu, up: false });
    log.info({ device: this.deviceName, mtu: this.mtu }, 'created the kernel WireGuard device');
    return created;
  }

  /** Starts wireguard-go unless it runs (it makes the TUN device) and waits for the device. */
  private async ensureUserspaceLink(): Promise<LinkInfo> {
    const { kernel } = this.context;
    if (!this.wireguardGo.running) {
      // an orphaned wireguard-go (weftd was killed) exits when its socket goes, and takes its device along
      if (this.wireguardGo.dismissOrphan()) {
        for (let attempt = 0; attempt < 120 && (await kernel.getLink(this.deviceName)) !== null; attempt++)
          await new Promise((done) => setTimeout(done, 25));
      }
      const stale = await kernel.getLink(this.deviceName);
      if (stale !== null) {
        this.context.log.warn(
          { device: this.deviceName, kind: stale.kind },
          "a device weftd does not supervise has the WireGuard device's name; replacing it",
        );
        await kernel.deleteLink(stale.index);
      }
      await this.wireguardGo.start();
    }
    for (let attempt = 0; attempt < 200; attempt++) {
      const link = await kernel.getLink(this.deviceName);
      if (link !== null) return link;
      await new Promise((done) => setTimeout(done, 25));
    }
    throw new WireguardDeviceError(`wireguard-go runs but ${this.deviceName} did not appear`);
  }

  /** The device's private key and listen port: ours (set again after a key rotation or a change by hand). */
  private async ensureDeviceKeyAndPort(): Promise<void> {
    const control = this.requireControl();
    const state = await control.get();
    const keys = this.keys!;
    if (state.publicKey === keys.publicKey && state.listenPort === this.listenPort) return;
    await control.set({ privateKeyHex: keys.privateKeyHex(), listenPort: this.listenPort, peers: [] });
    this.context.log.info(
      { device: this.deviceName, publicKey: keys.publicKey, listenPort: this.listenPort },
      'configured the WireGuard device',
    );
  }

  private async repairLink(link: LinkInfo): Promise<LinkInfo> {
    const changes: { mtu?: number; up?: boolean } = {};
    if (link.mtu !== this.mtu) changes.mtu = this.mtu;
    if (!link.up) changes.up = true;
    if (Object.keys(changes).length === 0) return link;
    await this.context.kernel.setLink(link.index, changes);
    return { ...link, ...changes, up: true };
  }

  /** flanneld's route for the whole network onto the device, scope link. */
  private async ensureNetworkRoute(index: number, network: Prefix): Promise<void> {
    const { kernel } = this.context;
    const dst = network.toString();
    const routes = await kernel.listRoutes({ family: this.family, ifindex: index });
    if (routes.some((route) => route.dst === dst && route.gateway === null && route.scope === RT_SCOPE_LINK)) return;
    await kernel.replaceRoute({ dst, ifindex: index, scope: RT_SCOPE_LINK });
  }
}
