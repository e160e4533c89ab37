/**
 * `weftctl doctor`: checks one node against what etcd says it should be, the way weftd itself would build
 * it — the data plane by weftd's own plan as a dry run (agent/dry-run.ts: the operations weftd would make),
 * the device spec from the backend, the firewall comparison from IptablesRules.check() — and prints every
 * finding with how to fix it.
 */
import type { Etcd3 } from 'etcd3';
import { hostname } from 'node:os';
import type { Family } from '../../common/cidr.js';
import {
  isWellKnownPort,
  parseNetworkConfig,
  tunnelPorts,
  type NetworkConfig,
  type UserspaceMode,
  type WireguardHostOptions,
} from '../../common/config.js';
import { escapeControls } from '../../common/terminal.js';
import { WEFT_ROUTE_PROTOCOL, type DesiredObjects, type RouteDevice, type RouteSpec, type SkippedLease } from '../../common/dataplane.js';
import type { IgnoredLease } from '../../common/lease-arbiter.js';
import { leaseBackend, type Lease } from '../../common/lease.js';
import { gatewayCidr, type SubnetEnv } from '../../common/subnet-env.js';
import { checkBackendDevice } from '../backends.js';
import { HEALS, RESTART, type DeviceCheck, type Finding, type Severity } from '../doctor-check.js';
import { createCommandRunner, type CommandRunner } from '../host/command.js';
import { readIngressAllowList } from '../host/ingress.js';
import { chainRemovalCommands, IptablesRules, readTable, type TableState } from '../host/iptables.js';
import { familyView, selectPublicInterface, type PublicInterface } from '../host/interfaces.js';
import { readSubnetEnv } from '../host/subnet-env.js';
import { IPV4_FORWARD, IPV6_FORWARD, readSysctl } from '../host/sysctl.js';
import { dryRun, type DryRun } from '../dry-run.js';
import type { Kernel, ViewRoute } from '../kernel/index.js';
import type { NetworkKeys } from '../registry/etcd.js';
import { NODE_ID_FIELD } from '../registry/subnet-lease.js';
import { ignoredLeases, leaseSubnetText, listLeases, type StoredLease } from './ctl-common.js';
import { queryAgent } from './status.js';

export type { Finding, Severity } from '../doctor-check.js';

