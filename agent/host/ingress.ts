/**
 * The ingress allow-list: weft's tunnel ports (VXLAN, udp backend) accept datagrams only from the current
 * peers' public IPs, so that nobody else on the underlay can inject frames into the overlay.
 *
 * It lives in an nftables table of its own (`inet weft`) rather than in iptables rules: the peers are a set,
 * so a join or a leave is one atomic set update whatever the cluster's size, and the drop rule's counter
 * says how much was refused. Every change goes through one long-lived nft process (NftSession): a peer
 * joining or leaving starts no process.
 */
import type { IpAddress } from '../../common/cidr.js';
import type { LeaseChange } from '../../common/lease-arbiter.js';
import type { Lease } from '../../common/lease.js';
import { excerpt } from '../../common/json.js';
import type { Logger } from '../log.js';
import { createCommandRunner, runChecked, type CommandRunner } from './command.js';
import { CommandError } from './errors.js';
import { NftSession, type NftChannel } from './nft-session.js';

export const INGRESS_TABLE = 'weft';

export interface IngressOptions {
  /** UDP ports to guard (the VXLAN port, the udp backend's port). */
  ports: readonly number[];
  /** Where the nft commands go (default: an NftSession of this process's namespace). The allow-list closes it on stop(). */
  nft?: NftChannel;
  logger?: Logger;
  /** Seconds between checks that the table is still there and right (default 5). */
  resyncSeconds?: number;
}

/**
 * Peer set updates are at least this far apart (a peer that just joined may wait that long to be let in): under
 * churn, one update carries many joins and leaves, and nft and the kernel do that work once.
 */
const MIN_UPDATE_INTERVAL_MS = 200;

/** The parts of `nft -j list` output weft reads: set elements and rules. */
interface NftListing {
  nftables: { set?: { name: string; elem?: unknown[] }; rule?: { expr: unknown[] } }[];
}

/** Counted drops of the allow-list, per family. */
export interface IngressCounters {
  ipv4: number;
  ipv6: number;
}

export class IngressAllowList {
  private readonly ports: readonly number[];
  private readonly nft: NftChannel;
  private readonly log: Logger | undefined;
  private readonly resyncMs: number;
  /** the addresses to allow */
  private readonly peers = new Set<string>();
  /** the addresses in the kernel's sets as last written; undefined when unknown (nothing written yet, or a write failed) */
  private written: Set<string> | undefined;
  /** the addresses added to or taken from `peers` since the last write took its snapshot: only they can differ from `written` */
  private touched = new Set<string>();
  /** a sets update queued and not started yet */
  private waiting: Promise<void> | undefined;
  private lastUpdate = 0;
  private timer: NodeJS.Timeout | undefined;
  private queue: Promise<void> = Promise.resolve();

  constructor(options: IngressOptions) {
    this.ports = options.ports;
    this.nft = options.nft ?? new NftSession();
    this.log = options.logger;
    this.resyncMs = (options.resyncSeconds ?? 5) * 1000;
  }

  /** Creates (or re-creates) the table with the given peers allowed. */
  apply(peers: Iterable<IpAddress>): Promise<void> {
    this.peers.clear();
    for (const ip of peers) this.peers.add(ip.toString());
    return this.serialize(() => this.writeTable());
  }

  /** Replaces the allowed peers, in O(peers) (changePeers takes one lease's change); written as changePeers writes. */
  setPeers(peers: Iterable<IpAddress>): Promise<void> {
    const next = new Set<string>();
    for (const ip of peers) next.add(ip.toString());
    let changed = false;
    for (const ip of this.peers) if (!next.has(ip)) changed = this.touch(ip, false) || changed;
    for (const ip of next) changed = this.touch(ip, true) || changed;
    return changed ? this.schedule() : this.queue;
  }

