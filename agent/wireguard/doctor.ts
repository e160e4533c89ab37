/**
 * `weftctl doctor` for the WireGuard plane of one family: the device (kind, MTU, up, address, the route for
 * the network), its key and listen port against the key file and the lease, its peers against the leases
 * (as the reconcile loop would program them), and the key file's mode. Nothing here shows a private key.
 */
import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Family } from '../../common/cidr.js';
import { WIREGUARD_OVERHEAD, type NetworkConfig, type WireguardBackendConfig, type WireguardHostOptions } from '../../common/config.js';
import { DesiredState } from '../../common/dataplane.js';
import { wireguardDeviceFamily, wireguardListenPort, wireguardPeerObjects } from './desired.js';
import type { Lease } from '../../common/lease.js';
import type { PublicInterface } from '../host/interfaces.js';
import { createCommandRunner, type CommandRunner } from '../host/command.js';
import { RT_SCOPE_LINK, type Kernel, type LinkInfo } from '../kernel/index.js';
import { keyToHex, loadOrCreateKeys } from './keys.js';
import { UapiClient, type DeviceState } from './uapi.js';
import { WgToolControl } from './wg-tool.js';
import { DEFAULT_WIREGUARD_HOST_OPTIONS, WireguardBackend, wireguardDeviceName } from './wireguard.js';
import { HEALS_ON_RESYNC, RESTART, type DeviceCheck, type DeviceCheckInput } from '../doctor-check.js';
import { createLogger } from '../log.js';

export interface WireguardFinding {
  check: string;
  severity: 'ok' | 'warn' | 'fail' | 'skip';
  message: string;
  fix?: string;
}

export interface WireguardDoctorInput {
  kernel: Kernel;
  config: NetworkConfig;
  backend: WireguardBackendConfig;
  family: Family;
  view: PublicInterface;
  own: Lease | undefined;
  leases: readonly Lease[];
  host: WireguardHostOptions;
  /** how weftd's restart is told to the operator */
  restart: string;
  heals: string;
  runner?: CommandRunner;
}

/** Reads the key file without making one: doctor never writes. */
async function keyFileFindings(input: WireguardDoctorInput, findings: WireguardFinding[]): Promise<string | undefined> {
  const { keyFile } = input.host;
  if (!existsSync(keyFile)) {
    findings.push({
      check: 'wireguard',
      severity: 'fail',
      message: `the key file ${keyFile} does not exist`,
      fix: `weftd makes it when it starts: ${input.restart} (give weftctl weftd's --wireguard-key-file)`,
    });
    return undefined;
  }
  const mode = (await stat(keyFile)).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    findings.push({
      check: 'wireguard',
      severity: 'fail',
      message: `the key file ${keyFile} has mode ${mode.toString(8)}: others can read this host's private key`,
      fix: `chmod 600 ${keyFile}, and rotate the key (rm ${keyFile}; ${input.restart}) if others may have read it`,
    });
  }
  try {
    return (await loadOrCreateKeys(keyFile)).keys.publicKey;
  } catch (err) {
    findings.push({ check: 'wireguard', severity: 'fail', message: (err as Error).message, fix: `rm ${keyFile}; ${input.restart}` });
    return undefined;
  }
}

