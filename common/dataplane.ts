import { createHash } from 'node:crypto';
import type { Family, IpAddress, Prefix } from './cidr.js';
import type { NetworkConfig } from './config.js';
import { leaseBackend, type Lease } from './lease.js';

/**
 * Route protocol number weft tags its routes with (`ip route ... proto 157`), so that it can tell its
 * routes on a shared interface (host-gw, DirectRouting) from everyone else's and delete only its own.
 */
export const WEFT_ROUTE_PROTOCOL = 157;

/** Which device a route goes out of: weft's VXLAN device, or the host's public interface. */
export type RouteDevice = 'overlay' | 'public';

export interface NeighbourSpec {
  ip: string;
  mac: string;
}

export interface FdbSpec {
  mac: string;
  dst: string;
}

export interface RouteSpec {
  dst: string;
  gateway: string;
  device: RouteDevice;
  onlink: boolean;
}

/** A peer of weft's WireGuard device; the PSK and keepalive are the network's, the same for every peer. */
export interface WireguardPeerSpec {
  /** base64, as in the lease */
  publicKey: string;
  /** "192.0.2.11:51820" or "[2001:db8:0:1::11]:51821" */
  endpoint: string;
  /** the peer's subnets, e.g. ["198.18.5.0/24"] */
  allowedIPs: readonly string[];
}

export interface SkippedLease {
  lease: Lease;
  reason: string;
}

/** Everything a peer lease is judged against. */
export interface PeerContext {
  family: Family;
  config: NetworkConfig;
  own: Lease;
  /** On-link prefixes of the public interface: peers inside them are directly reachable (host-gw, DirectRouting). */
  localPrefixes: readonly Prefix[];
  /**
   * The overlay device takes routes only (a userspace data path's veth): vxlan peers get their route but no
   * kernel neighbour or FDB entry (and so no VtepMAC clash check, which guards the FDB).
   */
  routesOnly?: boolean;
}

function subnetOf(lease: Lease, family: Family): Prefix | undefined {
  return family === 4 ? lease.subnets.ipv4 : lease.subnets.ipv6;
}

function publicIpOf(lease: Lease, family: Family): IpAddress | undefined {
  return family === 4 ? lease.attrs.publicIP : lease.attrs.publicIPv6;
}

/** Whether `ip` is on one of the public interface's on-link prefixes: reachable without a router. */
export function isDirect(ip: IpAddress, localPrefixes: readonly Prefix[]): boolean {
  return localPrefixes.some((prefix) => prefix.contains(ip));
}

/**
 * Why a peer lease cannot be programmed for `family` by any backend, or undefined when it can. A lease that
 * is ours, claims our public IP or overlaps our subnet is never programmed: it would hijack our own traffic.
 */
export function rejectPeer(input: PeerContext, peer: Lease): string | undefined {
  const { family, config, own } = input;
  const backend = config.backend;
  const plan = family === 4 ? config.ipv4 : config.ipv6;
  const subnet = subnetOf(peer, family);
  const ownSubnet = subnetOf(own, family);
  const publicIP = publicIpOf(peer, family);
  const ownPublicIP = publicIpOf(own, family);
  if (plan === undefined || subnet === undefined || ownSubnet === undefined) return 'has no subnet of this family';
  if (peer.name === own.name) return 'is our own lease';
  if (publicIP === undefined) return `has no IPv${family} public IP`;
  if (ownPublicIP !== undefined && publicIP.equals(ownPublicIP)) return `claims our own public IP ${publicIP}`;
  if (subnet.overlaps(ownSubnet)) return `overlaps our subnet ${ownSubnet}`;
  if (!plan.network.contains(subnet)) return `is outside the network ${plan.network}`;
  const peerBackend = leaseBackend(peer.attrs, backend.type);
  if (peerBackend !== backend.type) {
    return peerBackend === ''
      ? `names no BackendType (a flanneld udp lease), not ${backend.type}`
      : `uses backend ${peerBackend}, not ${backend.type}`;
  }
  return undefined;
}

