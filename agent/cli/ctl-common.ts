/** What the weftctl commands share: the etcd connection, the lease listing, the refusal error. */
import { ClientRuntimeError, EtcdError, GRPCGenericError, type Etcd3 } from 'etcd3';
import { parseNetworkConfig, type NetworkConfig } from '../../common/config.js';
import { WeftError } from '../../common/errors.js';
import { excerpt } from '../../common/json.js';
import { arbitrate, type IgnoredLease } from '../../common/lease-arbiter.js';
import { decodeLeaseValue, type Lease } from '../../common/lease.js';
import { escapeControls } from '../../common/terminal.js';
import { connectEtcd, NetworkKeys } from '../registry/etcd.js';
import { listPrefix } from '../registry/kv-mirror.js';
import { etcdTlsFiles } from './env.js';
import { checkReadable } from './error-text.js';

/** A refused command: weftctl prints the message and exits 1. */
export class WeftctlError extends WeftError {
  constructor(message: string) {
    super('WEFT_CTL', message);
  }
}

/**
 * What weftctl prints goes through these: control characters are escaped (newlines and tabs kept), so that text
 * from etcd or from a peer's agent never reaches the terminal raw, whatever prints it.
 */
export function print(text: string): void {
  process.stdout.write(escapeControls(text, { layout: true }));
}

export function printError(text: string): void {
  process.stderr.write(escapeControls(text, { layout: true }));
}

export interface EtcdArgs {
  'etcd-endpoints': string;
  'etcd-prefix': string;
  'etcd-cafile'?: string | undefined;
  'etcd-certfile'?: string | undefined;
  'etcd-keyfile'?: string | undefined;
  'etcd-username'?: string | undefined;
  'etcd-password'?: string | undefined;
}

export function etcdEndpoints(args: EtcdArgs): string[] {
  return args['etcd-endpoints']
    .split(',')
    .map((endpoint) => endpoint.trim())
    .filter((endpoint) => endpoint !== '');
}

export function openEtcd(args: EtcdArgs, callTimeoutMs?: number): Etcd3 {
  const files = etcdTlsFiles(args);
  checkReadable({ 'etcd-cafile': files.caFile, 'etcd-certfile': files.certFile, 'etcd-keyfile': files.keyFile }, 'weftctl');
  return connectEtcd({
    endpoints: etcdEndpoints(args),
    ...files,
    username: args['etcd-username'],
    password: args['etcd-password'],
    ...(callTimeoutMs === undefined ? {} : { callTimeoutMs }),
  });
}

export async function withEtcd<T>(args: EtcdArgs, fn: (client: Etcd3, keys: NetworkKeys) => Promise<T>): Promise<T> {
  const client = openEtcd(args);
  try {
    return await fn(client, new NetworkKeys(args['etcd-prefix']));
  } catch (err) {
    if (err instanceof EtcdError || err instanceof GRPCGenericError || err instanceof ClientRuntimeError)
      throw new WeftctlError(`etcd at ${etcdEndpoints(args).join(',')}: ${err.message.trim()}`);
    throw err;
  } finally {
    client.close();
  }
}

export interface StoredLease {
  lease: Lease;
  /** The etcd lease id as decimal text; "0" for a reservation. */
  etcdLeaseId: string;
  /** The etcd revision the key was created at: of two leases claiming one subnet, the older keeps it. */
  createRevision: bigint;
}

/** Every decodable lease under the prefix, in key order; undecodable ones are reported through `skip`. */
export async function listLeases(
  client: Etcd3,
  keys: NetworkKeys,
  skip: (key: string, reason: string) => void = defaultSkip,
): Promise<StoredLease[]> {
  const listing = await listPrefix(client, keys.subnets);
  const leases: StoredLease[] = [];
  for (const kv of listing.kvs) {
    const key = kv.key.toString();
    const name = keys.leaseName(key);
    if (name === undefined) continue;
    try {
      leases.push({
        lease: decodeLeaseValue(name, kv.value, String(kv.lease) === '0'),
        etcdLeaseId: String(kv.lease),
        createRevision: BigInt(kv.create_revision),
      });
    } catch (err) {
      skip(excerpt(key), (err as Error).message);
    }
  }
  return leases;
}

/** The network config, or undefined when it is missing or invalid. */
export async function readConfig(client: Etcd3, keys: NetworkKeys): Promise<NetworkConfig | undefined> {
  const text = await client.get(keys.config).string();
  if (text === null) return undefined;
  try {
    return parseNetworkConfig(text);
  } catch {
    return undefined;
  }
}

/** The leases every weftd ignores (LeaseArbiter), by name; none without a config to judge them by. */
export function ignoredLeases(config: NetworkConfig | undefined, leases: readonly StoredLease[]): Map<string, IgnoredLease> {
  if (config === undefined) return new Map();
  const { ignored } = arbitrate(
    config,
    leases.map(({ lease, createRevision }) => ({ lease, createRevision })),
  );
  return new Map(ignored.map((entry) => [entry.lease.name, entry]));
}

function defaultSkip(key: string, reason: string): void {
  printError(`weftctl: skipping ${escapeControls(key)}: ${escapeControls(reason)}\n`);
}

/** Seconds left of each lease (undefined for reservations), in the order given. */
export function remainingSeconds(client: Etcd3, leases: readonly StoredLease[]): Promise<(number | undefined)[]> {
  return Promise.all(
    leases.map(async ({ etcdLeaseId }) =>
      etcdLeaseId === '0' ? undefined : Number((await client.leaseClient.leaseTimeToLive({ ID: etcdLeaseId })).TTL),
    ),
  );
}

export function formatRemaining(seconds: number): string {
  if (seconds < 0) return 'expired';
  const hours = Math.floor(seconds / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  return hours > 0 ? `${hours}h${String(minutes).padStart(2, '0')}m` : `${minutes}m${String(seconds % 60).padStart(2, '0')}s`;
}

/** "198.18.5.0/24", or both families joined by a comma. */
export function leaseSubnetText(lease: Lease): string {
  return [lease.subnets.ipv4?.toString(), lease.subnets.ipv6?.toString()].filter(Boolean).join(',');
}

/** The address the host is reached at: its IPv4 PublicIP, or PublicIPv6 for an IPv6-only lease. */
export function leasePublicIp(lease: Lease): string {
  return (lease.attrs.publicIP ?? lease.attrs.publicIPv6)?.toString() ?? '';
}

/** PublicIPv6, or "" when the lease has none. */
export function leasePublicIpv6(lease: Lease): string {
  return lease.attrs.publicIPv6?.toString() ?? '';
}

/** Both public addresses as a table shows them: "198.51.100.3", or joined by a comma for dual stack. */
export function leasePublicIps(lease: Lease): string {
  return [lease.attrs.publicIP?.toString(), lease.attrs.publicIPv6?.toString()].filter(Boolean).join(',');
}

/** The WireGuard PublicKey of BackendData, and of BackendV6Data when it differs, joined by a comma ("" for none). */
export function leasePublicKey(lease: Lease): string {
  const keys = [lease.attrs.backendData?.PublicKey, lease.attrs.backendV6Data?.PublicKey].filter(
    (key): key is string => typeof key === 'string',
  );
  return [...new Set(keys)].join(',');
}

/** The VtepMAC of BackendData, and of BackendV6Data when it differs, joined by a comma ("" for none). */
export function leaseVtepMac(lease: Lease): string {
  const macs = [lease.attrs.backendData?.VtepMAC, lease.attrs.backendV6Data?.VtepMAC].filter(
    (mac): mac is string => typeof mac === 'string',
  );
  return [...new Set(macs)].join(',');
}