export interface DoctorOptions {
  client: Etcd3;
  keys: NetworkKeys;
  /** For messages: the endpoints as given. */
  endpoints: string;
  kernel: Kernel;
  subnetFile: string;
  iface: readonly string[];
  ifaceRegex: readonly string[];
  publicIp: string | undefined;
  /** weftd's --public-ipv6 (dual stack and IPv6-only). */
  publicIpv6?: string | undefined;
  /** --ip-masq as weftd runs; undefined: what subnet.env's FLANNEL_IPMASQ says. */
  ipMasq: boolean | undefined;
  /** weftd's --ip-masq-fully-random-disable. */
  ipMasqRandomFullyDisable?: boolean;
  forwardRules: boolean;
  /** weftd's --ingress-allow-list (default on). */
  ingressAllowList: boolean;
  /** weftd's --nexthop-objects (default true). */
  nexthopObjects?: boolean;
  /** weftd's --vxlan-userspace; undefined: the config's Backend.Userspace. */
  vxlanUserspace: UserspaceMode | undefined;
  /** weftd's --wireguard-key-file and --wireguard-socket-dir; undefined: the defaults. */
  wireguard?: WireguardHostOptions | undefined;
  healthzIP: string;
  /** 0: do not ask weftd's /readyz. */
  healthzPort: number;
  /** Runs ip and iptables (tests point it elsewhere). */
  runner?: CommandRunner;
  /** /proc/sys (tests point it elsewhere). */
  sysctlRoot?: string;
  timeoutMs?: number;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

// ---------------------------------------------------------------------------------- data plane

export interface DeviceNames {
  /** weft's overlay device (weft.<VNI>, weft-v6.<VNI>, a userspace path's veth); undefined for host-gw. */
  overlay: string | undefined;
  /** The public interface. */
  public: string;
  /** Names the address family in the summary and peer findings ("IPv6") when a node has more than one plane. */
  label?: string;
}

/** A route as `ip route` would take it: `<dst> via <gw> dev <dev> [onlink]`, or `<dst> nhid <id>`. */
function routeText(spec: RouteSpec, nexthopId: number | undefined, names: DeviceNames): string {
  const dev = spec.device === 'overlay' ? (names.overlay ?? 'the overlay device') : names.public;
  return `${spec.dst} via ${spec.gateway} dev ${dev}${spec.onlink ? ' onlink' : ''}${nexthopId === undefined ? '' : ` nhid ${nexthopId}`}`;
}

/** The command that makes a route as weftd would: through its nexthop object, or with the gateway inline. */
function routeCommand(verb: 'add' | 'replace', route: ViewRoute, names: DeviceNames): string {
  const how = route.nexthopId === undefined ? routeText(route.spec, undefined, names) : `${route.spec.dst} nhid ${route.nexthopId}`;
  return `ip route ${verb} ${how} proto ${WEFT_ROUTE_PROTOCOL}`;
}

/**
 * Findings for the operations weftd would make (the plan of a dry run): one failure per operation, saying
 * what is wrong and the command that does what weftd would do; none (one ok line) when weftd would change
 * nothing. Peers weftd does not program are warnings.
 */
export function planFindings(
  run: Pick<DryRun, 'ops' | 'view'> & { desired: DesiredObjects },
  skipped: readonly SkippedLease[],
  names: DeviceNames,
): Finding[] {
  const { ops, view, desired } = run;
  const findings: Finding[] = [];
  const dev = names.overlay ?? '';
  const fail = (check: string, message: string, byHand: string): void => {
    findings.push({ check, severity: 'fail', message, fix: `${HEALS}; by hand: ${byHand}` });
  };
  const peerOf = (gateway: string): string => {
    const mac = desired.neighbours.get(gateway)?.mac;
    const entry = mac === undefined ? undefined : desired.fdb.get(mac);
    return entry === undefined ? '' : ` (peer ${entry.dst})`;
  };
  const deviceName = (device: RouteDevice): string => (device === 'overlay' ? dev : names.public);
  for (const dst of ops.blocked) {
    const want = desired.routes.get(dst)!;
    findings.push({
      check: 'route',
      severity: 'fail',
      message: `${dst} is held by a route weft does not own: weft leaves it alone, and the lease's host is unreachable from here`,
      fix: `ip route show ${dst} tells whose it is; remove it if it is stale (weftd then adds ${routeText(want, undefined, names)} within seconds), or revoke the lease if the prefix belongs to that route`,
    });
  }
  for (const route of ops.routeDel) {
    const { dst } = route.spec;
    const text = routeText(route.spec, route.nexthopId, names);
    const how = `ip route del ${dst} ${route.nexthopId === undefined ? `dev ${deviceName(route.spec.device)}` : `nhid ${route.nexthopId}`} proto ${route.protocol}`;
    if (view.routes.get(dst) !== route) fail('route', `${text} is a second route of weft's to ${dst} (left by a backend change?)`, how);
    else fail('route', `${text} is left over: no lease asks for it`, how);
  }
  for (const id of [...ops.nexthopDel, ...ops.nexthopDelLast]) {
    fail('nexthop', `nexthop ${id} is left over: no route of weft's uses it`, `ip nexthop del id ${id}`);
  }
  for (const entry of ops.fdbDel) {
    fail(
      'fdb',
      `${entry.mac} dst ${entry.dst} on ${dev} is left over: no lease has this VtepMAC`,
      `bridge fdb del ${entry.mac} dev ${dev} self`,
    );
  }
  for (const entry of ops.neighbourDel) {
    fail(
      'neighbour',
      `${entry.ip} lladdr ${entry.mac} on ${dev} is left over: no lease has this subnet`,
      `ip neigh del ${entry.ip} dev ${dev}`,
    );
  }
  for (const entry of ops.neighbourSet) {
    const have = view.neighbours.get(entry.ip);
    const byHand = `ip neigh replace ${entry.ip} lladdr ${entry.mac} dev ${dev} nud permanent`;
    if (have === undefined)
      fail('neighbour', `${entry.ip}${peerOf(entry.ip)} is missing on ${dev}: the lease wants lladdr ${entry.mac}`, byHand);
    else fail('neighbour', `${entry.ip} on ${dev} has lladdr ${have.mac || '(none)'} but the lease says ${entry.mac}`, byHand);
  }
  for (const entry of ops.fdbSet) {
    const have = view.fdb.get(entry.mac);
    const byHand = `bridge fdb replace ${entry.mac} dev ${dev} dst ${entry.dst} self permanent`;
    if (have === undefined) fail('fdb', `${entry.mac} (VtepMAC of ${entry.dst}) is missing on ${dev}`, byHand);
    else fail('fdb', `${entry.mac} on ${dev} points at ${have.dst} but the lease says ${entry.dst}`, byHand);
  }
  for (const nexthop of ops.nexthopAdd) {
    const text = `${nexthop.gateway} dev ${deviceName(nexthop.device)}${nexthop.onlink ? ' onlink' : ''}`;
    fail(
      'nexthop',
      `nexthop ${nexthop.id} via ${text} is missing: the routes through ${nexthop.gateway} want it`,
      `ip nexthop add id ${nexthop.id} via ${text} proto ${WEFT_ROUTE_PROTOCOL}`,
    );
  }
  for (const route of ops.routeAdd) {
    fail(
      'route',
      `${route.spec.dst} is missing: the lease wants ${routeText(route.spec, route.nexthopId, names)}`,
      routeCommand('add', route, names),
    );
  }
  for (const route of ops.routeSet) {
    const have = view.routes.get(route.spec.dst)!;
    fail(
      'route',
      `${route.spec.dst} is ${routeText(have.spec, have.nexthopId, names)} but weftd wants ${routeText(route.spec, route.nexthopId, names)}`,
      routeCommand('replace', route, names),
    );
  }
  for (const { lease, reason } of skipped) {
    findings.push({
      check: 'peer',
      severity: 'warn',
      message: `lease ${lease.name} is not programmed here${names.label === undefined ? '' : ` for ${names.label}`}: it ${reason}`,
      fix: 'fix or revoke the lease (weftctl lease revoke <subnet>), or the config, so that every host can reach every other',
    });
  }
  if (findings.every((finding) => finding.severity !== 'fail')) {
    findings.unshift({
      check: 'dataplane',
      severity: 'ok',
      message: `${names.label === undefined ? '' : `${names.label}: `}${desired.routes.size} routes, ${desired.fdb.size} FDB entries and ${desired.neighbours.size} neighbours match the peers' leases: weftd would change nothing`,
    });
  }
  return findings;
}

// ---------------------------------------------------------------------------------------- checks

/** One address family's data plane, as weftd runs one per enabled family (weft.<VNI>, weft-v6.<VNI>). */
interface Plane extends DeviceCheck {
  family: Family;
  /** The public interface as this family sees it (familyView: that family's address, prefix, public address). */
  view: PublicInterface;
}

interface Context {
  options: DoctorOptions;
  findings: Finding[];
  config: NetworkConfig | undefined;
  leases: StoredLease[] | undefined;
  /** The leases every weftd ignores, by name (LeaseArbiter). */
  ignored: Map<string, IgnoredLease>;
  subnetEnv: SubnetEnv | undefined;
  /** The families weftd runs a data plane for: the config's, else those subnet.env has, else IPv4. */
  families: Family[];
  iface: PublicInterface | undefined;
  own: Lease | undefined;
  planes: Plane[];
}

function add(context: Context, check: string, severity: Severity, text: string, fix?: string): void {
  context.findings.push(fix === undefined ? { check, severity, message: text } : { check, severity, message: text, fix });
}

/** "IPv6" in findings when the node has an IPv6 plane (alone or beside IPv4); nothing for IPv4 alone. */
function familyLabel(context: Context, family: Family): string | undefined {
  return context.families.length > 1 || family === 6 ? `IPv${family}` : undefined;
}

function subnetOf(lease: Lease, family: Family) {
  return family === 4 ? lease.subnets.ipv4 : lease.subnets.ipv6;
}

function planOf(config: NetworkConfig, family: Family) {
  return family === 4 ? config.ipv4 : config.ipv6;
}

async function checkEtcd(context: Context): Promise<void> {
  const { client, keys, endpoints } = context.options;
  let text: string | null;
  try {
    text = await client.get(keys.config).string();
    context.leases = await listLeases(client, keys, (key, reason) =>
      add(context, 'lease', 'warn', `${key} cannot be read: ${reason}`, 'every weftd skips it; delete or rewrite it with etcdctl'),
    );
  } catch (err) {
    add(
      context,
      'etcd',
      'fail',
      `cannot reach etcd at ${endpoints}: ${message(err)}`,
      `check --etcd-endpoints and the TLS flags (WEFTD_ETCD_* in the environment file), and that etcd is up: etcdctl --endpoints=${endpoints} endpoint health`,
    );
    return;
  }
  add(context, 'etcd', 'ok', `${endpoints} answers; ${context.leases.length} leases under ${keys.subnets}`);
  if (text === null) {
    add(
      context,
      'config',
      'fail',
      `no network config at ${keys.config}`,
      'seed one: weftctl config set --network <cidr> (check --etcd-prefix if one was meant to be there)',
    );
    return;
  }
  try {
    const config = parseNetworkConfig(text);
    context.config = config;
    const plans = [config.ipv4, config.ipv6]
      .filter((plan) => plan !== undefined)
      .map((plan) => `${plan.network}, ${plan.family === 4 ? 'SubnetLen' : 'IPv6SubnetLen'} ${plan.subnetLen}`);
    add(context, 'config', 'ok', `${plans.join('; ')}, backend ${config.backend.type}`);
    for (const warning of config.warnings)
      add(
        context,
        'config',
        'warn',
        warning,
        'rewrite the config as the warning says with weftctl config set (it writes an explicit Backend and refuses a VNI flanneld cannot read)',
      );
    context.ignored = ignoredLeases(config, context.leases);
    for (const { lease, detail } of context.ignored.values()) {
      add(
        context,
        'lease',
        'warn',
        `every weftd ignores the lease ${lease.name}: ${detail}`,
        `if no host should hold it, delete exactly that key: etcdctl del '${keys.lease(lease.name)}'`,
      );
    }
  } catch (err) {
    add(
      context,
      'config',
      'fail',
      `${keys.config} is not a usable config: ${message(err)}`,
      'fix it with weftctl config set (it validates before writing)',
    );
  }
}

async function checkSubnetEnvFile(context: Context): Promise<void> {
  const path = context.options.subnetFile;
  try {
    context.subnetEnv = await readSubnetEnv(path);
  } catch (err) {
    add(context, 'subnet.env', 'fail', message(err), `remove it and ${RESTART}`);
    return;
  }
  if (context.subnetEnv === undefined) {
    add(
      context,
      'subnet.env',
      'fail',
      `${path} does not exist`,
      `weftd writes it once it holds a lease and the data plane is programmed: ${RESTART}; if weftd writes it elsewhere, give weftctl the same --subnet-file`,
    );
  }
}

/** The families to check, as weftd picks them (the config's), else what subnet.env was written for. */
function chooseFamilies(context: Context): void {
  const { config, subnetEnv: env } = context;
  const families: Family[] =
    config !== undefined
      ? [...(config.ipv4 === undefined ? [] : [4 as const]), ...(config.ipv6 === undefined ? [] : [6 as const])]
      : [...(env?.subnet === undefined ? [] : [4 as const]), ...(env?.ipv6Subnet === undefined ? [] : [6 as const])];
  context.families = families.length === 0 ? [4] : families;
}

async function checkInterface(context: Context): Promise<void> {
  const { iface, ifaceRegex, publicIp, publicIpv6, runner } = context.options;
  const { families } = context;
  try {
    context.iface = await selectPublicInterface({
      iface,
      ifaceRegex,
      publicIp,
      publicIpv6,
      ipv4: families.includes(4),
      ipv6: families.includes(6),
      ...(runner === undefined ? {} : { runner }),
    });
  } catch (err) {
    add(
      context,
      'interface',
      'fail',
      `no public interface: ${message(err)}`,
      'give weftctl the --iface / --iface-regex / --public-ip / --public-ipv6 weftd runs with (they are read from the environment file, WEFTD_IFACE=…)',
    );
    return;
  }
  const chosen = context.iface;
  context.planes = families.map((family) => ({
    family,
    view: familyView(chosen, family),
    backend: undefined,
    overlay: undefined,
    routesOnly: false,
    overhead: 0,
  }));
  const addresses = [chosen.ipv4, chosen.ipv6]
    .filter((entry) => entry !== undefined)
    .map((entry) => `${entry.address}${entry.publicAddress.equals(entry.address) ? '' : `, announced as ${entry.publicAddress}`}`);
  add(context, 'interface', 'ok', `${chosen.name} ${addresses.join('; ')}, MTU ${chosen.mtu}`);
}

function checkLease(context: Context): void {
  const { leases, iface, config } = context;
  if (leases === undefined || iface === undefined) return;
  // weftd's own lease is the one naming its IPv4 public address, or with IPv4 off its IPv6 one (SubnetLeaseManager)
  const byIpv4 = iface.ipv4 !== undefined;
  const publicAddress = byIpv4 ? iface.ipv4!.publicAddress : iface.ipv6!.publicAddress;
  const mine = leases.filter(({ lease }) => (byIpv4 ? lease.attrs.publicIP : lease.attrs.publicIPv6)?.equals(publicAddress) ?? false);
  if (mine.length === 0) {
    add(
      context,
      'lease',
      'fail',
      `no lease names this host's public IP ${publicAddress}`,
      `weftd acquires one within seconds of starting: ${RESTART}; if weftd announces another address, give weftctl its --iface / --public-ip${byIpv4 ? '' : 'v6'}`,
    );
    return;
  }
  const env = context.subnetEnv;
  const named = (lease: Lease): boolean =>
    (env?.subnet !== undefined && (lease.subnets.ipv4?.equals(env.subnet) ?? false)) ||
    (env?.ipv6Subnet !== undefined && (lease.subnets.ipv6?.equals(env.ipv6Subnet) ?? false));
  const own = (mine.find(({ lease }) => named(lease)) ?? mine.find(({ lease }) => lease.reservation) ?? mine[0]).lease;
  context.own = own;
  if (mine.length > 1) {
    add(
      context,
      'lease',
      'warn',
      `${mine.length} leases name ${publicAddress}: ${mine.map((stored) => stored.lease.name).join(', ')}; weftd uses one, the others waste subnets`,
      'revoke the ones this host does not use: weftctl lease revoke <subnet>',
    );
  }
  const backend = leaseBackend(own.attrs, config?.backend.type);
  const ignored = context.ignored.get(own.name);
  if (ignored !== undefined) {
    add(
      context,
      'lease',
      'fail',
      `this host's lease ${own.name} is ignored by every weftd: ${ignored.detail}`,
      `revoke it (weftctl lease revoke ${leaseSubnetText(own).split(',')[0]}) and ${RESTART}: weftd then takes a subnet nobody holds`,
    );
  } else {
    add(
      context,
      'lease',
      'ok',
      `${leaseSubnetText(own) || own.name}${own.reservation ? ' (a reservation)' : ''}, backend ${backend || '(none)'}`,
    );
  }
  if (config !== undefined) {
    if (backend !== config.backend.type) {
      add(
        context,
        'lease',
        'fail',
        `the lease says backend ${backend || '(none)'} but the config says ${config.backend.type}`,
        `weftd reads the config when it starts: ${RESTART} (on every host, after a backend change)`,
      );
    }
    for (const family of [4, 6] as const) {
      const plan = planOf(config, family);
      const subnet = subnetOf(own, family);
      const replace = `weftd replaces a lease that does not fit the config when it starts: ${RESTART}`;
      if (plan === undefined && subnet !== undefined) {
        add(
          context,
          'lease',
          'fail',
          `the lease has the IPv${family} subnet ${subnet} but the config does not enable IPv${family}`,
          replace,
        );
      } else if (plan !== undefined && subnet === undefined) {
        add(context, 'lease', 'fail', `the lease ${own.name} has no IPv${family} subnet but the config enables IPv${family}`, replace);
      } else if (plan !== undefined && subnet !== undefined && !plan.network.contains(subnet)) {
        add(
          context,
          'lease',
          'fail',
          `the lease ${subnet} is outside the network ${plan.network}`,
          `revoke it (weftctl lease revoke ${subnet}) and ${RESTART}`,
        );
      }
    }
  }
  if (byIpv4 && iface.ipv6 !== undefined && !(own.attrs.publicIPv6?.equals(iface.ipv6.publicAddress) ?? false)) {
    add(
      context,
      'lease',
      'fail',
      `the lease announces PublicIPv6 ${own.attrs.publicIPv6?.toString() ?? '(none)'} but this host's is ${iface.ipv6.publicAddress}: peers send its IPv6 overlay traffic elsewhere`,
      `weftd rewrites its lease when it starts: ${RESTART}; if weftd announces another address, give weftctl its --public-ipv6`,
    );
  }
}

const IPV6_ONLY_FLANNELD =
  'in an IPv6-only network flanneld takes over the first IPv6-only lease it finds, whoever holds it: flanneld and weftd hosts cannot share one';
const TAKEN_OVER_FIX =
  "run weftd (or only flanneld) on every host of an IPv6-only network; recreate this host's containers (their old subnet belongs to another host now); weftd reports this until it restarts";

/**
 * Another host rewrote this host's lease (flanneld does in IPv6-only networks): subnet.env still names a
 * subnet whose lease names another host, weftd says so on /readyz, or flanneld hosts share an IPv6-only network.
 */
function checkTakeover(context: Context): void {
  const { leases, iface, config, subnetEnv: env } = context;
  if (leases === undefined || iface === undefined) return;
  const ours = (lease: Lease) =>
    (lease.attrs.publicIP !== undefined && iface.ipv4 !== undefined && lease.attrs.publicIP.equals(iface.ipv4.publicAddress)) ||
    (lease.attrs.publicIP === undefined &&
      lease.attrs.publicIPv6 !== undefined &&
      iface.ipv6 !== undefined &&
      lease.attrs.publicIPv6.equals(iface.ipv6.publicAddress));
  for (const { lease } of leases) {
    const named =
      (env?.subnet !== undefined && (lease.subnets.ipv4?.equals(env.subnet) ?? false)) ||
      (env?.ipv6Subnet !== undefined && (lease.subnets.ipv6?.equals(env.ipv6Subnet) ?? false));
    if (!named || ours(lease)) continue;
    const other = (lease.attrs.publicIP ?? lease.attrs.publicIPv6)?.toString() ?? '(no public IP)';
    const flanneld = lease.attrs.extra[NODE_ID_FIELD] === undefined && config !== undefined && config.ipv4 === undefined;
    add(
      context,
      'lease',
      'fail',
      `this host's subnet ${leaseSubnetText(lease)} (subnet.env) is now leased to the host at ${other}${flanneld ? `, which wrote no WeftNodeID: a flanneld host (${IPV6_ONLY_FLANNELD})` : ''}`,
      TAKEN_OVER_FIX,
    );
  }
  if (config === undefined || config.ipv4 !== undefined) return;
  const flanneldHosts = leases.filter(({ lease }) => !lease.reservation && lease.attrs.extra[NODE_ID_FIELD] === undefined && !ours(lease));
  if (flanneldHosts.length > 0) {
    add(
      context,
      'lease',
      'warn',
      `${flanneldHosts.map(({ lease }) => lease.attrs.publicIPv6?.toString() ?? lease.name).join(', ')} wrote leases without WeftNodeID (flanneld): ${IPV6_ONLY_FLANNELD}`,
      'move those hosts to weftd (docs/operations.md, migrating from flanneld)',
    );
  }
}

function checkSubnetEnvContent(context: Context): void {
  const { subnetEnv: env, own, config, planes } = context;
  if (env === undefined) return;
  const path = context.options.subnetFile;
  const before = context.findings.length;
  const rewrite = `${RESTART}; weftd rewrites it (containers created since keep their old addresses: recreate them)`;
  for (const family of [4, 6] as const) {
    const [networkVar, subnetVar] = family === 4 ? ['FLANNEL_NETWORK', 'FLANNEL_SUBNET'] : ['FLANNEL_IPV6_NETWORK', 'FLANNEL_IPV6_SUBNET'];
    const envNetwork = family === 4 ? env.network : env.ipv6Network;
    const envSubnet = family === 4 ? env.subnet : env.ipv6Subnet;
    const leased = own === undefined ? undefined : subnetOf(own, family);
    const plan = config === undefined ? undefined : planOf(config, family);
    if (leased !== undefined && !(envSubnet?.equals(leased) ?? false)) {
      add(
        context,
        'subnet.env',
        'fail',
        `${path} has ${subnetVar}=${envSubnet === undefined ? '(none)' : gatewayCidr(envSubnet)} but the lease is ${leased}`,
        rewrite,
      );
    }
    if (plan !== undefined && !(envNetwork?.equals(plan.network) ?? false)) {
      add(
        context,
        'subnet.env',
        'fail',
        `${path} has ${networkVar}=${envNetwork?.toString() ?? '(none)'} but the config says ${plan.network}`,
        rewrite,
      );
    }
    if (config !== undefined && plan === undefined && (envNetwork !== undefined || envSubnet !== undefined)) {
      add(context, 'subnet.env', 'fail', `${path} has ${networkVar} and ${subnetVar} but the config does not enable IPv${family}`, rewrite);
    }
  }
  // weftd writes the smallest MTU of its planes
  const backends = planes.map((plane) => plane.backend).filter((backend) => backend !== undefined);
  if (backends.length > 0 && backends.length === planes.length) {
    const mtu = Math.min(...backends.map((backend) => backend.mtu));
    if (env.mtu !== mtu) {
      add(
        context,
        'subnet.env',
        'fail',
        `${path} has FLANNEL_MTU=${env.mtu ?? '(none)'} but the ${backends[0].type} backend gives containers ${mtu}`,
        rewrite,
      );
    }
  }
  if (context.findings.length === before) {
    const subnets = [
      ...(env.subnet !== undefined || env.ipv6Subnet === undefined
        ? [`FLANNEL_SUBNET=${env.subnet === undefined ? '-' : gatewayCidr(env.subnet)}`]
        : []),
      ...(env.ipv6Subnet === undefined ? [] : [`FLANNEL_IPV6_SUBNET=${gatewayCidr(env.ipv6Subnet)}`]),
    ];
    add(context, 'subnet.env', 'ok', `${path}: ${subnets.join(' ')} FLANNEL_MTU=${env.mtu ?? '-'} FLANNEL_IPMASQ=${env.ipMasq ?? '-'}`);
  }
}

async function checkForwarding(context: Context): Promise<void> {
  for (const family of context.families) {
    const name = family === 4 ? IPV4_FORWARD : IPV6_FORWARD;
    try {
      const value = await readSysctl(name, context.options.sysctlRoot);
      if (value === '1') add(context, 'ip_forward', 'ok', `${name} = 1`);
      else {
        add(
          context,
          'ip_forward',
          'fail',
          `${name} = ${value}: this host does not forward the containers' ${family === 4 ? 'IPv4' : 'IPv6'} packets`,
          `sysctl -w ${name}=1 (weftd sets it when it starts; something turned it off since — look in /etc/sysctl.d and at other network tools)`,
        );
      }
    } catch (err) {
      add(context, 'ip_forward', 'warn', message(err), 'run weftctl doctor where /proc/sys is readable');
    }
  }
}

async function checkDevices(context: Context): Promise<void> {
  const { config, iface, options } = context;
  if (config === undefined || iface === undefined) return;
  const links = await options.kernel.listLinks();
  for (const plane of context.planes) {
    const checked = await checkBackendDevice({
      kernel: options.kernel,
      config,
      family: plane.family,
      view: plane.view,
      own: context.own,
      links,
      leases: (context.leases ?? []).map((stored) => stored.lease),
      vxlanUserspace: options.vxlanUserspace,
      wireguard: options.wireguard,
      runner: options.runner,
      add: (check, severity, text, fix) => add(context, check, severity, text, fix),
    });
    Object.assign(plane, checked);
  }
}

function checkMtu(context: Context): void {
  const { iface, planes, subnetEnv } = context;
  if (iface === undefined || planes.length === 0 || planes.some((plane) => plane.backend === undefined)) return;
  const before = context.findings.length;
  const limits: number[] = [];
  const overlays: string[] = [];
  for (const { backend, overlay, view, overhead } of planes) {
    const type = backend!.type;
    const deviceMtu = overlay?.mtu ?? backend!.mtu;
    if (overlay !== undefined && deviceMtu + overhead > iface.mtu) {
      add(
        context,
        'mtu',
        'fail',
        `${overlay?.name ?? 'the overlay device'} MTU ${deviceMtu} + ${overhead} bytes of ${type} encapsulation exceeds ${iface.name}'s MTU ${iface.mtu}: full-size packets are dropped`,
        `lower Backend.MTU (the underlay's MTU, as in flanneld) to ${iface.mtu} or less, or remove it (weft then gives the device ${iface.mtu - overhead}), or raise ${iface.name}'s MTU, then ${RESTART}`,
      );
    }
    limits.push(overlay === undefined ? iface.mtu : deviceMtu);
    if (overlay !== undefined)
      overlays.push(planes.length > 1 ? `${overlay?.name ?? `IPv${view.address.family} overlay`} ${deviceMtu}` : `overlay ${deviceMtu}`);
  }
  const containerMtu = subnetEnv?.mtu;
  const limit = Math.min(...limits);
  if (containerMtu !== undefined && containerMtu > limit) {
    add(
      context,
      'mtu',
      'fail',
      `containers get FLANNEL_MTU=${containerMtu} but the path allows ${limit}: their large packets are dropped`,
      `${RESTART}; then recreate the containers so that they take the new MTU`,
    );
  }
  if (context.findings.length === before) {
    add(context, 'mtu', 'ok', `${[`${iface.name} ${iface.mtu}`, ...overlays].join(', ')}, containers ${containerMtu ?? '-'}`);
  }
}

/** weftd's own plan as a dry run, per family: the operations weftd would make are the findings. */
async function checkDataplane(context: Context): Promise<void> {
  const { config, own, iface, leases, options } = context;
  if (config === undefined || own === undefined || iface === undefined || leases === undefined) return;
  for (const plane of context.planes) {
    const { family, backend, view, routesOnly } = plane;
    if (backend === undefined) continue;
    if (plane.overlay === null) continue; // the device finding says it all
    const run = await dryRun({
      kernel: options.kernel,
      family,
      config,
      own,
      publicInterface: view,
      overlayIndex: plane.overlay?.index,
      routesOnly,
      deviceRoutes: plane.deviceRoutes,
      // weftd programs the leases it does not ignore
      peers: leases.map((stored) => stored.lease).filter((lease) => !context.ignored.has(lease.name)),
      routeForm: options.nexthopObjects === false ? 'inline' : 'nexthop',
      peerObjects: backend.peerObjects,
    });
    const label = familyLabel(context, family);
    const names = { overlay: plane.overlay?.name, public: view.name, ...(label === undefined ? {} : { label }) };
    context.findings.push(...planFindings({ ops: run.ops, view: run.view, desired: run.desired.state }, run.desired.skipped(), names));
  }
}

async function checkIptables(context: Context): Promise<void> {
  for (const family of context.families) await checkIptablesFamily(context, family);
}

async function checkIptablesFamily(context: Context, family: Family): Promise<void> {
  const { options, config, own, subnetEnv } = context;
  const check = family === 4 ? 'iptables' : 'ip6tables';
  const network =
    (config === undefined ? undefined : planOf(config, family)?.network) ?? (family === 4 ? subnetEnv?.network : subnetEnv?.ipv6Network);
  const subnet = (own === undefined ? undefined : subnetOf(own, family)) ?? (family === 4 ? subnetEnv?.subnet : subnetEnv?.ipv6Subnet);
  if (network === undefined || subnet === undefined) {
    add(context, check, 'skip', `not checked: neither etcd nor subnet.env tell the IPv${family} network and this host's subnet`);
    return;
  }
  const ipMasq = options.ipMasq ?? subnetEnv?.ipMasq ?? false;
  const rules = new IptablesRules({
    family,
    network,
    subnet,
    ipMasq,
    forwardRules: options.forwardRules,
    ...(options.ipMasqRandomFullyDisable === true ? { randomFully: false } : {}),
    ...(options.runner === undefined ? {} : { runner: options.runner }),
  });
  let result;
  try {
    result = await rules.check();
  } catch (err) {
    add(context, check, 'warn', `could not read the rules: ${message(err)}`, `run weftctl doctor as root on a host with ${check}`);
    return;
  }
  const enabled =
    [options.forwardRules ? 'WEFT-FORWARD' : '', ipMasq ? 'WEFT-POSTRTG' : ''].filter(Boolean).join(' and ') || 'no chains (both disabled)';
  if (result.ok) {
    add(context, check, 'ok', `${enabled} as weftd writes ${enabled.includes(' and ') ? 'them' : 'it'}`);
    return;
  }
  for (const problem of result.problems) {
    add(
      context,
      check,
      'fail',
      problem,
      `weftd rewrites its chains every --iptables-resync seconds; if they stay wrong, weftd is not running, or was started with other --ip-masq / --iptables-forward-rules than weftctl was given, or another tool keeps rewriting the ${family === 4 ? 'firewall' : 'IPv6 firewall (ip6tables)'}`,
    );
  }
}

/** Devices flanneld creates and leaves behind when it stops: VXLAN `flannel.<VNI>`, `flannel-v6.<VNI>`; WireGuard `flannel-wg`, `flannel-wg-v6`. */
const FLANNELD_DEVICE = /^flannel(?:(?:-v6)?\.\d+|-wg(?:-v6)?)$/;
/** flanneld's chains are FLANNEL-POSTRTG (nat) and FLANNEL-FWD (filter), in iptables and ip6tables. */
const FLANNELD_CHAIN = /^FLANNEL-/;
const IF_FLANNELD_IS_GONE = 'if flanneld no longer runs on this host (systemctl disable --now flanneld), remove it';

/** `argv` as one shell command, single-quoting what the shell would otherwise change. */
function shellCommand(argv: readonly string[]): string {
  return argv.map((arg) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/** What flanneld leaves on a host it ran on: its chains (with the jumps to them) and its devices. */
async function checkFlanneldLeftovers(context: Context): Promise<void> {
  const { options } = context;
  const runner = options.runner ?? createCommandRunner();
  for (const family of [4, 6] as const) {
    const command = family === 4 ? 'iptables' : 'ip6tables';
    for (const table of ['nat', 'filter'] as const) {
      let state: TableState;
      try {
        state = await readTable(runner, family, table);
      } catch {
        continue; // the iptables check reports a firewall it cannot read; an IPv4-only host may have no ip6tables
      }
      for (const chain of [...state.chains].filter((name) => FLANNELD_CHAIN.test(name)).sort()) {
        const removal = chainRemovalCommands(family, table, chain, state);
        const jumps = removal.length - 2;
        add(
          context,
          'flanneld',
          'warn',
          `${command} ${table} chain ${chain} is left over from flanneld${jumps > 0 ? ` and still jumped to (${jumps} rule${jumps === 1 ? '' : 's'}): its rules apply besides weft's` : ''}`,
          `${IF_FLANNELD_IS_GONE}: ${removal.map(shellCommand).join(' && ')}`,
        );
      }
    }
  }
  for (const link of (await options.kernel.listLinks()).filter((candidate) => FLANNELD_DEVICE.test(candidate.name))) {
    add(context, 'flanneld', 'warn', `device ${link.name} is left over from flanneld`, `${IF_FLANNELD_IS_GONE}: ip link del ${link.name}`);
  }
}

async function checkIngress(context: Context): Promise<void> {
  const { options, config, own, leases } = context;
  if (config === undefined || tunnelPorts(config).length === 0) return; // no tunnel port (host-gw), no allow-list
  let table: Awaited<ReturnType<typeof readIngressAllowList>>;
  try {
    table = await readIngressAllowList(options.runner);
  } catch (err) {
    add(
      context,
      'ingress',
      'warn',
      `could not read the nftables table inet weft: ${message(err)}`,
      'run weftctl doctor as root on a host with nft (nftables)',
    );
    return;
  }
  const wellKnown = tunnelPorts(config).find(({ port }) => isWellKnownPort(port));
  if (options.ingressAllowList && wellKnown !== undefined) {
    const off = `weftd keeps no ingress allow-list: ${wellKnown.field} ${wellKnown.port} is below 1024, where a well-known service would lose its datagrams`;
    if (table === undefined) add(context, 'ingress', 'skip', off);
    else
      add(
        context,
        'ingress',
        'warn',
        `${off}, yet the nftables table inet weft is there`,
        'unless another program keeps it there on purpose: nft delete table inet weft',
      );
    return;
  }
  if (!options.ingressAllowList) {
    if (table !== undefined) {
      add(
        context,
        'ingress',
        'warn',
        'the ingress allow-list (nftables table inet weft) is there although --ingress-allow-list is off',
        'if weftd runs with --ingress-allow-list=false, remove it: nft delete table inet weft; else give weftctl the same flag',
      );
    }
    return;
  }
  if (table === undefined) {
    add(
      context,
      'ingress',
      'warn',
      'the ingress allow-list (nftables table inet weft) is missing: the tunnel port accepts datagrams from anyone',
      `weftd puts it back every --iptables-resync seconds; ${RESTART}`,
    );
    return;
  }
  if (own === undefined || leases === undefined) return;
  // weftd allows the public addresses of every other lease it does not ignore
  const wanted = [
    ...new Set(
      leases
        .filter((stored) => stored.lease.name !== own.name && !context.ignored.has(stored.lease.name))
        .flatMap((stored) => [stored.lease.attrs.publicIP, stored.lease.attrs.publicIPv6])
        .filter((ip) => ip !== undefined)
        .map((ip) => ip.toString()),
    ),
  ].sort();
  const missing = wanted.filter((ip) => !table.peers.includes(ip));
  const extra = table.peers.filter((ip) => !wanted.includes(ip));
  for (const ip of missing) {
    add(
      context,
      'ingress',
      'fail',
      `peer ${ip} is not in the ingress allow-list: its VXLAN datagrams are dropped`,
      `weftd updates the list on every lease event and checks it every --iptables-resync seconds: ${RESTART}`,
    );
  }
  for (const ip of extra) {
    add(
      context,
      'ingress',
      'warn',
      `${ip} is in the ingress allow-list but no lease names it`,
      `weftd removes it on its next update: ${RESTART}`,
    );
  }
  if (table.rules !== 2) {
    add(
      context,
      'ingress',
      'fail',
      `the ingress allow-list has ${table.rules} rules, want 2 (one per family)`,
      `weftd rewrites the table when it finds it changed: ${RESTART}`,
    );
  }
  if (missing.length === 0 && extra.length === 0 && table.rules === 2) {
    add(context, 'ingress', 'ok', `the tunnel port accepts the ${wanted.length} peers' addresses only (nftables table inet weft)`);
  }
}

async function checkAgent(context: Context): Promise<void> {
  const { healthzPort, healthzIP, timeoutMs } = context.options;
  if (healthzPort <= 0) {
    add(
      context,
      'weftd',
      'skip',
      "not asked: give --healthz-port (or WEFTD_HEALTHZ_PORT in the environment file) to check weftd's /readyz",
    );
    return;
  }
  const host = healthzIP === '0.0.0.0' || healthzIP === '' ? '127.0.0.1' : healthzIP === '::' ? '::1' : healthzIP;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${healthzPort}`;
  const report = await queryAgent(url, timeoutMs ?? 2000);
  if (!report.reachable) {
    add(
      context,
      'weftd',
      'fail',
      `weftd does not answer at ${url} (${report.error ?? 'no answer'})`,
      'is it running? systemctl status weftd; journalctl -u weftd',
    );
  } else if (report.ready === undefined) {
    add(
      context,
      'weftd',
      'fail',
      `${url}: ${report.error ?? 'no readiness report'}`,
      'check --healthz-port: another program answers there',
    );
  } else if (!report.ready) {
    add(
      context,
      'weftd',
      'fail',
      `weftd at ${url} is not ready: ${(report.notReady ?? []).join(', ')}`,
      'journalctl -u weftd says why (lease: etcd or config trouble; dataplane: kernel operations failing; subnetEnv: not written yet)',
    );
  } else {
    add(
      context,
      'weftd',
      'ok',
      `ready at ${url}${report.peers === undefined ? '' : `, ${report.peers} peers programmed`}${report.etcdReachable === false ? ', but it cannot reach etcd' : ''}`,
    );
  }
  const takeover = report.info?.leaseTakenOver;
  if (typeof takeover === 'string') add(context, 'lease', 'fail', `weftd reports: ${takeover}`, TAKEN_OVER_FIX);
}

/** Runs every check; the findings come in the order they were made. */
export async function runDoctor(options: DoctorOptions): Promise<Finding[]> {
  const context: Context = {
    options,
    findings: [],
    config: undefined,
    leases: undefined,
    ignored: new Map(),
    subnetEnv: undefined,
    families: [4],
    iface: undefined,
    own: undefined,
    planes: [],
  };
  const guard = async (check: string, fn: () => Promise<void> | void): Promise<void> => {
    try {
      await fn();
    } catch (err) {
      add(context, check, 'fail', `could not check: ${message(err)}`, 'run weftctl doctor as root on the node itself');
    }
  };
  await guard('etcd', () => checkEtcd(context));
  await guard('subnet.env', () => checkSubnetEnvFile(context));
  chooseFamilies(context);
  await guard('interface', () => checkInterface(context));
  await guard('lease', () => checkLease(context));
  await guard('lease', () => checkTakeover(context));
  await guard('ip_forward', () => checkForwarding(context));
  await guard('device', () => checkDevices(context));
  await guard('subnet.env', () => checkSubnetEnvContent(context));
  await guard('mtu', () => checkMtu(context));
  await guard('dataplane', () => checkDataplane(context));
  await guard('iptables', () => checkIptables(context));
  await guard('flanneld', () => checkFlanneldLeftovers(context));
  await guard('ingress', () => checkIngress(context));
  await guard('weftd', () => checkAgent(context));
  return context.findings;
}

const LABEL: Record<Severity, string> = { ok: 'ok', warn: 'WARN', fail: 'FAIL', skip: 'skip' };

/** The findings as text: one line each, the fix indented below, then a summary line. */
export function formatFindings(findings: readonly Finding[]): string {
  const width = Math.max(...findings.map((finding) => finding.check.length), 5);
  const lines = [`weftctl doctor on ${hostname()}`];
  // A finding's text may quote etcd or the kernel: one line each, whatever it holds.
  for (const finding of findings) {
    lines.push(`${LABEL[finding.severity].padEnd(4)}  ${finding.check.padEnd(width)}  ${escapeControls(finding.message)}`);
    if (finding.fix !== undefined && (finding.severity === 'fail' || finding.severity === 'warn'))
      lines.push(`${' '.repeat(width + 8)}fix: ${escapeControls(finding.fix)}`);
  }
  const failed = findings.filter((finding) => finding.severity === 'fail').length;
  const warned = findings.filter((finding) => finding.severity === 'warn').length;
  lines.push(
    '',
    failed === 0
      ? `no problems found${warned > 0 ? ` (${warned} warning${warned === 1 ? '' : 's'})` : ''}`
      : `${failed} problem${failed === 1 ? '' : 's'} found${warned > 0 ? `, ${warned} warning${warned === 1 ? '' : 's'}` : ''}`,
  );
  return lines.join('\n');
}
