import { EventEmitter } from 'node:events';
import type { Etcd3, IKeyValue, IRangeResponse, Watcher } from 'etcd3';
import { diffSnapshots, type SnapshotChange } from '../../common/snapshot-diff.js';
import type { Logger } from '../log.js';

export interface KvEntry {
  value: string;
  /** etcd lease ID as a decimal string; "0" when no lease is attached. */
  lease: string;
  modRevision: string;
}

export type KvChange<T = KvEntry> = SnapshotChange<T>;

/**
 * What a mirror keeps of each key (and emits), and when a new version of a key is no change. `name` is the
 * key without the mirror's prefix: the string the mirror keeps the entry under.
 */
export interface KvCodec<T> {
  decode(key: string, name: string, kv: IKeyValue): T;
  same(a: T, b: T): boolean;
}

/** The key's value, etcd lease and revision as they are; a rewrite with the same value and etcd lease is no change. */
export const kvEntries: KvCodec<KvEntry> = {
  decode: (_key, _name, kv) => ({ value: kv.value.toString(), lease: String(kv.lease), modRevision: String(kv.mod_revision) }),
  same: (a, b) => a.value === b.value && a.lease === b.lease,
};

export interface KvMirrorOptions<T> {
  client: Etcd3;
  /** Mirror every key that starts with this prefix. */
  prefix: string;
  codec: KvCodec<T>;
  logger: Logger;
  /** Delay before the first retry after a failure; doubles up to `maxBackoffMs`. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
}

export interface KvMirrorEvents<T = KvEntry> {
  change: [KvChange<T>];
  /** A full list was applied; `reason` says why it was taken. */
  synced: [reason: string];
  /** Whether the last etcd call succeeded. */
  reachable: [boolean];
}

/**
 * A local copy of a key range that follows etcd: list, then watch from the list's revision. After any
 * disruption of the watch (compaction, reconnect, cancellation) it lists again and emits only what
 * differs from what it already emitted, so consumers see each real change exactly once and never a
 * spurious removal. An entry the codec finds the same as the one kept is not taken: the kept one stays.
 */
export class KvMirror<T = KvEntry> extends EventEmitter<KvMirrorEvents<T>> {
  /** by key without the prefix: with thousands of keys under it, the prefix is not kept once per key */
  private readonly entries = new Map<string, T>();
  private readonly client: Etcd3;
  private readonly prefix: string;
  private readonly prefixBytes: number;
  private readonly codec: KvCodec<T>;
  private readonly log: Logger;
  private readonly initialBackoffMs: number;
  private readonly maxBackoffMs: number;
  private watcher: Watcher | undefined;
  private stopped = false;
  private resyncing: Promise<void> | undefined;
  private pendingReason: string | undefined;
  private wake: (() => void) | undefined;
  private firstSync: Promise<void> | undefined;
  private unreachableLogged = false;

  constructor(options: KvMirrorOptions<T>) {
    super();
    this.client = options.client;
    this.prefix = options.prefix;
    this.prefixBytes = Buffer.byteLength(options.prefix);
    this.codec = options.codec;
    this.log = options.logger;
    this.initialBackoffMs = options.initialBackoffMs ?? 100;
    this.maxBackoffMs = options.maxBackoffMs ?? 2000;
  }

  /** Whether the mirror holds `key`. */
  has(key: string): boolean {
    return key.startsWith(this.prefix) && this.entries.has(key.slice(this.prefix.length));
  }

  /** Resolves after the first successful list (retrying until etcd answers or `stop()` is called). */
  start(): Promise<void> {
    this.firstSync ??= this.resync('initial list');
    return this.firstSync;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.detachWatcher();
    await this.resyncing?.catch(() => undefined);
  }

  private resync(reason: string): Promise<void> {
    if (this.resyncing !== undefined) {
      this.pendingReason ??= reason;
      return this.resyncing;
    }
    this.resyncing = this.runResync(reason).finally(() => {
      this.resyncing = undefined;
      const next = this.pendingReason;
      this.pendingReason = undefined;
      if (next !== undefined && !this.stopped) void this.resync(next);
    });
    return this.resyncing;
  }

  private async runResync(reason: string): Promise<void> {
    await this.detachWatcher();
    let delay = this.initialBackoffMs;
    while (!this.stopped) {
      try {
        const revision = await this.listAndApply(reason);
        if (this.stopped) return;
        this.attachWatcher(revision);
        return;
      } catch (err) {
        // One line per outage, not one per retry.
        const level = this.unreachableLogged ? 'debug' : 'warn';
        this.unreachableLogged = true;
        this.log[level]({ err, prefix: this.prefix }, 'etcd list failed; retrying until it answers');
        this.emit('reachable', false);
        await this.sleep(delay);
        delay = Math.min(delay * 2, this.maxBackoffMs);
      }
    }
  }

