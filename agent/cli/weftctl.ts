#!/usr/bin/env node
import { formatTable } from '../../common/table.js';
import { readFileSync } from 'node:fs';
import yargs, { type Argv } from 'yargs';
import { Prefix, IpAddress } from '../../common/cidr.js';
import { parseNetworkConfig, type NetworkConfig } from '../../common/config.js';
import { WeftError } from '../../common/errors.js';
import { formatLeaseAttrs, formatLeaseKey } from '../../common/lease.js';
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
  leaseVtepMac,
  listLeases,
  openEtcd,
  readConfig,
  remainingSeconds,
  withEtcd,
  type EtcdArgs,
} from './ctl-common.js';
import { formatFindings, runDoctor } from './doctor.js';
import { DEFAULT_ENV_FILE, readEnvFile } from './env-file.js';
import { ETCD_OPTIONS, flagsFromEnvironment } from './env.js';
import { collectStatus, formatStatus } from './status.js';
import { WEFTD_OPTIONS } from './weftd-options.js';

export { WeftctlError };

/** The part of a config that, once hosts hold leases, cannot change without re-addressing them. */
function structural(config: NetworkConfig): string {
  return JSON.stringify([config.ipv4?.network.toString(), config.ipv4?.subnetLen, config.ipv6?.network.toString(), config.ipv6?.subnetLen, config.backend.type]);
}

function buildConfig(args: { file?: string | undefined; network?: string | undefined; 'subnet-len'?: number | undefined; backend: string; vni?: number | undefined; port?: number | undefined; 'direct-routing'?: boolean | undefined }): string {
  if (args.file !== undefined) return readFileSync(args.file === '-' ? 0 : args.file, 'utf8');
  if (args.network === undefined) throw new WeftctlError('give --network (and optionally --subnet-len, --backend) or --file');
  const backend: Record<string, unknown> = { Type: args.backend };
  if (args.vni !== undefined) backend.VNI = args.vni;
  if (args.port !== undefined) backend.Port = args.port;
  if (args['direct-routing'] !== undefined) backend.DirectRouting = args['direct-routing'];
  return JSON.stringify({ Network: args.network, ...(args['subnet-len'] === undefined ? {} : { SubnetLen: args['subnet-len'] }), Backend: backend });
}

