import { EventEmitter } from 'node:events';
import type { Family } from '../common/cidr.js';
import type { NetworkConfig } from '../common/config.js';
import { DesiredState, WEFT_ROUTE_PROTOCOL, type DirtyKeys } from '../common/dataplane.js';
import type { Lease } from '../common/lease.js';
import type { Backend, DevicePeersResult } from './backend.js';
import type { PublicInterface } from './host/interfaces.js';
import { KernelView, opsCount, type Kernel, type KernelChange, type PlannedOps, type RouteForm } from './kernel/index.js';
import { applyPlan } from './apply.js';
import type { Logger } from './log.js';
import { plan } from './plan.js';

export type ReconcileTrigger = 'lease' | 'kernel' | 'timer' | 'start' | 'retry';

export interface ReconcileResult {
  trigger: ReconcileTrigger;
  /**
   * 'full': the devices were checked, the kernel state re-read and every object compared;
   * 'incremental': only the objects named by lease events and kernel notifications since the last run.
   */
  scope: 'full' | 'incremental';
  durationMs: number;
  operations: number;
  failures: number;
  /** Peers programmed (routes and WireGuard peers in the desired state). */
  programmed: number;
  /** Peer routes left out because a route weft does not own has the same prefix. */
  blockedRoutes: number;
}

export interface ReconcilerEvents {
  reconciled: [ReconcileResult];
  /**
   * A full run starts (true) or ends (false). Kernel notifications may be held back meanwhile (most are the
   * echo of the run's own requests); the run itself covers what they report (KernelMonitor.pause / resume).
   */
  busy: [boolean];
  /** Kernel operations of one run: kind is e.g. "route.set", result "ok" or the errno name; `count` of them. */
  operation: [kind: string, result: string, count: number];
  /** A run ended in an error before it finished (no `reconciled` for it); a full run is retried soon. */
  aborted: [trigger: ReconcileTrigger, err: Error];
}

/** A peer lease event as the lease watcher emits it. */
export type PeerLeaseEvent = { kind: 'added'; lease: Lease } | { kind: 'changed'; lease: Lease } | { kind: 'removed'; lease: Lease };

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
  /** Install routes through nexthop objects (default, where the kernel has them) or with inline gateways. */
  routeForm?: RouteForm;
}

/**
 * The data plane as a reconcile loop: the desired state (DesiredState: a pure function of our lease, the
 * peers' leases, the config and the backend's objects per peer) is compared with the kernel's actual state
 * (KernelView) by plan() (agent/plan.ts), the view assumes the plan, and applyPlan (agent/apply.ts) sends
 * only the difference. Runs never overlap, and triggers that arrive during a run coalesce into one more run.
 *
 * Two kinds of run. A full run (at start, on the resync timer, after a failure, after a kernel change it
 * cannot attribute, e.g. to a device) checks the devices, rebuilds the desired state from every lease,
 * re-reads weft's objects from the kernel with one dump per kind and compares everything. An incremental
 * run (lease events, kernel notifications about single objects) compares only the objects those events
 * named, against the view kept since the last full run: its cost does not grow with the number of peers.
 * A notification that merely echoes what weft asked for costs nothing; one that contradicts the desired
 * state (someone deleted or changed an object of weft's) is repaired by the next incremental run.
 *
 * Backends: ensureDevices' `routesOnly` makes vxlan peers routes only (no neighbours or FDB entries, and
 * weft owns none on the device); a userspace data path (`backend.userspace`) hears the programmed leases after
 * every change of the desired state; `overlayState` lets the kernel's echo of the device set-up pass
 * without a full run.
 */
export class Reconciler extends EventEmitter<ReconcilerEvents> {
  private readonly kernel: Kernel;
  private readonly backend: Backend;
  private readonly family: Family;
  private readonly publicInterface: PublicInterface;
  private readonly log: Logger;
  private readonly resyncIntervalMs: number;
  private readonly retryDelayMs: number;
  private readonly routeForm: RouteForm;
  private config: NetworkConfig | undefined;
  private own: Lease | undefined;
  private peers: ReadonlyMap<string, Lease> = new Map();
  private overlayIndex: number | undefined;
  /** Built by the first full run, then kept current by lease events. */
  private desired: DesiredState | undefined;
  /** Read by the last full run, then kept current by the runs' own operations and kernel notifications. */
  private view: KernelView | undefined;
  /** Notifications that arrived while a full run was reading the kernel: replayed onto the new view. */
  private notedDuringRead: KernelChange[] | undefined;
  private fullPending = true;
  private pending: ReconcileTrigger | undefined;
  private running: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private timerDue = Infinity;
  private stopped = false;
  /** performance.now() when the run in progress started, and when the last run ended (or the loop was made). */
  private runStarted: number | undefined;
  private runEnded = performance.now();
  private nexthopsReported = false;
  /** Skipped peers already reported, so that each reason is logged once, not on every run. */
  private reportedSkips = new Map<string, string>();
  /** Peer routes reported as left out for another's route. */
  private reportedBlocked = new Set<string>();