  private async listAndApply(reason: string): Promise<bigint> {
    const response = await listPrefix(this.client, this.prefix);
    if (this.unreachableLogged) this.log.info({ prefix: this.prefix }, 'etcd answers again');
    this.unreachableLogged = false;
    this.emit('reachable', true);
    const fresh = new Map<string, T>();
    for (const kv of response.kvs) {
      const name = this.nameOf(kv);
      fresh.set(name, this.codec.decode(kv.key.toString(), name, kv));
    }
    const changes = diffSnapshots(this.entries, fresh, this.codec.same);
    fresh.clear(); // its table is as big as the listing; the changes hold what is still needed
    for (const change of changes) if (change.kind !== 'removed') this.entries.set(change.key, change.value);
    for (const change of changes) {
      if (change.kind === 'removed') this.entries.delete(change.key);
      this.emit('change', { ...change, key: this.prefix + change.key });
    }
    this.log.debug({ prefix: this.prefix, reason, keys: response.kvs.length, changes: changes.length }, 'listed');
    this.emit('synced', reason);
    return BigInt(response.header.revision);
  }

  private attachWatcher(listRevision: bigint): void {
    const watcher = this.client
      .watch()
      .prefix(this.prefix)
      .startRevision(String(listRevision + 1n))
      .watcher();
    this.watcher = watcher;
    watcher.on('put', (kv) => this.applyPut(kv));
    watcher.on('delete', (kv) => this.applyDelete(kv));
    watcher.on('connected', () => this.emit('reachable', true));
    const disrupted = (why: string) => (err?: Error) => {
      if (this.watcher !== watcher || this.stopped) return;
      this.log.info({ prefix: this.prefix, why, err }, 'watch disrupted; listing again');
      void this.resync(why);
    };
    watcher.on('disconnected', disrupted('watch disconnected'));
    watcher.on('error', disrupted('watch cancelled'));
  }

  /** The key without the prefix, as a string of its own (a slice of the whole key would keep the whole key). */
  private nameOf(kv: IKeyValue): string {
    return kv.key.toString('utf8', this.prefixBytes);
  }

  private applyPut(kv: IKeyValue): void {
    const key = kv.key.toString();
    const name = this.nameOf(kv);
    const entry = this.codec.decode(key, name, kv);
    const previous = this.entries.get(name);
    if (previous !== undefined && this.codec.same(previous, entry)) return;
    this.entries.set(name, entry);
    if (previous === undefined) this.emit('change', { kind: 'added', key, value: entry });
    else this.emit('change', { kind: 'changed', key, value: entry, previous });
  }

  private applyDelete(kv: IKeyValue): void {
    const name = this.nameOf(kv);
    const previous = this.entries.get(name);
    if (previous === undefined) return;
    this.entries.delete(name);
    this.emit('change', { kind: 'removed', key: kv.key.toString(), previous });
  }

  private async detachWatcher(): Promise<void> {
    const watcher = this.watcher;
    this.watcher = undefined;
    if (watcher === undefined) return;
    watcher.removeAllListeners();
    // A cancel on a dead stream may never be answered; the watch manager drops it on reconnect anyway.
    watcher.on('error', () => undefined);
    await Promise.race([watcher.cancel().catch(() => undefined), delay(1000)]);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wake = undefined;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
    });
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

const inFlight = new WeakMap<Etcd3, Map<string, Promise<IRangeResponse>>>();

/**
 * Every key under `prefix`, with one range request. Callers that ask for the same prefix of the same client
 * while a request is in flight share its answer: at start the lease manager and the lease watcher both list
 * the subnets, and with thousands of leases one listing (etcd's work, the transfer, decoding it) is a good
 * part of weftd's start-up. Sharing is safe for both: the answer was current when the request was sent,
 * after either call began; the watcher watches from its revision on, and the lease manager's writes are
 * transactions that compare revisions. The answer's objects are shared: read them, never change them.
 */
export function listPrefix(client: Etcd3, prefix: string): Promise<IRangeResponse> {
  let requests = inFlight.get(client);
  if (requests === undefined) inFlight.set(client, (requests = new Map()));
  const pending = requests.get(prefix);
  if (pending !== undefined) return pending;
  const key = Buffer.from(prefix);
  const request = client.kv.range({ key, range_end: rangeEndOf(key) }).finally(() => requests.delete(prefix));
  requests.set(prefix, request);
  return request;
}

/** The etcd range end that selects every key with `prefix` (the prefix with its last byte incremented). */
export function rangeEndOf(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]! += 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}