/**
 * What one peer lease asks for on its own, before clashes with other peers are settled (see DesiredState):
 * the objects to program, or why it is refused (`quiet` for our own lease, which is not worth a warning).
 */
export type PeerPlan =
  | { kind: 'program'; neighbour?: NeighbourSpec; fdb?: FdbSpec; route?: RouteSpec; wireguardPeer?: WireguardPeerSpec }
  | { kind: 'skip'; reason: string; quiet: boolean };

/** A peer lease that passed the checks every backend shares, with its subnet and public IP of the family. */
export interface AcceptedPeer {
  lease: Lease;
  subnet: Prefix;
  publicIP: IpAddress;
}

/**
 * The objects one backend wants in the kernel for an accepted peer (each backend folder's desired.ts): a
 * pure function of the context and that lease alone.
 */
export type PeerObjects = (context: PeerContext, peer: AcceptedPeer) => PeerPlan;

/** The objects one peer lease asks for: the shared checks, then the backend's `objectsOf`. */
export function peerPlan(context: PeerContext, peer: Lease, objectsOf: PeerObjects): PeerPlan {
  const reason = rejectPeer(context, peer);
  if (reason !== undefined) return { kind: 'skip', reason, quiet: peer.name === context.own.name };
  const { family } = context;
  return objectsOf(context, { lease: peer, subnet: subnetOf(peer, family)!, publicIP: publicIpOf(peer, family)! });
}

function vtepClash(mac: string, holder: FdbSpec): string {
  return `VtepMAC ${mac} is already used by the peer at ${holder.dst}`;
}

function publicKeyClash(key: string, holder: WireguardPeerSpec): string {
  return `WireGuard public key ${key} is already used by the peer at ${holder.endpoint}`;
}

/** Keys of desired objects that may have changed: neighbour IPs, FDB MACs, route destinations, WireGuard public keys. */
export interface DirtyKeys {
  neighbours: Set<string>;
  fdb: Set<string>;
  routes: Set<string>;
  wireguardPeers: Set<string>;
}

export function emptyDirtyKeys(): DirtyKeys {
  return { neighbours: new Set(), fdb: new Set(), routes: new Set(), wireguardPeers: new Set() };
}

interface PeerEntry {
  name: string;
  /** Position in the peers' order: kept when a lease changes, new when it is added (again). */
  seq: number;
  lease: Lease;
  plan: PeerPlan;
  /** The kinds of object this peer is the winner of at its key (see hasWon / setWon). */
  wins: KindSet;
}

/** A peer plan that programs something. */
type ProgramPlan = Extract<PeerPlan, { kind: 'program' }>;

/** The kinds of object a peer may claim. */
const enum Kind {
  Neighbour = 1,
  Fdb = 2,
  Route = 4,
  WireguardPeer = 8,
}

/** A set of Kinds, one bit each: a number per peer instead of four booleans. */
type KindSet = number;

function hasWon(entry: PeerEntry, kind: Kind): boolean {
  return (entry.wins & kind) !== 0;
}

function setWon(entry: PeerEntry, kind: Kind, won: boolean): void {
  entry.wins = won ? entry.wins | kind : entry.wins & ~kind;
}

/**
 * Who claims each key of one kind: the peers that want an object there. One peer per key is the usual
 * case and is kept without an array (at 10 000 peers, 10 000 arrays fewer); a key several peers claim
 * keeps them in an array, in the order they claimed it.
 */
class ClaimTable {
  private readonly byKey = new Map<string, PeerEntry | PeerEntry[]>();

  add(key: string, entry: PeerEntry): void {
    const held = this.byKey.get(key);
    if (held === undefined) this.byKey.set(key, entry);
    else if (Array.isArray(held)) held.push(entry);
    else this.byKey.set(key, [held, entry]);
  }

  remove(key: string, entry: PeerEntry): void {
    const held = this.byKey.get(key);
    if (held === entry) {
      this.byKey.delete(key);
    } else if (Array.isArray(held)) {
      const at = held.indexOf(entry);
      if (at >= 0) held.splice(at, 1);
      if (held.length === 1) this.byKey.set(key, held[0]);
    }
  }

