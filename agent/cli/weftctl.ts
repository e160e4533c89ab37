#!/usr/bin/env node
import { formatTable } from '../../common/table.js';
import { readFileSync } from 'node:fs';
import type { Etcd3 } from 'etcd3';
import yargs, { type Argv } from 'yargs';
import { Prefix, IpAddress } from '../../common/cidr.js';
import { parseNetworkConfig, type NetworkConfig } from '../../common/config.js';
import { WeftError } from '../../common/errors.js';
import { decodeLease, formatLeaseAttrs, formatLeaseKey, type Lease } from '../../common/lease.js';
import { connectEtcd, NetworkKeys } from '../registry/etcd.js';
import { rangeEndOf } from '../registry/kv-mirror.js';
import { ETCD_OPTIONS, flagsFromEnvironment } from './env.js';

/** A refused command: weftctl prints the message and exits 1. */
export class WeftctlError extends WeftError {
  constructor(message: string) {
    super('WEFT_CTL', message);
  }
}

interface EtcdArgs {
  'etcd-endpoints': string;
  'etcd-prefix': string;
  'etcd-cafile'?: string | undefined;
  'etcd-certfile'?: string | undefined;
  'etcd-keyfile'?: string | undefined;
  'etcd-username'?: string | undefined;
  'etcd-password'?: string | undefined;
}

async function withEtcd<T>(args: EtcdArgs, fn: (client: Etcd3, keys: NetworkKeys) => Promise<T>): Promise<T> {
  const client = connectEtcd({
    endpoints: args['etcd-endpoints'].split(',').map((endpoint) => endpoint.trim()).filter((endpoint) => endpoint !== ''),
    caFile: args['etcd-cafile'],
    certFile: args['etcd-certfile'],
    keyFile: args['etcd-keyfile'],
    username: args['etcd-username'],
    password: args['etcd-password'],
  });
  try {
    return await fn(client, new NetworkKeys(args['etcd-prefix']));
  } finally {
    client.close();
  }
}

interface StoredLease {
  lease: Lease;
  etcdLeaseId: string;
}

async function listLeases(client: Etcd3, keys: NetworkKeys): Promise<StoredLease[]> {
  const prefix = Buffer.from(keys.subnets);
  const response = await client.kv.range({ key: prefix, range_end: rangeEndOf(prefix) });
  const leases: StoredLease[] = [];
  for (const kv of response.kvs) {
    const name = keys.leaseName(kv.key.toString());
    if (name === undefined) continue;
    try {
      leases.push({ lease: decodeLease(name, kv.value.toString(), String(kv.lease) === '0'), etcdLeaseId: String(kv.lease) });
    } catch (err) {
      process.stderr.write(`weftctl: skipping ${kv.key.toString()}: ${(err as Error).message}\n`);
    }
  }
  return leases;
}


function formatRemaining(seconds: number): string {
  if (seconds < 0) return 'expired';
  const hours = Math.floor(seconds / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  return hours > 0 ? `${hours}h${String(minutes).padStart(2, '0')}m` : `${minutes}m${String(seconds % 60).padStart(2, '0')}s`;
}

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
        const leases = await listLeases(client, keys);
        const remaining = await Promise.all(leases.map(async ({ etcdLeaseId }) =>
          etcdLeaseId === '0' ? undefined : Number((await client.leaseClient.leaseTimeToLive({ ID: etcdLeaseId })).TTL)));
        const rows = leases.map(({ lease }, i) => ({
          subnet: [lease.subnets.ipv4?.toString(), lease.subnets.ipv6?.toString()].filter(Boolean).join(','),
          publicIP: (lease.attrs.publicIP ?? lease.attrs.publicIPv6)?.toString() ?? '',
          backend: lease.attrs.backendType,
          vtepMac: typeof lease.attrs.backendData?.VtepMAC === 'string' ? lease.attrs.backendData.VtepMAC : '',
          ttlSeconds: remaining[i],
          reserved: lease.reservation,
        }));
        if (args.output === 'json') {
          process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
          return;
        }
        process.stdout.write(`${formatTable([
          ['SUBNET', 'PUBLIC IP', 'BACKEND', 'VTEP MAC', 'EXPIRES'],
          ...rows.map((row) => [row.subnet, row.publicIP, row.backend, row.vtepMac || '-', row.reserved ? 'reserved' : formatRemaining(row.ttlSeconds ?? 0)]),
        ])}\n`);
      }))
    .command('lease <action> <subnet>', 'reserve or revoke one subnet lease', (sub) =>
      sub
        .positional('action', { choices: ['reserve', 'revoke'] as const, demandOption: true })
        .positional('subnet', { type: 'string', demandOption: true, describe: 'e.g. 10.5.52.0/24' })
        .option('public-ip', { type: 'string', describe: 'reserve: the host the subnet is reserved for' })
        .example('$0 lease reserve 10.5.52.0/24 --public-ip 192.168.64.3', 'pin a subnet to a host')
        .example('$0 lease revoke 10.5.52.0/24', 'delete a lease (its host acquires a new one)'),
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
          const deleted = await client.delete().key(key);
          if (Number(deleted.deleted) === 0) throw new WeftctlError(`no lease ${name}`);
          process.stdout.write(`revoked ${name}\n`);
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
      }));
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const parser = yargs([...flagsFromEnvironment(Object.keys(ETCD_OPTIONS), argv, process.env), ...argv])
    .scriptName('weftctl')
    .usage('$0 <command>\n\nSeeds weft\'s network config in etcd and manages subnet leases (flannel\'s etcd schema).')
    .options(ETCD_OPTIONS)
    .demandCommand(1, 'give a command')
    .strict()
    .recommendCommands()
    .epilogue('etcd flags can also be set as WEFTD_<FLAG> or FLANNELD_<FLAG>, as for weftd.');
  try {
    await commands(parser).parseAsync();
  } catch (err) {
    process.stderr.write(`weftctl: ${(err as Error).message}\n`);
    process.exitCode = err instanceof WeftError ? 1 : 2;
  }
}

void main();
