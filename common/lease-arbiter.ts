/**
 * Which of the leases in etcd weft uses. Every host can write every key, so a buggy or hostile writer can
 * put a second key for a live host's subnet (in the dual-stack form, "<victim subnet>&<v6>-64"), a longer
 * prefix inside it, a prefix covering many subnets, or a copy of a live host's VtepMAC. The rules below
 * depend only on etcd's content, so every host takes the same leases and ignores the same ones:
 *
 * - a lease is used only if each of its subnets of an enabled family is one the config hands out (the
 *   configured length, inside Network and SubnetMin..SubnetMax) and it names at least one;
 * - two leases of the same subnet (valid subnets of one length overlap only when equal): the key created
 *   first (lower etcd create revision; then the lower key name) keeps it, the other is ignored;
 * - two vxlan leases with the same VtepMAC in one family: the one whose public IP and VNI derive that MAC
 *   (weft's stableVtepMac) keeps it, else the key created first, since a derived MAC can be written into a
 *   lease before its host exists;
 * - two wireguard leases with the same public key in one family (a WireGuard device takes one peer per key):
 *   the key created first keeps it;
 * - a lease loses all or nothing: one that loses a subnet or a MAC is ignored whole.
 */
import type { Family, Prefix } from './cidr.js';
import type { FamilyConfig, NetworkConfig } from './config.js';
import { stableVtepMac } from './dataplane.js';
import { parseVxlanBackendData, parseWireguardBackendData, type Lease } from './lease.js';

/** A decoded lease and the etcd revision its key was created at (a key deleted and written again gets a new one). */
export interface LeaseVersion {
  lease: Lease;
  createRevision: bigint;
}

export type IgnoreReason = 'invalid-subnet' | 'subnet-conflict' | 'vtep-mac-conflict' | 'public-key-conflict';
const IGNORE_REASONS: readonly IgnoreReason[] = ['invalid-subnet', 'subnet-conflict', 'vtep-mac-conflict', 'public-key-conflict'];

export interface IgnoredLease {
  lease: Lease;
  reason: IgnoreReason;
  /** Why, in words, naming the lease that holds what this one claims. */
  detail: string;
}

/** A change to the set of used leases. */
export type LeaseChange =
  { kind: 'added'; lease: Lease } | { kind: 'changed'; lease: Lease; previous: Lease } | { kind: 'removed'; lease: Lease };

/**
 * Who claims each subnet or tunnel id: per key one lease (the usual case, kept without an array: thousands
 * of keys) or several.
 */
class ClaimMap<K> {
  private readonly byKey = new Map<K, LeaseVersion | LeaseVersion[]>();

  claimants(key: K): readonly LeaseVersion[] {
    const held = this.byKey.get(key);
    return held === undefined ? [] : Array.isArray(held) ? held : [held];
  }

  add(key: K, version: LeaseVersion): void {
    const held = this.byKey.get(key);
    if (held === undefined) this.byKey.set(key, version);
    else if (Array.isArray(held)) held.push(version);
    else this.byKey.set(key, [held, version]);
  }

  remove(key: K, version: LeaseVersion): void {
    const held = this.byKey.get(key);
    if (held === version) {
      this.byKey.delete(key);
    } else if (Array.isArray(held)) {
      const at = held.indexOf(version);
      if (at >= 0) held.splice(at, 1);
      if (held.length === 1) this.byKey.set(key, held[0]);
    }
  }
}

const FAMILIES: readonly Family[] = [4, 6];

function subnetOf(lease: Lease, family: Family): Prefix | undefined {
  return family === 4 ? lease.subnets.ipv4 : lease.subnets.ipv6;
}

function planOf(config: NetworkConfig, family: Family): FamilyConfig | undefined {
  return family === 4 ? config.ipv4 : config.ipv6;
}

/** Ordered by age: the key created first, then the lower key name. */
function older(a: LeaseVersion, b: LeaseVersion): boolean {
  return a.createRevision !== b.createRevision ? a.createRevision < b.createRevision : a.lease.name < b.lease.name;
}

/**
 * What names a lease's tunnel end for `family`, which no two leases may share: a vxlan lease's VtepMAC, a
 * wireguard lease's public key.
 */
