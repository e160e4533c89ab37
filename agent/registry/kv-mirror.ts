import { EventEmitter } from 'node:events';
import type { Etcd3, IKeyValue, IRangeResponse, Watcher } from 'etcd3';
import { excerpt } from '../../common/json.js';
import { diffSnapshots, type SnapshotChange } from '../../common/snapshot-diff.js';
import type { Logger } from '../log.js';
import { isResourceExhausted, retryBackoff } from './etcd.js';

export type KvChange<T> = SnapshotChange<T>;

/**
 * What a mirror keeps of each key (and emits), and when a new version of a key is no change. `name` is the
 * key without the mirror's prefix: the string the mirror keeps the entry under. Neither may throw (the mirror
 * logs and skips a key if one does): they see whatever anyone wrote.
 */
export interface KvCodec<T> {
  decode(key: string, name: string, kv: IKeyValue): T;
  same(a: T, b: T): boolean;
}

export interface KvMirrorOptions<T> {
  client: Etcd3;
  /** The key to mirror, or with `prefix` every key that starts with it. */
  key: string;
  prefix: boolean;
  codec: KvCodec<T>;
  logger: Logger;
  /**
   * Delay before the first retry after a failure; the delays grow up to `maxBackoffMs` (default 5 s, as
   * flanneld's), each drawn at random.
   */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
}

const INITIAL_LIST = 'initial list';

/**
 * After a disruption the mirror lists again after a random delay of up to this much per key it holds (at
 * most `maxBackoffMs`). A disruption reaches every agent of a cluster at once (an etcd member goes down, etcd
 * compacts), and each agent's listing is as large as the cluster: spread over a window that grows with the
 * cluster, the agents' listings do not arrive together. A mirror of one key lists again at once.
 */
const RELIST_SPREAD_MS_PER_KEY = 5;

export interface KvMirrorEvents<T> {
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
export class KvMirror<T> extends EventEmitter<KvMirrorEvents<T>> {
  /** by key without the prefix: with thousands of keys under it, the prefix is not kept once per key */
  private readonly entries = new Map<string, T>();
  private readonly client: Etcd3;
  private readonly key: string;
  private readonly isPrefix: boolean;
  private readonly keyBytes: number;
  private readonly codec: KvCodec<T>;
  private readonly log: Logger;
  private readonly backoff: ReturnType<typeof retryBackoff>;
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
    this.key = options.key;
    this.isPrefix = options.prefix;
    this.keyBytes = Buffer.byteLength(options.key);
    this.codec = options.codec;
    this.log = options.logger;
    this.maxBackoffMs = options.maxBackoffMs ?? 5000;
    this.backoff = retryBackoff(options.initialBackoffMs ?? 100, this.maxBackoffMs);
  }

  /** Whether the mirror holds `key`. */
  has(key: string): boolean {
    return key.startsWith(this.key) && this.entries.has(key.slice(this.key.length));
  }

