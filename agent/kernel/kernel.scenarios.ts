/**
 * Test scenarios for kernel.test.ts. Each export runs inside a throw-away network namespace in a child
 * process (test/netns.ts), drives the shim and returns JSON for the test to check, often next to what
 * `ip -j` reports. Every scenario closes what it opens: the child must exit on its own.
 */
import { execFileSync } from 'node:child_process';
import {
  NUD_PERMANENT,
  openKernel,
  openMonitor,
  vxlanMismatches,
  type KernelChange,
  type KernelOptions,
  type LinkChanges,
  type LinkInfo,
  type NetlinkKernel,
  type RouteInfo,
  type RtnlStats,
  type VxlanSpec,
} from './index.js';
import { loadNativeAddon, type NativeAddon } from '../native-addon.js';
import { NativeKernelMonitor } from './monitor-native.js';

export interface ErrorSummary {
  name: string;
  code: string | null;
  errnoName: string | null;
  message: string;
}

async function errorOf(p: Promise<unknown>): Promise<ErrorSummary | null> {
  try {
    await p;
    return null;
  } catch (err) {
    const e = err as Error & { code?: unknown; errnoName?: unknown };
    return {
      name: e.name,
      code: typeof e.code === 'string' ? e.code : null,
      errnoName: typeof e.errnoName === 'string' ? e.errnoName : null,
      message: e.message,
    };
  }
}

async function withKernel<T>(fn: (k: NetlinkKernel) => Promise<T>, options?: KernelOptions): Promise<T> {
  const k = openKernel(options);
  try {
    return await fn(k);
  } finally {
    k.destroy();
  }
}

async function mustGet(k: NetlinkKernel, name: string): Promise<LinkInfo> {
  const link = await k.getLink(name);
  if (!link) throw new Error(`no link ${name}`);
  return link;
}

/** A VXLAN spec that names its parent device instead of its index (indexes are per namespace). */
export type NamedVxlanSpec = Omit<VxlanSpec, 'parentIndex'> & { parent?: string };

async function resolveSpec(k: NetlinkKernel, spec: NamedVxlanSpec): Promise<VxlanSpec> {
  const { parent, ...rest } = spec;
  return parent === undefined ? rest : { ...rest, parentIndex: (await mustGet(k, parent)).index };
}

// ---------------------------------------------------------------------------------------------- links

export async function createVxlan(spec: NamedVxlanSpec): Promise<{
  created: LinkInfo;
  byName: LinkInfo | null;
  byIndex: LinkInfo | null;
  listed: LinkInfo | null;
  parentIndex: number | null;
  missing: LinkInfo | null;
  duplicate: ErrorSummary | null;
}> {
  return withKernel(async (k) => {
    const full = await resolveSpec(k, spec);
    const created = await k.createVxlan(full);
    return {
      created,
      byName: await k.getLink(spec.name),
      byIndex: await k.getLink(created.index),
      listed: (await k.listLinks()).find((l) => l.name === spec.name) ?? null,
      parentIndex: full.parentIndex ?? null,
      missing: await k.getLink('weft-nonexist'),
      duplicate: await errorOf(k.createVxlan(full)),
    };
  });
}

export async function inspectVxlan(arg: { name: string; specs: NamedVxlanSpec[] }): Promise<{
  link: LinkInfo;
  mismatches: string[][];
}> {
  return withKernel(async (k) => {
    const link = await mustGet(k, arg.name);
    const mismatches: string[][] = [];
    for (const spec of arg.specs) mismatches.push(vxlanMismatches(link, await resolveSpec(k, spec)));
    return { link, mismatches };
  });
}

export async function changeAndDeleteLink(arg: { name: string; changes: LinkChanges }): Promise<{
  before: LinkInfo;
  after: LinkInfo;
  afterDelete: LinkInfo | null;
  deleteAgain: ErrorSummary | null;
  setMissing: ErrorSummary | null;
}> {
  return withKernel(async (k) => {
    const before = await mustGet(k, arg.name);
    await k.setLink(before.index, arg.changes);
    const after = await mustGet(k, arg.name);
    await k.deleteLink(before.index);
    return {
      before,
      after,
      afterDelete: await k.getLink(arg.name),
      deleteAgain: await errorOf(k.deleteLink(before.index)),
      setMissing: await errorOf(k.setLink(99999, { up: true })),
    };
  });
}