  /** The peers claiming `key`, in the order they claimed it. */
  claimants(key: string): readonly PeerEntry[] {
    const held = this.byKey.get(key);
    return held === undefined ? [] : Array.isArray(held) ? held : [held];
  }

  /** The claimant of `key` first in the peers' order (lowest seq). */
  earliest(key: string): PeerEntry | undefined {
    const held = this.byKey.get(key);
    if (held === undefined || !Array.isArray(held)) return held;
    let earliest = held[0];
    for (const entry of held) if (entry.seq < earliest.seq) earliest = entry;
    return earliest;
  }

  /** The claimant of `key` that has won `kind` there. */
  winner(key: string, kind: Kind): PeerEntry | undefined {
    const held = this.byKey.get(key);
    return held === undefined ? undefined : winnerAmong(held, kind);
  }

  /** Every key that has a winner of `kind`, with it. */
  *winners(kind: Kind): Generator<[string, PeerEntry]> {
    for (const [key, held] of this.byKey) {
      const winner = winnerAmong(held, kind);
      if (winner !== undefined) yield [key, winner];
    }
  }
}

function winnerAmong(held: PeerEntry | PeerEntry[], kind: Kind): PeerEntry | undefined {
  if (!Array.isArray(held)) return hasWon(held, kind) ? held : undefined;
  return held.find((entry) => hasWon(entry, kind));
}

/**
 * The objects of one kind that DesiredState wants, by key, read off its claims: a key's object is that of
 * the claimant marked as the key's winner. Not a map of its own: at 10 000 peers, three maps fewer.
 */
class ClaimedObjects<T> implements ReadonlyMap<string, T> {
  /** keys that have a winner */
  private won = 0;

  constructor(
    private readonly claims: ClaimTable,
    private readonly kind: Kind,
    private readonly objectOf: (plan: ProgramPlan) => T,
  ) {}

  get size(): number {
    return this.won;
  }

  /** Marks `winner` (or nobody) as the winner of `key` among its claimants. */
  crown(key: string, winner: PeerEntry | undefined): void {
    for (const entry of this.claims.claimants(key)) {
      const won = hasWon(entry, this.kind);
      if (entry === winner && !won) {
        setWon(entry, this.kind, true);
        this.won++;
      } else if (entry !== winner && won) {
        setWon(entry, this.kind, false);
        this.won--;
      }
    }
  }

  /** Takes back what `entry` won, as it gives up its claims: its keys have no winner until crowned again. */
  forfeit(entry: PeerEntry): void {
    if (!hasWon(entry, this.kind)) return;
    setWon(entry, this.kind, false);
    this.won--;
  }

  /** The claimant of `key` marked as its winner. */
  winner(key: string): PeerEntry | undefined {
    return this.claims.winner(key, this.kind);
  }

  get(key: string): T | undefined {
    const winner = this.winner(key);
    return winner === undefined ? undefined : this.objectOf(winner.plan as ProgramPlan);
  }

  has(key: string): boolean {
    return this.winner(key) !== undefined;
  }

  *entries(): MapIterator<[string, T]> {
    for (const [key, winner] of this.claims.winners(this.kind)) yield [key, this.objectOf(winner.plan as ProgramPlan)];
  }

  *keys(): MapIterator<string> {
    for (const [key] of this.entries()) yield key;
  }

  *values(): MapIterator<T> {
    for (const [, value] of this.entries()) yield value;
  }

  [Symbol.iterator](): MapIterator<[string, T]> {
    return this.entries();
  }

  forEach(callback: (value: T, key: string, map: ReadonlyMap<string, T>) => void, thisArg?: unknown): void {
    for (const [key, value] of this.entries()) callback.call(thisArg, value, key, this);
  }
}

/** Read access to the objects of one family that weft wants, by key (DesiredState.state). */
export interface DesiredObjects {
  neighbours: ReadonlyMap<string, NeighbourSpec>;
  fdb: ReadonlyMap<string, FdbSpec>;
  routes: ReadonlyMap<string, RouteSpec>;
  wireguardPeers: ReadonlyMap<string, WireguardPeerSpec>;
}