function commands(parser: Argv<EtcdArgs>): Argv<EtcdArgs> {
  return parser
    .command('config <action>', 'read or write the network config', (sub) =>
      sub
        .positional('action', { choices: ['get', 'set'] as const, demandOption: true })
        .option('file', { type: 'string', describe: 'set: the config JSON from this file (- for stdin)' })
        .option('network', { type: 'string', describe: 'set: the overlay IPv4 CIDR' })
        .option('subnet-len', { type: 'number', describe: 'set: prefix length of each host subnet' })
        .option('backend', { type: 'string', default: 'vxlan', describe: 'set: vxlan, host-gw or udp' })
        .option('vni', { type: 'number', describe: 'set: VXLAN network identifier' })
        .option('port', { type: 'number', describe: 'set: VXLAN UDP port' })
        .option('direct-routing', { type: 'boolean', describe: 'set: route directly to peers on the same subnet' })
        .option('force', { type: 'boolean', default: false, describe: 'set: change Network, SubnetLen or Backend.Type under live leases' })
        .example('$0 config set --network 10.5.0.0/16 --backend vxlan', 'seed a new network')
        .example('$0 config get', 'print the config as stored'),
      async (args) => withEtcd(args, async (client, keys) => {
        const current = await client.get(keys.config).string();
        if (args.action === 'get') {
          if (current === null) throw new WeftctlError(`no config at ${keys.config}; seed one with: weftctl config set --network <cidr>`);
          process.stdout.write(`${current}\n`);
          return;
        }
        const text = buildConfig(args);
        const next = parseNetworkConfig(text);
        for (const warning of next.warnings) process.stderr.write(`weftctl: warning: ${warning}\n`);
        if (current !== null && !args.force) {
          let previous: NetworkConfig | undefined;
          try {
            previous = parseNetworkConfig(current);
          } catch {
            previous = undefined;
          }
          const live = (await listLeases(client, keys)).filter((stored) => !stored.lease.reservation).length;
          if (previous !== undefined && live > 0 && structural(previous) !== structural(next)) {
            throw new WeftctlError(`refusing to change Network, SubnetLen or Backend.Type while ${live} hosts hold leases; use --force and restart every weftd`);
          }
        }
        await client.put(keys.config).value(JSON.stringify(next.raw));
        process.stdout.write(`wrote ${keys.config}\n`);
      }))
    .command('leases ls', 'list the subnet leases', (sub) =>
      sub
        .option('output', { alias: 'o', choices: ['table', 'json'] as const, default: 'table' as const })
        .example('$0 leases ls -o json', 'machine-readable'),
      async (args) => withEtcd(args, async (client, keys) => {
        const config = await readConfig(client, keys);
        if (config === undefined) process.stderr.write(`weftctl: no valid config at ${keys.config}: cannot tell which leases the agents ignore\n`);
        const leases = await listLeases(client, keys);
        const ignored = ignoredLeases(config, leases);
        const remaining = await remainingSeconds(client, leases);
        const rows = leases.map(({ lease }, i) => ({
          subnet: leaseSubnetText(lease),
          publicIP: leasePublicIp(lease),
          publicIPv6: leasePublicIpv6(lease),
          backend: lease.attrs.backendType,
          vtepMac: leaseVtepMac(lease),
          ttlSeconds: remaining[i],
          reserved: lease.reservation,
          ignored: ignored.has(lease.name) ? { reason: ignored.get(lease.name)!.reason, detail: ignored.get(lease.name)!.detail } : null,
        }));
        if (args.output === 'json') {
          process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
          return;
        }
        process.stdout.write(`${formatTable([
          ['SUBNET', 'PUBLIC IP', 'BACKEND', 'VTEP MAC', 'EXPIRES', 'STATUS'],
          ...rows.map((row, i) => [
            row.subnet, leasePublicIps(leases[i]!.lease), row.backend, row.vtepMac || '-', row.reserved ? 'reserved' : formatRemaining(row.ttlSeconds ?? 0),
            row.ignored === null ? 'in use' : `ignored: ${row.ignored.detail}`,
          ]),
        ])}\n`);
      }))
    .command('lease <action> <subnet>', 'reserve or revoke one subnet lease', (sub) =>
      sub
        .positional('action', { choices: ['reserve', 'revoke'] as const, demandOption: true })
        .positional('subnet', { type: 'string', demandOption: true, describe: 'e.g. 10.5.52.0/24' })
        .option('public-ip', { type: 'string', describe: 'reserve: the host the subnet is reserved for' })
        .example('$0 lease reserve 10.5.52.0/24 --public-ip 198.51.100.3', 'pin a subnet to a host')
        .example('$0 lease revoke 10.5.52.0/24', 'delete a lease (its host acquires a new one); a dual-stack lease by either subnet'),
      async (args) => withEtcd(args, async (client, keys) => {
        let subnet: Prefix;
        try {
          subnet = Prefix.parse(args.subnet);
        } catch (err) {
          throw new WeftctlError(`subnet: ${(err as Error).message}`);
        }
        const name = formatLeaseKey(subnet.family === 4 ? { ipv4: subnet, ipv6: undefined } : { ipv4: undefined, ipv6: subnet });
        const key = keys.lease(name);
        if (args.action === 'revoke') {
          // a dual-stack lease ("10.5.52.0-24&2001:db8:100:34::-64") is found by either of its subnets
          const found = (await client.get(key).string()) !== null ? name
            : (await listLeases(client, keys)).find(({ lease }) => (subnet.family === 4 ? lease.subnets.ipv4 : lease.subnets.ipv6)?.equals(subnet) ?? false)?.lease.name;
          const deleted = found === undefined ? 0 : Number((await client.delete().key(keys.lease(found))).deleted);
          if (deleted === 0) throw new WeftctlError(`no lease ${name}`);
          process.stdout.write(`revoked ${found}\n`);
          return;
        }
        if (args['public-ip'] === undefined) throw new WeftctlError('reserve needs --public-ip');
        let publicIP: IpAddress;
        try {
          publicIP = IpAddress.parse(args['public-ip']);
        } catch (err) {
          throw new WeftctlError(`--public-ip: ${(err as Error).message}`);
        }
        const value = formatLeaseAttrs({
          publicIP: publicIP.family === 4 ? publicIP : undefined,
          publicIPv6: publicIP.family === 6 ? publicIP : undefined,
          backendType: 'vxlan',
          backendData: undefined,
          backendV6Data: undefined,
          extra: {},
        });
        const created = await client.if(key, 'Create', '==', 0).then(client.put(key).value(value)).commit();
        if (!created.succeeded) throw new WeftctlError(`${name} is already leased or reserved; revoke it first`);
        process.stdout.write(`reserved ${name} for ${publicIP}\n`);
      }))
    .command('status', 'the cluster: every lease, joined with what its host\'s weftd reports on /readyz and /metrics', (sub) =>
      sub
        .option('healthz-port', { type: 'number', default: 0, describe: 'the port the agents serve /readyz and /metrics on (their --healthz-port); 0 lists the leases only' })
        .option('timeout', { type: 'number', default: 2, describe: 'seconds to wait for each agent' })
        .option('output', { alias: 'o', choices: ['table', 'json'] as const, default: 'table' as const })
        .example('$0 status --healthz-port 9910', 'ask each lease\'s host at <PublicIP>:9910')
        .example('$0 status -o json', 'machine-readable; the port comes from WEFTD_HEALTHZ_PORT in /etc/weft/weftd.env when set there')
        .epilogue('Exits 1 when a host has a problem: its agent is unreachable or not ready, cannot reach etcd, or programs fewer peers than there are leases.'),
      async (args) => withEtcd(args, async (client, keys) => {
        const port = args['healthz-port'];
        if (!Number.isInteger(port) || port < 0 || port > 65535) throw new WeftctlError(`--healthz-port: ${port} is not a port number`);
        if (!(args.timeout > 0)) throw new WeftctlError(`--timeout: ${args.timeout} is not a positive number of seconds`);
        const leases = await listLeases(client, keys);
        const ignored = ignoredLeases(await readConfig(client, keys), leases);
        const rows = await collectStatus(leases, await remainingSeconds(client, leases), { healthzPort: port, timeoutMs: args.timeout * 1000 }, ignored);
        process.stdout.write(args.output === 'json' ? `${JSON.stringify(rows, null, 2)}\n` : `${rows.length === 0 ? `no leases under ${keys.subnets}` : formatStatus(rows)}\n`);
        if (port === 0 && args.output === 'table') process.stderr.write('weftctl: agents not asked: give --healthz-port (their --healthz-port)\n');
        const troubled = rows.filter((row) => row.problems.length > 0);
        if (troubled.length > 0) throw new WeftctlError(`${troubled.length} of ${rows.length} hosts have problems: ${troubled.map((row) => `${row.subnet} (${row.publicIP})`).join(', ')}`);
      }))
    .command('doctor', 'check this node: device, routes, FDB, neighbours, MTU, ip_forward, iptables, ingress allow-list, etcd and subnet.env against its lease', (sub) =>
      sub
        .option('subnet-file', { ...WEFTD_OPTIONS['subnet-file'], describe: 'the subnet.env weftd writes (its --subnet-file)' })
        .option('iface', WEFTD_OPTIONS.iface)
        .option('iface-regex', WEFTD_OPTIONS['iface-regex'])
        .option('public-ip', WEFTD_OPTIONS['public-ip'])
        .option('public-ipv6', WEFTD_OPTIONS['public-ipv6'])
        .option('ip-masq', { type: 'boolean', describe: 'weftd runs with --ip-masq (default: what FLANNEL_IPMASQ in subnet.env says)' })
        .option('iptables-forward-rules', WEFTD_OPTIONS['iptables-forward-rules'])
        .option('ingress-allow-list', WEFTD_OPTIONS['ingress-allow-list'])
        .option('vxlan-userspace', WEFTD_OPTIONS['vxlan-userspace'])
        .option('healthz-ip', WEFTD_OPTIONS['healthz-ip'])
        .option('healthz-port', { ...WEFTD_OPTIONS['healthz-port'], describe: 'weftd\'s --healthz-port, to check its /readyz (0 = do not)' })
        .option('output', { alias: 'o', choices: ['text', 'json'] as const, default: 'text' as const })
        .example('sudo $0 doctor', 'on a node: reads weftd\'s flags from /etc/weft/weftd.env')
        .example('sudo $0 doctor --iface eth1 --healthz-port 9910 -o json', 'with weftd\'s flags given explicitly')
        .epilogue('Give doctor the flags weftd runs with (the environment file does that on an installed node). Exits 1 when anything is wrong.'),
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
            forwardRules: args['iptables-forward-rules'],
            ingressAllowList: args['ingress-allow-list'],
            vxlanUserspace: args['vxlan-userspace'],
            healthzIP: args['healthz-ip'],
            healthzPort: args['healthz-port'],
          });
          process.stdout.write(args.output === 'json' ? `${JSON.stringify(findings, null, 2)}\n` : `${formatFindings(findings)}\n`);
          const failed = findings.filter((finding) => finding.severity === 'fail');
          if (failed.length > 0) throw new WeftctlError(`${failed.length} problem${failed.length === 1 ? '' : 's'}: ${[...new Set(failed.map((finding) => finding.check))].join(', ')}`);
        } finally {
          await kernel.close();
          client.close();
        }
      });
}

