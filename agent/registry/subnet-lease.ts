import { EventEmitter } from 'node:events';
import { setImmediate as yieldToEvents } from 'node:timers/promises';
import type { Etcd3, ICompare, IKeyValue } from 'etcd3';
import type { IpAddress, Prefix } from '../../common/cidr.js';
import { candidateSubnets, isSubnetAllowed, type FamilyConfig, type NetworkConfig } from '../../common/config.js';
import { excerpt } from '../../common/json.js';
import {
  decodeLeaseValue,
  formatLeaseAttrs,
  formatLeaseKey,
  parseLeaseKey,
  type Lease,
  type LeaseAttrs,
  type LeaseSubnets,
} from '../../common/lease.js';
import { RateLimitedLog, type Logger } from '../log.js';
import type { NetworkKeys } from './etcd.js';
import { LeaseContentionError, NoFreeSubnetError, RegistryStoppedError } from './errors.js';
import { KvMirror, listPrefix, type KvChange } from './kv-mirror.js';

/** What this host publishes about itself in its lease. */
export interface LeaseRequest {
  publicIP: IpAddress | undefined;
  publicIPv6: IpAddress | undefined;
  backendType: string;
  backendData: Record<string, unknown> | undefined;
  backendV6Data: Record<string, unknown> | undefined;
  /** This host's identity (agent/host/node-id.ts), written into the lease as WeftNodeID. */
  nodeId?: string | undefined;
}

/** The lease field that names the host holding a lease; flanneld ignores it. */
export const NODE_ID_FIELD = 'WeftNodeID';

export interface OwnLease {
  lease: Lease;
  /** The etcd lease the key is attached to; "0" for a reservation. */
  etcdLeaseId: string;
  modRevision: string;
  /** When the key expires unless renewed (ms since the epoch); undefined for a reservation. */
  expiresAt: number | undefined;
}

export interface SubnetLeaseOptions {
  client: Etcd3;
  keys: NetworkKeys;
  logger: Logger;
  /** TTL of the etcd lease the key is attached to (flannel: 24 h). */
  ttlSeconds?: number;
  /** Renew this long before expiry (flannel's --subnet-lease-renew-margin: 60 min). */
  renewMarginSeconds?: number;
  /** Source of randomness for picking among free subnets; injectable for tests. */
  random?: () => number;
  /** Give up creating a lease after this many lost races in a row. */
  maxAttempts?: number;
}

/** Another host rewrote our lease with its own address or node ID (and so took our subnet). */
export interface LeaseTakeover {
  /** The key's last path element, e.g. "0.0.0.0-0&2001:db8:100:5::-64". */
  lease: string;
  /** The public IP the rewritten lease names (PublicIPv6 for an IPv6-only lease), if any. */
  publicIP: string | undefined;
  /** The WeftNodeID the rewritten lease names; undefined when it has none (flanneld writes none). */
  nodeId: string | undefined;
}

export interface SubnetLeaseEvents {
  /** A lease is held: the first one, or a new one after a loss. */
  acquired: [OwnLease];
  renewed: [OwnLease];
  /** Another host took our lease over; `lost` follows, and a new lease is acquired. */
  takenOver: [LeaseTakeover];
  /** The lease is no longer ours (deleted, expired or taken); a new one is being acquired. */
  lost: [reason: string];
  /** Renewing or re-acquiring failed; it is retried. */
  error: [Error];
}

/** flannel picks at random among this many free subnets, which spreads concurrent hosts apart. */
const RANDOM_POOL = 100;
/**
 * After a lost create race the next pick is among twice as many free subnets (up to RANDOM_POOL × 2^5), and
 * after this many lost races in a row the manager lists the leases again. Hosts that start together all pick
 * from the same first free subnets: most lose the first race, and with a wider pool they soon stop colliding.
 * Until then each lost race costs a transaction, not another listing of every lease.
 */