/**
 * The kernel objects weft wants for one address family: a pure function of the config, our lease and the
 * peers' leases, built in one pass and then kept up to date one lease at a time for the reconcile loop's
 * event path: `set` and `delete` cost O(1) (plus the peers that clash with the one changed) instead of a
 * pass over every peer, and report which objects may have changed. Clashes are settled in the peers' order:
 * a VtepMAC or a WireGuard public key stays with the first peer that claims it (one FDB entry can point at
 * one host only; the later claimants are skipped whole), and of two peers that want the same neighbour or
 * route, the later one's wins. Peers are ordered the way a Map orders its keys (a changed lease keeps its
 * place, a removed and re-added one goes last), so fed the lease watcher's events in order, `state` and
 * `skipped()` equal a DesiredState built anew from the watcher's map at every step.
 */
export class DesiredState {
  readonly state: DesiredObjects;
  private readonly peers = new Map<string, PeerEntry>();
  private readonly macClaims: ClaimTable = new ClaimTable();
  private readonly neighbourClaims: ClaimTable = new ClaimTable();
  private readonly routeClaims: ClaimTable = new ClaimTable();
  private readonly publicKeyClaims: ClaimTable = new ClaimTable();
  private readonly neighbours = new ClaimedObjects(this.neighbourClaims, Kind.Neighbour, (plan) => plan.neighbour!);
  private readonly fdb = new ClaimedObjects(this.macClaims, Kind.Fdb, (plan) => plan.fdb!);
  private readonly routes = new ClaimedObjects(this.routeClaims, Kind.Route, (plan) => plan.route!);
  private readonly wireguardPeers = new ClaimedObjects(this.publicKeyClaims, Kind.WireguardPeer, (plan) => plan.wireguardPeer!);
  private readonly skips = new Map<string, SkippedLease>();
  private dirty = emptyDirtyKeys();
  /** scratch for one set() / delete(): the keys it touched */
  private readonly touched = emptyDirtyKeys();
  private seq = 0;

  /** Builds the state for `peers` in one pass; nothing is dirty afterwards. */
  constructor(
    readonly context: PeerContext,
    /** the backend's objects for a peer */
    private readonly objectsOf: PeerObjects,
    peers: Iterable<Lease> = [],
  ) {
    this.state = { neighbours: this.neighbours, fdb: this.fdb, routes: this.routes, wireguardPeers: this.wireguardPeers };
    for (const lease of peers) {
      const plan = peerPlan(context, lease, objectsOf);
      const entry: PeerEntry = { name: lease.name, seq: ++this.seq, lease, plan, wins: 0 };
      this.peers.set(lease.name, entry);
      if (plan.kind === 'skip') {
        if (!plan.quiet) this.skips.set(lease.name, { lease, reason: plan.reason });
        continue;
      }
      if (plan.fdb !== undefined) this.macClaims.add(plan.fdb.mac, entry);
      if (plan.neighbour !== undefined) this.neighbourClaims.add(plan.neighbour.ip, entry);
      if (plan.route !== undefined) this.routeClaims.add(plan.route.dst, entry);
      if (plan.wireguardPeer !== undefined) this.publicKeyClaims.add(plan.wireguardPeer.publicKey, entry);
      const holder = plan.fdb === undefined ? undefined : this.fdb.winner(plan.fdb.mac);
      if (holder !== undefined) {
        this.skips.set(lease.name, { lease, reason: vtepClash(plan.fdb!.mac, (holder.plan as ProgramPlan).fdb!) });
        continue;
      }
      const keyHolder = plan.wireguardPeer === undefined ? undefined : this.wireguardPeers.winner(plan.wireguardPeer.publicKey);
      if (keyHolder !== undefined) {
        this.skips.set(lease.name, {
          lease,
          reason: publicKeyClash(plan.wireguardPeer!.publicKey, (keyHolder.plan as ProgramPlan).wireguardPeer!),
        });
        continue;
      }
      if (plan.neighbour !== undefined) this.neighbours.crown(plan.neighbour.ip, entry);
      if (plan.fdb !== undefined) this.fdb.crown(plan.fdb.mac, entry);
      if (plan.route !== undefined) this.routes.crown(plan.route.dst, entry);
      if (plan.wireguardPeer !== undefined) this.wireguardPeers.crown(plan.wireguardPeer.publicKey, entry);
    }
  }