  /**
   * Allows `added` and no longer `removed`, in O(addresses given); a no-op when that changes nothing. Updates
   * coalesce: while one is being written at most one more waits, it starts no sooner than MIN_UPDATE_INTERVAL_MS
   * after the one before and writes whatever the peers are by then, and only what changed: hundreds of lease
   * changes a second make a few set updates.
   */
  changePeers({ added, removed }: AddressChange): Promise<void> {
    let changed = false;
    for (const ip of removed) changed = this.touch(ip.toString(), false) || changed;
    for (const ip of added) changed = this.touch(ip.toString(), true) || changed;
    return changed ? this.schedule() : this.queue;
  }

  /** Whether the table, its rules and its sets are as weft last wrote them. */
  async check(): Promise<boolean> {
    const result = await this.nft.run(`list table inet ${INGRESS_TABLE}`);
    if (result.code !== 0) return false;
    let listing: NftListing;
    try {
      listing = JSON.parse(result.stdout) as NftListing;
    } catch {
      return false;
    }
    const elements: string[] = [];
    let rules = 0;
    for (const entry of listing.nftables) {
      for (const element of entry.set?.elem ?? []) if (typeof element === 'string') elements.push(element);
      if (entry.rule !== undefined) rules++;
    }
    // against what was last written: a newer peer set may be waiting for its turn (updates are spaced)
    const expected = this.written ?? this.peers;
    return rules === 2 && elements.length === expected.size && elements.every((ip) => expected.has(ip));
  }

  /** Checks every resyncSeconds and rewrites the table when someone changed or removed it. */
  start(): void {
    this.timer = setInterval(() => {
      void this.serialize(async () => {
        if (await this.check()) return;
        this.log?.warn({ table: `inet ${INGRESS_TABLE}` }, 'the ingress allow-list was changed or removed; restoring it');
        await this.writeTable();
      }).catch((err: Error) => this.log?.error({ err }, 'could not check the ingress allow-list'));
    }, this.resyncMs);
    this.timer.unref();
  }

  /** Stops the resync and lets the nft process go once the updates in flight are written. */
  stop(): void {
    clearInterval(this.timer);
    void this.queue.then(() => this.nft.close());
  }

  /** Deletes weft's table (and nothing else). */
  async remove(): Promise<void> {
    clearInterval(this.timer);
    try {
      await this.serialize(async () => {
        const result = await this.nft.run(`delete table inet ${INGRESS_TABLE}`);
        if (result.code !== 0 && !/No such file or directory/.test(result.stderr))
          throw nftError(`delete table inet ${INGRESS_TABLE}`, result.stderr);
      });
    } finally {
      this.nft.close();
    }
  }

  /** Packets the allow-list dropped, read from its rules' counters. */
  async counters(): Promise<IngressCounters> {
    const stdout = await this.checked(`list chain inet ${INGRESS_TABLE} input`);
    const counts: number[] = [];
    for (const entry of (JSON.parse(stdout) as NftListing).nftables) {
      if (entry.rule === undefined) continue;
      const counter = entry.rule.expr.find(
        (expr): expr is { counter: { packets: number } } => typeof expr === 'object' && expr !== null && 'counter' in expr,
      );
      counts.push(counter?.counter.packets ?? 0);
    }
    return { ipv4: counts[0] ?? 0, ipv6: counts[1] ?? 0 };
  }

  /** Whether that changed the peers. */
  private touch(ip: string, allowed: boolean): boolean {
    if (allowed === this.peers.has(ip)) return false;
    if (allowed) this.peers.add(ip);
    else this.peers.delete(ip);
    this.touched.add(ip);
    return true;
  }

  private schedule(): Promise<void> {
    this.waiting ??= this.serialize(async () => {
      const wait = this.lastUpdate + MIN_UPDATE_INTERVAL_MS - Date.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      this.waiting = undefined;
      this.lastUpdate = Date.now();
      await this.writeSets();
    });
    return this.waiting;
  }