  constructor(options: ReconcilerOptions) {
    super();
    this.kernel = options.kernel;
    this.backend = options.backend;
    this.family = options.family;
    this.publicInterface = options.publicInterface;
    this.log = options.log;
    this.resyncIntervalMs = options.resyncIntervalMs;
    this.retryDelayMs = options.retryDelayMs ?? 1000;
    this.routeForm = options.routeForm ?? 'nexthop';
  }

  /**
   * Sets the inputs of the desired state; the next run is a full one and uses them. `peers` may be a live
   * map (the lease watcher's): report its changes with `leaseChanged` for the event path.
   */
  update(inputs: { config?: NetworkConfig; own?: Lease; peers?: ReadonlyMap<string, Lease> }): void {
    if (inputs.config !== undefined) this.config = inputs.config;
    if (inputs.own !== undefined) this.own = inputs.own;
    if (inputs.peers !== undefined) this.peers = inputs.peers;
    this.desired = undefined;
    this.fullPending = true;
  }

  /**
   * One peer lease was added, changed or removed; call it for every event of the lease watcher, in order,
   * right after the watcher applied it to its map. Schedules an incremental run.
   */
  leaseChanged(event: PeerLeaseEvent): Promise<void> {
    if (this.desired !== undefined) {
      try {
        if (event.kind === 'removed') this.desired.delete(event.lease.name);
        else this.desired.set(event.lease);
      } catch (err) {
        // never into the lease watcher; a full run rebuilds the desired state from every lease
        this.log.error({ err, lease: event.lease.name }, 'could not take a lease change; resyncing');
        this.desired = undefined;
        return this.trigger('lease', true);
      }
    }
    return this.trigger('lease');
  }

  /**
   * A kernel notification. Echoes of weft's own requests and changes to objects weft does not own are
   * ignored; the rest schedule an incremental run for the objects they name, or a full run.
   */
  kernelChanged(change: KernelChange): void {
    if (this.stopped || !this.concerns(change)) return;
    this.notedDuringRead?.push(change);
    const view = this.view;
    const desired = this.desired;
    if (view === undefined || desired === undefined) {
      void this.trigger('kernel');
      return;
    }
    let seen: ReturnType<KernelView['observe']>;
    try {
      seen = view.observe(change, desired.state);
    } catch (err) {
      // never into the monitor; a full run re-reads the kernel
      this.log.error({ err }, 'could not take a kernel change; resyncing');
      seen = 'full';
    }
    if (seen === 'ignore') return;
    if (this.log.isLevelEnabled('debug')) this.log.debug({ change, seen }, 'kernel change to act on');
    void this.trigger('kernel', seen === 'full');
  }

