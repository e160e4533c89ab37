/**
 * weft's Prometheus metrics, on a registry of its own (never prom-client's global one), so that several
 * agents in one process (tests) do not collide.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { UserspaceCounters } from './userspace/path.js';
import { buildInfo } from './build-info.js';
import { ProbeMetrics } from './health/metrics.js';
import { RX_DROP_REASONS, TX_DROP_REASONS } from './userspace/protocol.js';

/** Where the userspace data path's counters come from (the backend's worker); undefined: nothing to report. */
export type UserspaceSource = () => Promise<UserspaceCounters | undefined>;

export type ReconcileTrigger = 'lease' | 'kernel' | 'timer' | 'startup' | (string & {});

export interface MetricsOptions {
  /** Also export prom-client's process_* and nodejs_* metrics (default true). */
  defaultMetrics?: boolean;
  /** The peer probes' metrics with a series per peer (weftd's --probe-metrics-per-peer). */
  perPeerProbes?: boolean;
}

export class WeftMetrics {
  readonly registry: Registry;
  /** Peers programmed into the dataplane, per backend. */
  readonly peers: Gauge<'backend'>;
  readonly reconcileRuns: Counter<'trigger'>;
  /** Runs that left something undone: a kernel operation failed, or the run ended in an error. */
  readonly reconcileFailures: Counter;
  readonly reconcileDuration: Histogram;
  /** Netlink requests by operation ("route_add", …) and result ("ok" or an errno name). */
  readonly netlinkOperations: Counter<'op' | 'result'>;
  /** Full re-lists of the etcd lease watch (after compaction or reconnect). */
  readonly watchResyncs: Counter;
  readonly leaseExpiry: Gauge;
  readonly etcdReachable: Gauge;
  /** 1 for the data path in use ("kernel" or "userspace"), by backend. */
  readonly dataPath: Gauge<'backend' | 'path'>;
  /** The userspace data path: packets forwarded, bytes (inner IP), drops by reason, per direction; worker restarts. */
  readonly userspacePackets: Counter<'direction'>;
  readonly userspaceBytes: Counter<'direction'>;
  readonly userspaceDrops: Counter<'direction' | 'reason'>;
  readonly userspaceRestarts: Counter;
  /** Keys under subnets/ that the agent does not use, by reason (the lease watcher's count, read on each scrape). */
  readonly leasesIgnored: Gauge<'reason'>;
  /** Peer routes left out because a route weft does not own has the same prefix, by address family. */
  readonly routesBlocked: Gauge<'family'>;
  /** The peer prober's: peers by state, probe RTT, probes sent. */
  readonly probes: ProbeMetrics;
  private userspaceSource: UserspaceSource | undefined;
  private ignoredSource: (() => ReadonlyMap<string, number>) | undefined;
  /** One fetch from the worker serves every userspace metric of one scrape. */
  private userspaceFetch: Promise<UserspaceCounters | undefined> | undefined;