  /** Resolves after the first successful list (retrying until etcd answers or `stop()` is called). */
  start(): Promise<void> {
    this.firstSync ??= this.resync(INITIAL_LIST);
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
    const spread = reason === INITIAL_LIST ? 0 : Math.min(this.maxBackoffMs, this.entries.size * RELIST_SPREAD_MS_PER_KEY);
    if (spread > 0) await this.sleep(Math.random() * spread);
    let backoff = this.backoff.next(undefined);
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
        this.log[level]({ err, key: this.key }, 'etcd list failed; retrying until it answers');
        this.emit('reachable', false);
        await this.sleep(backoff.duration);
        backoff = backoff.next(undefined);
      }
    }
  }

  private async listAndApply(reason: string): Promise<bigint> {
    const listing = this.isPrefix ? await listPrefix(this.client, this.key) : await listKey(this.client, this.key);
    if (this.unreachableLogged) this.log.info({ key: this.key }, 'etcd answers again');
    this.unreachableLogged = false;
    this.emit('reachable', true);
    const fresh = new Map<string, T>();
    for (const kv of listing.kvs) {
      const name = this.nameOf(kv);
      const entry = this.decode(kv, name);
      if (entry !== undefined) fresh.set(name, entry);
    }
    const changes = diffSnapshots(this.entries, fresh, (a, b) => this.same(a, b));
    fresh.clear(); // its table is as big as the listing; the changes hold what is still needed
    for (const change of changes) if (change.kind !== 'removed') this.entries.set(change.key, change.value);
    for (const change of changes) {
      if (change.kind === 'removed') this.entries.delete(change.key);
      this.emitChange({ ...change, key: this.key + change.key });
    }
    this.log.debug({ key: this.key, reason, keys: listing.kvs.length, changes: changes.length }, 'listed');
    this.emit('synced', reason);
    return BigInt(listing.revision);
  }

  private attachWatcher(listRevision: bigint): void {
    const builder = this.client.watch();
    const watcher = (this.isPrefix ? builder.prefix(this.key) : builder.key(this.key)).startRevision(String(listRevision + 1n)).watcher();
    this.watcher = watcher;
    watcher.on('put', (kv) => this.applyPut(kv));
    watcher.on('delete', (kv) => this.applyDelete(kv));
    watcher.on('connected', () => this.emit('reachable', true));
    const disrupted = (why: string) => (err?: Error) => {
      if (this.watcher !== watcher || this.stopped) return;
      this.log.info({ key: this.key, why, err }, 'watch disrupted; listing again');
      void this.resync(why);
    };
    watcher.on('disconnected', disrupted('watch disconnected'));
    watcher.on('error', disrupted('watch cancelled'));
  }

  /** The key without the prefix, as a string of its own (a slice of the whole key would keep the whole key). */
  private nameOf(kv: IKeyValue): string {
    return kv.key.toString('utf8', this.keyBytes);
  }

  private applyPut(kv: IKeyValue): void {
    const name = this.nameOf(kv);
    const entry = this.decode(kv, name);
    if (entry === undefined) return;
    const previous = this.entries.get(name);
    if (previous !== undefined && this.same(previous, entry)) return;
    this.entries.set(name, entry);
    const key = this.key + name;
    if (previous === undefined) this.emitChange({ kind: 'added', key, value: entry });
    else this.emitChange({ kind: 'changed', key, value: entry, previous });
  }

  private applyDelete(kv: IKeyValue): void {
    const name = this.nameOf(kv);
    const previous = this.entries.get(name);
    if (previous === undefined) return;
    this.entries.delete(name);
    this.emitChange({ kind: 'removed', key: this.key + name, previous });
  }

  // Nothing that comes from etcd may throw into the watch stream or the listing: one key that trips a codec or
  // a listener is logged and skipped, and the mirror goes on with every other key.

  private decode(kv: IKeyValue, name: string): T | undefined {
    try {
      return this.codec.decode(this.key + name, name, kv);
    } catch (err) {
      this.log.error({ key: excerpt(this.key + name), err }, 'could not take a key from etcd; skipping it');
      return undefined;
    }
  }

  private same(a: T, b: T): boolean {
    try {
      return this.codec.same(a, b);
    } catch {
      return false;
    }
  }

  private emitChange(change: KvChange<T>): void {
    try {
      this.emit('change', change);
    } catch (err) {
      this.log.error({ key: excerpt(change.key), err }, 'could not apply a change from etcd; skipping it');
    }
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

/** Every key of a range at one revision. */
export interface Listing {
  kvs: IKeyValue[];
  /** The revision the whole listing was read at. */
  revision: string;
}

/** Keys one range request asks for: about 200 KB of ordinary leases. */
const PAGE_KEYS = 1000;

const inFlight = new WeakMap<Etcd3, Map<string, Promise<Listing>>>();

/**
 * Every key under `prefix`, read in pages of at most PAGE_KEYS keys at the revision of the first page (so the
 * pages make one consistent listing): a single range of every key would be one gRPC message, and past the
 * receive limit (a few MB: tens of thousands of leases, or a few large junk values) no agent could list at
 * all. A page too large for the limit is asked for again in halves.
 *
 * Callers that ask for the same prefix of the same client while a listing is in flight share its answer: at
 * start the lease manager and the lease watcher both list the subnets, and with thousands of leases one
 * listing (etcd's work, the transfer, decoding it) is a good part of weftd's start-up. Sharing is safe for
 * both: the answer was current when the listing began, after either call began; the watcher watches from its
 * revision on, and the lease manager's writes are transactions that compare revisions. The answer's objects
 * are shared: read them, never change them.
 */
export function listPrefix(client: Etcd3, prefix: string): Promise<Listing> {
  let requests = inFlight.get(client);
  if (requests === undefined) inFlight.set(client, (requests = new Map<string, Promise<Listing>>()));
  const pending = requests.get(prefix);
  if (pending !== undefined) return pending;
  const request = listPages(client, Buffer.from(prefix)).finally(() => requests.delete(prefix));
  requests.set(prefix, request);
  return request;
}

async function listPages(client: Etcd3, prefix: Buffer): Promise<Listing> {
  const rangeEnd = rangeEndOf(prefix);
  const kvs: IKeyValue[] = [];
  let revision: string | undefined;
  let from = prefix;
  let limit = PAGE_KEYS;
  for (;;) {
    let page: IRangeResponse;
    try {
      page = await client.kv.range({ key: from, range_end: rangeEnd, limit, ...(revision === undefined ? {} : { revision }) });
    } catch (err) {
      if (limit > 1 && isResourceExhausted(err)) {
        limit = Math.ceil(limit / 2);
        continue;
      }
      throw err;
    }
    revision ??= page.header.revision;
    for (const kv of page.kvs) kvs.push(kv);
    const last = page.kvs.at(-1);
    if (!page.more || last === undefined) return { kvs, revision };
    // the smallest key after the last one
    from = Buffer.concat([last.key, Buffer.from([0])]);
    limit = Math.min(PAGE_KEYS, limit * 2);
  }
}

/** The one key `key` (or none), as a Listing. */
async function listKey(client: Etcd3, key: string): Promise<Listing> {
  const response = await client.kv.range({ key: Buffer.from(key) });
  return { kvs: response.kvs, revision: response.header.revision };
}

/** The etcd range end that selects every key with `prefix` (the prefix with its last byte incremented). */
function rangeEndOf(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i] < 0xff) {
      end[i] += 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}