  /** Number of peer leases known (programmed or not). */
  get size(): number {
    return this.peers.size;
  }

  /** Adds a lease or takes a new version of it. */
  set(lease: Lease): void {
    const previous = this.peers.get(lease.name);
    const plan = peerPlan(this.context, lease, this.objectsOf);
    const touched = this.touched;
    if (previous !== undefined) this.dropClaims(previous, touched);
    const entry: PeerEntry = { name: lease.name, seq: previous?.seq ?? ++this.seq, lease, plan, wins: 0 };
    this.peers.set(lease.name, entry);
    this.takeClaims(entry, touched);
    this.settle(touched);
  }

  delete(name: string): void {
    const previous = this.peers.get(name);
    if (previous === undefined) return;
    const touched = this.touched;
    this.dropClaims(previous, touched);
    this.peers.delete(name);
    this.skips.delete(name);
    this.settle(touched);
  }

  /** The leases that are programmed (neither refused nor clashing), in the peers' order. */
  programmedLeases(): Lease[] {
    const out: Lease[] = [];
    for (const entry of this.peers.values())
      if (this.active(entry) && entry.plan.kind === 'program' && entry.plan.route !== undefined) out.push(entry.lease);
    return out;
  }

  /** Peers that are not programmed, and why. */
  skipped(): SkippedLease[] {
    return [...this.skips.values()];
  }

  /** The keys that may have changed since the last call (or since construction). */
  takeDirty(): DirtyKeys {
    const dirty = this.dirty;
    this.dirty = emptyDirtyKeys();
    return dirty;
  }

  /** Enters the claims of `entry`'s plan (or its skip). */
  private takeClaims(entry: PeerEntry, touched: DirtyKeys): void {
    const { plan } = entry;
    if (plan.kind === 'skip') {
      if (plan.quiet) this.skips.delete(entry.name);
      else this.skips.set(entry.name, { lease: entry.lease, reason: plan.reason });
      return;
    }
    this.skips.delete(entry.name);
    if (plan.fdb !== undefined) {
      this.macClaims.add(plan.fdb.mac, entry);
      touched.fdb.add(plan.fdb.mac);
    }
    if (plan.neighbour !== undefined) {
      this.neighbourClaims.add(plan.neighbour.ip, entry);
      touched.neighbours.add(plan.neighbour.ip);
    }
    if (plan.route !== undefined) {
      this.routeClaims.add(plan.route.dst, entry);
      touched.routes.add(plan.route.dst);
    }
    if (plan.wireguardPeer !== undefined) {
      this.publicKeyClaims.add(plan.wireguardPeer.publicKey, entry);
      touched.wireguardPeers.add(plan.wireguardPeer.publicKey);
    }
  }

  /** Withdraws the claims of `entry`'s plan and what it won. */
  private dropClaims(entry: PeerEntry, touched: DirtyKeys): void {
    const { plan } = entry;
    if (plan.kind === 'skip') return;
    this.neighbours.forfeit(entry);
    this.fdb.forfeit(entry);
    this.routes.forfeit(entry);
    this.wireguardPeers.forfeit(entry);
    if (plan.fdb !== undefined) {
      this.macClaims.remove(plan.fdb.mac, entry);
      touched.fdb.add(plan.fdb.mac);
    }
    if (plan.neighbour !== undefined) {
      this.neighbourClaims.remove(plan.neighbour.ip, entry);
      touched.neighbours.add(plan.neighbour.ip);
    }
    if (plan.route !== undefined) {
      this.routeClaims.remove(plan.route.dst, entry);
      touched.routes.add(plan.route.dst);
    }
    if (plan.wireguardPeer !== undefined) {
      this.publicKeyClaims.remove(plan.wireguardPeer.publicKey, entry);
      touched.wireguardPeers.add(plan.wireguardPeer.publicKey);
    }
  }