function splitList(values: readonly string[]): string[] {
  return values.flatMap((value) => value.split(',')).map((value) => value.trim()).filter((value) => value !== '');
}

/** The commands that take node-level flags from the environment (file), and which flags. */
const NODE_FLAGS: Record<string, readonly string[]> = {
  status: ['healthz-port'],
  doctor: ['subnet-file', 'iface', 'iface-regex', 'public-ip', 'public-ipv6', 'ip-masq', 'iptables-forward-rules', 'ingress-allow-list', 'vxlan-userspace', 'healthz-ip', 'healthz-port'],
};
const COMMANDS = ['config', 'leases', 'lease', 'status', 'doctor'];

/** A bad command line; weftctl exits 2. */
class UsageError extends Error {}

/** --environment-file's value on the command line, or undefined when not given. */
function envFileArgument(argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg.startsWith('--environment-file=')) return arg.slice('--environment-file='.length);
    if (arg === '--environment-file') return argv[i + 1] ?? '';
  }
  return undefined;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  try {
    const given = envFileArgument(argv);
    // flags on the command line win over WEFTD_* / FLANNELD_* in the environment, which win over the file
    const env = { ...readEnvFile(given ?? DEFAULT_ENV_FILE, given === undefined), ...process.env };
    const command = argv.find((arg) => COMMANDS.includes(arg));
    const fromEnv = flagsFromEnvironment([...Object.keys(ETCD_OPTIONS), ...(NODE_FLAGS[command ?? ''] ?? [])], argv, env);
    const parser = yargs([...fromEnv, ...argv])
      .scriptName('weftctl')
      .usage('$0 <command>\n\nSeeds weft\'s network config in etcd, manages subnet leases (flannel\'s etcd schema) and checks a cluster and its nodes.')
      .options(ETCD_OPTIONS)
      .option('environment-file', { type: 'string', describe: `read WEFTD_* / FLANNELD_* settings from this file (default ${DEFAULT_ENV_FILE} when it exists; "" for none)` })
      .demandCommand(1, 'give a command')
      .strict()
      .recommendCommands()
      .fail((message, err) => {
        // a command's own error goes to main's handler; a usage error names the flag and points at --help
        if (err !== undefined && err !== null) throw err;
        throw new UsageError(`${message}\nRun weftctl --help, or weftctl <command> --help, for the flags and examples.`);
      })
      .example('$0 config set --network 10.5.0.0/16', 'seed the network config')
      .example('$0 leases ls', 'list the subnet leases')
      .example('$0 status --healthz-port 9910', 'every lease and its agent\'s health')
      .example('sudo $0 doctor', 'check this node')
      .epilogue('etcd flags can also be set as WEFTD_<FLAG> or FLANNELD_<FLAG>, as for weftd, in the environment or the environment file.');
    await commands(parser).parseAsync();
  } catch (err) {
    process.stderr.write(`weftctl: ${(err as Error).message}\n`);
    process.exitCode = err instanceof WeftError ? 1 : 2;
  }
}

void main();