  private serialize(step: () => Promise<void>): Promise<void> {
    const next = this.queue.then(step);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** Runs one transaction; its stdout, or a CommandError with nft's complaint. */
  private async checked(line: string): Promise<string> {
    const result = await this.nft.run(line);
    if (result.code !== 0) throw nftError(line, result.stderr);
    return result.stdout;
  }

  /**
   * The peers as a write is about to send them, sorted. The peers may change while nft runs: what changes from
   * now on is touched again, and the next write compares it with what this one wrote.
   */
  private snapshot(): string[] {
    this.touched.clear();
    return [...this.peers].sort();
  }

  private async writeTable(): Promise<void> {
    const peers = this.snapshot();
    const elements = (family: 4 | 6): string => {
      const ips = peers.filter((ip) => ip.includes(':') === (family === 6));
      return ips.length === 0 ? '' : `elements = { ${ips.join(', ')} }`;
    };
    const ports = this.ports.length === 1 ? String(this.ports[0]) : `{ ${this.ports.join(', ')} }`;
    const table = `inet ${INGRESS_TABLE}`;
    // One line, one transaction. Declaring the table first makes the delete succeed on a fresh host.
    const script = [
      `add table ${table}`,
      `delete table ${table}`,
      `add table ${table}`,
      `add set ${table} peers4 { type ipv4_addr; ${elements(4)} }`,
      `add set ${table} peers6 { type ipv6_addr; ${elements(6)} }`,
      `add chain ${table} input { type filter hook input priority filter - 1; policy accept; }`,
      `add rule ${table} input udp dport ${ports} ip saddr != @peers4 counter drop comment "weft: not a peer"`,
      `add rule ${table} input udp dport ${ports} ip6 saddr != @peers6 counter drop comment "weft: not a peer"`,
    ].join('; ');
    this.written = undefined;
    await this.checked(script);
    this.written = new Set(peers);
    this.log?.info({ table: `inet ${INGRESS_TABLE}`, ports: this.ports, peers: peers.length }, 'ingress allow-list in place');
  }

  private async writeSets(): Promise<void> {
    const written = this.written;
    const touched = this.touched;
    this.touched = new Set();
    if (written !== undefined) {
      const added: string[] = [];
      const removed: string[] = [];
      for (const ip of touched) {
        const allowed = this.peers.has(ip);
        if (allowed !== written.has(ip)) (allowed ? added : removed).push(ip);
      }
      if (added.length + removed.length === 0) return;
      // Only what changed, in one transaction; if the sets are not what we think, the whole of it fails.
      if (added.length + removed.length < this.peers.size) {
        const script = [4, 6].flatMap((family) => {
          const set = `inet ${INGRESS_TABLE} peers${family}`;
          const of = (ips: string[]) => ips.filter((ip) => ip.includes(':') === (family === 6)).sort();
          const gone = of(removed);
          const come = of(added);
          return [
            ...(gone.length === 0 ? [] : [`delete element ${set} { ${gone.join(', ')} }`]),
            ...(come.length === 0 ? [] : [`add element ${set} { ${come.join(', ')} }`]),
          ];
        });
        this.written = undefined;
        const result = await this.nft.run(script.join('; '));
        if (result.code === 0) {
          for (const ip of removed) written.delete(ip);
          for (const ip of added) written.add(ip);
          this.written = written;
          return;
        }
      }
    }
    const peers = this.snapshot();
    const script = [4, 6].flatMap((family) => {
      const elements = peers.filter((ip) => ip.includes(':') === (family === 6));
      const set = `inet ${INGRESS_TABLE} peers${family}`;
      return [`flush set ${set}`, ...(elements.length === 0 ? [] : [`add element ${set} { ${elements.join(', ')} }`])];
    });
    this.written = undefined;
    await this.checked(script.join('; '));
    this.written = new Set(peers);
  }
}

/** Addresses that came into and went out of a set. */
export interface AddressChange {
  added: IpAddress[];
  removed: IpAddress[];
}

/**
 * The public IPs (IPv4 and IPv6) of the peers' leases, every lease but this host's own, each counted once per
 * lease that names it: two leases may share a public IP (a host's old lease lingers until it expires), and the
 * address must stay allowed while either names it. A lease event costs O(1), whatever the number of leases; only
 * the counts are kept (a lease event carries the lease as it was).
 */
export class PeerAddresses {
  private readonly counts = new Map<string, { ip: IpAddress; leases: number }>();