// ------------------------------------------------------------------------------------------ addresses

export async function addresses(arg: { name: string; cidrs: string[] }) {
  return withKernel(async (k) => {
    const link = await mustGet(k, arg.name);
    await Promise.all(arg.cidrs.map((c) => k.addAddress(link.index, c)));
    const afterAdd = await k.listAddresses(link.index);
    const duplicate = await errorOf(k.addAddress(link.index, arg.cidrs[0]));
    const invalid = await errorOf(k.addAddress(link.index, '198.18.5.0/40'));
    await k.deleteAddress(link.index, arg.cidrs[0]);
    const afterDelete = await k.listAddresses(link.index);
    const deleteAgain = await errorOf(k.deleteAddress(link.index, arg.cidrs[0]));
    return { afterAdd, duplicate, invalid, afterDelete, deleteAgain, allV4: await k.listAddresses(undefined, 4) };
  });
}

// ----------------------------------------------------------------------------------------- neighbours

export async function neighbours(arg: { name: string; entries: { ip: string; mac: string }[]; replaceMac: string }) {
  return withKernel(async (k) => {
    const link = await mustGet(k, arg.name);
    await Promise.all(arg.entries.map((e) => k.replaceNeighbour(link.index, e.ip, e.mac)));
    const afterAdd = await k.listNeighbours(link.index);
    const first = arg.entries[0];
    await k.replaceNeighbour(link.index, first.ip, arg.replaceMac); // replace, not EEXIST
    const afterReplace = await k.listNeighbours(link.index);
    await k.deleteNeighbour(link.index, first.ip);
    const afterDelete = await k.listNeighbours(link.index);
    return {
      afterAdd,
      afterReplace,
      afterDelete,
      v6Only: await k.listNeighbours(link.index, 6),
      deleteAgain: await errorOf(k.deleteNeighbour(link.index, first.ip)),
      permanentBit: NUD_PERMANENT,
    };
  });
}

export async function fdb(arg: { name: string; entries: { mac: string; dst: string }[]; replaceDst: string }) {
  return withKernel(async (k) => {
    const link = await mustGet(k, arg.name);
    await Promise.all(arg.entries.map((e) => k.replaceFdb(link.index, e.mac, e.dst)));
    const afterAdd = await k.listFdb(link.index);
    const first = arg.entries[0];
    await k.replaceFdb(link.index, first.mac, arg.replaceDst);
    const afterReplace = await k.listFdb(link.index);
    await k.deleteFdb(link.index, first.mac, arg.replaceDst);
    const afterDelete = await k.listFdb(link.index);
    return { afterAdd, afterReplace, afterDelete, deleteAgain: await errorOf(k.deleteFdb(link.index, first.mac)) };
  });
}

// --------------------------------------------------------------------------------------------- routes

export async function routes(arg: { name: string; proto: number }) {
  return withKernel(async (k) => {
    const link = await mustGet(k, arg.name);
    const dev = link.index;
    // flannel's vxlan shape: <remote subnet> via <remote .0> dev <vxlan> onlink
    await k.replaceRoute({ dst: '198.18.2.0/24', gateway: '198.18.2.0', ifindex: dev, onlink: true, protocol: arg.proto });
    await k.replaceRoute({ dst: '198.18.3.0/24', gateway: '198.18.3.0', ifindex: dev, onlink: true, protocol: arg.proto });
    await k.replaceRoute({ dst: '2001:db8:100:2::/64', gateway: '2001:db8:100:2::', ifindex: dev, onlink: true, protocol: arg.proto });
    const afterAdd = await k.listRoutes({ protocol: arg.proto });
    // replace moves 198.18.3.0/24 to another gateway in place
    await k.replaceRoute({ dst: '198.18.3.0/24', gateway: '198.18.3.1', ifindex: dev, onlink: true, protocol: arg.proto });
    const afterReplace = await k.listRoutes({ family: 4, protocol: arg.proto });
    // a route someone else owns, to the same device: deleting by (dst, protocol) must not touch it
    await k.replaceRoute({ dst: '198.18.4.0/24', gateway: '198.18.4.0', ifindex: dev, onlink: true });
    const notOurs = await errorOf(k.deleteRoute({ dst: '198.18.4.0/24', protocol: arg.proto }));
    await k.deleteRoute({ dst: '198.18.2.0/24', protocol: arg.proto, ifindex: dev });
    await k.deleteRoute({ dst: '2001:db8:100:2::/64', protocol: arg.proto });
    const afterDelete = await k.listRoutes({ ifindex: dev });
    const localTable = await k.listRoutes({ table: 255, ifindex: dev });
    return { afterAdd, afterReplace, notOurs, afterDelete, localTable };
  });
}

