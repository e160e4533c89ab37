/**
 * Scenarios for wireguard.test.ts, run inside a throw-away namespace (test/netns.ts) against a real
 * wireguard-go: the UAPI client, `wg` (the kernel fallback's control) and the peer table, and the backend's
 * device set-up.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IpAddress, Prefix } from '../../common/cidr.js';
import { parseNetworkConfig, type WireguardBackendConfig } from '../../common/config.js';
import type { WireguardPeerSpec } from '../../common/dataplane.js';
import { decodeLease } from '../../common/lease.js';
import { createCommandRunner } from '../host/command.js';
import type { PublicInterface } from '../host/interfaces.js';
import { openKernel } from '../kernel/index.js';
import { createLogger } from '../log.js';
import { keyToHex, WireguardKeys } from './keys.js';
import { WireguardPeerTable, type WireguardControl } from './peers.js';
import { UapiClient, type DeviceState } from './uapi.js';
import { WgToolControl } from './wg-tool.js';
import { WireguardBackend } from './wireguard.js';
import { WireguardGo } from './wireguard-go.js';

/** A DeviceState as JSON can carry it. */
export interface SeenDevice {
  publicKey: string | undefined;
  listenPort: number;
  peers: Record<string, { endpoint: string | undefined; allowedIPs: string[]; psk: boolean; keepalive: number }>;
}

function seen(state: DeviceState): SeenDevice {
  const peers: SeenDevice['peers'] = {};
  for (const [key, peer] of state.peers) {
    peers[key] = {
      endpoint: peer.endpoint,
      allowedIPs: peer.allowedIPs,
      psk: peer.presharedKeyHex !== undefined,
      keepalive: peer.persistentKeepalive,
    };
  }
  return { publicKey: state.publicKey, listenPort: state.listenPort, peers };
}

export interface ControlRun {
  ownPublicKey: string;
  /** after setting the key, the port and two peers (over the UAPI) */
  viaUapi: SeenDevice;
  /** the same device read with `wg show dump` */
  viaWg: SeenDevice;
  /** after `wg` changed one peer and removed the other, read over the UAPI */
  afterWg: SeenDevice;
  /** after wg set the device's key and port */
  wgDevice: { keyMatches: boolean; listenPort: number; peers: number };
  /** the peer table's full sync after a peer was removed and another changed by hand */
  repair: { operations: number; failures: number; device: SeenDevice };
  /** an incremental sync of one key only */
  incremental: { operations: number; device: SeenDevice };
  /** a sync with nothing to do */
  idle: { operations: number };
  /** the socket sits in the directory given, not in /var/run/wireguard */
  socketPath: string;
}