  /**
   * Asks for a run; returns when a run that started after this call has finished. The run is a full one
   * unless `full` is false (default: false for 'lease' and 'kernel', which name what changed).
   */
  trigger(reason: ReconcileTrigger, full = reason !== 'lease' && reason !== 'kernel'): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (full) this.fullPending = true;
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
        return (
          change.route.family === this.family &&
          (change.route.ifindex === this.overlayIndex ||
            change.route.protocol === WEFT_ROUTE_PROTOCOL ||
            change.route.nexthopId !== null ||
            this.desired?.state.routes.has(change.route.dst) === true ||
            this.view?.foreignRoutes.has(change.route.dst) === true)
        );
      case 'nexthop':
        return change.nexthop.protocol === WEFT_ROUTE_PROTOCOL || change.action === 'del';
      case 'link':
        return change.link.index === this.overlayIndex || change.link.index === this.publicInterface.index;
      case 'address':
        return change.address.index === this.overlayIndex;
    }
  }

  /**
   * Whether the loop makes progress, for a watchdog: no run has gone on for longer than `maxRunMs`, and
   * when idle, a run ended within the resync interval plus `maxRunMs` (the resync timer starts one at least
   * that often).
   */
  isAlive(maxRunMs: number): boolean {
    if (this.stopped) return false;
    const now = performance.now();
    if (this.runStarted !== undefined) return now - this.runStarted <= maxRunMs;
    return now - this.runEnded <= this.resyncIntervalMs + maxRunMs;
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
      const full = this.fullPending || this.view === undefined || this.desired === undefined;
      if (full) this.fullPending = false;
      let failures = 1;
      if (full) this.emit('busy', true);
      this.runStarted = performance.now();
      try {
        failures = (await (full ? this.runFull(trigger) : this.runIncremental(trigger))).failures;
      } catch (err) {
        this.log.error({ err, trigger }, 'reconcile failed');
        this.emit('aborted', trigger, err as Error);
      } finally {
        this.runStarted = undefined;
        this.runEnded = performance.now();
        if (full) this.emit('busy', false);
      }
      if (this.stopped) return;
      if (failures > 0) {
        // Something may not be as the view says: re-read everything soon.
        this.fullPending = true;
        this.scheduleFull(this.retryDelayMs, 'retry', !full);
      } else if (full) {
        this.scheduleFull(this.resyncIntervalMs, 'timer', false);
      }
    }
  }

  /** Arms the timer for the next full run; `onlySooner` keeps an earlier one. */
  private scheduleFull(delayMs: number, reason: ReconcileTrigger, onlySooner: boolean): void {
    const due = Date.now() + delayMs;
    if (onlySooner && due >= this.timerDue) return;
    clearTimeout(this.timer);
    this.timerDue = due;
    this.timer = setTimeout(() => {
      this.timerDue = Infinity;
      void this.trigger(reason);
    }, delayMs);
    this.timer.unref();
  }

  private inputs(): { config: NetworkConfig; own: Lease } {
    const { config, own } = this;
    if (config === undefined || own === undefined) throw new Error('reconcile before a config and a lease are known');
    return { config, own };
  }

  private async runFull(trigger: ReconcileTrigger): Promise<ReconcileResult> {
    const started = performance.now();
    const { config, own } = this.inputs();
    const devices = await this.backend.ensureDevices(own);
    const { overlayIndex } = devices;
    this.overlayIndex = overlayIndex;
    const routesOnly = devices.routesOnly === true;
    // The last run's desired state and view are replaced: let go of them first, so that with thousands of
    // peers the old ones need not stay reachable while the new ones are made.
    this.desired = undefined;
    this.view = undefined;
    const desired = new DesiredState(
      { family: this.family, config, own, localPrefixes: [this.publicInterface.prefix], routesOnly },
      this.backend.peerObjects,
      this.peers.values(),
    );
    this.desired = desired;
    this.reportSkips();
    this.notedDuringRead = [];
    let read: Awaited<ReturnType<typeof KernelView.read>>;
    try {
      read = await KernelView.read(
        this.kernel,
        {
          family: this.family,
          overlayIndex,
          publicIndex: this.publicInterface.index,
          routesOnly,
          ...(devices.overlayState === undefined ? {} : { overlayState: devices.overlayState }),
          ...(devices.deviceRoutes === undefined ? {} : { deviceRoutes: devices.deviceRoutes }),
        },
        this.routeForm,
        desired.state.routes,
      );
    } catch (err) {
      this.notedDuringRead = undefined;
      throw err;
    }
    const noted = this.notedDuringRead;
    this.notedDuringRead = undefined;
    const { view, duplicates, nexthopsSupported } = read;
    if (!nexthopsSupported && this.routeForm === 'nexthop' && !this.nexthopsReported) {
      this.nexthopsReported = true;
      this.log.info('this kernel has no nexthop objects: routes carry their gateway inline');
    }
    this.view = view;
    // Lease events that came in while reading are part of desired.state already, and everything is planned.
    desired.takeDirty();
    const ops = plan(desired.state, view, 'all', duplicates);
    view.assume(ops, desired.state, 'all');
    this.tellBackend(own);
    // Notifications from while the dumps ran may be newer than what the dumps saw: the next run sees to them.
    for (const change of noted) view.observe(change, desired.state);
    const failures = await this.apply(ops);
    const peers = await this.syncDevicePeers('all');
    return this.finish(trigger, 'full', started, opsCount(ops) + peers.operations, failures + peers.failures);
  }

  private async runIncremental(trigger: ReconcileTrigger): Promise<ReconcileResult> {
    const started = performance.now();
    const desired = this.desired!;
    const view = this.view!;
    const leaseKeys = desired.takeDirty();
    const leasesChanged = leaseKeys.neighbours.size + leaseKeys.fdb.size + leaseKeys.routes.size + leaseKeys.wireguardPeers.size > 0;
    const keys = mergeDirty(leaseKeys, view.takeDirty());
    this.reportSkips();
    if (leasesChanged) this.tellBackend(this.inputs().own);
    const ops = plan(desired.state, view, keys);
    view.assume(ops, desired.state, keys);
    const failures = await this.apply(ops);
    const peers = keys.wireguardPeers.size > 0 ? await this.syncDevicePeers(keys.wireguardPeers) : { operations: 0, failures: 0 };
    return this.finish(trigger, 'incremental', started, opsCount(ops) + peers.operations, failures + peers.failures);
  }

  private finish(
    trigger: ReconcileTrigger,
    scope: ReconcileResult['scope'],
    started: number,
    operations: number,
    failures: number,
  ): ReconcileResult {
    const result: ReconcileResult = {
      trigger,
      scope,
      durationMs: performance.now() - started,
      operations,
      failures,
      programmed: (this.desired?.state.routes.size ?? 0) + (this.desired?.state.wireguardPeers.size ?? 0),
      blockedRoutes: this.reportBlocked(),
    };
    if (result.operations > 0) {
      const fields = {
        trigger,
        scope,
        operations: result.operations,
        failures,
        peers: result.programmed,
        ms: Math.round(result.durationMs * 10) / 10,
      };
      if (scope === 'full' || failures > 0) this.log.info(fields, 'reconciled');
      else this.log.debug(fields, 'reconciled');
    }
    this.emit('reconciled', result);
    return result;
  }

  /** A device that holds peers of its own (WireGuard) is given the desired ones: all of them, or the keys that changed. */
  private async syncDevicePeers(keys: ReadonlySet<string> | 'all'): Promise<DevicePeersResult> {
    const table = this.backend.devicePeers;
    if (table === undefined || this.desired === undefined) return { operations: 0, failures: 0 };
    try {
      const result = await table.sync(this.desired.state.wireguardPeers, keys);
      if (result.operations > result.failures) this.emit('operation', 'device.peer.set', 'ok', result.operations - result.failures);
      if (result.failures > 0) this.emit('operation', 'device.peer.set', 'error', result.failures);
      return result;
    } catch (err) {
      this.log.warn({ err }, "could not read or configure the device's peers; will retry");
      this.emit('operation', 'device.peer.get', 'error', 1);
      return { operations: 1, failures: 1 };
    }
  }

  /**
   * A userspace data path learns the programmed peers after every change. Only then: the list is O(peers)
   * to make, and the event path must not be.
   */
  private tellBackend(own: Lease): void {
    const path = this.backend.userspace;
    if (path === undefined || this.desired === undefined) return;
    path.updatePeers(own, this.desired.programmedLeases());
  }

  /** Logs the peer routes newly left out for another's route (and those no longer), once each; returns how many are. */
  private reportBlocked(): number {
    const blocked = this.view?.blocked ?? new Set<string>();
    for (const dst of blocked) {
      if (!this.reportedBlocked.has(dst)) {
        this.log.warn({ dst }, 'not programming a peer route: a route weft does not own has this prefix; leaving it alone');
      }
    }
    for (const dst of this.reportedBlocked) if (!blocked.has(dst)) this.log.info({ dst }, 'a peer route is no longer left out');
    this.reportedBlocked = new Set(blocked);
    return blocked.size;
  }

  private reportSkips(): void {
    const current = new Map<string, string>();
    for (const { lease, reason } of this.desired?.skipped() ?? []) current.set(lease.name, reason);
    for (const [name, reason] of current) {
      if (this.reportedSkips.get(name) !== reason) this.log.warn({ lease: name, reason }, 'not programming a peer lease');
    }
    this.reportedSkips = current;
  }

  /** Sends `ops` (agent/apply.ts) and reports each kind's results as `operation` events; returns the failures. */
  private async apply(ops: PlannedOps): Promise<number> {
    const { failures, tally } = await applyPlan(this.kernel, this.view!, ops, (kind, err) =>
      this.log.warn({ kind, err }, 'kernel operation failed; will retry'),
    );
    for (const { kind, result, count } of tally) this.emit('operation', kind, result, count);
    return failures;
  }
}

function mergeDirty(a: DirtyKeys, b: DirtyKeys): DirtyKeys {
  for (const key of b.neighbours) a.neighbours.add(key);
  for (const key of b.fdb) a.fdb.add(key);
  for (const key of b.routes) a.routes.add(key);
  for (const key of b.wireguardPeers) a.wireguardPeers.add(key);
  return a;
}
