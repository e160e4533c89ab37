/**
 * Scenarios for userspace.test.ts, run inside a throw-away namespace (test/netns.ts): the overlay veth
 * pair and its offloads against the real kernel, and the vxlan backend's "auto" choice when the kernel
 * refuses a VXLAN device.
 */
import { parseNetworkConfig, type VxlanBackendConfig } from '../../common/config.js';
import { decodeLease } from '../../common/lease.js';
import { selectPublicInterface } from '../host/interfaces.js';
import { NetlinkError, openKernel, type Kernel } from '../kernel/index.js';
import { createLogger } from '../log.js';
import { AutoVxlanBackend } from '../vxlan/mode.js';
import { ensureCapturePair, setFeatures } from '../kernel/index.js';
import { OVERLAY_FEATURES, OVERLAY_GSO_MAX_SIZE } from './overlay-device.js';

export interface PairRun {
  created: boolean;
  /** features that did not take */
  unset: string[];
  nearIndex: number;
}

/** Ensures the pair (and sets its offloads on creation): run once to create it, again after breaking it. */
export async function capturePair(): Promise<PairRun> {
  const kernel = openKernel();
  try {
    const pair = await ensureCapturePair(kernel, {
      name: 'weft.1',
      peerName: 'weft.1.c',
      mtu: 1450,
      mac: '02:00:00:00:00:01',
      gsoMaxSize: OVERLAY_GSO_MAX_SIZE,
    });
    const unset = pair.created ? await setFeatures(pair.near.index, OVERLAY_FEATURES) : [];
    return { created: pair.created, unset, nearIndex: pair.near.index };
  } finally {
    await kernel.close();
  }
}

/** ensureCapturePair where a kernel VXLAN device of the same name is in the way. */
export async function replaceVxlan(): Promise<{ created: boolean; kind: string | null }> {
  const kernel = openKernel();
  try {
    await kernel.createVxlan({ name: 'weft.1', vni: 1, port: 8472 });
    const pair = await ensureCapturePair(kernel, {
      name: 'weft.1',
      peerName: 'weft.1.c',
      mtu: 1450,
      mac: '02:00:00:00:00:01',
      gsoMaxSize: OVERLAY_GSO_MAX_SIZE,
    });
    return { created: pair.created, kind: pair.near.kind };
  } finally {
    await kernel.close();
  }
}

/** A kernel whose createVxlan fails with `errno` (a kernel without the vxlan module says EOPNOTSUPP). */
function refusingVxlan(kernel: Kernel, errno: number): Kernel {
  return new Proxy(kernel, {
    get(target, property, receiver) {
      if (property === 'createVxlan') return () => Promise.reject(new NetlinkError('create vxlan weft.1', errno));
      return Reflect.get(target, property, receiver) as unknown;
    },
  });
}

export interface AutoRun {
  dataPath: string;
  reason: string;
  /** kind of weft.1 after ensureDevices */
  kind: string | null;
  routesOnly: boolean;
  counters: { tx: number; rx: number } | null;
  /** UDP sockets bound, as `ss -uln` lists them */
  udp: string;
}

/**
 * The vxlan backend with Userspace "auto" on `iface`; `refuse` makes the kernel refuse VXLAN devices with
 * that errno. Runs prepare() and one ensureDevices(), then stops the backend's worker.
 */
export async function autoChoice(arg: { iface: string; refuse?: number }): Promise<AutoRun> {
  const real = openKernel();
  const kernel = arg.refuse === undefined ? real : refusingVxlan(real, arg.refuse);
  const config = parseNetworkConfig('{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"}}');
  const publicInterface = await selectPublicInterface({ iface: [arg.iface] });
  const backend = new AutoVxlanBackend(
    { kernel, log: createLogger('silent'), config, publicInterface },
    config.backend as VxlanBackendConfig,
  );
  try {
    await backend.prepare();
    const own = decodeLease(
      '198.18.1.0-24',
      JSON.stringify({ PublicIP: publicInterface.publicAddress.toString(), BackendType: 'vxlan', BackendData: backend.backendData }),
      false,
    );
    const devices = await backend.ensureDevices(own);
    const link = await real.getLink('weft.1');
    const counters = await backend.userspace?.counters();
    const { spawnSync } = await import('node:child_process');
    const udp = spawnSync('ss', ['-uln'], { encoding: 'utf8' }).stdout;
    return {
      udp,
      dataPath: backend.dataPath,
      reason: backend.dataPathReason,
      kind: link?.kind ?? null,
      routesOnly: devices.routesOnly === true,
      counters: counters === undefined ? null : { tx: counters.tx.packets, rx: counters.rx.packets },
    };
  } finally {
    await backend.close();
    await real.close();
  }
}