function tunnelIdOf(lease: Lease, family: Family): { id: string; kind: 'VtepMAC' | 'public key' } | undefined {
  const data = family === 4 ? lease.attrs.backendData : lease.attrs.backendV6Data;
  try {
    if (lease.attrs.backendType === 'wireguard') {
      return { id: `key:${parseWireguardBackendData(data, lease.name).publicKey}`, kind: 'public key' };
    }
    if (lease.attrs.backendType !== 'vxlan') return undefined;
    return { id: `mac:${parseVxlanBackendData(data, lease.name).vtepMac}`, kind: 'VtepMAC' };
  } catch {
    return undefined; // the data plane refuses it on its own
  }
}

/**
 * Whether a vxlan lease's public IP and VNI derive its VtepMAC for `family` (stableVtepMac). Asked only when
 * two leases claim one MAC: it costs a SHA-256, and every lease event would pay it otherwise.
 */
function derivesVtepMac(lease: Lease, family: Family): boolean {
  if (lease.attrs.backendType !== 'vxlan') return false;
  const publicIP = family === 4 ? lease.attrs.publicIP : lease.attrs.publicIPv6;
  if (publicIP === undefined) return false;
  try {
    const vxlan = parseVxlanBackendData(family === 4 ? lease.attrs.backendData : lease.attrs.backendV6Data, lease.name);
    return stableVtepMac(publicIP, vxlan.vni) === vxlan.vtepMac;
  } catch {
    return false;
  }
}

/** Why `lease` names no subnet the config hands out, or undefined when it does. */
function subnetProblem(config: NetworkConfig, lease: Lease): string | undefined {
  let named = 0;
  for (const family of FAMILIES) {
    const plan = planOf(config, family);
    const subnet = subnetOf(lease, family);
    if (plan === undefined || subnet === undefined) continue;
    named++;
    if (subnet.length !== plan.subnetLen)
      return `${subnet} is not a /${plan.subnetLen} (the config's ${family === 4 ? 'SubnetLen' : 'IPv6SubnetLen'})`;
    if (!plan.network.contains(subnet)) return `${subnet} is outside the network ${plan.network}`;
    if (subnet.base < plan.subnetMin.base || subnet.base > plan.subnetMax.base) {
      return `${subnet} is outside the range ${plan.subnetMin}..${plan.subnetMax} the config hands out`;
    }
  }
  return named === 0 ? "names no subnet of the network's address families" : undefined;
}

/**
 * The leases in use, kept current one lease at a time: `set` and `delete` cost O(1) plus the leases that
 * claim the same subnets and MACs, and return how the set of used leases changed (removals first).
 */
export class LeaseArbiter {
  /** The leases in use, by name. */
  readonly accepted = new Map<string, Lease>();
  /** The leases that are not, by name, and why. */
  readonly ignored = new Map<string, IgnoredLease>();
  private readonly versions = new Map<string, LeaseVersion>();
  private readonly subnets: Record<Family, ClaimMap<bigint>> = { 4: new ClaimMap(), 6: new ClaimMap() };
  /** VtepMACs and WireGuard public keys (tunnelIdOf), per family */
  private readonly tunnelIds: Record<Family, ClaimMap<string>> = { 4: new ClaimMap(), 6: new ClaimMap() };

  constructor(readonly config: NetworkConfig) {}

  /** Takes a lease or a new version of it. */
  set(version: LeaseVersion): LeaseChange[] {
    const affected = new Set<LeaseVersion>([version]);
    const previous = this.versions.get(version.lease.name);
    if (previous !== undefined) this.dropClaims(previous, affected);
    this.versions.set(version.lease.name, version);
    this.takeClaims(version, affected);
    return this.settle(affected, []);
  }

  delete(name: string): LeaseChange[] {
    const previous = this.versions.get(name);
    if (previous === undefined) return [];
    const affected = new Set<LeaseVersion>();
    this.dropClaims(previous, affected);
    this.versions.delete(name);
    this.ignored.delete(name);
    const removed: LeaseChange[] = [];
    const used = this.accepted.get(name);
    if (used !== undefined) {
      this.accepted.delete(name);
      removed.push({ kind: 'removed', lease: used });
    }
    return this.settle(affected, removed);
  }

  /** Counts of the ignored leases by reason. */
  ignoredCounts(): Map<IgnoreReason, number> {
    const counts = new Map<IgnoreReason, number>(IGNORE_REASONS.map((reason) => [reason, 0]));
    for (const { reason } of this.ignored.values()) counts.set(reason, counts.get(reason)! + 1);
    return counts;
  }

