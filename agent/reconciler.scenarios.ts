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
import { createBackend } from './daemon.js';

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
    const toLease = (lease: LeaseText) => decodeLease(lease.name, lease.value, false);
    reconciler.update({ config, own: toLease(arg.own), peers: new Map(arg.peers.map((peer) => [peer.name, toLease(peer)])) });
    const results: ReconcileResult[] = [];
    reconciler.on('reconciled', (result) => results.push(result));
    await reconciler.trigger('start');
    await reconciler.trigger('timer');
    await reconciler.stop();
    return { first: results[0]!, second: results[1]!, mac: backend.backendData?.VtepMAC };
  } finally {
    await kernel.close();
  }
}