  /** The peer a VtepMAC or a WireGuard public key belongs to: the first claimant in the peers' order. */
  private holder(claims: ClaimTable, key: string): PeerEntry | undefined {
    return claims.earliest(key);
  }

  /** A peer is programmed unless refused or clashing with an earlier peer's VtepMAC or public key. */
  private active(entry: PeerEntry): boolean {
    const { plan } = entry;
    if (plan.kind === 'skip') return false;
    if (plan.wireguardPeer !== undefined && this.holder(this.publicKeyClaims, plan.wireguardPeer.publicKey) !== entry) return false;
    return plan.fdb === undefined || this.holder(this.macClaims, plan.fdb.mac) === entry;
  }

  /** The last active claimant in the peers' order. */
  private lastActive(list: readonly PeerEntry[]): PeerEntry | undefined {
    let winner: PeerEntry | undefined;
    for (const entry of list) if ((winner === undefined || entry.seq > winner.seq) && this.active(entry)) winner = entry;
    return winner;
  }

  private settle(touched: DirtyKeys): void {
    // A VtepMAC changing hands switches its claimants on or off, and with them their neighbours and routes.
    for (const mac of touched.fdb) {
      const holder = this.holder(this.macClaims, mac);
      this.dirty.fdb.add(mac);
      this.fdb.crown(mac, holder);
      if (holder === undefined) continue;
      const fdb = (holder.plan as ProgramPlan).fdb!;
      for (const entry of this.macClaims.claimants(mac)) {
        const plan = entry.plan as ProgramPlan;
        if (plan.neighbour !== undefined) touched.neighbours.add(plan.neighbour.ip);
        if (plan.route !== undefined) touched.routes.add(plan.route.dst);
        if (entry === holder) this.skips.delete(entry.name);
        else this.skips.set(entry.name, { lease: entry.lease, reason: vtepClash(mac, fdb) });
      }
    }
    for (const ip of touched.neighbours) {
      this.dirty.neighbours.add(ip);
      this.neighbours.crown(ip, this.lastActive(this.neighbourClaims.claimants(ip)));
    }
    for (const dst of touched.routes) {
      this.dirty.routes.add(dst);
      this.routes.crown(dst, this.lastActive(this.routeClaims.claimants(dst)));
    }
    // A public key, like a VtepMAC, stays with its first claimant; the others are skipped.
    for (const key of touched.wireguardPeers) {
      const holder = this.holder(this.publicKeyClaims, key);
      this.dirty.wireguardPeers.add(key);
      this.wireguardPeers.crown(key, holder);
      if (holder === undefined) continue;
      const peer = (holder.plan as ProgramPlan).wireguardPeer!;
      for (const entry of this.publicKeyClaims.claimants(key)) {
        if (entry === holder) this.skips.delete(entry.name);
        else this.skips.set(entry.name, { lease: entry.lease, reason: publicKeyClash(key, peer) });
      }
    }
    touched.neighbours.clear();
    touched.fdb.clear();
    touched.routes.clear();
    touched.wireguardPeers.clear();
  }
}

/**
 * A VtepMAC derived from the public IP and VNI: the same after an agent restart or a reboot, so peers
 * never hold a stale MAC, and distinct between hosts. Locally administered, unicast.
 */
export function stableVtepMac(publicIP: IpAddress, vni: number): string {
  const digest = createHash('sha256').update(`weft-vtep:${publicIP.toString()}:${vni}`).digest();
  const bytes = [...digest.subarray(0, 6)];
  bytes[0] = (bytes[0] & 0xfe) | 0x02;
  return bytes.map((byte) => byte.toString(16).padStart(2, '0')).join(':');
}

/** VXLAN encapsulation overhead: outer IP + UDP + VXLAN header + inner Ethernet. */
export function vxlanOverhead(underlay: Family): number {
  return (underlay === 4 ? 20 : 40) + 8 + 8 + 14;
}
