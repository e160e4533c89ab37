/**
 * Scenarios for reconciler.test.ts, run inside a throw-away namespace (test/netns.ts): the VXLAN backend
 * and the reconcile loop against the real kernel, with leases given as etcd would hold them.
 */
import { parseNetworkConfig } from '../common/config.js';
import { decodeLease } from '../common/lease.js';
import { selectPublicInterface } from './host/interfaces.js';
import { openKernel } from './kernel/index.js';
import { createLogger } from './log.js';
import { Reconciler, type ReconcileResult } from './reconciler.js';
import { createBackend } from './backends.js';

export interface LeaseText {
  name: string;
  value: string;
}

export interface ReconcileArg {
  config: string;
  iface: string;
  own: LeaseText;
  peers: LeaseText[];
}

/** Two runs in a row: the first does the work, the second must find nothing to do. */
export async function reconcileTwice(arg: ReconcileArg): Promise<{ first: ReconcileResult; second: ReconcileResult; mac: unknown }> {
  const config = parseNetworkConfig(arg.config);
  const publicInterface = await selectPublicInterface({ iface: [arg.iface] });
  const kernel = openKernel();
  try {
    const log = createLogger('silent');
    const backend = createBackend({ kernel, log, config, publicInterface });
    const reconciler = new Reconciler({ kernel, backend, family: 4, publicInterface, log, resyncIntervalMs: 60_000 });
    reconciler.update({ config, own: toLease(arg.own), peers: new Map(arg.peers.map((peer) => [peer.name, toLease(peer)])) });
    const results: ReconcileResult[] = [];
    reconciler.on('reconciled', (result) => results.push(result));
    await reconciler.trigger('start');
    await reconciler.trigger('timer');
    await reconciler.stop();
    return { first: results[0], second: results[1], mac: backend.backendData?.VtepMAC };
  } finally {
    await kernel.close();
  }
}

/**
 * The loop's liveness, as the watchdog reads it: alive after a run and after a run that failed with an error
 * (reported as `aborted`); not alive once a run has hung for longer than the bound (a kernel call that never
 * answers, here the backend's device step).
 */
export async function liveness(
  arg: ReconcileArg,
): Promise<{ afterRun: boolean; aborted: string[]; afterAbortedRun: boolean; hangingAtOnce: boolean; hangingLater: boolean }> {
  const config = parseNetworkConfig(arg.config);
  const publicInterface = await selectPublicInterface({ iface: [arg.iface] });
  const kernel = openKernel();
  try {
    const log = createLogger('silent');
    const backend = createBackend({ kernel, log, config, publicInterface });
    const reconciler = new Reconciler({ kernel, backend, family: 4, publicInterface, log, resyncIntervalMs: 60_000 });
    reconciler.update({ config, own: toLease(arg.own), peers: new Map(arg.peers.map((peer) => [peer.name, toLease(peer)])) });
    const aborted: string[] = [];
    reconciler.on('aborted', (trigger, err) => aborted.push(`${trigger}: ${err.message}`));
    const bound = 300;
    await reconciler.trigger('start');
    const afterRun = reconciler.isAlive(bound);
    backend.ensureDevices = () => Promise.reject(new Error('the device cannot be made'));
    await reconciler.trigger('timer');
    const afterAbortedRun = reconciler.isAlive(bound);
    backend.ensureDevices = () => new Promise(() => undefined);
    void reconciler.trigger('timer');
    const hangingAtOnce = reconciler.isAlive(bound);
    await new Promise((resolve) => setTimeout(resolve, bound + 200));
    return { afterRun, aborted, afterAbortedRun, hangingAtOnce, hangingLater: reconciler.isAlive(bound) };
  } finally {
    await kernel.close();
  }
}

/**
 * A vxlan reconcile loop on `iface` that takes the kernel's notifications (so that hand-made damage reaches
 * it), for `body`; the kernel shim and the monitor are closed afterwards.
 */
