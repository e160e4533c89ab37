#!/usr/bin/env node
import { formatTable } from '../../common/table.js';
import { readFileSync } from 'node:fs';
import type { Etcd3 } from 'etcd3';
import yargs, { type Argv } from 'yargs';
import { Prefix, IpAddress } from '../../common/cidr.js';
import {
  isSubnetAllowed,
  isWellKnownPort,
  MAX_FLANNEL_VNI,
  parseNetworkConfig,
  SUPPORTED_BACKENDS,
  tunnelPorts,
  underlayAddressClash,
  type NetworkConfig,
} from '../../common/config.js';
import { WeftError } from '../../common/errors.js';
import {
  formatLeaseAttrs,
  formatLeaseKey,
  leaseBackend,
  leaseBackendTypeFor,
  type LeaseAttrs,
  type LeaseSubnets,
} from '../../common/lease.js';
import { buildInfo } from '../build-info.js';
import { selectPublicInterface, underlayAddresses } from '../host/interfaces.js';
import { openKernel } from '../kernel/index.js';
import { NetworkKeys } from '../registry/etcd.js';
import {
  WeftctlError,
  formatRemaining,
  ignoredLeases,
  leasePublicIp,
  leasePublicIps,
  leasePublicIpv6,
  leaseSubnetText,
  leasePublicKey,
  leaseVtepMac,
  listLeases,
  openEtcd,
  print,
  printError,
  readConfig,
  remainingSeconds,
  withEtcd,
  type EtcdArgs,
} from './ctl-common.js';
import { formatFindings, runDoctor } from './doctor.js';
import { rootHint } from './error-text.js';
import { keyValueTable, outputOption, render } from './output.js';
import { DEFAULT_ENV_FILE, readEnvFile } from './env-file.js';
import { ETCD_OPTIONS, flagKinds, flagsFromEnvironment, normalizeArgv, UsageError, type FlagKind } from './env.js';
import { collectStatus, formatReachability, formatStatus } from './status.js';
import { WEFTD_OPTIONS } from './weftd-options.js';
import { DEFAULT_WIREGUARD_KEY_FILE } from '../wireguard/keys.js';

export { WeftctlError };

/** The part of a config that, once hosts hold leases, cannot change without re-addressing them. */
function structural(config: NetworkConfig): string {
  return JSON.stringify([
    config.ipv4?.network.toString(),
    config.ipv4?.subnetLen,
    config.ipv6?.network.toString(),
    config.ipv6?.subnetLen,
    config.backend.type,
  ]);
}

interface ConfigArgs {
  file?: string | undefined;
  network?: string | undefined;
  'subnet-len'?: number | undefined;
  'subnet-min'?: string | undefined;
  'subnet-max'?: string | undefined;
  'enable-ipv4'?: boolean | undefined;
  'enable-ipv6'?: boolean | undefined;
  'ipv6-network'?: string | undefined;
  'ipv6-subnet-len'?: number | undefined;
  'ipv6-subnet-min'?: string | undefined;
  'ipv6-subnet-max'?: string | undefined;
  backend: string;
  vni?: number | undefined;
  port?: number | undefined;
  'direct-routing'?: boolean | undefined;
}

const IPV6_FLAGS = ['ipv6-network', 'ipv6-subnet-len', 'ipv6-subnet-min', 'ipv6-subnet-max'] as const;
const IPV4_FLAGS = ['network', 'subnet-len', 'subnet-min', 'subnet-max'] as const;