const RACES_BEFORE_RELIST = 8;
const MAX_POOL_DOUBLINGS = 5;
const DEFAULT_TTL_SECONDS = 24 * 3600;
const DEFAULT_RENEW_MARGIN_SECONDS = 3600;
/** setTimeout's longest delay; a longer wait is done in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Keys looked at, or candidate subnets passed, between two turns of the event loop while choosing a subnet. */
const STEPS_PER_TURN = 2048;

/** What the guard keeps of our own key: the lease it holds (or why it holds none), its etcd lease and revision. */
interface OwnKeyVersion {
  lease: Lease | undefined;
  error: string | undefined;
  etcdLease: string;
  modRevision: string;
}

function readOwnKey(name: string, kv: IKeyValue): OwnKeyVersion {
  const version = { lease: undefined, error: undefined, etcdLease: String(kv.lease), modRevision: String(kv.mod_revision) };
  try {
    return { ...version, lease: decodeLeaseValue(name, kv.value, version.etcdLease === '0') };
  } catch (err) {
    return { ...version, error: (err as Error).message };
  }
}

function sameOwnKey(a: OwnKeyVersion, b: OwnKeyVersion): boolean {
  if (a.etcdLease !== b.etcdLease || a.error !== b.error) return false;
  return a.lease === undefined || b.lease === undefined
    ? a.lease === b.lease
    : formatLeaseAttrs(a.lease.attrs) === formatLeaseAttrs(b.lease.attrs);
}

interface Listing {
  kvs: IKeyValue[];
  /** Every lease that decodes, decoded on first use: finding ours by an IPv6 public IP needs them all; choosing a free subnet needs only the keys. */
  all(): { lease: Lease; kv: IKeyValue }[];
}

/** The subnets of each family a listing shows taken (any key of a subnet the config hands out), and how many of them are reservations. */
interface TakenSubnets {
  taken: { 4: Set<bigint>; 6: Set<bigint> };
  reserved: { 4: number; 6: number };
}

/**
 * Acquires, renews and guards this host's subnet lease. The key is only ever created in a transaction
 * that requires it not to exist, and only ever rewritten in one that requires it unchanged since we last
 * wrote it, so the manager can never take over a lease that another host holds.
 */
export class SubnetLeaseManager extends EventEmitter<SubnetLeaseEvents> {
  private readonly client: Etcd3;
  private readonly keys: NetworkKeys;
  private readonly log: Logger;
  private readonly ttlSeconds: number;
  private readonly renewMarginMs: number;
  private readonly random: () => number;
  private readonly maxAttempts: number;
  private readonly warnings: RateLimitedLog;
  private own: OwnLease | undefined;
  private config: NetworkConfig | undefined;
  private request: LeaseRequest | undefined;
  private guard: KvMirror<OwnKeyVersion> | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private reacquiring: Promise<void> | undefined;
  /** The etcd lease a renewal in flight is moving our key onto. */
  private renewingOnto: string | undefined;
  private stopped = false;

  constructor(options: SubnetLeaseOptions) {
    super();
    this.client = options.client;
    this.keys = options.keys;
    this.log = options.logger;
    this.ttlSeconds = options.ttlSeconds ?? DEFAULT_TTL_SECONDS;
    this.renewMarginMs = (options.renewMarginSeconds ?? DEFAULT_RENEW_MARGIN_SECONDS) * 1000;
    this.random = options.random ?? Math.random;
    this.maxAttempts = options.maxAttempts ?? 100;
    this.warnings = new RateLimitedLog(options.logger);
    if (this.renewMarginMs >= this.ttlSeconds * 1000) {
      throw new RangeError(`renew margin ${options.renewMarginSeconds}s must be shorter than the lease TTL ${this.ttlSeconds}s`);
    }
  }

  get current(): OwnLease | undefined {
    return this.own;
  }

  /**
   * Takes a lease for this host: the one whose PublicIP is ours (reservations included), else `hint`
   * (e.g. the subnet in the old subnet.env) if free and valid, else a random free subnet.
   */
  async acquire(config: NetworkConfig, request: LeaseRequest, hint?: LeaseSubnets): Promise<OwnLease> {
    this.config = config;
    this.request = request;
    const own = await this.obtain(config, request, hint);
    await this.keep(own);
    this.emit('acquired', own);
    return own;
  }