async function withEventLoop<T>(
  iface: string,
  body: (loop: {
    kernel: ReturnType<typeof openKernel>;
    reconciler: Reconciler;
    config: ReturnType<typeof parseNetworkConfig>;
  }) => Promise<T>,
): Promise<T> {
  const { openMonitor } = await import('./kernel/index.js');
  const config = parseNetworkConfig('{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"}}');
  const publicInterface = await selectPublicInterface({ iface: [iface] });
  const kernel = openKernel();
  const monitor = await openMonitor();
  try {
    const log = createLogger('silent');
    const backend = createBackend({ kernel, log, config, publicInterface });
    const reconciler = new Reconciler({
      kernel,
      backend,
      family: 4,
      publicInterface,
      log,
      resyncIntervalMs: 600_000,
      retryDelayMs: 600_000,
    });
    monitor.on('change', (change) => reconciler.kernelChanged(change));
    return await body({ kernel, reconciler, config });
  } finally {
    monitor.close();
    await kernel.close();
  }
}

function toLease(lease: LeaseText) {
  return decodeLease(lease.name, lease.value, false);
}

/** What `ip` would list of weft's objects on weft.1, in a form easy to compare. */
async function snapshot(
  kernel: ReturnType<typeof openKernel>,
): Promise<{ neighbours: string[]; fdb: string[]; routes: string[]; nexthops: string[] }> {
  const link = await kernel.getLink('weft.1');
  if (link === null) return { neighbours: [], fdb: [], routes: [], nexthops: [] };
  const [neighbours, fdb, routes, nexthops] = await Promise.all([
    kernel.listNeighbours(link.index, 4),
    kernel.listFdb(link.index),
    kernel.listRoutes({ family: 4, ifindex: link.index }),
    kernel.listNexthops(link.index),
  ]);
  const byId = new Map(nexthops.map((n) => [n.id, n]));
  return {
    neighbours: neighbours.map((n) => `${n.ip} ${n.mac}${n.permanent ? '' : ' !permanent'}`).sort(),
    fdb: fdb
      .filter((f) => f.self)
      .map((f) => `${f.mac} ${f.dst}`)
      .sort(),
    routes: routes
      .filter((r) => r.protocol !== 2)
      .map((r) => {
        const nexthop = r.nexthopId === null ? undefined : byId.get(r.nexthopId);
        const form = r.nexthopId === null ? 'inline' : nexthop === undefined ? `nhid ${r.nexthopId}?` : 'nhid';
        return `${r.dst} via ${nexthop?.gateway ?? r.gateway}${(nexthop?.onlink ?? r.onlink) ? ' onlink' : ''} ${form}`;
      })
      .sort(),
    nexthops: nexthops.map((n) => `${n.gateway}${n.onlink ? ' onlink' : ''} proto ${n.protocol}`).sort(),
  };
}

export interface EventsArg {
  iface: string;
  own: LeaseText;
  peers: LeaseText[];
}

type Snapshot = Awaited<ReturnType<typeof snapshot>>;

/**
 * The event path against the kernel: a full start with peers[0], then lease events (add, change, remove),
 * hand-made damage that only kernel notifications report (a route, a neighbour, a nexthop deleted; a
 * neighbour changed), and finally a full run that must find nothing to do.
 */