function buildConfig(args: ConfigArgs): string {
  if (args.file !== undefined) return readFileSync(args.file === '-' ? 0 : args.file, 'utf8');
  const ipv4 = args['enable-ipv4'] ?? true;
  const ipv6 = args['enable-ipv6'] ?? args['ipv6-network'] !== undefined;
  if (ipv4 && args.network === undefined) {
    throw new WeftctlError(
      'give --network (and optionally --subnet-len, --ipv6-network, --backend), --enable-ipv4=false --ipv6-network for IPv6 only, or --file',
    );
  }
  const given = (flags: readonly (keyof ConfigArgs)[]) => flags.filter((flag) => args[flag] !== undefined).map((flag) => `--${flag}`);
  if (!ipv6 && given(IPV6_FLAGS).length > 0) throw new WeftctlError(`${given(IPV6_FLAGS).join(', ')} need IPv6: drop --enable-ipv6=false`);
  if (!ipv4 && given(IPV4_FLAGS).length > 0) throw new WeftctlError(`${given(IPV4_FLAGS).join(', ')} need IPv4: drop --enable-ipv4=false`);
  const config: Record<string, unknown> = {};
  const put = (field: string, value: unknown) => {
    if (value !== undefined) config[field] = value;
  };
  put('Network', args.network);
  put('SubnetLen', args['subnet-len']);
  put('SubnetMin', args['subnet-min']);
  put('SubnetMax', args['subnet-max']);
  if (!ipv4) config.EnableIPv4 = false;
  if (ipv6) config.EnableIPv6 = true;
  put('IPv6Network', args['ipv6-network']);
  put('IPv6SubnetLen', args['ipv6-subnet-len']);
  put('IPv6SubnetMin', args['ipv6-subnet-min']);
  put('IPv6SubnetMax', args['ipv6-subnet-max']);
  const backend: Record<string, unknown> = { Type: args.backend };
  if (args.vni !== undefined) backend.VNI = args.vni;
  if (args.port !== undefined) backend.Port = args.port;
  if (args['direct-routing'] !== undefined) backend.DirectRouting = args['direct-routing'];
  config.Backend = backend;
  return JSON.stringify(config);
}

/** The network config as stored, parsed; refuses when there is none or it does not parse. */
async function requireConfig(client: Etcd3, keys: NetworkKeys, purpose: string): Promise<NetworkConfig> {
  const text = await client.get(keys.config).string();
  if (text === null) throw new WeftctlError(`no config at ${keys.config}: ${purpose}; seed one with: weftctl config set --network <cidr>`);
  try {
    return parseNetworkConfig(text);
  } catch (err) {
    throw new WeftctlError(`${keys.config} is not a usable config (${(err as Error).message}): ${purpose}`);
  }
}

function parseFlag<T>(flag: string, value: string, parse: (text: string) => T): T {
  try {
    return parse(value);
  } catch (err) {
    throw new WeftctlError(`${flag}: ${(err as Error).message}`);
  }
}

interface ReserveArgs {
  subnet: string;
  'ipv6-subnet'?: string | undefined;
  'public-ip'?: string | undefined;
  'public-ipv6'?: string | undefined;
  backend?: string | undefined;
}

/**
 * The key and value of a reservation, in the form the network's config asks for: flanneld's allocator
 * parses every key under subnets/ and breaks on a key without a family it needs (a dual-stack network's
 * IPv4-only key crashes it, an IPv6-only key reads as 0.0.0.0/0 and overlaps every candidate).
 */
function reservation(config: NetworkConfig, args: ReserveArgs): { subnets: LeaseSubnets; attrs: LeaseAttrs } {
  const first = parseFlag('subnet', args.subnet, (text) => Prefix.parse(text));
  const second =
    args['ipv6-subnet'] === undefined ? undefined : parseFlag('--ipv6-subnet', args['ipv6-subnet'], (text) => Prefix.parse(text));
  const publicIP =
    args['public-ip'] === undefined ? undefined : parseFlag('--public-ip', args['public-ip'], (text) => IpAddress.parse(text));
  const publicIPv6 =
    args['public-ipv6'] === undefined ? undefined : parseFlag('--public-ipv6', args['public-ipv6'], (text) => IpAddress.parse(text));
  const families =
    config.ipv4 !== undefined && config.ipv6 !== undefined ? 'dual-stack' : config.ipv4 !== undefined ? 'IPv4-only' : 'IPv6-only';
  const ipv4 = config.ipv4 === undefined ? undefined : first;
  const ipv6 = config.ipv4 === undefined ? first : second;
  if (families === 'dual-stack' && (first.family !== 4 || second === undefined || publicIP === undefined || publicIPv6 === undefined)) {
    throw new WeftctlError(
      'the network is dual-stack: a reservation names an IPv4 and an IPv6 subnet in one key (flanneld crashes on a single-family key there); ' +
        'give <IPv4 subnet> --ipv6-subnet <IPv6 subnet> --public-ip <IPv4> --public-ipv6 <IPv6>',
    );
  }
  if (families === 'IPv4-only' && (first.family !== 4 || second !== undefined || publicIPv6 !== undefined || publicIP === undefined)) {
    throw new WeftctlError('the network is IPv4-only: give an IPv4 subnet and --public-ip, no --ipv6-subnet or --public-ipv6');
  }
  if (families === 'IPv6-only' && (first.family !== 6 || second !== undefined || publicIP !== undefined || publicIPv6 === undefined)) {
    throw new WeftctlError('the network is IPv6-only: give an IPv6 subnet and --public-ipv6, no --ipv6-subnet or --public-ip');
  }
  for (const [plan, subnet] of [
    [config.ipv4, ipv4],
    [config.ipv6, ipv6],
  ] as const) {
    if (plan === undefined || subnet === undefined) continue;
    if (subnet.family !== plan.family) throw new WeftctlError(`${subnet} is not an IPv${plan.family} subnet`);
    if (!isSubnetAllowed(plan, subnet)) {
      throw new WeftctlError(
        `${subnet} is not a subnet this network hands out: /${plan.subnetLen} subnets of ${plan.network} from ${plan.subnetMin.network} to ${plan.subnetMax.network}`,
      );
    }
  }
  if (publicIP !== undefined && publicIP.family !== 4) throw new WeftctlError(`--public-ip: ${publicIP} is not an IPv4 address`);
  if (publicIPv6 !== undefined && publicIPv6.family !== 6) throw new WeftctlError(`--public-ipv6: ${publicIPv6} is not an IPv6 address`);
  const backend = args.backend ?? config.backend.type;
  return {
    subnets: { ipv4, ipv6 },
    attrs: { publicIP, publicIPv6, backendType: leaseBackendTypeFor(backend), backendData: undefined, backendV6Data: undefined, extra: {} },
  };
}