  /** Stops renewing and guarding; the key stays in etcd so that a restart gets the same subnet. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.renewTimer);
    await this.guard?.stop();
    this.guard = undefined;
    await this.reacquiring?.catch(() => undefined);
  }

  /** Stops, then deletes our key (never a reservation) and revokes its etcd lease. */
  async release(): Promise<void> {
    await this.stop();
    const own = this.own;
    if (own === undefined || own.lease.reservation) return;
    const key = Buffer.from(this.keys.lease(own.lease.name));
    await this.client.kv.txn({
      compare: [{ key, target: 'Mod', result: 'Equal', mod_revision: own.modRevision }],
      success: [{ request_delete_range: { key } }],
    });
    await this.revokeQuietly(own.etcdLeaseId);
    this.own = undefined;
  }

  private async obtain(config: NetworkConfig, request: LeaseRequest, hint: LeaseSubnets | undefined): Promise<OwnLease> {
    let grantedLease: string | undefined;
    // what the last listing showed taken, plus the subnets lost to other hosts since
    let taken: TakenSubnets | undefined;
    let racesLost = 0;
    try {
      for (let attempt = 1; attempt <= this.maxAttempts; attempt++) {
        if (this.stopped) throw new RegistryStoppedError();
        if (taken === undefined) {
          const listing = await this.list();
          const reused = await this.reuseOwn(config, request, listing);
          if (reused !== undefined) return reused;
          taken = await this.takenSubnets(config, listing);
        }
        const pool = RANDOM_POOL * 2 ** Math.min(racesLost, MAX_POOL_DOUBLINGS);
        const subnets = await this.chooseSubnets(config, taken, hint, pool);
        grantedLease ??= await this.grant();
        const created = await this.create(subnets, request, grantedLease);
        if (created !== undefined) {
          grantedLease = undefined;
          this.log.info({ lease: created.lease.name }, 'created a new subnet lease');
          return created;
        }
        this.log.debug({ subnets: formatLeaseKey(subnets), attempt }, 'another host took the subnet first; trying again');
        hint = undefined;
        racesLost++;
        if (racesLost % RACES_BEFORE_RELIST === 0) {
          taken = undefined;
        } else {
          if (subnets.ipv4 !== undefined) taken.taken[4].add(subnets.ipv4.base);
          if (subnets.ipv6 !== undefined) taken.taken[6].add(subnets.ipv6.base);
        }
      }
      throw new LeaseContentionError(this.maxAttempts);
    } finally {
      if (grantedLease !== undefined) await this.revokeQuietly(grantedLease);
    }
  }

  private async list(): Promise<Listing> {
    const response = await listPrefix(this.client, this.keys.subnets);
    let decoded: { lease: Lease; kv: IKeyValue }[] | undefined;
    return {
      kvs: response.kvs,
      all: () => (decoded ??= this.decode(response.kvs)),
    };
  }

  private decode(kvs: readonly IKeyValue[]): { lease: Lease; kv: IKeyValue }[] {
    const leases: { lease: Lease; kv: IKeyValue }[] = [];
    for (const kv of kvs) {
      const name = this.keys.leaseName(kv.key.toString());
      if (name === undefined) continue;
      try {
        leases.push({ lease: decodeLeaseValue(name, kv.value, String(kv.lease) === '0'), kv });
      } catch (err) {
        this.warnings.write('warn', { key: excerpt(kv.key.toString()), err }, 'ignoring a malformed lease');
      }
    }
    return leases;
  }

  /**
   * The leases that name our public IP. With an IPv4 public IP only values that contain its text are
   * decoded (a dotted quad has one spelling the decoder accepts; a value with escapes is decoded anyway):
   * a restart among thousands of leases need not decode them all.
   */
  private ours(listing: Listing, request: LeaseRequest): { lease: Lease; kv: IKeyValue }[] {
    if (request.publicIP === undefined) return listing.all().filter(({ lease }) => this.isOurs(lease, request));
    const needle = Buffer.from(`"${request.publicIP.toString()}"`);
    const backslash = 0x5c;
    const candidates = listing.kvs.filter((kv) => kv.value.includes(needle) || kv.value.includes(backslash));
    return this.decode(candidates).filter(({ lease }) => this.isOurs(lease, request));
  }