export async function routeErrors(arg: { name: string }) {
  return withKernel(async (k) => {
    const link = await mustGet(k, arg.name);
    const dev = link.index;
    await k.addRoute({ dst: '198.18.2.0/24', gateway: '198.18.2.0', ifindex: dev, onlink: true });
    return {
      noSuchDevice: await errorOf(k.addRoute({ dst: '198.18.9.0/24', gateway: '198.18.9.0', ifindex: 99999, onlink: true })),
      notOnlink: await errorOf(k.addRoute({ dst: '198.18.3.0/24', gateway: '198.18.3.0', ifindex: dev })),
      exists: await errorOf(k.addRoute({ dst: '198.18.2.0/24', gateway: '198.18.2.0', ifindex: dev, onlink: true })),
      deleteMissing: await errorOf(k.deleteRoute({ dst: '198.18.8.0/24' })),
      badPrefix: await errorOf(k.replaceRoute({ dst: '198.18.0.0/33', ifindex: dev })),
      mixedFamily: await errorOf(k.replaceRoute({ dst: '198.18.7.0/24', gateway: '2001:db8::1', ifindex: dev })),
      fdbMissing: await errorOf(k.deleteFdb(dev, '0e:00:00:00:99:99')),
    };
  });
}

// -------------------------------------------------------------------------------------------- monitor

type Seen = { kind: KernelChange['kind']; action: string; key: string };

function keyOf(c: KernelChange): string {
  switch (c.kind) {
    case 'link':
      return c.link.name;
    case 'address':
      return c.address.cidr;
    case 'neighbour':
      return c.neighbour.ip;
    case 'fdb':
      return `${c.fdb.mac} ${c.fdb.dst ?? ''}`;
    case 'route':
      return `${c.route.dst} proto ${c.route.protocol}`;
    case 'nexthop':
      return `id ${c.nexthop.id}`;
  }
}