/** The node flags that tell which interface weftd on this host uses (config set checks its addresses). */
interface NodeInterfaceArgs {
  iface: string[];
  'iface-regex': string[];
  'public-ip'?: string | undefined;
  'public-ipv6'?: string | undefined;
}

/**
 * Why weftd on this host would refuse `config`: its Network contains the underlay address weftd would use
 * here (its public interface chosen as weftd chooses it, from the same flags). Undefined when it would
 * not, or when no interface here qualifies (this host is no node).
 */
async function underlayRisk(config: NetworkConfig, node: NodeInterfaceArgs): Promise<string | undefined> {
  let addresses: IpAddress[];
  try {
    addresses = underlayAddresses(
      await selectPublicInterface({
        iface: splitList(node.iface),
        ifaceRegex: splitList(node['iface-regex']),
        publicIp: node['public-ip'],
        publicIpv6: node['public-ipv6'],
        ipv4: config.ipv4 !== undefined,
        ipv6: config.ipv6 !== undefined,
      }),
    );
  } catch {
    return undefined;
  }
  const clash = underlayAddressClash(config, addresses);
  return clash === undefined ? undefined : `${clash}; weftd on this host would refuse the config`;
}

/** A noun's handler when no verb follows (`weftctl config`): its help, on stdout. */
function helpOf(noun: () => Argv<EtcdArgs> | undefined): () => void {
  return () => noun()?.showHelp('log');
}

