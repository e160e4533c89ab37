import { EventEmitter } from 'node:events';
import type { Etcd3 } from 'etcd3';
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

/**
 * Every valid lease of the network, kept current from etcd. A key whose value does not decode is
 * skipped with a warning naming it; if it held a valid lease before, that lease stays as it was, so a
 * bad write never tears down a working peer.
 */
export class LeaseWatcher extends EventEmitter<LeaseWatcherEvents> {
  readonly leases = new Map<string, Lease>();
  private readonly mirror: KvMirror;
  private readonly keys: NetworkKeys;
  private readonly log: Logger;

  constructor(options: { client: Etcd3; keys: NetworkKeys; logger: Logger; maxBackoffMs?: number }) {
    super();
    this.keys = options.keys;
    this.log = options.logger;
    this.mirror = new KvMirror({
      client: options.client,
      prefix: options.keys.subnets,
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

  private apply(change: KvChange): void {
    const name = this.keys.leaseName(change.key);
    if (name === undefined || name === '' || name.includes('/')) {
      if (change.kind !== 'removed') this.log.warn({ key: change.key }, 'skipping a key that is not a lease');
      return;
    }
    const known = this.leases.get(name);
    if (change.kind === 'removed') {
      if (known === undefined) return;
      this.leases.delete(name);
      this.emit('lease', { kind: 'removed', lease: known });
      return;
    }
    let lease: Lease;
    try {
      lease = decodeLease(name, change.value.value, change.value.lease === '0');
    } catch (err) {
      this.log.warn(
        { key: change.key, err: (err as Error).message },
        known === undefined ? 'skipping a malformed lease' : 'skipping a malformed update; keeping the last valid lease',
      );
      return;
    }
    this.leases.set(name, lease);
    if (known === undefined) this.emit('lease', { kind: 'added', lease });
    else if (!sameLease(known, lease)) this.emit('lease', { kind: 'changed', lease, previous: known });
  }
}