export async function wireguardFindings(
  input: WireguardDoctorInput,
): Promise<{ findings: WireguardFinding[]; device: LinkInfo | null; mtu: number }> {
  const { kernel, config, backend, family, view, own } = input;
  const findings: WireguardFinding[] = [];
  const name = wireguardDeviceName(family, backend);
  const mtu = (backend.mtu ?? view.mtu) - WIREGUARD_OVERHEAD;
  const publicKey = await keyFileFindings(input, findings);
  const link = await kernel.getLink(name);
  if (link === null) {
    findings.push({
      check: 'device',
      severity: 'fail',
      message: `${name} does not exist`,
      fix: `weftd creates it (or starts wireguard-go, which does): ${input.restart}`,
    });
    return { findings, device: null, mtu };
  }
  const before = findings.length;
  const implementation = link.kind === 'wireguard' ? 'kernel WireGuard' : link.kind === 'tun' ? 'wireguard-go (TUN)' : undefined;
  if (implementation === undefined) {
    findings.push({
      check: 'device',
      severity: 'fail',
      message: `${name} is a ${link.kind ?? 'plain'} device, not WireGuard`,
      fix: `ip link del ${name}, then ${input.restart}`,
    });
    return { findings, device: link, mtu };
  }
  if (link.mtu !== mtu)
    findings.push({
      check: 'device',
      severity: 'fail',
      message: `${name} MTU is ${link.mtu}, want ${mtu} (the underlay's − 80)`,
      fix: `${input.heals}; by hand: ip link set ${name} mtu ${mtu}`,
    });
  if (!link.up)
    findings.push({
      check: 'device',
      severity: 'fail',
      message: `${name} is down`,
      fix: `${input.heals}; by hand: ip link set ${name} up`,
    });
  const subnet = own === undefined ? undefined : family === 4 ? own.subnets.ipv4 : own.subnets.ipv6;
  if (subnet !== undefined) {
    const want = `${subnet.network}/${subnet.bits}`;
    const addresses = (await kernel.listAddresses(link.index, family)).filter((a) => a.scope !== RT_SCOPE_LINK).map((a) => a.cidr);
    if (!addresses.includes(want))
      findings.push({
        check: 'device',
        severity: 'fail',
        message: `${name} has IPv${family} addresses [${addresses.join(', ')}], want ${want}`,
        fix: `${input.heals}; by hand: ip addr add ${want} dev ${name}`,
      });
  }
  const network = (family === 4 ? config.ipv4 : config.ipv6)?.network.toString();
  const routes = await kernel.listRoutes({ family, ifindex: link.index });
  if (network !== undefined && !routes.some((route) => route.dst === network && route.gateway === null)) {
    findings.push({
      check: 'route',
      severity: 'fail',
      message: `the route for the network ${network} onto ${name} is missing`,
      fix: `${input.heals}; by hand: ip route replace ${network} dev ${name} scope link`,
    });
  }
  // The device's own state: over its UAPI socket (wireguard-go), else with wg (kernel WireGuard).
  let state: DeviceState;
  try {
    const socket = join(input.host.socketDir, `${name}.sock`);
    state = existsSync(socket)
      ? await new UapiClient(socket).get()
      : await new WgToolControl(name, input.runner ?? createCommandRunner(), input.host.socketDir).get();
  } catch (err) {
    findings.push({
      check: 'wireguard',
      severity: 'fail',
      message: `cannot read ${name}'s configuration: ${(err as Error).message}`,
      fix: `give weftctl weftd's --wireguard-socket-dir; for kernel WireGuard install wireguard-tools (wg)`,
    });
    return { findings, device: link, mtu };
  }
  const port = wireguardListenPort(backend, family);
  if (state.listenPort !== port)
    findings.push({
      check: 'wireguard',
      severity: 'fail',
      message: `${name} listens on UDP ${state.listenPort}, want ${port}`,
      fix: input.heals,
    });
  if (publicKey !== undefined && state.publicKey !== publicKey) {
    findings.push({
      check: 'wireguard',
      severity: 'fail',
      message: `${name}'s key (public ${state.publicKey ?? 'none'}) is not the key file's (public ${publicKey})`,
      fix: input.heals,
    });
  }
  const leaseData = own === undefined ? undefined : family === 4 ? own.attrs.backendData : own.attrs.backendV6Data;
  if (publicKey !== undefined && leaseData !== undefined && leaseData.PublicKey !== publicKey) {
    findings.push({
      check: 'lease',
      severity: 'fail',
      message: `the lease announces PublicKey ${String(leaseData.PublicKey)} but the key file's is ${publicKey}: peers cannot reach this host`,
      fix: `weftd announces its key when it starts: ${input.restart}`,
    });
  }
  if (findings.length === before) {
    findings.push({
      check: 'device',
      severity: 'ok',
      message: `${name}: ${implementation}, UDP ${state.listenPort}, MTU ${link.mtu}, up, public key ${state.publicKey ?? 'none'}`,
    });
  }
  if (own !== undefined && wireguardDeviceFamily(config, family, backend) === family) peerFindings(input, state, findings, name);
  return { findings, device: link, mtu };
}