function configCommands(sub: Argv<EtcdArgs>): Argv<EtcdArgs> {
  return sub
    .command(
      'get',
      'print the network config as stored (JSON by default; -o table or yaml)',
      (get) =>
        get
          .option('output', outputOption('json'))
          .example('$0 config get', 'the config as stored in etcd')
          .example('$0 config get -o table', 'one line per field'),
      async (args) =>
        withEtcd(args, async (client, keys) => {
          const current = await client.get(keys.config).string();
          if (current === null) throw new WeftctlError(`no config at ${keys.config}; seed one with: weftctl config set --network <cidr>`);
          if (args.output === 'json') {
            // as stored, byte for byte: what flanneld and etcdctl see
            print(`${current}\n`);
            return;
          }
          let stored: unknown;
          try {
            stored = JSON.parse(current);
          } catch (err) {
            throw new WeftctlError(`${keys.config} is not JSON (${(err as Error).message}); -o json prints it as stored`);
          }
          const object =
            typeof stored === 'object' && stored !== null && !Array.isArray(stored)
              ? (stored as Record<string, unknown>)
              : { value: stored };
          print(render(args.output, stored, () => keyValueTable(object)));
        }),
    )
    .command(
      'set',
      'write the network config (validated; Backend written explicitly, vxlan by default)',
      (set) =>
        set
          .option('file', { type: 'string', describe: 'the config JSON from this file (- for stdin)' })
          .option('network', { type: 'string', describe: 'the overlay IPv4 CIDR' })
          .option('subnet-len', { type: 'number', describe: 'prefix length of each host subnet' })
          .option('subnet-min', { type: 'string', describe: 'the first IPv4 subnet handed out' })
          .option('subnet-max', { type: 'string', describe: 'the last IPv4 subnet handed out' })
          .option('enable-ipv4', { type: 'boolean', describe: 'an IPv4 overlay (default true; false with --ipv6-network for IPv6 only)' })
          .option('enable-ipv6', { type: 'boolean', describe: 'an IPv6 overlay (default: true when --ipv6-network is given)' })
          .option('ipv6-network', { type: 'string', describe: 'the overlay IPv6 CIDR (dual stack, or IPv6 only with --enable-ipv4=false)' })
          .option('ipv6-subnet-len', { type: 'number', describe: 'prefix length of each host IPv6 subnet' })
          .option('ipv6-subnet-min', { type: 'string', describe: 'the first IPv6 subnet handed out' })
          .option('ipv6-subnet-max', { type: 'string', describe: 'the last IPv6 subnet handed out' })
          .option('backend', { type: 'string', default: 'vxlan', describe: 'vxlan, host-gw, udp or wireguard' })
          .option('vni', { type: 'number', describe: 'VXLAN network identifier' })
          .option('port', { type: 'number', describe: 'VXLAN UDP port' })
          .option('direct-routing', { type: 'boolean', describe: 'route directly to peers on the same subnet' })
          .option('force', {
            type: 'boolean',
            default: false,
            describe:
              "write a risky config: Network, SubnetLen or Backend.Type changed under live leases, a Backend.Port below 1024, a Network holding this host's underlay address",
          })
          .option('iface', { ...WEFTD_OPTIONS.iface, describe: "weftd's --iface on this host, to check the config against its address" })
          .option('iface-regex', { ...WEFTD_OPTIONS['iface-regex'], describe: "weftd's --iface-regex on this host" })
          .option('public-ip', { ...WEFTD_OPTIONS['public-ip'], describe: "weftd's --public-ip on this host" })
          .option('public-ipv6', { ...WEFTD_OPTIONS['public-ipv6'], describe: "weftd's --public-ipv6 on this host" })
          .example('$0 config set --network 198.18.0.0/16 --backend vxlan', 'seed a new network')
          .example('$0 config set --network 198.18.0.0/16 --ipv6-network 2001:db8:100::/48', 'a dual-stack network'),
      async (args) =>
        withEtcd(args, async (client, keys) => {
          const current = await client.get(keys.config).string();
          const text = buildConfig(args);
          const next = parseNetworkConfig(text);
          if (next.backend.type === 'vxlan' && next.backend.vni > MAX_FLANNEL_VNI) {
            throw new WeftctlError(
              `Backend.VNI ${next.backend.vni} is above ${MAX_FLANNEL_VNI}: flanneld before v0.24 reads a peer's VNI as a 16-bit number and would skip every host of this network`,
            );
          }
          const underlay = await underlayRisk(next, args);
          const risks = [
            ...tunnelPorts(next)
              .filter(({ port }) => isWellKnownPort(port))
              .map(
                ({ field, port }) =>
                  `${field} ${port} is below 1024, where well-known services listen (DNS 53, DHCP 67/68, NTP 123, …): the tunnel would share the port with one, and weftd would leave it without the ingress allow-list`,
              ),
            ...(underlay === undefined ? [] : [underlay]),
          ];
          if (risks.length > 0 && !args.force)
            throw new WeftctlError(`refusing to write the config: ${risks.join('; ')}. Use --force to write it anyway`);
          for (const warning of [...next.warnings, ...(underlay === undefined ? [] : [underlay])])
            printError(`weftctl: warning: ${warning}\n`);
          if (current !== null && !args.force) {
            let previous: NetworkConfig | undefined;
            try {
              previous = parseNetworkConfig(current);
            } catch {
              previous = undefined;
            }
            const live = (await listLeases(client, keys)).filter((stored) => !stored.lease.reservation).length;
            if (previous !== undefined && live > 0 && structural(previous) !== structural(next)) {
              throw new WeftctlError(
                `refusing to change Network, SubnetLen or Backend.Type while ${live} hosts hold leases; use --force and restart every weftd`,
              );
            }
          }
          await client.put(keys.config).value(JSON.stringify(next.raw));
          print(`wrote ${keys.config}\n`);
        }),
    );
}