  private takeClaims(version: LeaseVersion, affected: Set<LeaseVersion>): void {
    if (subnetProblem(this.config, version.lease) !== undefined) return;
    this.forEachClaim(version, (claims, key) => {
      for (const other of claims.claimants(key)) affected.add(other);
      claims.add(key, version);
    });
  }

  private dropClaims(version: LeaseVersion, affected: Set<LeaseVersion>): void {
    if (subnetProblem(this.config, version.lease) !== undefined) return;
    this.forEachClaim(version, (claims, key) => {
      claims.remove(key, version);
      for (const other of claims.claimants(key)) affected.add(other);
    });
  }

  /** Calls `fn` for each subnet and tunnel id `version` claims (of the families the config enables). */
  private forEachClaim(version: LeaseVersion, fn: <K>(claims: ClaimMap<K>, key: K) => void): void {
    for (const family of FAMILIES) {
      const subnet = subnetOf(version.lease, family);
      if (planOf(this.config, family) === undefined || subnet === undefined) continue;
      fn(this.subnets[family], subnet.base);
      const tunnel = tunnelIdOf(version.lease, family);
      if (tunnel !== undefined) fn(this.tunnelIds[family], tunnel.id);
    }
  }

  private settle(affected: Set<LeaseVersion>, removed: LeaseChange[]): LeaseChange[] {
    const others: LeaseChange[] = [];
    for (const version of affected) {
      const { lease } = version;
      if (this.versions.get(lease.name) !== version) continue; // a previous version, already replaced
      const verdict = this.judge(version);
      const used = this.accepted.get(lease.name);
      if (verdict !== undefined) {
        this.ignored.set(lease.name, verdict);
        if (used !== undefined) {
          this.accepted.delete(lease.name);
          removed.push({ kind: 'removed', lease: used });
        }
        continue;
      }
      this.ignored.delete(lease.name);
      if (used === lease) continue;
      this.accepted.set(lease.name, lease);
      others.push(used === undefined ? { kind: 'added', lease } : { kind: 'changed', lease, previous: used });
    }
    return removed.concat(others);
  }

  /** Why `version` is not used, or undefined when it is. */
  private judge(version: LeaseVersion): IgnoredLease | undefined {
    const { lease } = version;
    const problem = subnetProblem(this.config, lease);
    if (problem !== undefined) return { lease, reason: 'invalid-subnet', detail: problem };
    for (const family of FAMILIES) {
      const subnet = subnetOf(lease, family);
      if (planOf(this.config, family) === undefined || subnet === undefined) continue;
      let holder = version;
      for (const other of this.subnets[family].claimants(subnet.base)) if (older(other, holder)) holder = other;
      if (holder !== version) {
        return { lease, reason: 'subnet-conflict', detail: `${subnet} is held by ${holder.lease.name}, whose key is older` };
      }
    }
    for (const family of FAMILIES) {
      const tunnel =
        subnetOf(lease, family) === undefined || planOf(this.config, family) === undefined ? undefined : tunnelIdOf(lease, family);
      if (tunnel === undefined) continue;
      const claimants = this.tunnelIds[family].claimants(tunnel.id);
      if (claimants.length < 2) continue;
      let holder: { version: LeaseVersion; derived: boolean } | undefined;
      for (const other of claimants) {
        const derived = derivesVtepMac(other.lease, family);
        if (holder === undefined || (derived && !holder.derived) || (derived === holder.derived && older(other, holder.version)))
          holder = { version: other, derived };
      }
      if (holder!.version !== version) {
        const why = holder!.derived ? 'its public IP derives it' : 'its key is older';
        const reason = tunnel.kind === 'VtepMAC' ? 'vtep-mac-conflict' : 'public-key-conflict';
        return { lease, reason, detail: `${tunnel.kind} ${tunnel.id.slice(4)} belongs to ${holder!.version.lease.name}: ${why}` };
      }
    }
    return undefined;
  }
}

/** The verdict on a whole listing at once (weftctl): the leases used and those ignored, in the listing's order. */
export function arbitrate(config: NetworkConfig, versions: Iterable<LeaseVersion>): { accepted: Lease[]; ignored: IgnoredLease[] } {
  const arbiter = new LeaseArbiter(config);
  const order: string[] = [];
  for (const version of versions) {
    order.push(version.lease.name);
    arbiter.set(version);
  }
  return {
    accepted: order.flatMap((name) => arbiter.accepted.get(name) ?? []),
    ignored: order.flatMap((name) => arbiter.ignored.get(name) ?? []),
  };
}
