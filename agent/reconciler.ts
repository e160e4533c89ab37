import { EventEmitter } from 'node:events';
import type { Family } from '../common/cidr.js';
import type { NetworkConfig } from '../common/config.js';
import {
  WEFT_ROUTE_PROTOCOL,
  countOps,
  desiredFamilyState,
  diffFamilyState,
  emptyFamilyState,
  type FamilyOps,
  type FamilyState,
  type RouteSpec,
} from '../common/dataplane.js';
import type { Lease } from '../common/lease.js';
import type { Backend } from './backend.js';
import type { PublicInterface } from './host/interfaces.js';
import { NetlinkError, RTPROT_KERNEL, type Kernel, type KernelChange } from './kernel/index.js';
import type { Logger } from './log.js';

export type ReconcileTrigger = 'lease' | 'kernel' | 'timer' | 'start' | 'retry';

export interface ReconcileResult {
  trigger: ReconcileTrigger;
  durationMs: number;
  operations: number;
  failures: number;
  /** Peers programmed (routes in the desired state). */
  programmed: number;
}

export interface ReconcilerEvents {
  reconciled: [ReconcileResult];
  /** One kernel operation: kind is e.g. "route.add", result "ok" or the errno name. */
  operation: [kind: string, result: string];
}

export interface ReconcilerOptions {
  kernel: Kernel;
  backend: Backend;
  family: Family;
  publicInterface: PublicInterface;
  log: Logger;
  /** Period of the full resync that heals whatever no event reported. */
  resyncIntervalMs: number;
  /** Delay before retrying after a run with failures. */
  retryDelayMs?: number;
}

/**
 * The data plane as a reconcile loop: desired state (a pure function of our lease, the peers' leases
 * and the config) is diffed against the kernel's actual state and only the difference is applied. Runs
 * on lease events, on kernel notifications about objects weft owns, and on a timer; runs never overlap,
 * and triggers that arrive during a run coalesce into one more run.
 */
export class Reconciler extends EventEmitter<ReconcilerEvents> {
  private readonly kernel: Kernel;
  private readonly backend: Backend;
  private readonly family: Family;
  private readonly publicInterface: PublicInterface;
  private readonly log: Logger;
  private readonly resyncIntervalMs: number;
  private readonly retryDelayMs: number;
  private config: NetworkConfig | undefined;
  private own: Lease | undefined;
  private peers: ReadonlyMap<string, Lease> = new Map();
  private overlayIndex: number | undefined;
  private pending: ReconcileTrigger | undefined;
  private running: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Skipped peers already reported, so that each reason is logged once, not on every run. */
  private reportedSkips = new Map<string, string>();

  constructor(options: ReconcilerOptions) {
    super();
    this.kernel = options.kernel;
    this.backend = options.backend;
    this.family = options.family;
    this.publicInterface = options.publicInterface;
    this.log = options.log;
    this.resyncIntervalMs = options.resyncIntervalMs;
    this.retryDelayMs = options.retryDelayMs ?? 1000;
  }

  /** Sets the inputs of the desired state; the next run uses them. */
  update(inputs: { config?: NetworkConfig; own?: Lease; peers?: ReadonlyMap<string, Lease> }): void {
    if (inputs.config !== undefined) this.config = inputs.config;
    if (inputs.own !== undefined) this.own = inputs.own;
    if (inputs.peers !== undefined) this.peers = inputs.peers;
  }

  /** Asks for a run; returns when a run that started after this call has finished. */
  trigger(reason: ReconcileTrigger): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.pending ??= reason;
    this.running ??= this.drain().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  /** Whether a kernel notification concerns something weft owns (so that deleting it by hand is undone). */
  concerns(change: KernelChange): boolean {
    switch (change.kind) {
      case 'neighbour':
        return change.neighbour.index === this.overlayIndex;
      case 'fdb':
        return change.fdb.index === this.overlayIndex;
      case 'route':
        return change.route.family === this.family && (change.route.ifindex === this.overlayIndex || change.route.protocol === WEFT_ROUTE_PROTOCOL);
      case 'link':
        return change.link.index === this.overlayIndex || change.link.index === this.publicInterface.index;
      case 'address':
        return change.address.index === this.overlayIndex;
    }
  }

  stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    return this.running ?? Promise.resolve();
  }

  private async drain(): Promise<void> {
    while (this.pending !== undefined && !this.stopped) {
      const trigger = this.pending;
      this.pending = undefined;
      clearTimeout(this.timer);
      let failures = 1;
      try {
        failures = (await this.runOnce(trigger)).failures;
      } catch (err) {
        this.log.error({ err: (err as Error).message, trigger }, 'reconcile failed');
      }
      if (this.stopped) return;
      const retry = failures > 0;
      this.timer = setTimeout(() => void this.trigger(retry ? 'retry' : 'timer'), retry ? this.retryDelayMs : this.resyncIntervalMs);
      this.timer.unref();
    }
  }

  private async runOnce(trigger: ReconcileTrigger): Promise<ReconcileResult> {
    const started = performance.now();
    const config = this.config;
    const own = this.own;
    if (config === undefined || own === undefined) throw new Error('reconcile before a config and a lease are known');
    const { overlayIndex } = await this.backend.ensureDevices(own);
    this.overlayIndex = overlayIndex;
    const { state: desired, skipped } = desiredFamilyState({
      family: this.family,
      config,
      own,
      peers: this.peers.values(),
      localPrefixes: [this.publicInterface.prefix],
    });
    this.reportSkips(skipped.map(({ lease, reason }) => [lease.name, reason] as const));
    const actual = await this.readActual(overlayIndex);
    const ops = diffFamilyState(actual, desired);
    const failures = await this.apply(ops, overlayIndex);
    const result: ReconcileResult = {
      trigger,
      durationMs: performance.now() - started,
      operations: countOps(ops),
      failures,
      programmed: desired.routes.size,
    };
    if (result.operations > 0) {
      this.log.info({ trigger, operations: result.operations, failures, peers: result.programmed, ms: Math.round(result.durationMs) }, 'reconciled');
    }
    this.emit('reconciled', result);
    return result;
  }

  private reportSkips(skips: readonly (readonly [string, string])[]): void {
    const current = new Map(skips);
    for (const [name, reason] of current) {
      if (this.reportedSkips.get(name) !== reason) this.log.warn({ lease: name, reason }, 'not programming a peer lease');
    }
    this.reportedSkips = current;
  }

  /** weft's objects as the kernel has them: everything on its overlay device, and its tagged routes. */
  private async readActual(overlayIndex: number | undefined): Promise<FamilyState> {
    const state = emptyFamilyState();
    const [neighbours, fdb, routes] = await Promise.all([
      overlayIndex === undefined ? [] : this.kernel.listNeighbours(overlayIndex, this.family),
      overlayIndex === undefined ? [] : this.kernel.listFdb(overlayIndex),
      this.kernel.listRoutes({ family: this.family }),
    ]);
    for (const entry of neighbours) state.neighbours.set(entry.ip, { ip: entry.ip, mac: entry.mac ?? '' });
    for (const entry of fdb) if (entry.self) state.fdb.set(entry.mac, { mac: entry.mac, dst: entry.dst ?? '' });
    for (const route of routes) {
      const onOverlay = overlayIndex !== undefined && route.ifindex === overlayIndex && route.protocol !== RTPROT_KERNEL;
      const tagged = route.protocol === WEFT_ROUTE_PROTOCOL && route.ifindex === this.publicInterface.index;
      if (!onOverlay && !tagged) continue;
      const spec: RouteSpec = { dst: route.dst, gateway: route.gateway ?? '', device: onOverlay ? 'overlay' : 'public', onlink: route.onlink };
      if (state.routes.has(route.dst)) {
        // A second route of ours to the same prefix (e.g. left by a backend switch): remove it outright.
        await this.run('route.del', this.kernel.deleteRoute({ dst: route.dst, ifindex: route.ifindex ?? undefined, protocol: route.protocol }));
        continue;
      }
      state.routes.set(route.dst, spec);
    }
    return state;
  }

  /** Removals first (routes, then FDB, then neighbours), then additions in the order that makes a route usable. */
  private async apply(ops: FamilyOps, overlayIndex: number | undefined): Promise<number> {
    const routeIndex = (route: RouteSpec) => (route.device === 'overlay' ? overlayIndex : this.publicInterface.index);
    let failures = 0;
    // Requests of one kind go out together (the kernel shim pipelines them); kinds go in order.
    const all = async <T>(kind: string, items: readonly T[], operation: (item: T) => Promise<void>) => {
      const results = await Promise.all(items.map((item) => this.run(kind, operation(item))));
      failures += results.filter((ok) => !ok).length;
    };
    await all('route.del', ops.routes.remove, (route) => this.kernel.deleteRoute({ dst: route.dst, ifindex: routeIndex(route) }));
    if (overlayIndex !== undefined) {
      await all('fdb.del', ops.fdb.remove, (entry) => this.kernel.deleteFdb(overlayIndex, entry.mac));
      await all('neighbour.del', ops.neighbours.remove, (entry) => this.kernel.deleteNeighbour(overlayIndex, entry.ip));
      await all('neighbour.set', [...ops.neighbours.add, ...ops.neighbours.replace], (entry) =>
        this.kernel.replaceNeighbour(overlayIndex, entry.ip, entry.mac));
      await all('fdb.set', [...ops.fdb.add, ...ops.fdb.replace], (entry) => this.kernel.replaceFdb(overlayIndex, entry.mac, entry.dst));
    }
    const routes = [...ops.routes.add, ...ops.routes.replace].filter((route) => routeIndex(route) !== undefined);
    await all('route.set', routes, (route) =>
      this.kernel.replaceRoute({ dst: route.dst, gateway: route.gateway, ifindex: routeIndex(route)!, onlink: route.onlink, protocol: WEFT_ROUTE_PROTOCOL }));
    return failures;
  }

  private async run(kind: string, operation: Promise<void>): Promise<boolean> {
    try {
      await operation;
      this.emit('operation', kind, 'ok');
      return true;
    } catch (err) {
      this.emit('operation', kind, err instanceof NetlinkError ? err.errnoName : 'error');
      this.log.warn({ kind, err: (err as Error).message }, 'kernel operation failed; will retry');
      return false;
    }
  }
}