function leaseCommands(sub: Argv<EtcdArgs>): Argv<EtcdArgs> {
  return sub
    .command(
      ['ls', 'list'],
      'list the subnet leases',
      (ls) => ls.option('output', outputOption()).example('$0 leases ls -o json', 'machine-readable'),
      async (args) =>
        withEtcd(args, async (client, keys) => {
          const config = await readConfig(client, keys);
          if (config === undefined) printError(`weftctl: no valid config at ${keys.config}: cannot tell which leases the agents ignore\n`);
          const leases = await listLeases(client, keys);
          const ignored = ignoredLeases(config, leases);
          const remaining = await remainingSeconds(client, leases);
          const networkBackend = config?.backend.type;
          const rows = leases.map(({ lease }, i) => ({
            subnet: leaseSubnetText(lease),
            publicIP: leasePublicIp(lease),
            publicIPv6: leasePublicIpv6(lease),
            backend: leaseBackend(lease.attrs, networkBackend),
            vtepMac: leaseVtepMac(lease),
            publicKey: leasePublicKey(lease),
            ttlSeconds: remaining[i],
            reserved: lease.reservation,
            ignored: ignored.has(lease.name) ? { reason: ignored.get(lease.name)!.reason, detail: ignored.get(lease.name)!.detail } : null,
          }));
          // WireGuard leases carry a public key: a column for it when any lease has one
          const withKeys = rows.some((row) => row.publicKey !== '');
          print(
            render(args.output, rows, () =>
              formatTable([
                ['SUBNET', 'PUBLIC IP', 'BACKEND', 'VTEP MAC', ...(withKeys ? ['PUBLIC KEY'] : []), 'EXPIRES', 'STATUS'],
                ...rows.map((row, i) => [
                  row.subnet,
                  leasePublicIps(leases[i].lease),
                  row.backend || '-',
                  row.vtepMac || '-',
                  ...(withKeys ? [row.publicKey || '-'] : []),
                  row.reserved ? 'reserved' : formatRemaining(row.ttlSeconds ?? 0),
                  row.ignored === null ? 'in use' : `ignored: ${row.ignored.detail}`,
                ]),
              ]),
            ),
          );
        }),
    )
    .command(
      'reserve <subnet>',
      'reserve a subnet for a host: a lease without expiry',
      (reserve) =>
        reserve
          .positional('subnet', {
            type: 'string',
            demandOption: true,
            describe: 'e.g. 198.18.52.0/24 (the IPv6 subnet in an IPv6-only network)',
          })
          .option('public-ip', { type: 'string', describe: 'the host the subnet is reserved for (its IPv4 address)' })
          .option('ipv6-subnet', { type: 'string', describe: 'dual stack: the IPv6 subnet that goes with <subnet> in one key' })
          .option('public-ipv6', { type: 'string', describe: "dual stack and IPv6 only: the host's IPv6 address" })
          .option('backend', {
            type: 'string',
            choices: SUPPORTED_BACKENDS,
            describe: "the BackendType to write (default: the config's Backend.Type)",
          })
          .example('$0 lease reserve 198.18.52.0/24 --public-ip 198.51.100.3', 'pin a subnet to a host')
          .example(
            '$0 lease reserve 198.18.52.0/24 --ipv6-subnet 2001:db8:100:34::/64 --public-ip 198.51.100.3 --public-ipv6 2001:db8::3',
            'the same in a dual-stack network',
          ),
      async (args) =>
        withEtcd(args, async (client, keys) => {
          const config = await requireConfig(client, keys, 'a reservation takes its key form (IPv4, IPv6 or both) from it');
          const { subnets, attrs } = reservation(config, args);
          const name = formatLeaseKey(subnets);
          const clash = (await listLeases(client, keys, () => undefined)).find(
            ({ lease }) =>
              (subnets.ipv4 !== undefined && (lease.subnets.ipv4?.overlaps(subnets.ipv4) ?? false)) ||
              (subnets.ipv6 !== undefined && (lease.subnets.ipv6?.overlaps(subnets.ipv6) ?? false)),
          );
          if (clash !== undefined)
            throw new WeftctlError(`${name} overlaps ${clash.lease.name}, already leased or reserved; revoke it first`);
          const key = keys.lease(name);
          const created = await client
            .if(key, 'Create', '==', 0)
            .then(client.put(key).value(formatLeaseAttrs(attrs)))
            .commit();
          if (!created.succeeded) throw new WeftctlError(`${name} is already leased or reserved; revoke it first`);
          print(`reserved ${name} for ${[attrs.publicIP, attrs.publicIPv6].filter((ip) => ip !== undefined).join(' and ')}\n`);
        }),
    )
    .command(
      'revoke <subnet>',
      'delete one lease (its host acquires a new one)',
      (revoke) =>
        revoke
          .positional('subnet', {
            type: 'string',
            demandOption: true,
            describe: 'e.g. 198.18.52.0/24; a dual-stack lease by either subnet',
          })
          .example('$0 lease revoke 198.18.52.0/24', 'delete a lease (its host acquires a new one); a dual-stack lease by either subnet'),
      async (args) =>
        withEtcd(args, async (client, keys) => {
          const subnet = parseFlag('subnet', args.subnet, (text) => Prefix.parse(text));
          const name = formatLeaseKey(subnet.family === 4 ? { ipv4: subnet, ipv6: undefined } : { ipv4: undefined, ipv6: subnet });
          // a dual-stack lease ("198.18.52.0-24&2001:db8:100:34::-64") is found by either of its subnets
          const found =
            (await client.get(keys.lease(name)).string()) !== null
              ? name
              : (await listLeases(client, keys)).find(
                  ({ lease }) => (subnet.family === 4 ? lease.subnets.ipv4 : lease.subnets.ipv6)?.equals(subnet) ?? false,
                )?.lease.name;
          const deleted = found === undefined ? 0 : Number((await client.delete().key(keys.lease(found))).deleted);
          if (deleted === 0) throw new WeftctlError(`no lease ${name}`);
          print(`revoked ${found}\n`);
        }),
    );
}

