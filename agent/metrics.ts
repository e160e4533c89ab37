/**
 * weft's Prometheus metrics, on a registry of its own (never prom-client's global one), so that several
 * agents in one process (tests) do not collide.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

export type ReconcileTrigger = 'lease' | 'kernel' | 'timer' | 'startup' | (string & {});

export interface MetricsOptions {
  /** Also export prom-client's process_* and nodejs_* metrics (default true). */
  defaultMetrics?: boolean;
}

export class WeftMetrics {
  readonly registry: Registry;
  /** Peers programmed into the dataplane, per backend. */
  readonly peers: Gauge<'backend'>;
  readonly reconcileRuns: Counter<'trigger'>;
  readonly reconcileDuration: Histogram;
  /** Netlink requests by operation ("route_add", …) and result ("ok" or an errno name). */
  readonly netlinkOperations: Counter<'op' | 'result'>;
  /** Full re-lists of the etcd lease watch (after compaction or reconnect). */
  readonly watchResyncs: Counter;
  readonly leaseExpiry: Gauge;
  readonly etcdReachable: Gauge;

  constructor(options: MetricsOptions = {}) {
    this.registry = new Registry();
    const registers = [this.registry];
    this.peers = new Gauge({ name: 'weft_peers', help: 'Peers currently programmed, by backend.', labelNames: ['backend'], registers });
    this.reconcileRuns = new Counter({ name: 'weft_reconcile_runs_total', help: 'Reconcile runs, by what triggered them.', labelNames: ['trigger'], registers });
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
    this.leaseExpiry = new Gauge({ name: 'weft_lease_expiry_timestamp_seconds', help: 'When the own subnet lease expires (Unix seconds); 0 for a reservation.', registers });
    this.etcdReachable = new Gauge({ name: 'weft_etcd_reachable', help: '1 while etcd answers, 0 otherwise.', registers });
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
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