  constructor(options: MetricsOptions = {}) {
    this.registry = new Registry();
    const registers = [this.registry];
    this.peers = new Gauge({ name: 'weft_peers', help: 'Peers currently programmed, by backend.', labelNames: ['backend'], registers });
    this.reconcileRuns = new Counter({
      name: 'weft_reconcile_runs_total',
      help: 'Reconcile runs, by what triggered them.',
      labelNames: ['trigger'],
      registers,
    });
    this.reconcileFailures = new Counter({
      name: 'weft_reconcile_failures_total',
      help: 'Reconcile runs that left the data plane short of the desired state (a failed kernel operation or an error); retried soon.',
      registers,
    });
    this.reconcileDuration = new Histogram({
      name: 'weft_reconcile_duration_seconds',
      help: 'Duration of a reconcile run.',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.netlinkOperations = new Counter({
      name: 'weft_netlink_operations_total',
      help: 'Netlink operations, by operation and result.',
      labelNames: ['op', 'result'],
      registers,
    });
    this.watchResyncs = new Counter({ name: 'weft_watch_resyncs_total', help: 'Full resyncs of the etcd lease watch.', registers });
    this.leaseExpiry = new Gauge({
      name: 'weft_lease_expiry_timestamp_seconds',
      help: 'When the own subnet lease expires (Unix seconds); 0 for a reservation.',
      registers,
    });
    this.etcdReachable = new Gauge({ name: 'weft_etcd_reachable', help: '1 while etcd answers, 0 otherwise.', registers });
    this.dataPath = new Gauge({
      name: 'weft_data_path',
      help: 'The data path in use (1): kernel or userspace, by backend.',
      labelNames: ['backend', 'path'],
      registers,
    });
    const fetch = (): Promise<UserspaceCounters | undefined> => this.fetchUserspace();
    /** A counter by direction whose tx and rx values the userspace worker reports on each scrape. */
    const directionCounter = (name: string, help: string, of: (side: UserspaceCounters['tx']) => number): Counter<'direction'> =>
      new Counter({
        name,
        help,
        labelNames: ['direction'],
        registers,
        async collect() {
          const counters = await fetch();
          if (counters === undefined) return;
          this.reset();
          this.inc({ direction: 'tx' }, of(counters.tx));
          this.inc({ direction: 'rx' }, of(counters.rx));
        },
      });
    this.userspacePackets = directionCounter(
      'weft_userspace_packets_total',
      'Packets the userspace data path forwarded: tx = captured and sent to a peer, rx = received and delivered.',
      (side) => side.packets,
    );
    this.userspaceBytes = directionCounter(
      'weft_userspace_bytes_total',
      'Bytes of inner IP packets the userspace data path forwarded, by direction.',
      (side) => side.bytes,
    );
    this.userspaceDrops = new Counter({
      name: 'weft_userspace_dropped_packets_total',
      help: `Packets the userspace data path dropped, by direction and reason (rx: ${RX_DROP_REASONS.join(', ')}; tx: ${TX_DROP_REASONS.join(', ')}).`,
      labelNames: ['direction', 'reason'],
      registers,
      async collect() {
        const counters = await fetch();
        if (counters === undefined) return;
        this.reset();
        for (const reason of TX_DROP_REASONS) this.inc({ direction: 'tx', reason }, counters.tx.drops[reason] ?? 0);
        for (const reason of RX_DROP_REASONS) this.inc({ direction: 'rx', reason }, counters.rx.drops[reason] ?? 0);
      },
    });
    this.userspaceRestarts = new Counter({
      name: 'weft_userspace_worker_restarts_total',
      help: 'Times a userspace data-path worker died and was restarted.',
      registers,
      async collect() {
        const counters = await fetch();
        if (counters === undefined) return;
        this.reset();
        this.inc(counters.restarts);
      },
    });
    this.probes = new ProbeMetrics(this.registry, options.perPeerProbes ?? false);
    const build = buildInfo();
    new Gauge({
      name: 'weft_build_info',
      help: 'Always 1; the labels say which weft runs: version, git revision ("unknown" when not built from a git checkout) and Node.js version.',
      labelNames: ['version', 'revision', 'nodejs_version'],
      registers,
    }).set({ version: build.version, revision: build.revision, nodejs_version: process.version }, 1);
    const ignored = (): ReadonlyMap<string, number> | undefined => this.ignoredSource?.();
    this.leasesIgnored = new Gauge({
      name: 'weft_leases_ignored',
      help: 'Keys under subnets/ this agent does not use, by reason: malformed, invalid-subnet (not a subnet the config hands out), subnet-conflict, vtep-mac-conflict or public-key-conflict (another lease holds it).',
      labelNames: ['reason'],
      registers,
      collect() {
        const counts = ignored();
        if (counts === undefined) return;
        for (const [reason, count] of counts) this.set({ reason }, count);
      },
    });
    this.routesBlocked = new Gauge({
      name: 'weft_routes_blocked',
      help: 'Peer routes weft leaves out because a route it does not own has the same prefix, by address family.',
      labelNames: ['family'],
      registers,
    });
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  /** Reports the userspace data path's counters from `source` on every scrape. */
  setUserspaceSource(source: UserspaceSource | undefined): void {
    this.userspaceSource = source;
  }

  /** Reports the ignored lease keys from `source` on every scrape. */
  setIgnoredLeasesSource(source: () => ReadonlyMap<string, number>): void {
    this.ignoredSource = source;
  }

  private fetchUserspace(): Promise<UserspaceCounters | undefined> {
    const source = this.userspaceSource;
    if (source === undefined) return Promise.resolve(undefined);
    if (this.userspaceFetch === undefined) {
      const fetching = source().catch(() => undefined);
      this.userspaceFetch = fetching;
      // prom-client calls every metric's collect() in the same turn of one scrape: they share this fetch.
      queueMicrotask(() => {
        if (this.userspaceFetch === fetching) this.userspaceFetch = undefined;
      });
    }
    return this.userspaceFetch;
  }

  /** Times `fn` as one reconcile run started by `trigger`. */
  async timeReconcile<T>(trigger: ReconcileTrigger, fn: () => Promise<T>): Promise<T> {
    this.reconcileRuns.inc({ trigger });
    const end = this.reconcileDuration.startTimer();
    try {
      return await fn();
    } finally {
      end();
    }
  }

  /** The Prometheus text exposition. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