function commands(parser: Argv<EtcdArgs>): Argv<EtcdArgs> {
  let configNoun: Argv<EtcdArgs> | undefined;
  let leaseNoun: Argv<EtcdArgs> | undefined;
  return parser
    .command(
      'config',
      'read or write the network config: config get, config set',
      (sub) =>
        (configNoun = configCommands(sub)
          .example('$0 config set --network 198.18.0.0/16 --backend vxlan', 'seed a new network')
          .example('$0 config get -o yaml', 'print the config as YAML')),
      helpOf(() => configNoun),
    )
    .command(
      ['lease', 'leases'],
      'list, reserve or revoke subnet leases: lease ls, lease reserve, lease revoke (lease and leases alike)',
      (sub) =>
        (leaseNoun = leaseCommands(sub)
          .example('$0 leases ls', 'list the subnet leases')
          .example('$0 lease reserve 198.18.52.0/24 --public-ip 198.51.100.3', 'pin a subnet to a host')
          .example('$0 lease revoke 198.18.52.0/24', 'delete a lease')),
      helpOf(() => leaseNoun),
    )
    .command(
      'status',
      "the cluster: every lease, joined with what its host's weftd reports on /readyz and /metrics",
      (sub) =>
        sub
          .option('healthz-port', {
            type: 'number',
            default: 0,
            describe: 'the port the agents serve /readyz and /metrics on (their --healthz-port); 0 lists the leases only',
          })
          .option('timeout', { type: 'number', default: 2, describe: 'seconds to wait for each agent' })
          .option('output', outputOption())
          .example('$0 status --healthz-port 9910', "ask each lease's host at <PublicIP>:9910")
          .example('$0 status -o json', 'machine-readable; the port comes from WEFTD_HEALTHZ_PORT in /etc/weft/weftd.env when set there')
          .epilogue(
            'Exits 1 when a host has a problem: its agent is unreachable or not ready, cannot reach etcd, or programs fewer peers than there are leases.',
          ),
      async (args) =>
        withEtcd(args, async (client, keys) => {
          const port = args['healthz-port'];
          if (!Number.isInteger(port) || port < 0 || port > 65535) throw new WeftctlError(`--healthz-port: ${port} is not a port number`);
          if (!(args.timeout > 0)) throw new WeftctlError(`--timeout: ${args.timeout} is not a positive number of seconds`);
          const leases = await listLeases(client, keys);
          const config = await readConfig(client, keys);
          const ignored = ignoredLeases(config, leases);
          const rows = await collectStatus(
            leases,
            await remainingSeconds(client, leases),
            {
              healthzPort: port,
              timeoutMs: args.timeout * 1000,
              networkBackend: config?.backend.type,
            },
            ignored,
          );
          print(
            render(args.output, rows, () =>
              rows.length === 0 ? `no leases under ${keys.subnets}` : `${formatStatus(rows)}${formatReachability(rows)}`,
            ),
          );
          if (port === 0 && args.output === 'table') printError('weftctl: agents not asked: give --healthz-port (their --healthz-port)\n');
          const troubled = rows.filter((row) => row.problems.length > 0);
          if (troubled.length > 0)
            throw new WeftctlError(
              `${troubled.length} of ${rows.length} hosts have problems: ${troubled.map((row) => `${row.subnet} (${row.publicIP})`).join(', ')}`,
            );
        }),
    )
    .command(
      'doctor',
      'check this node: device, routes, FDB, neighbours, MTU, ip_forward, iptables, ingress allow-list, etcd and subnet.env against its lease',
      (sub) =>
        sub
          .option('subnet-file', { ...WEFTD_OPTIONS['subnet-file'], describe: 'the subnet.env weftd writes (its --subnet-file)' })
          .option('iface', WEFTD_OPTIONS.iface)
          .option('iface-regex', WEFTD_OPTIONS['iface-regex'])
          .option('public-ip', WEFTD_OPTIONS['public-ip'])
          .option('public-ipv6', WEFTD_OPTIONS['public-ipv6'])
          .option('ip-masq', { type: 'boolean', describe: 'weftd runs with --ip-masq (default: what FLANNEL_IPMASQ in subnet.env says)' })
          .option('ip-masq-fully-random-disable', WEFTD_OPTIONS['ip-masq-fully-random-disable'])
          .option('iptables-forward-rules', WEFTD_OPTIONS['iptables-forward-rules'])
          .option('ingress-allow-list', WEFTD_OPTIONS['ingress-allow-list'])
          .option('vxlan-userspace', WEFTD_OPTIONS['vxlan-userspace'])
          .option('nexthop-objects', WEFTD_OPTIONS['nexthop-objects'])
          .option('wireguard-key-file', WEFTD_OPTIONS['wireguard-key-file'])
          .option('wireguard-socket-dir', WEFTD_OPTIONS['wireguard-socket-dir'])
          .option('healthz-ip', WEFTD_OPTIONS['healthz-ip'])
          .option('healthz-port', {
            ...WEFTD_OPTIONS['healthz-port'],
            describe: "weftd's --healthz-port, to check its /readyz (0 = do not)",
          })
          .option('output', outputOption())
          .example('sudo $0 doctor', "on a node: reads weftd's flags from /etc/weft/weftd.env")
          .example('sudo $0 doctor --iface eth1 --healthz-port 9910 -o json', "with weftd's flags given explicitly")
          .epilogue(
            'Give doctor the flags weftd runs with (the environment file does that on an installed node). Exits 1 when anything is wrong.',
          ),
      async (args) => {
        const client = openEtcd(args, 3000);
        const kernel = openKernel();
        try {
          const findings = await runDoctor({
            client,
            keys: new NetworkKeys(args['etcd-prefix']),
            endpoints: args['etcd-endpoints'],
            kernel,
            subnetFile: args['subnet-file'],
            iface: splitList(args.iface),
            ifaceRegex: splitList(args['iface-regex']),
            publicIp: args['public-ip'],
            publicIpv6: args['public-ipv6'],
            ipMasq: args['ip-masq'],
            ipMasqRandomFullyDisable: args['ip-masq-fully-random-disable'],
            forwardRules: args['iptables-forward-rules'],
            ingressAllowList: args['ingress-allow-list'],
            vxlanUserspace: args['vxlan-userspace'],
            nexthopObjects: args['nexthop-objects'],
            wireguard: {
              implementation: 'auto',
              keyFile: args['wireguard-key-file'] ?? process.env.WIREGUARD_KEY_FILE ?? DEFAULT_WIREGUARD_KEY_FILE,
              socketDir: args['wireguard-socket-dir'],
            },
            healthzIP: args['healthz-ip'],
            healthzPort: args['healthz-port'],
          });
          print(render(args.output, findings, () => formatFindings(findings)));
          const failed = findings.filter((finding) => finding.severity === 'fail');
          if (failed.length > 0)
            throw new WeftctlError(
              `${failed.length} problem${failed.length === 1 ? '' : 's'}: ${[...new Set(failed.map((finding) => finding.check))].join(', ')}`,
            );
        } finally {
          await kernel.close();
          client.close();
        }
      },
    );
}