  private isOurs(lease: Lease, request: LeaseRequest): boolean {
    const { publicIP, publicIPv6 } = lease.attrs;
    if (request.publicIP !== undefined) return publicIP !== undefined && publicIP.equals(request.publicIP);
    return request.publicIPv6 !== undefined && publicIPv6 !== undefined && publicIPv6.equals(request.publicIPv6);
  }

  /**
   * Reuses a lease that names our public IP, rewriting its value if what we publish changed. A lease that
   * names our public IP but another node (two hosts configured with one address) is left alone and reported.
   */
  private async reuseOwn(config: NetworkConfig, request: LeaseRequest, listing: Listing): Promise<OwnLease | undefined> {
    const mine = this.ours(listing, request);
    // A reservation wins over an ordinary lease: it is the operator's word.
    mine.sort((a, b) => Number(b.lease.reservation) - Number(a.lease.reservation));
    for (const { lease, kv } of mine) {
      const holder = otherNode(lease, request);
      if (holder !== undefined) {
        this.log.warn(
          { lease: lease.name, publicIP: (request.publicIP ?? request.publicIPv6)?.toString(), node: holder },
          'a lease names our public IP but belongs to another node: two hosts are configured with the same public IP; leaving it alone',
        );
        continue;
      }
      if (!fitsConfig(config, lease.subnets)) {
        await this.dropIncompatible(lease, kv);
        continue;
      }
      const attrs = withRequest(lease.attrs, request);
      const value = formatLeaseAttrs(attrs);
      const key = kv.key;
      if (lease.reservation) {
        let modRevision = String(kv.mod_revision);
        if (value !== kv.value.toString()) {
          const response = await this.client.kv.txn({
            compare: [{ key, target: 'Mod', result: 'Equal', mod_revision: kv.mod_revision }],
            success: [{ request_put: { key, value: Buffer.from(value) } }],
          });
          if (!response.succeeded) continue;
          modRevision = String(response.header.revision);
        }
        this.log.info({ lease: lease.name }, 'using the reservation for our public IP');
        return { lease: { ...lease, attrs }, etcdLeaseId: '0', modRevision, expiresAt: undefined };
      }
      const etcdLeaseId = await this.grant();
      const modRevision = await this.putGuarded(key, Buffer.from(value), etcdLeaseId, {
        key,
        target: 'Mod',
        result: 'Equal',
        mod_revision: kv.mod_revision,
      });
      if (modRevision === undefined) {
        await this.revokeQuietly(etcdLeaseId);
        continue;
      }
      await this.revokeQuietly(String(kv.lease));
      this.log.info({ lease: lease.name }, 'reusing the lease that names our public IP');
      return {
        lease: { ...lease, attrs },
        etcdLeaseId,
        modRevision,
        expiresAt: Date.now() + this.ttlSeconds * 1000,
      };
    }
    return undefined;
  }

  /** Deletes an ordinary lease of ours that the current config no longer allows (flannel does too). */
  private async dropIncompatible(lease: Lease, kv: IKeyValue): Promise<void> {
    if (lease.reservation) {
      this.log.warn({ lease: lease.name }, 'a reservation names our public IP but does not fit the network config; ignoring it');
      return;
    }
    this.log.warn({ lease: lease.name }, 'our old lease does not fit the network config; deleting it');
    await this.client.kv.txn({
      compare: [{ key: kv.key, target: 'Mod', result: 'Equal', mod_revision: kv.mod_revision }],
      success: [{ request_delete_range: { key: kv.key } }],
    });
  }

