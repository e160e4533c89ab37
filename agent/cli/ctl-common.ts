/** What the weftctl commands share: the etcd connection, the lease listing, the refusal error. */
import { ClientRuntimeError, EtcdError, GRPCGenericError, type Etcd3 } from 'etcd3';
import { parseNetworkConfig } from '../../common/config.js';
import { WeftError } from '../../common/errors.js';
import { decodeLease, type Lease } from '../../common/lease.js';
import { connectEtcd, NetworkKeys } from '../registry/etcd.js';
import { rangeEndOf } from '../registry/kv-mirror.js';
import { etcdTlsFiles } from './env.js';
import { checkReadable } from './error-text.js';

/** A refused command: weftctl prints the message and exits 1. */
export class WeftctlError extends WeftError {
  constructor(message: string) {
    super('WEFT_CTL', message);
  }
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
  return args['etcd-endpoints'].split(',').map((endpoint) => endpoint.trim()).filter((endpoint) => endpoint !== '');
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
    if (err instanceof EtcdError || err instanceof GRPCGenericError || err instanceof ClientRuntimeError) throw new WeftctlError(`etcd at ${etcdEndpoints(args).join(',')}: ${err.message.trim()}`);
    throw err;
  } finally {
    client.close();
  }
}

export interface StoredLease {
  lease: Lease;
  /** The etcd lease id as decimal text; "0" for a reservation. */
  etcdLeaseId: string;
}

/** Every decodable lease under the prefix, in key order; undecodable ones are reported through `skip`. */
export async function listLeases(client: Etcd3, keys: NetworkKeys, skip: (key: string, reason: string) => void = defaultSkip): Promise<StoredLease[]> {
  const prefix = Buffer.from(keys.subnets);
  const response = await client.kv.range({ key: prefix, range_end: rangeEndOf(prefix) });
  const leases: StoredLease[] = [];
  for (const kv of response.kvs) {
    const name = keys.leaseName(kv.key.toString());
    if (name === undefined) continue;
    try {
      leases.push({ lease: decodeLease(name, kv.value.toString(), String(kv.lease) === '0'), etcdLeaseId: String(kv.lease) });
    } catch (err) {
      skip(kv.key.toString(), (err as Error).message);
    }
  }
  return leases;
}

/** The network config's Backend.Type, or undefined when there is no usable config (to read leases by). */
export async function networkBackendType(client: Etcd3, keys: NetworkKeys): Promise<string | undefined> {
  const text = await client.get(keys.config).string();
  if (text === null) return undefined;
  try {
    return parseNetworkConfig(text).backend.type;
  } catch {
    return undefined;
  }
}

function defaultSkip(key: string, reason: string): void {
  process.stderr.write(`weftctl: skipping ${key}: ${reason}\n`);
}

/** Seconds left of each lease (undefined for reservations), in the order given. */
export function remainingSeconds(client: Etcd3, leases: readonly StoredLease[]): Promise<(number | undefined)[]> {
  return Promise.all(leases.map(async ({ etcdLeaseId }) =>
    etcdLeaseId === '0' ? undefined : Number((await client.leaseClient.leaseTimeToLive({ ID: etcdLeaseId })).TTL)));
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

/** The VtepMAC of BackendData, and of BackendV6Data when it differs, joined by a comma ("" for none). */
export function leaseVtepMac(lease: Lease): string {
  const macs = [lease.attrs.backendData?.VtepMAC, lease.attrs.backendV6Data?.VtepMAC].filter((mac): mac is string => typeof mac === 'string');
  return [...new Set(macs)].join(',');
}