  /** `own`: the name of this host's lease. */
  constructor(private own: string) {}

  /** A lease came, changed or went. */
  leaseChanged(event: LeaseChange): AddressChange {
    const change: AddressChange = { added: [], removed: [] };
    if (event.lease.name === this.own) return change;
    // counted before the old ones are let go: an address the lease keeps does not go and come back
    if (event.kind !== 'removed') this.count(event.lease, change);
    if (event.kind !== 'added') this.uncount(event.kind === 'changed' ? event.previous : event.lease, change);
    return change;
  }

  /** This host holds the lease `own` of `leases` now: the one it held before, if still there (taken over), is a peer's. */
  ownChanged(own: string, leases: ReadonlyMap<string, Lease>): AddressChange {
    const change: AddressChange = { added: [], removed: [] };
    const previous = this.own;
    if (previous === own) return change;
    this.own = own;
    const before = leases.get(previous);
    if (before !== undefined) this.count(before, change);
    const after = leases.get(own);
    if (after !== undefined) this.uncount(after, change);
    return change;
  }

  /** Counts every lease of `leases` again, O(leases) (after a relist); every address. */
  reset(leases: Iterable<Lease>): IpAddress[] {
    this.counts.clear();
    const change: AddressChange = { added: [], removed: [] };
    for (const lease of leases) if (lease.name !== this.own) this.count(lease, change);
    return change.added;
  }

  private count(lease: Lease, change: AddressChange): void {
    for (const ip of [lease.attrs.publicIP, lease.attrs.publicIPv6]) {
      if (ip === undefined) continue;
      const key = ip.toString();
      const count = this.counts.get(key);
      if (count !== undefined) count.leases++;
      else {
        this.counts.set(key, { ip, leases: 1 });
        change.added.push(ip);
      }
    }
  }

  private uncount(lease: Lease, change: AddressChange): void {
    for (const ip of [lease.attrs.publicIP, lease.attrs.publicIPv6]) {
      if (ip === undefined) continue;
      const key = ip.toString();
      const count = this.counts.get(key);
      if (count === undefined || --count.leases > 0) continue;
      this.counts.delete(key);
      change.removed.push(count.ip);
    }
  }
}

function nftError(line: string, stderr: string): CommandError {
  return new CommandError(['nft', excerpt(line)], 1, stderr);
}

/**
 * What the allow-list table holds now, read-only (for `weftctl doctor`): the allowed peer addresses and the
 * number of rules, or undefined when the table does not exist.
 */
export async function readIngressAllowList(
  runner: CommandRunner = createCommandRunner(),
): Promise<{ peers: string[]; rules: number } | undefined> {
  const result = await runner(['nft', '-j', 'list', 'table', 'inet', INGRESS_TABLE]);
  if (result.code !== 0) {
    if (/No such file or directory|does not exist/i.test(result.stderr)) return undefined;
    await runChecked(runner, ['nft', '-j', 'list', 'table', 'inet', INGRESS_TABLE]);
  }
  const peers: string[] = [];
  let rules = 0;
  for (const entry of (JSON.parse(result.stdout) as NftListing).nftables) {
    for (const element of entry.set?.elem ?? []) if (typeof element === 'string') peers.push(element);
    if (entry.rule !== undefined) rules++;
  }
  return { peers: peers.sort(), rules };
}
