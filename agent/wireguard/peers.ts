import type { DesiredObjects, WireguardPeerSpec } from '../../common/dataplane.js';
import type { DevicePeers, DevicePeersResult } from '../backend.js';
import type { Logger } from '../log.js';
import type { DeviceChange, DevicePeer, DeviceState, PeerChange } from './uapi.js';

/** Reads and changes a WireGuard device: over the UAPI socket (wireguard-go) or with `wg` (kernel WireGuard). */
export interface WireguardControl {
  get(): Promise<DeviceState>;
  set(change: DeviceChange): Promise<void>;
}

/** What every peer gets besides its own key, endpoint and subnets. */
export interface PeerSettings {
  /** hex; undefined: none */
  presharedKeyHex: string | undefined;
  persistentKeepalive: number;
}

/** The device's peer as weft keeps it between full runs: what the device said, then what weft set. */
interface KnownPeer {
  endpoint: string | undefined;
  allowedIPs: readonly string[];
  presharedKeyHex: string | undefined;
  persistentKeepalive: number;
}

function known(peer: DevicePeer): KnownPeer {
  return {
    endpoint: peer.endpoint,
    allowedIPs: peer.allowedIPs,
    presharedKeyHex: peer.presharedKeyHex,
    persistentKeepalive: peer.persistentKeepalive,
  };
}

/** Endpoints as the device writes them: an IPv6 address in brackets, lower case. */
function sameEndpoint(a: string | undefined, b: string): boolean {
  return a !== undefined && a.toLowerCase() === b.toLowerCase();
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((value, i) => value === b[i]);
}

/**
 * The peers of weft's WireGuard device kept equal to the desired state. A full run reads the device and
 * sends every difference in one set (changed peers only: a peer set again keeps its session); an
 * incremental run sends only the keys it is given, against what the last run left. A failed set makes
 * the next run read the device again. Every peer on the device is weft's: the device is.
 */
export class WireguardPeerTable implements DevicePeers {
  private view: Map<string, KnownPeer> | undefined;

  constructor(
    private readonly control: WireguardControl,
    private readonly settings: PeerSettings,
    private readonly log: Logger,
  ) {}

  async sync(desired: DesiredObjects['wireguardPeers'], keys: ReadonlySet<string> | 'all'): Promise<DevicePeersResult> {
    let view = this.view;
    let scope: Iterable<string> = keys === 'all' ? [] : keys;
    if (keys === 'all' || view === undefined) {
      this.view = undefined;
      const state = await this.control.get();
      view = new Map([...state.peers].map(([key, peer]) => [key, known(peer)]));
      scope = new Set([...desired.keys(), ...view.keys()]);
    }
    const changes: PeerChange[] = [];
    const after = new Map<string, KnownPeer | undefined>();
    for (const key of scope) {
      const want = desired.get(key);
      const have = view.get(key);
      if (want === undefined) {
        if (have === undefined) continue;
        changes.push({ kind: 'remove', publicKey: key });
        after.set(key, undefined);
      } else if (have === undefined || this.differs(have, want)) {
        const change: PeerChange = {
          kind: 'set',
          publicKey: key,
          endpoint: want.endpoint,
          allowedIPs: [...want.allowedIPs].sort(),
          ...this.settings,
        };
        changes.push(change);
        after.set(key, {
          endpoint: want.endpoint,
          allowedIPs: change.allowedIPs,
          presharedKeyHex: this.settings.presharedKeyHex,
          persistentKeepalive: this.settings.persistentKeepalive,
        });
      }
    }
    if (changes.length === 0) {
      this.view = view;
      return { operations: 0, failures: 0 };
    }
    try {
      await this.control.set({ peers: changes });
    } catch (err) {
      this.log.warn({ err, peers: changes.length }, 'could not configure the WireGuard peers; will retry');
      return { operations: changes.length, failures: changes.length };
    }
    for (const [key, peer] of after) {
      if (peer === undefined) view.delete(key);
      else view.set(key, peer);
    }
    this.view = view;
    if (this.log.isLevelEnabled('debug')) {
      this.log.debug(
        {
          set: changes.filter((c) => c.kind === 'set').map((c) => c.publicKey),
          removed: changes.filter((c) => c.kind === 'remove').map((c) => c.publicKey),
        },
        'configured WireGuard peers',
      );
    }
    return { operations: changes.length, failures: 0 };
  }

  private differs(have: KnownPeer, want: WireguardPeerSpec): boolean {
    return (
      !sameEndpoint(have.endpoint, want.endpoint) ||
      !sameList(have.allowedIPs, [...want.allowedIPs].sort()) ||
      have.presharedKeyHex !== this.settings.presharedKeyHex ||
      have.persistentKeepalive !== this.settings.persistentKeepalive
    );
  }
}