  /**
   * The subnets a listing shows taken. Only keys whose name is a subnet the config hands out count as taken,
   * whatever their value (its key exists, a key for the same subnet would clash): a key of another length (a
   * /16 over the whole network, a /25 inside a subnet) is no lease anyone uses and blocks nothing. It yields to
   * the event loop as it goes (/healthz answers throughout).
   */
  private async takenSubnets(config: NetworkConfig, listing: Listing): Promise<TakenSubnets> {
    const taken = { 4: new Set<bigint>(), 6: new Set<bigint>() };
    const reserved = { 4: 0, 6: 0 };
    let steps = 0;
    for (const kv of listing.kvs) {
      if (++steps % STEPS_PER_TURN === 0) await yieldToEvents();
      const name = this.keys.leaseName(kv.key.toString());
      let subnets: LeaseSubnets;
      try {
        subnets = parseLeaseKey(name ?? '');
      } catch {
        continue;
      }
      for (const plan of [config.ipv4, config.ipv6]) {
        const subnet = plan === undefined ? undefined : plan.family === 4 ? subnets.ipv4 : subnets.ipv6;
        if (plan === undefined || subnet === undefined || !isSubnetAllowed(plan, subnet) || taken[plan.family].has(subnet.base)) continue;
        taken[plan.family].add(subnet.base);
        if (String(kv.lease) === '0') reserved[plan.family]++;
      }
    }
    return { taken, reserved };
  }

  /**
   * A free subnet of each enabled family, at random among the first `poolSize` free ones. All taken subnets
   * are of one length and aligned, so the search passes each at most once: linear in the keys, whatever the
   * size of the range (an IPv6 one has billions of candidates).
   */
  private async chooseSubnets(
    config: NetworkConfig,
    { taken, reserved }: TakenSubnets,
    hint: LeaseSubnets | undefined,
    poolSize: number,
  ): Promise<LeaseSubnets> {
    return {
      ipv4: config.ipv4 === undefined ? undefined : await this.chooseSubnet(config.ipv4, taken[4], reserved[4], hint?.ipv4, poolSize),
      ipv6: config.ipv6 === undefined ? undefined : await this.chooseSubnet(config.ipv6, taken[6], reserved[6], hint?.ipv6, poolSize),
    };
  }

  private async chooseSubnet(
    plan: FamilyConfig,
    taken: ReadonlySet<bigint>,
    reserved: number,
    hint: Prefix | undefined,
    poolSize: number,
  ): Promise<Prefix> {
    if (hint !== undefined && isSubnetAllowed(plan, hint) && !taken.has(hint.base)) return hint;
    const pool: Prefix[] = [];
    let steps = 0;
    // each candidate is either taken (at most taken.size of them) or goes into the pool (at most poolSize)
    for (const candidate of candidateSubnets(plan)) {
      if (++steps % STEPS_PER_TURN === 0) await yieldToEvents();
      if (taken.has(candidate.base)) continue;
      pool.push(candidate);
      if (pool.length === poolSize) break;
    }
    if (pool.length === 0) {
      throw new NoFreeSubnetError(`${plan.subnetMin}..${plan.subnetMax} of ${plan.network}`, taken.size - reserved, reserved);
    }
    return pool[Math.floor(this.random() * pool.length)];
  }

  private async create(subnets: LeaseSubnets, request: LeaseRequest, etcdLeaseId: string): Promise<OwnLease | undefined> {
    const name = formatLeaseKey(subnets);
    const key = Buffer.from(this.keys.lease(name));
    const attrs = withRequest(undefined, request);
    const modRevision = await this.putGuarded(key, Buffer.from(formatLeaseAttrs(attrs)), etcdLeaseId, {
      key,
      target: 'Create',
      result: 'Equal',
      create_revision: 0,
    });
    if (modRevision === undefined) return undefined;
    return {
      lease: { name, subnets, attrs, reservation: false },
      etcdLeaseId,
      modRevision,
      expiresAt: Date.now() + this.ttlSeconds * 1000,
    };
  }

