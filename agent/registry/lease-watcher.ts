import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Etcd3, IKeyValue } from 'etcd3';
import type { NetworkConfig } from '../../common/config.js';
import { excerpt } from '../../common/json.js';
import { LeaseArbiter, type IgnoredLease, type LeaseChange, type LeaseVersion } from '../../common/lease-arbiter.js';
import { decodeLeaseValue, sameLeaseAttrs, type Lease } from '../../common/lease.js';
import { RateLimitedLog, type Logger } from '../log.js';
import { KvMirror, type KvChange, type KvMirrorEvents } from './kv-mirror.js';
import type { NetworkKeys } from './etcd.js';

export type LeaseEvent = LeaseChange;

export interface LeaseWatcherEvents {
  lease: [LeaseEvent];
  synced: KvMirrorEvents<KeyEntry>['synced'];
  reachable: KvMirrorEvents<KeyEntry>['reachable'];
}

function sameLease(a: Lease, b: Lease): boolean {
  return a.reservation === b.reservation && sameLeaseAttrs(a.attrs, b.attrs);
}

/**
 * A key under the subnets prefix that holds no valid lease: a digest of its value (not the value: it may be
 * megabytes of anything), and why (undefined: not a lease key).
 */
interface InvalidKey {
  digest: string;
  error: string | undefined;
}

/**
 * What the mirror keeps of each key: the decoded lease itself (the same object the watcher's map holds, and
 * no copy of the raw value) with its key's create revision, or what is wrong with the key.
 */
type KeyEntry = LeaseVersion | InvalidKey;

const isLease = (entry: KeyEntry): entry is LeaseVersion => 'lease' in entry;

function digestOf(value: Buffer): string {
  return createHash('sha256').update(value).digest('base64');
}

/**
 * The leases of the network that weft uses, kept current from etcd. A key whose value does not decode is
 * skipped with a warning naming it; if it held a valid lease before, that lease stays as it was, so a
 * bad write never tears down a working peer. Of the leases that decode, only those the LeaseArbiter accepts
 * are in `leases` and reported as events: a lease with a subnet the config does not hand out, or one that
 * claims a subnet or VtepMAC an older lease holds, is ignored (and counted in `ignoredCounts`). Warnings
 * about keys are rate-limited.
 */
export class LeaseWatcher extends EventEmitter<LeaseWatcherEvents> {
  private readonly mirror: KvMirror<KeyEntry>;
  private readonly keys: NetworkKeys;
  private readonly warnings: RateLimitedLog;
  private arbiter: LeaseArbiter | undefined;
  /** Keys under the prefix that hold no valid lease now, and why. */
  private readonly malformed = new Map<string, string>();

  constructor(options: { client: Etcd3; keys: NetworkKeys; logger: Logger; maxBackoffMs?: number }) {
    super();
    this.keys = options.keys;
    this.warnings = new RateLimitedLog(options.logger);
    this.mirror = new KvMirror<KeyEntry>({
      client: options.client,
      key: options.keys.subnets,
      prefix: true,
      codec: {
        decode: (_key, name, kv) => this.decode(name, kv),
        same: (a, b) =>
          isLease(a)
            ? isLease(b) && a.createRevision === b.createRevision && sameLease(a.lease, b.lease)
            : !isLease(b) && a.digest === b.digest && a.error === b.error,
      },
      logger: options.logger,
      ...(options.maxBackoffMs === undefined ? {} : { maxBackoffMs: options.maxBackoffMs }),
    });
    this.mirror.on('change', (change) => this.apply(change));
    this.mirror.on('synced', (reason) => this.emit('synced', reason));
    this.mirror.on('reachable', (ok) => this.emit('reachable', ok));
  }

  /** The leases in use, by name: one live map (the same object from start on). */
  get leases(): ReadonlyMap<string, Lease> {
    return this.arbiter?.accepted ?? new Map();
  }

  /** The leases that decode but are not used, and why. */
  ignored(): IgnoredLease[] {
    return [...(this.arbiter?.ignored.values() ?? [])];
  }

  /** How many keys under the prefix are not used, by reason: the arbiter's reasons, and "malformed" for keys that hold no lease. */
  ignoredCounts(): Map<string, number> {
    const counts = new Map<string, number>(this.arbiter?.ignoredCounts() ?? []);
    counts.set('malformed', this.malformed.size);
    return counts;
  }

  /** Lists and follows the leases, judged against `config` (the one the agent runs with). */
  start(config: NetworkConfig): Promise<void> {
    this.arbiter ??= new LeaseArbiter(config);
    return this.mirror.start();
  }

  stop(): Promise<void> {
    return this.mirror.stop();
  }

  /** `name`: the key without the subnets prefix, the mirror's own string, which the lease keeps as its name. */
  private decode(name: string, kv: IKeyValue): KeyEntry {
    if (name === '' || name.includes('/')) return { digest: digestOf(kv.value), error: undefined };
    try {
      return { lease: decodeLeaseValue(name, kv.value, String(kv.lease) === '0'), createRevision: BigInt(kv.create_revision) };
    } catch (err) {
      return { digest: digestOf(kv.value), error: (err as Error).message };
    }
  }

  private apply(change: KvChange<KeyEntry>): void {
    const arbiter = this.arbiter!;
    const name = this.keys.leaseName(change.key) ?? change.key;
    if (change.kind === 'removed') {
      this.malformed.delete(name);
      this.publish(arbiter.delete(name));
      return;
    }
    const entry = change.value;
    if (!isLease(entry)) {
      this.malformed.set(name, entry.error ?? 'not a lease key');
      if (entry.error === undefined) {
        this.warnings.write('warn', { key: excerpt(change.key) }, 'skipping a key that is not a lease');
        return;
      }
      this.warnings.write(
        'warn',
        { key: excerpt(change.key), err: entry.error },
        arbiter.accepted.has(name) ? 'skipping a malformed update; keeping the last valid lease' : 'skipping a malformed lease',
      );
      return;
    }
    this.malformed.delete(name);
    const changes = arbiter.set(entry);
    this.reportIgnored(entry.lease.name);
    for (const other of changes) if (other.kind === 'removed' && other.lease.name !== name) this.reportIgnored(other.lease.name);
    this.publish(changes);
  }

  private reportIgnored(name: string): void {
    const ignored = this.arbiter!.ignored.get(name);
    if (ignored === undefined) return;
    this.warnings.write(
      'warn',
      { key: excerpt(this.keys.lease(name)), reason: ignored.reason, detail: ignored.detail },
      'ignoring a lease',
    );
  }

  private publish(changes: readonly LeaseChange[]): void {
    for (const change of changes) {
      // a key written again with what it held (a renewal onto a new etcd lease) is no change to anyone
      if (change.kind === 'changed' && sameLease(change.previous, change.lease)) continue;
      this.emit('lease', change);
    }
  }
}