function splitList(values: readonly string[]): string[] {
  return values
    .flatMap((value) => value.split(','))
    .map((value) => value.trim())
    .filter((value) => value !== '');
}

/** The commands that take node-level flags from the environment (file), and which flags. */
const NODE_FLAGS: Record<string, readonly string[]> = {
  config: ['iface', 'iface-regex', 'public-ip', 'public-ipv6'],
  status: ['healthz-port'],
  doctor: [
    'subnet-file',
    'iface',
    'iface-regex',
    'public-ip',
    'public-ipv6',
    'ip-masq',
    'ip-masq-fully-random-disable',
    'iptables-forward-rules',
    'ingress-allow-list',
    'vxlan-userspace',
    'wireguard-key-file',
    'wireguard-socket-dir',
    'healthz-ip',
    'healthz-port',
  ],
};
const COMMANDS = ['config', 'leases', 'lease', 'status', 'doctor'];

/**
 * The kinds of weftctl's flags, to read its command line as Go's flag package would (normalizeArgv): the
 * etcd and node-level ones are weftd's; these are its own.
 */
const FLAG_KINDS: ReadonlyMap<string, FlagKind> = new Map([
  ...flagKinds({ ...ETCD_OPTIONS, ...WEFTD_OPTIONS }),
  ...(['direct-routing', 'enable-ipv4', 'enable-ipv6', 'force'] as const).map((flag) => [flag, 'boolean'] as const),
  ...(
    [
      'environment-file',
      'file',
      'network',
      'subnet-len',
      'subnet-min',
      'subnet-max',
      'ipv6-network',
      'ipv6-subnet',
      'ipv6-subnet-len',
      'ipv6-subnet-min',
      'ipv6-subnet-max',
      'backend',
      'vni',
      'port',
      'timeout',
      'output',
    ] as const
  ).map((flag) => [flag, 'value'] as const),
]);