/** Drives one wireguard-go with both controls and the peer table. */
export async function controls(arg: { peers: string[]; psk: string }): Promise<ControlRun> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-wg-'));
  const log = createLogger('silent');
  const go = new WireguardGo({ device: 'wgt0', socketDir: dir, log });
  try {
    await go.start();
    const own = WireguardKeys.generate();
    const uapi = new UapiClient(go.socketPath);
    const [a, b, c] = arg.peers as [string, string, string];
    await uapi.set({
      privateKeyHex: own.privateKeyHex(),
      listenPort: 51820,
      peers: [
        {
          kind: 'set',
          publicKey: a,
          endpoint: '192.0.2.12:51820',
          allowedIPs: ['198.18.2.0/24'],
          presharedKeyHex: keyToHex(arg.psk),
          persistentKeepalive: 25,
        },
        {
          kind: 'set',
          publicKey: b,
          endpoint: '[2001:db8:0:1::13]:51821',
          allowedIPs: ['198.18.3.0/24', '2001:db8:100:3::/64'],
          presharedKeyHex: undefined,
          persistentKeepalive: 0,
        },
      ],
    });
    const viaUapi = seen(await uapi.get());
    const wg = new WgToolControl('wgt0', createCommandRunner(), dir);
    const viaWg = seen(await wg.get());
    await wg.set({
      peers: [
        { kind: 'remove', publicKey: b },
        {
          kind: 'set',
          publicKey: a,
          endpoint: '192.0.2.99:4000',
          allowedIPs: ['198.18.9.0/24'],
          presharedKeyHex: undefined,
          persistentKeepalive: 0,
        },
        {
          kind: 'set',
          publicKey: c,
          endpoint: '192.0.2.14:51820',
          allowedIPs: ['198.18.4.0/24'],
          presharedKeyHex: keyToHex(arg.psk),
          persistentKeepalive: 5,
        },
      ],
    });
    const afterWg = seen(await uapi.get());
    // the device's own key and port through wg (the private key on stdin)
    const rekeyed = WireguardKeys.generate();
    await wg.set({ privateKeyHex: rekeyed.privateKeyHex(), listenPort: 4000, peers: [] });
    const device = await uapi.get();
    const wgDevice = { keyMatches: device.publicKey === rekeyed.publicKey, listenPort: device.listenPort, peers: device.peers.size };

    const control: WireguardControl = uapi;
    const table = new WireguardPeerTable(control, { presharedKeyHex: keyToHex(arg.psk), persistentKeepalive: 25 }, log);
    const desired = new Map<string, WireguardPeerSpec>([
      [a, { publicKey: a, endpoint: '192.0.2.12:51820', allowedIPs: ['198.18.2.0/24'] }],
      [b, { publicKey: b, endpoint: '[2001:db8:0:1::13]:51821', allowedIPs: ['2001:db8:100:3::/64', '198.18.3.0/24'] }],
    ]);
    const full = await table.sync(desired, 'all');
    const repair = { ...full, device: seen(await uapi.get()) };
    desired.set(b, { publicKey: b, endpoint: '[2001:db8:0:1::13]:4001', allowedIPs: ['198.18.3.0/24'] });
    desired.delete(a);
    const changed = await table.sync(desired, new Set([b]));
    const incremental = { operations: changed.operations, device: seen(await uapi.get()) };
    const idle = await table.sync(desired, 'all');
    return {
      ownPublicKey: own.publicKey,
      viaUapi,
      viaWg,
      afterWg,
      wgDevice,
      repair,
      incremental,
      idle: { operations: idle.operations },
      socketPath: go.socketPath,
    };
  } finally {
    await go.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface DeviceRun {
  kind: string | null;
  mtu: number;
  up: boolean;
  addresses: string;
  routes: string;
  listenPort: number;
  publicKeyMatches: boolean;
  dataPath: string;
  reason: string;
  /** after the route and address were deleted by hand, a second ensureDevices */
  repaired: { addresses: string; routes: string };
  /** whether the device is still there after close() (wireguard-go takes its TUN device with it) */
  linkAfterClose: boolean;
}

/** The backend's device in a namespace with an underlay veth: wireguard-go, address, route, MTU, key. */
export async function device(arg: {
  keyFile: string;
  socketDir: string;
  implementation: 'auto' | 'kernel' | 'userspace';
}): Promise<DeviceRun> {
  execFileSync('ip', ['link', 'add', 'eth1', 'mtu', '1500', 'type', 'veth', 'peer', 'name', 'eth1p']);
  execFileSync('ip', ['addr', 'add', '192.0.2.11/24', 'dev', 'eth1']);
  execFileSync('ip', ['link', 'set', 'eth1', 'up']);
  const address = IpAddress.parse('192.0.2.11');
  const entry = { address, prefix: Prefix.parse('192.0.2.0/24'), publicAddress: address };
  const publicInterface: PublicInterface = { name: 'eth1', index: 0, mtu: 1500, mac: undefined, ...entry, ipv4: entry, ipv6: undefined };
  const config = parseNetworkConfig('{"Network":"198.18.0.0/16","Backend":{"Type":"wireguard","ListenPort":4500}}');
  const kernel = openKernel();
  const backend = new WireguardBackend(
    {
      kernel,
      log: createLogger('silent'),
      config,
      publicInterface,
      wireguard: { implementation: arg.implementation, keyFile: arg.keyFile, socketDir: arg.socketDir },
    },
    config.backend as WireguardBackendConfig,
  );
  try {
    await backend.prepare();
    const own = decodeLease(
      '198.18.5.0-24',
      JSON.stringify({ PublicIP: '192.0.2.11', BackendType: 'wireguard', BackendData: backend.backendData }),
      false,
    );
    const devices = await backend.ensureDevices(own);
    const link = (await kernel.getLink('weft-wg'))!;
    const ip = (args: string[]): string => execFileSync('ip', args, { encoding: 'utf8' });
    const state = await new UapiClient(join(arg.socketDir, 'weft-wg.sock')).get();
    const result = {
      kind: link.kind,
      mtu: link.mtu,
      up: link.up,
      addresses: ip(['-4', 'addr', 'show', 'dev', 'weft-wg']),
      routes: ip(['route', 'show', 'dev', 'weft-wg']),
      listenPort: state.listenPort,
      publicKeyMatches: state.publicKey === backend.backendData?.PublicKey && devices.overlayIndex === link.index,
      dataPath: backend.dataPath,
      reason: backend.dataPathReason,
    };
    ip(['route', 'del', '198.18.0.0/16', 'dev', 'weft-wg']);
    ip(['addr', 'flush', 'dev', 'weft-wg']);
    await backend.ensureDevices(own);
    const repaired = { addresses: ip(['-4', 'addr', 'show', 'dev', 'weft-wg']), routes: ip(['route', 'show', 'dev', 'weft-wg']) };
    await backend.close();
    await new Promise((done) => setTimeout(done, 200));
    return { ...result, repaired, linkAfterClose: (await kernel.getLink('weft-wg')) !== null };
  } finally {
    await backend.close();
    await kernel.close();
  }
}
