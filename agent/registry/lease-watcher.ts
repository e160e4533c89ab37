import { EventEmitter } from 'node:events';
import type { Etcd3, IKeyValue } from 'etcd3';
import { decodeLease, sameLeaseAttrs, type Lease } from '../../common/lease.js';
import type { Logger } from '../log.js';
import { KvMirror, type KvChange, type KvMirrorEvents } from './kv-mirror.js';
import type { NetworkKeys } from './etcd.js';

export type LeaseEvent =
  | { kind: 'added'; lease: Lease }
  | { kind: 'changed'; lease: Lease; previous: Lease }
  | { kind: 'removed'; lease: Lease };

export interface LeaseWatcherEvents {
  lease: [LeaseEvent];
  synced: KvMirrorEvents['synced'];
  reachable: KvMirrorEvents['reachable'];
}

function sameLease(a: Lease, b: Lease): boolean {
  return a.reservation === b.reservation && sameLeaseAttrs(a.attrs, b.attrs);
}

/** A key under the subnets prefix that holds no valid lease: its value, and why (undefined: not a lease key). */
interface InvalidKey {
  value: string;
  error: string | undefined;
}

/**
 * What the mirror keeps of each key: the decoded lease itself (the same object the watcher's map holds, and
 * no copy of the raw value), or the value that is not one.
 */
type KeyEntry = Lease | InvalidKey;

const isLease = (entry: KeyEntry): entry is Lease => 'attrs' in entry;

/**
 * Every valid lease of the network, kept current from etcd. A key whose value does not decode is
 * skipped with a warning naming it; if it held a valid lease before, that lease stays as it was, so a
 * bad write never tears down a working peer.
 */
export class LeaseWatcher extends EventEmitter<LeaseWatcherEvents> {
  readonly leases = new Map<string, Lease>();
  private readonly mirror: KvMirror<KeyEntry>;
  private readonly keys: NetworkKeys;
  private readonly log: Logger;

  constructor(options: { client: Etcd3; keys: NetworkKeys; logger: Logger; maxBackoffMs?: number }) {
    super();
    this.keys = options.keys;
    this.log = options.logger;
    this.mirror = new KvMirror<KeyEntry>({
      client: options.client,
      prefix: options.keys.subnets,
      codec: {
        decode: (_key, name, kv) => this.decode(name, kv),
        same: (a, b) => (isLease(a) ? isLease(b) && sameLease(a, b) : !isLease(b) && a.value === b.value),
      },
      logger: options.logger,
      ...(options.maxBackoffMs === undefined ? {} : { maxBackoffMs: options.maxBackoffMs }),
    });
    this.mirror.on('change', (change) => this.apply(change));
    this.mirror.on('synced', (reason) => this.emit('synced', reason));
    this.mirror.on('reachable', (ok) => this.emit('reachable', ok));
  }

  start(): Promise<void> {
    return this.mirror.start();
  }

  stop(): Promise<void> {
    return this.mirror.stop();
  }

  /** `name`: the key without the subnets prefix, the mirror's own string, which the lease keeps as its name. */
  private decode(name: string, kv: IKeyValue): KeyEntry {
    const value = kv.value.toString();
    if (name === '' || name.includes('/')) return { value, error: undefined };
    try {
      return decodeLease(name, value, String(kv.lease) === '0');
    } catch (err) {
      return { value, error: (err as Error).message };
    }
  }

  private apply(change: KvChange<KeyEntry>): void {
    if (change.kind === 'removed') {
      const name = this.keys.leaseName(change.key);
      const known = name === undefined ? undefined : this.leases.get(name);
      if (known === undefined) return;
      this.leases.delete(known.name);
      this.emit('lease', { kind: 'removed', lease: known });
      return;
    }
    const entry = change.value;
    if (!isLease(entry)) {
      if (entry.error === undefined) {
        this.log.warn({ key: change.key }, 'skipping a key that is not a lease');
        return;
      }
      const name = this.keys.leaseName(change.key);
      const known = name === undefined ? undefined : this.leases.get(name);
      this.log.warn(
        { key: change.key, err: entry.error },
        known === undefined ? 'skipping a malformed lease' : 'skipping a malformed update; keeping the last valid lease',
      );
      return;
    }
    const known = this.leases.get(entry.name);
    this.leases.set(entry.name, entry);
    if (known === undefined) this.emit('lease', { kind: 'added', lease: entry });
    else if (!sameLease(known, entry)) this.emit('lease', { kind: 'changed', lease: entry, previous: known });
  }
}