  /**
   * Puts our key onto `etcdLeaseId` in a transaction guarded by `compare`; the key's mod revision when written,
   * else undefined. "Written" includes an answer that says the guard failed because an earlier try of this very
   * transaction was applied: the etcd client tries a call again on another member when the answer to the first
   * try is lost, and the second try then finds the key changed (or created). The key then holds our value on
   * the etcd lease granted for this write, which no one else knows: that write is ours.
   */
  private async putGuarded(key: Buffer, value: Buffer, etcdLeaseId: string, compare: ICompare): Promise<string | undefined> {
    const response = await this.client.kv.txn({
      compare: [compare],
      success: [{ request_put: { key, value, lease: etcdLeaseId } }],
      failure: [{ request_range: { key } }],
    });
    if (response.succeeded) return String(response.header.revision);
    const current = response.responses[0]?.response_range?.kvs[0];
    return current !== undefined && String(current.lease) === etcdLeaseId && current.value.equals(value)
      ? String(current.mod_revision)
      : undefined;
  }

  private async grant(): Promise<string> {
    const response = await this.client.leaseClient.leaseGrant({ TTL: this.ttlSeconds });
    return String(response.ID);
  }

  private async revokeQuietly(etcdLeaseId: string): Promise<void> {
    if (etcdLeaseId === '0') return;
    try {
      await this.client.leaseClient.leaseRevoke({ ID: etcdLeaseId });
    } catch (err) {
      this.log.debug({ etcdLeaseId, err }, 'could not revoke an etcd lease; it will expire');
    }
  }

  /** Starts renewing and guarding `own`. */
  private async keep(own: OwnLease): Promise<void> {
    this.own = own;
    await this.guard?.stop();
    const key = this.keys.lease(own.lease.name);
    const name = own.lease.name;
    const guard = new KvMirror<OwnKeyVersion>({
      client: this.client,
      key,
      prefix: false,
      codec: { decode: (_key, _name, kv) => readOwnKey(name, kv), same: sameOwnKey },
      logger: this.log,
    });
    guard.on('change', (change) => {
      if (change.key === key) this.onOwnKeyChange(change);
    });
    this.guard = guard;
    await guard.start();
    this.scheduleRenewal();
  }

  private onOwnKeyChange(change: KvChange<OwnKeyVersion>): void {
    const own = this.own;
    const request = this.request;
    if (own === undefined || request === undefined || this.reacquiring !== undefined) return;
    if (change.kind === 'removed') {
      this.lose(`our lease ${own.lease.name} was deleted or expired`);
      return;
    }
    if (change.value.modRevision === own.modRevision) return;
    const lease = change.value.lease;
    if (lease === undefined) {
      this.lose(`our lease ${own.lease.name} was overwritten with an invalid value (${change.value.error})`);
      return;
    }
    const holder = otherNode(lease, request);
    if (!this.isOurs(lease, request) || holder !== undefined) {
      const publicIP = (request.publicIP === undefined ? lease.attrs.publicIPv6 : lease.attrs.publicIP)?.toString();
      const nodeId = lease.attrs.extra[NODE_ID_FIELD];
      this.emit('takenOver', { lease: own.lease.name, publicIP, nodeId: typeof nodeId === 'string' ? nodeId : undefined });
      this.lose(
        holder !== undefined
          ? `our lease ${own.lease.name} was taken by node ${holder}`
          : `our lease ${own.lease.name} now names public IP ${publicIP ?? '(none)'}`,
      );
      return;
    }
    // Our own renewal, or someone (an operator, weftctl) rewrote the lease and it still names us: adopt it.
    const ownWrite = change.value.etcdLease === own.etcdLeaseId || change.value.etcdLease === this.renewingOnto;
    this.own = {
      lease,
      etcdLeaseId: change.value.etcdLease,
      modRevision: change.value.modRevision,
      expiresAt: lease.reservation ? undefined : own.expiresAt,
    };
    // A foreign etcd lease has an expiry we do not know: move the key onto one of ours right away.
    if (!lease.reservation && !ownWrite) this.scheduleRenewal(0);
    else this.scheduleRenewal();
  }

  private lose(reason: string): void {
    this.log.warn({ reason }, 'lost our subnet lease; acquiring again');
    clearTimeout(this.renewTimer);
    this.emit('lost', reason);
    const previous = this.own?.lease.subnets;
    this.reacquiring = this.reacquire(previous).finally(() => {
      this.reacquiring = undefined;
    });
  }