/** A command line yargs refused; weftctl exits 2. */
class CommandLineError extends Error {}

/** --environment-file's value on the command line, or undefined when not given. */
function envFileArgument(argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg.startsWith('--environment-file=')) return arg.slice('--environment-file='.length);
    if (arg === '--environment-file') return argv[i + 1] ?? '';
  }
  return undefined;
}

async function main(): Promise<void> {
  try {
    const { argv } = normalizeArgv(process.argv.slice(2), FLAG_KINDS);
    const given = envFileArgument(argv);
    // flags on the command line win over WEFTD_* / FLANNELD_* in the environment, which win over the file
    const env = { ...readEnvFile(given ?? DEFAULT_ENV_FILE, given === undefined), ...process.env };
    const command = argv.find((arg) => COMMANDS.includes(arg));
    const fromEnvKinds = new Map(
      [...FLAG_KINDS].filter(([flag]) => flag in ETCD_OPTIONS || (NODE_FLAGS[command ?? ''] ?? []).includes(flag)),
    );
    const fromEnv = flagsFromEnvironment(fromEnvKinds, argv, env);
    const parser = yargs([...fromEnv, ...argv])
      .scriptName('weftctl')
      .version(buildInfo().version)
      .usage(
        "$0 <command>\n\nSeeds weft's network config in etcd, manages subnet leases (flannel's etcd schema) and checks a cluster and its nodes.",
      )
      .options(ETCD_OPTIONS)
      .option('environment-file', {
        type: 'string',
        describe: `read WEFTD_* / FLANNELD_* settings from this file (default ${DEFAULT_ENV_FILE} when it exists; "" for none)`,
      })
      .demandCommand(1, 'give a command')
      .strict()
      .recommendCommands()
      .fail((message, err) => {
        // a command's own error goes to main's handler; a usage error names the flag and points at --help
        if (err !== undefined && err !== null) throw err;
        throw new CommandLineError(`${message}\nRun weftctl --help, or weftctl <command> --help, for the flags and examples.`);
      })
      .example('$0 config set --network 198.18.0.0/16', 'seed the network config')
      .example('$0 leases ls', 'list the subnet leases')
      .example('$0 status --healthz-port 9910', "every lease and its agent's health")
      .example('sudo $0 doctor', 'check this node')
      .epilogue(
        'etcd flags can also be set as WEFTD_<FLAG> or FLANNELD_<FLAG>, as for weftd, in the environment or the environment file. ' +
          'As for weftd (and flanneld), -flag works as --flag and booleans are 1, t, T, TRUE, true, True or 0, f, F, FALSE, false, False.',
      );
    await commands(parser).parseAsync();
  } catch (err) {
    printError(`weftctl: ${(err as Error).message}${rootHint(err, 'weftctl')}\n`);
    process.exitCode = err instanceof WeftError && !(err instanceof UsageError) ? 1 : 2;
  }
}

void main();