export async function monitorDeletes(arg: { name: string; proto: number }): Promise<{ seen: Seen[]; route: RouteInfo | null }> {
  const monitor = await openMonitor();
  const seen: Seen[] = [];
  let route: RouteInfo | null = null;
  const wanted = new Set(['route del 198.18.2.0/24', 'neighbour del 198.18.2.0', 'fdb del 0e:00:00:00:00:02 198.19.0.2']);
  const done = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`monitor saw only ${JSON.stringify(seen)}`)), 5000);
    monitor.on('change', (c) => {
      const key = keyOf(c);
      seen.push({ kind: c.kind, action: c.action, key });
      if (c.kind === 'route' && c.action === 'del') route = c.route;
      const short = `${c.kind} ${c.action} ${c.kind === 'route' ? c.route.dst : key}`;
      wanted.delete(short);
      if (wanted.size === 0) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  try {
    await withKernel(async (k) => {
      const dev = (await mustGet(k, arg.name)).index;
      await Promise.all([
        k.replaceNeighbour(dev, '198.18.2.0', '0e:00:00:00:00:02'),
        k.replaceFdb(dev, '0e:00:00:00:00:02', '198.19.0.2'),
        k.replaceRoute({ dst: '198.18.2.0/24', gateway: '198.18.2.0', ifindex: dev, onlink: true, protocol: arg.proto }),
      ]);
    });
    // someone deletes weft's state by hand (this process already runs inside the namespace)
    execFileSync('ip', ['route', 'del', '198.18.2.0/24', 'dev', arg.name]);
    execFileSync('ip', ['neigh', 'del', '198.18.2.0', 'dev', arg.name]);
    execFileSync('bridge', ['fdb', 'del', '0e:00:00:00:00:02', 'dev', arg.name, 'dst', '198.19.0.2', 'self']);
    await done;
  } finally {
    monitor.close();
  }
  return { seen, route };
}

/**
 * A monitor told to ignore the shim's requests: weft's own neighbour and route changes are not reported,
 * a route added and one deleted by someone else are. `child`: the monitor without the addon.
 */
export async function monitorIgnoresOwnRequests(arg: {
  name: string;
  proto: number;
  child: boolean;
}): Promise<{ seen: Seen[]; inProcess: boolean }> {
  if (arg.child) process.env['WEFT_KERNEL_MONITOR'] = 'child';
  return withKernel(async (k) => {
    const monitor = await openMonitor({ ignoreRequestsOf: k.portId, groups: ['neighbour', 'route'] });
    const seen: Seen[] = [];
    const deleted = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`monitor saw only ${JSON.stringify(seen)}`)), 5000);
      monitor.on('change', (c) => {
        seen.push({ kind: c.kind, action: c.action, key: keyOf(c) });
        if (c.kind === 'route' && c.action === 'del' && c.route.dst === '198.18.3.0/24') {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    try {
      const dev = (await mustGet(k, arg.name)).index;
      await k.replaceNeighbour(dev, '198.18.3.0', '0e:00:00:00:00:03');
      await k.replaceRoute({ dst: '198.18.3.0/24', gateway: '198.18.3.0', ifindex: dev, onlink: true, protocol: arg.proto });
      execFileSync('ip', ['route', 'add', '198.18.4.0/24', 'via', '198.18.4.0', 'dev', arg.name, 'onlink', 'proto', String(arg.proto)]);
      execFileSync('ip', ['route', 'del', '198.18.3.0/24', 'dev', arg.name]);
      // notifications come in order: once the delete is reported, the echoes of the earlier requests would have been
      await deleted;
      return { seen, inProcess: monitor instanceof NativeKernelMonitor };
    } finally {
      monitor.close();
    }
  });
}

/**
 * The addon's kernel-side filter alone, on a bare rtnetlink socket in the neighbour group: a neighbour set by
 * the shim (the filtered port) and one set by `ip` (another port). Returns the sender port of every
 * notification that reached the socket, and the two ports.
 */
export async function addonDropsEchoesInKernel(arg: { name: string }): Promise<{ ports: number[]; shim: number }> {
  const loaded = loadNativeAddon();
  if (!('addon' in loaded)) throw new Error(loaded.error);
  const { addon } = loaded;
  return withKernel(async (k) => {
    const fd = addon.netlinkOpen(1 << 20);
    if (fd < 0) throw new Error(`netlinkOpen: errno ${-fd}`);
    const slot = 16 * 1024;
    const buffer = Buffer.alloc(slot * 8);
    const meta = new Int32Array(8 * 4);
    const ports: number[] = [];
    let receiver: ReturnType<NativeAddon['receive']> | undefined;
    try {
      if (addon.netlinkJoin(fd, 3 /* RTNLGRP_NEIGH */) < 0) throw new Error('netlinkJoin failed');
      const filtered = addon.netlinkIgnorePort(fd, k.portId);
      if (filtered < 0) throw new Error(`netlinkIgnorePort: errno ${-filtered}`);
      const other = new Promise<void>((resolve) => {
        receiver = addon.receive(
          fd,
          buffer,
          slot,
          8,
          meta,
          (count) => {
            for (let i = 0; i < count; i++) {
              const port = buffer.readUInt32LE(i * slot + 12);
              ports.push(port);
              if (port !== k.portId && port !== 0) resolve();
            }
          },
          4,
        );
      });
      if (typeof receiver === 'number') throw new Error(`receive: errno ${-receiver}`);
      const dev = (await mustGet(k, arg.name)).index;
      await k.replaceNeighbour(dev, '198.18.5.0', '0e:00:00:00:00:05');
      execFileSync('ip', ['neigh', 'replace', '198.18.6.0', 'lladdr', '0e:00:00:00:00:06', 'dev', arg.name, 'nud', 'permanent']);
      // notifications come in order: once the second is in, the first would have been
      await other;
      return { ports, shim: k.portId };
    } finally {
      if (receiver !== undefined && typeof receiver !== 'number') addon.stop(receiver);
      addon.close(fd);
    }
  });
}

/**
 * Pauses the monitor (twice, as nested pauses), makes `count` neighbours, and resumes: nothing may come
 * before the last resume, and then every notification, in the order of the changes. `child`: the monitor
 * without the addon.
 */
export async function monitorPause(arg: {
  name: string;
  count: number;
  child: boolean;
}): Promise<{ beforeResume: number; ips: string[]; expected: string[] }> {
  if (arg.child) process.env['WEFT_KERNEL_MONITOR'] = 'child';
  const monitor = await openMonitor({ groups: ['neighbour'] });
  const ips: string[] = [];
  monitor.on('change', (c) => {
    if (c.kind === 'neighbour' && c.action === 'new' && c.neighbour.ip.startsWith('198.18.')) ips.push(c.neighbour.ip);
  });
  const expected = Array.from({ length: arg.count }, (_, i) => `198.18.${i >> 8}.${i & 255}`);
  try {
    monitor.pause();
    monitor.pause();
    await withKernel(async (k) => {
      const dev = (await mustGet(k, arg.name)).index;
      for (const ip of expected) await k.replaceNeighbour(dev, ip, '0e:00:00:00:00:02');
    });
    await new Promise((r) => setTimeout(r, 500));
    monitor.resume();
    await new Promise((r) => setTimeout(r, 100));
    const beforeResume = ips.length;
    monitor.resume();
    return { beforeResume, ips, expected };
  } finally {
    monitor.close();
  }
}

// ------------------------------------------------------------------------------------------ pipelining

function peer(i: number): { subnet: string; gw: string; mac: string; publicIp: string } {
  // peer i leases a /28 of 198.18.0.0/16 (skipping 198.18.5.0/24, the device's own lease); its VTEP is
  // 198.19.<i>; its VtepMAC encodes i
  const base = (i < 80 ? i : i + 16) * 16;
  const gw = `198.18.${base >> 8}.${base & 255}`;
  const hex = (n: number): string => n.toString(16).padStart(2, '0');
  return { subnet: `${gw}/28`, gw, mac: `0e:01:00:00:${hex(i >> 8)}:${hex(i & 255)}`, publicIp: `198.19.${i >> 8}.${i & 255}` };
}

export async function bulk(arg: { name: string; count: number; proto: number; options?: KernelOptions }): Promise<{
  elapsedMs: number;
  failures: string[];
  stats: RtnlStats;
  midDumpRoutes: number;
  counts: { neighbours: number; fdb: number; routes: number };
  sample: { neighbour: unknown; fdb: unknown; route: unknown };
}> {
  return withKernel(async (k) => {
    const dev = (await mustGet(k, arg.name)).index;
    const half = Math.floor(arg.count / 2);
    const ops: Promise<void>[] = [];
    const program = (i: number): void => {
      const p = peer(i);
      ops.push(k.replaceNeighbour(dev, p.gw, p.mac));
      ops.push(k.replaceFdb(dev, p.mac, p.publicIp));
      ops.push(k.replaceRoute({ dst: p.subnet, gateway: p.gw, ifindex: dev, onlink: true, protocol: arg.proto }));
    };
    const t0 = performance.now();
    for (let i = 1; i <= half; i++) program(i);
    // a dump queued between writes, with the first half's answers still outstanding: it must show exactly
    // the first half (the package's own request helpers fail here: an ACK between dump parts ends the dump)
    const midDump = k.listRoutes({ family: 4, protocol: arg.proto });
    for (let i = half + 1; i <= arg.count; i++) program(i);
    const settled = await Promise.allSettled(ops);
    const elapsedMs = performance.now() - t0;
    const failures = settled.flatMap((s) => (s.status === 'rejected' ? [String((s.reason as Error).message)] : []));
    const [n, f, r, mid] = await Promise.all([
      k.listNeighbours(dev),
      k.listFdb(dev),
      k.listRoutes({ ifindex: dev, protocol: arg.proto }),
      midDump,
    ]);
    const last = peer(arg.count);
    return {
      elapsedMs,
      failures: failures.slice(0, 5),
      stats: k.stats(),
      midDumpRoutes: mid.length,
      counts: { neighbours: n.filter((x) => x.permanent).length, fdb: f.filter((x) => x.permanent).length, routes: r.length },
      sample: {
        neighbour: n.find((x) => x.ip === last.gw) ?? null,
        fdb: f.find((x) => x.mac === last.mac) ?? null,
        route: r.find((x) => x.dst === last.subnet) ?? null,
      },
    };
  }, arg.options);
}

/** Requests keep call order even through a tiny window: replace, delete, replace of one route in one tick. */
export async function ordering(arg: { name: string; proto: number }) {
  return withKernel(
    async (k) => {
      const dev = (await mustGet(k, arg.name)).index;
      const ops: Promise<void>[] = [];
      for (let round = 0; round < 50; round++) {
        const dst = `198.18.${100 + round}.0/24`;
        ops.push(k.replaceRoute({ dst, gateway: `198.18.${100 + round}.1`, ifindex: dev, onlink: true, protocol: arg.proto }));
        ops.push(k.deleteRoute({ dst, protocol: arg.proto }));
        ops.push(k.addRoute({ dst, gateway: `198.18.${100 + round}.2`, ifindex: dev, onlink: true, protocol: arg.proto }));
      }
      await Promise.all(ops);
      const routes = await k.listRoutes({ ifindex: dev, protocol: arg.proto });
      return { routes, stats: k.stats() };
    },
    { maxInFlight: 4, maxBatchMessages: 3 },
  );
}

export async function closeSemantics(arg: { name: string }) {
  const k1 = openKernel();
  const dev = (await mustGet(k1, arg.name)).index;
  const drained = Array.from({ length: 100 }, (_, i) => k1.replaceNeighbour(dev, `198.18.50.${i}`, '0e:00:00:00:50:00'));
  await k1.close(); // waits for the 100 answers
  const drainedResults = await Promise.allSettled(drained);
  const afterClose = await errorOf(k1.listLinks());

  const k2 = openKernel();
  const aborted = Array.from({ length: 100 }, (_, i) => k2.replaceNeighbour(dev, `198.18.51.${i}`, '0e:00:00:00:51:00'));
  k2.destroy(); // before the batch is even sent
  const abortedErrors = await Promise.all(aborted.map((p) => errorOf(p)));
  return {
    drainedOk: drainedResults.filter((r) => r.status === 'fulfilled').length,
    afterClose,
    abortedCodes: [...new Set(abortedErrors.map((e) => e?.code ?? 'resolved'))],
  };
}

/**
 * A burst of single-message batches (one answer each) far beyond what the receive buffer holds: the window
 * shrinks to the buffer, nothing overruns (an overrun would abort the process, see socket.ts).
 */
export async function smallBuffer(arg: { name: string; count: number }) {
  return withKernel(
    async (k) => {
      const dev = (await mustGet(k, arg.name)).index;
      const ops = Array.from({ length: arg.count }, (_, i) =>
        k.replaceNeighbour(dev, `198.18.${60 + (i >> 8)}.${i & 255}`, '0e:00:00:00:60:00'),
      );
      const errors = (await Promise.all(ops.map((p) => errorOf(p)))).filter((e) => e !== null);
      return { errors: errors.slice(0, 3), listed: (await k.listNeighbours(dev, 4)).length, stats: k.stats() };
    },
    { recvBufferSize: 1, maxInFlight: 1_000_000, maxBatchMessages: 1 },
  );
}

/**
 * A monitor with a tiny buffer while thousands of changes happen: it overruns, says so, recovers, and still
 * reports a route deleted afterwards; this process survives. `child`: the monitor without the addon.
 */
export async function monitorFlood(arg: { name: string; count: number; proto: number; recvBufferSize?: number; child: boolean }) {
  if (arg.child) process.env['WEFT_KERNEL_MONITOR'] = 'child';
  const monitor = await openMonitor({ recvBufferSize: arg.recvBufferSize ?? 1, groups: ['neighbour', 'route'] });
  let overruns = 0;
  let changes = 0;
  monitor.on('overrun', () => overruns++);
  monitor.on('change', () => changes++);
  try {
    const flood = await bulk({ name: arg.name, count: arg.count, proto: arg.proto });
    // wait for the monitor to have noticed and be back
    const t0 = Date.now();
    while (overruns === 0 && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 200));
    const last = peer(arg.count);
    const deleted = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 5000);
      monitor.on('change', (c) => {
        if (c.kind === 'route' && c.action === 'del' && c.route.dst === last.subnet) {
          clearTimeout(timer);
          resolve(true);
        }
      });
    });
    const changesBefore = changes;
    execFileSync('ip', ['route', 'del', last.subnet, 'dev', arg.name]);
    const sawDeleteAfterOverrun = await deleted;
    return {
      failures: flood.failures,
      overruns,
      restarts: monitor.restarts,
      changesBefore,
      sawDeleteAfterOverrun,
      inProcess: monitor instanceof NativeKernelMonitor,
    };
  } finally {
    monitor.close();
  }
}