  private async reacquire(previous: LeaseSubnets | undefined): Promise<void> {
    let delay = 200;
    while (!this.stopped && this.config !== undefined && this.request !== undefined) {
      try {
        const own = await this.obtain(this.config, this.request, previous);
        await this.keep(own);
        this.emit('acquired', own);
        return;
      } catch (err) {
        if (err instanceof RegistryStoppedError) return;
        this.emit('error', err as Error);
        await new Promise((resolve) => setTimeout(resolve, delay).unref());
        delay = Math.min(delay * 2, 10_000);
      }
    }
  }

  private scheduleRenewal(delayMs?: number): void {
    clearTimeout(this.renewTimer);
    const own = this.own;
    if (own === undefined || own.expiresAt === undefined || this.stopped) return;
    const wait = delayMs ?? Math.max(0, own.expiresAt - this.renewMarginMs - Date.now());
    if (wait > MAX_TIMER_MS) {
      this.renewTimer = setTimeout(() => this.scheduleRenewal(), MAX_TIMER_MS).unref();
      return;
    }
    this.renewTimer = setTimeout(() => void this.renew(), wait).unref();
  }

  /** Moves our key onto a fresh etcd lease, provided nobody has touched it since we last wrote it. */
  private async renew(): Promise<void> {
    const own = this.own;
    if (own === undefined || this.stopped || this.reacquiring !== undefined || this.renewingOnto !== undefined) return;
    const key = Buffer.from(this.keys.lease(own.lease.name));
    try {
      const granted = await this.grant();
      this.renewingOnto = granted;
      const modRevision = await this.putGuarded(key, Buffer.from(formatLeaseAttrs(own.lease.attrs)), granted, {
        key,
        target: 'Mod',
        result: 'Equal',
        mod_revision: own.modRevision,
      });
      if (modRevision === undefined || this.own?.lease.name !== own.lease.name) {
        await this.revokeQuietly(granted);
        // The guard reports what happened to the key; check again shortly in case it missed nothing.
        this.scheduleRenewal(1000);
        return;
      }
      await this.revokeQuietly(own.etcdLeaseId);
      // Not `...own`: the guard may already have adopted this very write.
      this.own = { lease: own.lease, etcdLeaseId: granted, modRevision, expiresAt: Date.now() + this.ttlSeconds * 1000 };
      this.log.debug({ lease: own.lease.name }, 'renewed the subnet lease');
      this.emit('renewed', this.own);
      this.scheduleRenewal();
    } catch (err) {
      // The new etcd lease is not revoked: the write may have been applied all the same (its answer lost), and
      // revoking would delete our key. Then the guard sees our key on it and adopts it; else it expires empty.
      this.emit('error', err as Error);
      const left = (own.expiresAt ?? Date.now()) - Date.now();
      // Keep trying until the lease would expire; the guard takes over if it does.
      this.scheduleRenewal(Math.min(Math.max(left / 10, 500), 30_000));
    } finally {
      this.renewingOnto = undefined;
    }
  }
}

function fitsConfig(config: NetworkConfig, subnets: LeaseSubnets): boolean {
  const fits = (plan: FamilyConfig | undefined, subnet: Prefix | undefined) =>
    plan === undefined ? subnet === undefined : subnet !== undefined && isSubnetAllowed(plan, subnet);
  return fits(config.ipv4, subnets.ipv4) && fits(config.ipv6, subnets.ipv6);
}

function withRequest(existing: LeaseAttrs | undefined, request: LeaseRequest): LeaseAttrs {
  const { nodeId, ...published } = request;
  const extra = { ...existing?.extra };
  if (nodeId !== undefined) extra[NODE_ID_FIELD] = nodeId;
  return { ...published, extra };
}

/** The node ID a lease names when it is not ours, else undefined (no ID, e.g. written by flanneld, counts as ours). */
function otherNode(lease: Lease, request: LeaseRequest): string | undefined {
  const holder = lease.attrs.extra[NODE_ID_FIELD];
  return typeof holder === 'string' && request.nodeId !== undefined && holder !== request.nodeId ? holder : undefined;
}