export async function eventPath(arg: EventsArg): Promise<{
  steps: { step: string; scope: string | undefined; operations: number; kernel: Snapshot }[];
  final: ReconcileResult;
}> {
  const { execFileSync } = await import('node:child_process');
  return withEventLoop(arg.iface, async ({ kernel, reconciler, config }) => {
    const peers = new Map([[arg.peers[0].name, toLease(arg.peers[0])]]);
    reconciler.update({ config, own: toLease(arg.own), peers });
    const results: ReconcileResult[] = [];
    reconciler.on('reconciled', (result) => results.push(result));
    const steps: { step: string; scope: string | undefined; operations: number; kernel: Snapshot }[] = [];
    const settle = async (step: string, expectRun: boolean) => {
      const before = results.length;
      // runs triggered by notifications come a moment later; wait until the loop has been quiet for a while
      for (let quiet = 0; quiet < 6;) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        quiet = results.length === before && expectRun ? 0 : quiet + 1;
        if (results.length > before) expectRun = false;
      }
      const runs = results.slice(before);
      steps.push({
        step,
        scope: runs.map((run) => run.scope).join(',') || undefined,
        operations: runs.reduce((sum, run) => sum + run.operations, 0),
        kernel: await snapshot(kernel),
      });
    };
    await reconciler.trigger('start');
    await settle('start', false);
    const sh = (...args: string[]) => execFileSync(args[0], args.slice(1), { stdio: 'ignore' });
    const event = (kind: 'added' | 'changed' | 'removed', lease: LeaseText) => {
      const decoded = toLease(lease);
      if (kind === 'removed') peers.delete(lease.name);
      else peers.set(lease.name, decoded);
      void reconciler.leaseChanged({ kind, lease: decoded });
    };
    event('added', arg.peers[1]);
    await settle('add', true);
    event('changed', arg.peers[2]); // same subnet as peers[1], another host
    await settle('change', true);
    event('removed', arg.peers[0]);
    await settle('remove', true);
    const survivor = toLease(arg.peers[2]);
    const subnet = survivor.subnets.ipv4!.toString();
    const gateway = survivor.subnets.ipv4!.network.toString();
    sh('ip', 'route', 'del', subnet);
    await settle('route deleted by hand', true);
    sh('ip', 'neigh', 'replace', gateway, 'lladdr', '0e:00:00:00:99:99', 'dev', 'weft.1', 'nud', 'permanent');
    await settle('neighbour changed by hand', true);
    sh('ip', 'nexthop', 'flush', 'proto', '157');
    await settle('nexthops flushed by hand', true);
    await reconciler.trigger('timer');
    const final = results[results.length - 1];
    await reconciler.stop();
    return { steps, final };
  });
}

/** Programs the peers in one route form, then switches to the other, then back. */
export async function routeForms(arg: ReconcileArg): Promise<{ forms: { form: string; operations: number; kernel: Snapshot }[] }> {
  const config = parseNetworkConfig(arg.config);
  const publicInterface = await selectPublicInterface({ iface: [arg.iface] });
  const kernel = openKernel();
  try {
    const log = createLogger('silent');
    const forms: { form: string; operations: number; kernel: Snapshot }[] = [];
    for (const form of ['inline', 'nexthop', 'inline'] as const) {
      const backend = createBackend({ kernel, log, config, publicInterface });
      const reconciler = new Reconciler({ kernel, backend, family: 4, publicInterface, log, resyncIntervalMs: 600_000, routeForm: form });
      reconciler.update({ config, own: toLease(arg.own), peers: new Map(arg.peers.map((peer) => [peer.name, toLease(peer)])) });
      let operations = 0;
      reconciler.on('reconciled', (result) => (operations += result.operations));
      await reconciler.trigger('start');
      await reconciler.stop();
      forms.push({ form, operations, kernel: await snapshot(kernel) });
    }
    return { forms };
  } finally {
    await kernel.close();
  }
}

/**
 * A peer's prefix already has a route weft does not own (`foreign`, an `ip route add` argument list): the
 * first run must leave it alone and report it; once it is deleted, the kernel's notification brings weft's.
 */
export async function foreignRoute(arg: EventsArg & { foreign: string[] }): Promise<{
  first: ReconcileResult;
  whileBlocked: string;
  afterDelete: ReconcileResult;
  kernel: Snapshot;
}> {
  const { execFileSync } = await import('node:child_process');
  return withEventLoop(arg.iface, async ({ kernel, reconciler, config }) => {
    reconciler.update({ config, own: toLease(arg.own), peers: new Map(arg.peers.map((peer) => [peer.name, toLease(peer)])) });
    const results: ReconcileResult[] = [];
    reconciler.on('reconciled', (result) => results.push(result));
    execFileSync('ip', ['route', 'add', ...arg.foreign]);
    await reconciler.trigger('start');
    const first = results[0];
    const dst = arg.foreign[0];
    const whileBlocked = execFileSync('ip', ['route', 'show', dst], { encoding: 'utf8' }).trim();
    execFileSync('ip', ['route', 'del', dst]);
    const deadline = Date.now() + 10_000;
    // runs for the echoes of the first one's requests may come first: wait for one that sees the route gone
    while (results.at(-1)!.blockedRoutes > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    await reconciler.stop();
    return { first, whileBlocked, afterDelete: results.at(-1)!, kernel: await snapshot(kernel) };
  });
}