/** The device's peers against the peers the leases ask for (as weftd programs them). */
function peerFindings(input: WireguardDoctorInput, state: DeviceState, findings: WireguardFinding[], name: string): void {
  const { config, family, view, own, leases, backend } = input;
  const desired = new DesiredState({ family, config, own: own!, localPrefixes: [view.prefix] }, wireguardPeerObjects, leases).state;
  const psk = backend.psk === undefined ? undefined : keyToHex(backend.psk);
  const before = findings.length;
  for (const [key, want] of desired.wireguardPeers) {
    const have = state.peers.get(key);
    if (have === undefined) {
      findings.push({
        check: 'peer',
        severity: 'fail',
        message: `${name} has no peer ${key} (${want.endpoint}, ${want.allowedIPs.join(', ')})`,
        fix: input.heals,
      });
      continue;
    }
    const problems: string[] = [];
    if (have.endpoint?.toLowerCase() !== want.endpoint.toLowerCase())
      problems.push(`endpoint ${have.endpoint ?? 'none'}, want ${want.endpoint}`);
    if ([...want.allowedIPs].sort().join(',') !== have.allowedIPs.join(','))
      problems.push(`allowed IPs ${have.allowedIPs.join(', ') || 'none'}, want ${want.allowedIPs.join(', ')}`);
    if (have.presharedKeyHex !== psk)
      problems.push(psk === undefined ? 'a pre-shared key the config does not set' : "not the config's pre-shared key");
    if (have.persistentKeepalive !== backend.persistentKeepaliveInterval)
      problems.push(`keepalive ${have.persistentKeepalive}, want ${backend.persistentKeepaliveInterval}`);
    if (problems.length > 0)
      findings.push({ check: 'peer', severity: 'fail', message: `${name} peer ${key}: ${problems.join('; ')}`, fix: input.heals });
  }
  for (const key of state.peers.keys()) {
    if (!desired.wireguardPeers.has(key))
      findings.push({ check: 'peer', severity: 'fail', message: `${name} has a peer ${key} that no lease names`, fix: input.heals });
  }
  if (findings.length === before) {
    const shaken = [...state.peers.values()].filter((peer) => peer.lastHandshake > 0).length;
    findings.push({
      check: 'peer',
      severity: 'ok',
      message: `${name}: ${desired.wireguardPeers.size} peers as the leases say (${shaken} with a handshake)`,
    });
  }
}

/** doctor's check of the wireguard backend: its key file, device, address, route, listen port, key and peers. */
export async function checkWireguardDevice(input: DeviceCheckInput, options: WireguardBackendConfig): Promise<DeviceCheck> {
  const { kernel, config, family, view, own } = input;
  const backend = new WireguardBackend({ kernel, log: createLogger('silent'), config, publicInterface: view }, options);
  const { findings, device } = await wireguardFindings({
    kernel,
    config,
    backend: options,
    family,
    view,
    own,
    leases: input.leases,
    host: input.wireguard ?? DEFAULT_WIREGUARD_HOST_OPTIONS,
    restart: RESTART,
    heals: HEALS_ON_RESYNC,
    ...(input.runner === undefined ? {} : { runner: input.runner }),
  });
  for (const finding of findings) input.add(finding.check, finding.severity, finding.message, finding.fix);
  // as ensureDevices says: the device takes no neighbours or FDB entries, and its route for the network is its own
  const network = (family === 4 ? config.ipv4 : config.ipv6)?.network.toString();
  return { backend, overlay: device, routesOnly: true, overhead: WIREGUARD_OVERHEAD, deviceRoutes: network === undefined ? [] : [network] };
}
