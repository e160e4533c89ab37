/**
 * The soak (issue 6, point 6): one real weftd (vxlan backend) in a lab host against a real etcd, under a
 * steady stream of peer joins and leaves, then two checks once the churn has stopped:
 *
 *  (a) the kernel state on the host — permanent neighbours, FDB entries and routes on weft.1 (and weft's
 *      nexthops, and the ingress allow-list's peer set), read with `ip -j` / `bridge -j` / `nft -j` dumps
 *      inside the namespace — equals exactly the desired state computed here, independently of weft's code,
 *      from the leases etcd holds at the end;
 *  (b) weftd's memory (VmRSS of its main process, /proc/<pid>/status, and its V8 heap) returns to within 10 %
 *      of what it was before the churn.
 *
 * A fair start figure: a freshly started agent has not yet grown to its working size (JIT code, V8 heap
 * spaces sized for churn, etcd and netlink buffers), so the RSS right after start-up would make any agent
 * look as if it leaked. The soak therefore first runs a warm-up churn with the same population and the same
 * rate, waits until the kernel matches the leases and then for the same settle period it will wait at the
 * end, and only then takes the start figure. Start and end are both taken `settleMs` after the kernel
 * converged, with the same number of live peers, as the median of the RSS samples of the last seconds of
 * that period: what differs between the two is the churn in between, which is the point.
 *
 * That RSS is still V8's high-water mark until its memory reducer runs (seen 16–30 s after a churn ended;
 * when depends on the agent's last big collection), and on a loaded machine the backlog of a churn
 * decides how high the mark went. So each figure is also taken a second time right after the agent ran a
 * low-memory collection (forced through its inspector: the same kind of collection the memory reducer
 * makes): RSS and heap used then are what the agent retains, and a leak shows there whatever the timing.
 *
 * Used by the short soak in the test suite (e2e/scenarios/soak.test.ts) and the long one in `npm run bench`
 * (soak.ts). Synthetic peers and their addresses are peers.ts's (198.18.0.0/16 subnets, public IPs in
 * 198.19.0.0/16 that nothing ever sends to).
 */
import { readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { scenarioRunner } from '../../test/netns.js';
import { httpGet, seedNetworkConfig, type LabHost, type NetnsLab } from '../lab/index.js';
import { BENCH_AGENT_SUBNET_ENV, BENCH_NETWORK_CONFIG, BENCH_PREFIX } from './peers.js';
import type * as Probe from './probe.js';
import type * as Load from './soak-load.js';
import { childrenOf, statusKb } from './proc.js';
import type { SoakLoadResult } from './soak-load.js';
import { median } from './stats.js';

const runProbe = scenarioRunner<typeof Probe>(new URL('./probe.js', import.meta.url));
const runLoad = scenarioRunner<typeof Load>(new URL('./soak-load.js', import.meta.url));

const DEVICE = 'weft.1';
const WEFT_PROTOCOL = '157';
const HEALTHZ_PORT = 9912;
const INSPECTOR_PORT = 9229;

export interface SoakOptions {
  /** live synthetic peers throughout (before, during and after the churn) */
  population: number;
  /** events per second, joins and leaves together */
  rate: number;
  durationMs: number;
  /** the warm-up churn before the start figure (same population and rate) */
  warmupMs: number;
  /** quiet time after the kernel converged before a memory figure is taken (the same before and after) */
  settleMs: number;
  /** how long the kernel may take to match the leases after a churn stops */
  convergeTimeoutMs: number;
  /** more weftd flags */
  agentArgs?: readonly string[];
  /**
   * For hunting a leak: weftd writes a heap snapshot (which collects garbage first) into this directory
   * after each memory figure, `start` and `end` (node's --heapsnapshot-signal, sent SIGUSR2). Compare them
   * in Chrome DevTools' Memory tab. Set WEFT_SOAK_HEAP_SNAPSHOTS=<dir> to have the test and benchmark do it.
   */
  heapSnapshotDir?: string;
  log: (line: string) => void;
}

export interface MemoryFigure {
  /** median VmRSS of the samples in the last seconds of the settle period (what the agent holds by itself), kB */
  rssKb: number;
  /** median VmRSS in the 2 s after a forced low-memory garbage collection that followed, kB */
  rssAfterGcKb: number;
  /** the agent's /metrics after that collection, bytes */
  heapUsedBytes: number | undefined;
  heapTotalBytes: number | undefined;
  externalBytes: number | undefined;
  residentBytes: number | undefined;
  /** VmRSS of weftd's child processes together (the nft session of the ingress allow-list), kB; undefined: none */
  childRssKb: number | undefined;
}

export interface StateComparison {
  equal: boolean;
  /** peers the leases in etcd ask for (our own lease excluded) */
  expectedPeers: number;
  neighbours: number;
  fdb: number;
  routes: number;
  /** addresses in the ingress allow-list */
  allowed: number;
  missingCount: number;
  extraCount: number;
  /** up to 20 examples each */
  missing: string[];
  extra: string[];
}

export interface SoakResult {
  options: Omit<SoakOptions, 'log'>;
  warmup: SoakLoadResult;
  load: SoakLoadResult;
  /**
   * the kernel matched the leases this long after the load generator finished (undefined: never within the
   * timeout); an upper bound, as it includes reading the leases and the first dumps
   */
  convergeMs: number | undefined;
  final: StateComparison;
  start: MemoryFigure;
  end: MemoryFigure;
  /** highest VmRSS sample during the churn, and VmHWM (the kernel's own peak) at the end, kB */
  peakRssKb: number;
  hwmKb: number | undefined;
  /** end / start: RSS as the agent holds it by itself, RSS after the forced collection, heap used after it */
  rssRatio: number;
  rssAfterGcRatio: number;
  heapRatio: number | undefined;
  /** VmRSS once a second from the agent's start (s since then, MiB), and when each phase began (s) */
  rssTrace: [number, number][];
  phases: Record<string, number>;
  agentPid: number;
}

// --------------------------------------------------------------------------------------- the kernel

interface IpNeighbour {
  dst?: string;
  lladdr?: string;
  state?: string[];
}
interface BridgeFdb {
  mac?: string;
  dst?: string;
  flags?: string[];
  state?: string;
}
interface IpRoute {
  dst?: string;
  gateway?: string;
  dev?: string;
  protocol?: string | number;
  nhid?: number;
  flags?: string[];
  type?: string;
}
interface IpNexthop {
  id: number;
  gateway?: string;
  dev?: string;
  protocol?: string | number;
  flags?: string[];
  group?: unknown;
}

const SECTION = '@@weft-soak@@';

/**
 * weft's objects on the host as `ip`, `bridge` and `nft` show them, one string per object: neighbours, FDB
 * entries and routes on weft.1, weft's nexthops, and the addresses in the ingress allow-list's IPv4 set.
 */
export async function kernelObjects(
  lab: NetnsLab,
  host: LabHost,
): Promise<{ objects: Set<string>; counts: { neighbours: number; fdb: number; routes: number; allowed: number } }> {
  const command = [
    `ip -j neigh show dev ${DEVICE}`,
    `bridge -j fdb show dev ${DEVICE}`,
    'ip -j route show table main',
    'ip -j nexthop show',
    'nft -j list set inet weft peers4 2>/dev/null || true',
  ].join(`; echo ${SECTION}; `);
  const result = await lab.exec(host, command, { check: true, timeoutMs: 30_000 });
  const parts = result.stdout.split(SECTION).map((part) => part.trim());
  const parse = <T>(text: string | undefined): T[] => (text === undefined || text === '' ? [] : (JSON.parse(text) as T[]));
  const neighbours = parse<IpNeighbour>(parts[0]);
  const fdb = parse<BridgeFdb>(parts[1]);
  const routes = parse<IpRoute>(parts[2]);
  const nexthops = parse<IpNexthop>(parts[3]);
  const sets =
    parts[4] === undefined || parts[4] === '' ? [] : (JSON.parse(parts[4]) as { nftables: { set?: { elem?: unknown[] } }[] }).nftables;
  const objects = new Set<string>();
  const counts = { neighbours: 0, fdb: 0, routes: 0, allowed: 0 };
  for (const element of sets.flatMap((entry) => entry.set?.elem ?? [])) {
    counts.allowed++;
    objects.add(`allow ${typeof element === 'string' ? element : JSON.stringify(element)}`);
  }
  for (const n of neighbours) {
    const state = n.state ?? [];
    if (state.includes('NOARP')) continue; // the kernel's own (multicast, broadcast), never weft's
    counts.neighbours++;
    objects.add(`neigh ${n.dst} ${n.lladdr ?? '-'}${state.includes('PERMANENT') ? '' : ` (${state.join(',')})`}`);
  }
  for (const f of fdb) {
    if (f.dst === undefined) continue; // the device's own addresses; a VXLAN FDB entry always has a remote
    counts.fdb++;
    objects.add(`fdb ${f.mac} ${f.dst}${f.state === 'permanent' ? '' : ` (${f.state ?? 'no state'})`}`);
  }
  const weftNexthops = new Map(nexthops.filter((n) => String(n.protocol) === WEFT_PROTOCOL).map((n) => [n.id, n]));
  const allNexthops = new Map(nexthops.map((n) => [n.id, n]));
  const used = new Set<number>();
  for (const r of routes) {
    const nh = r.nhid === undefined ? undefined : allNexthops.get(r.nhid);
    if (r.nhid !== undefined) used.add(r.nhid);
    const dev = nh?.dev ?? r.dev;
    if (dev !== DEVICE && String(r.protocol) !== WEFT_PROTOCOL) continue;
    if (String(r.protocol) === 'kernel') continue;
    const gateway = nh?.gateway ?? r.gateway ?? '-';
    const onlink = (nh?.flags ?? r.flags ?? []).includes('onlink');
    counts.routes++;
    objects.add(`route ${r.dst} via ${gateway} dev ${dev}${onlink ? ' onlink' : ''}`);
  }
  for (const n of weftNexthops.values())
    if (!used.has(n.id)) objects.add(`nexthop ${n.id} via ${n.gateway ?? '-'} dev ${n.dev ?? '-'} (no route uses it)`);
  return { objects, counts };
}

/**
 * What the leases ask of this host, computed from the key/value pairs alone (not with weft's code): for
 * every lease but our own, a permanent neighbour `<subnet .0> → VtepMAC` on weft.1, an FDB entry
 * `VtepMAC → PublicIP`, a route `<subnet> via <subnet .0> dev weft.1 onlink`, and (unless the agent runs
 * without it) its PublicIP in the ingress allow-list.
 */
export function desiredObjects(
  leases: readonly { key: string; value: string }[],
  ownPublicIp: string,
  allowList = true,
): { objects: Set<string>; peers: number } {
  const objects = new Set<string>();
  let peers = 0;
  for (const { key, value } of leases) {
    const name = key.slice(`${BENCH_PREFIX}/subnets/`.length);
    const match = /^(\d+\.\d+\.\d+\.\d+)-(\d+)$/.exec(name);
    if (match === null) throw new Error(`unexpected key ${key} in the soak`);
    const lease = JSON.parse(value) as { PublicIP?: string; BackendType?: string; BackendData?: { VtepMAC?: string } };
    if (lease.PublicIP === ownPublicIp) continue;
    const mac = lease.BackendData?.VtepMAC;
    if (lease.BackendType !== 'vxlan' || mac === undefined || lease.PublicIP === undefined)
      throw new Error(`unexpected lease ${key} = ${value} in the soak`);
    const gateway = match[1];
    peers++;
    objects.add(`neigh ${gateway} ${mac}`);
    objects.add(`fdb ${mac} ${lease.PublicIP}`);
    objects.add(`route ${gateway}/${match[2]} via ${gateway} dev ${DEVICE} onlink`);
    if (allowList) objects.add(`allow ${lease.PublicIP}`);
  }
  return { objects, peers };
}

export async function compareState(lab: NetnsLab, host: LabHost, want: { objects: Set<string>; peers: number }): Promise<StateComparison> {
  const have = await kernelObjects(lab, host);
  const missing = [...want.objects].filter((entry) => !have.objects.has(entry));
  const extra = [...have.objects].filter((entry) => !want.objects.has(entry));
  return {
    equal: missing.length === 0 && extra.length === 0,
    expectedPeers: want.peers,
    ...have.counts,
    missingCount: missing.length,
    extraCount: extra.length,
    missing: missing.slice(0, 20),
    extra: extra.slice(0, 20),
  };
}

// ----------------------------------------------------------------------------------------- memory

/** VmRSS of one process every `everyMs`, with the time of each sample. */
class RssSampler {
  readonly samples: { at: number; kb: number }[] = [];
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly pid: number,
    everyMs: number,
  ) {
    this.timer = setInterval(() => this.sample(), everyMs);
    this.sample();
  }

  sample(): void {
    const kb = statusKb(this.pid, 'VmRSS');
    if (kb !== undefined) this.samples.push({ at: performance.now(), kb });
  }

  /** one sample a second: [seconds since `origin`, MiB] */
  trace(origin: number): [number, number][] {
    const out: [number, number][] = [];
    let next = origin;
    for (const s of this.samples) {
      if (s.at < next) continue;
      out.push([Math.round((s.at - origin) / 100) / 10, Math.round(s.kb / 102.4) / 10]);
      next = s.at + 1000;
    }
    return out;
  }

  between(from: number, to: number): number[] {
    return this.samples.filter((s) => s.at >= from && s.at <= to).map((s) => s.kb);
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

function metricValue(text: string, name: string): number | undefined {
  for (const line of text.split('\n')) if (line.startsWith(`${name} `)) return Number(line.slice(name.length + 1));
  return undefined;
}

async function agentMetrics(lab: NetnsLab, host: LabHost): Promise<string> {
  const response = await httpGet(lab, host, `http://127.0.0.1:${HEALTHZ_PORT}/metrics`, { timeoutMs: 5_000 });
  return response.status === 200 ? response.body : '';
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ------------------------------------------------------------------------------------------ driver

/** Runs the soak in `lab` (one host is used: the first). Stops the agent it started, whatever happens. */
export async function runSoak(lab: NetnsLab, options: SoakOptions): Promise<SoakResult> {
  const { log } = options;
  const host = lab.hosts[0];
  const netns = lab.namespaceOf(host);
  const etcd = lab.etcdEndpoint;
  await seedNetworkConfig(lab, BENCH_NETWORK_CONFIG);
  writeFileSync(lab.subnetFile(host), BENCH_AGENT_SUBNET_ENV);
  await runProbe(netns, 'seed', { etcd, from: 0, count: options.population }, { timeoutMs: 120_000 });
  const allowList = !(options.agentArgs ?? []).some((arg) => arg === '--no-ingress-allow-list' || arg === '--ingress-allow-list=false');
  const snapshots = options.heapSnapshotDir;
  const env = snapshots === undefined ? undefined : { NODE_OPTIONS: `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${snapshots}` };
  const agent = await lab.startAgent(host, [`--healthz-port=${HEALTHZ_PORT}`, ...(options.agentArgs ?? [])], env);
  const sampler = new RssSampler(agent.pid, 250);
  const origin = performance.now();
  const phases: Record<string, number> = {};
  const phase = (name: string) => (phases[name] = Math.round((performance.now() - origin) / 100) / 10);
  try {
    const exited = agent.exited.then((exit) => {
      throw new Error(`weftd exited during the soak (${JSON.stringify(exit)}); log tail:\n${lab.agent(host)!.log().slice(-3000)}`);
    });
    exited.catch(() => undefined);
    const guard = <T>(work: Promise<T>): Promise<T> => Promise.race([work, exited]);

    /** Reads the leases, then polls the kernel until it matches them; ms taken, or undefined on timeout. */
    const converge = async (what: string): Promise<{ ms: number | undefined; want: ReturnType<typeof desiredObjects> }> => {
      const started = performance.now();
      const want = desiredObjects(await runLoad(netns, 'soakLeases', { etcd }, { timeoutMs: 60_000 }), host.publicIp, allowList);
      for (;;) {
        const state = await guard(compareState(lab, host, want));
        if (state.equal) return { ms: performance.now() - started, want };
        if (performance.now() - started > options.convergeTimeoutMs) {
          log(
            `${what}: the kernel did not match the leases within ${options.convergeTimeoutMs} ms: ${state.missingCount} missing, ${state.extraCount} extra`,
          );
          return { ms: undefined, want };
        }
        await sleep(250);
      }
    };

    /**
     * Waits `settleMs` and takes the memory figures: RSS from the last seconds of that wait, then RSS and
     * heap after a forced low-memory collection (see soak-load.ts collectGarbage), which takes out what
     * depends on when V8's memory reducer happens to run and leaves what the agent retains.
     */
    const settle = async (figure: 'start' | 'end'): Promise<MemoryFigure> => {
      const from = performance.now();
      await guard(sleep(options.settleMs));
      const to = performance.now();
      const window = Math.min(5_000, options.settleMs / 2);
      const rssKb = median(sampler.between(Math.max(from, to - window), to));
      await guard(runLoad(netns, 'collectGarbage', { port: INSPECTOR_PORT, timeoutMs: 30_000 }, { timeoutMs: 60_000 }));
      const collected = performance.now();
      await guard(sleep(3_000));
      const text = await guard(agentMetrics(lab, host));
      const children = childrenOf(agent.pid);
      if (snapshots !== undefined) await guard(heapSnapshot(lab, host, agent.pid, snapshots, figure, log));
      return {
        rssKb,
        rssAfterGcKb: median(sampler.between(collected + 1_000, collected + 3_000)),
        heapUsedBytes: metricValue(text, 'nodejs_heap_size_used_bytes'),
        heapTotalBytes: metricValue(text, 'nodejs_heap_size_total_bytes'),
        externalBytes: metricValue(text, 'nodejs_external_memory_bytes'),
        residentBytes: metricValue(text, 'process_resident_memory_bytes'),
        childRssKb: children.length === 0 ? undefined : children.reduce((sum, pid) => sum + (statusKb(pid, 'VmRSS') ?? 0), 0),
      };
    };

    const initial = await converge('start-up');
    if (initial.ms === undefined) throw new Error(`weftd never programmed the ${options.population} seeded peers`);
    // node opens its inspector on SIGUSR1 (127.0.0.1, inside the host's namespace): open before the warm-up,
    // so that both memory figures include what it costs
    if (!readFileSync(`/proc/${agent.pid}/cmdline`, 'utf8').includes('weftd')) throw new Error(`pid ${agent.pid} is not weftd`);
    process.kill(agent.pid, 'SIGUSR1');
    log(
      `soak: weftd (pid ${agent.pid}) programmed ${initial.want.peers} peers; warm-up churn at ${options.rate}/s for ${options.warmupMs / 1000} s`,
    );
    const leaseId = await runLoad(netns, 'soakGrant', { etcd, ttlSeconds: 3600 }, { timeoutMs: 30_000 });
    const loadArg = { etcd, population: options.population, rate: options.rate, leaseId };
    phase('warm-up');
    const warmup = await guard(
      runLoad(netns, 'soakLoad', { ...loadArg, first: 0, durationMs: options.warmupMs }, { timeoutMs: options.warmupMs + 120_000 }),
    );
    phase('warm-up settle');
    const warm = await converge('after the warm-up');
    if (warm.ms === undefined) throw new Error('the kernel never matched the leases after the warm-up churn');
    const start = await settle('start');
    log(`soak: start figure after the warm-up (${warmup.joins + warmup.leaves} events): ${memory(start)}`);

    phase('churn');
    const churnFrom = performance.now();
    const load = await guard(
      runLoad(
        netns,
        'soakLoad',
        { ...loadArg, first: warmup.nextFirst, durationMs: options.durationMs },
        { timeoutMs: options.durationMs + 300_000 },
      ),
    );
    const churnTo = performance.now();
    log(
      `soak: ${load.joins} joins + ${load.leaves} leaves (${load.scheduled} scheduled, ${load.failed} failed) in ${(load.elapsedMs / 1000).toFixed(1)} s = ${load.achievedRate.toFixed(0)} events/s`,
    );
    phase('churn settle');
    const after = await converge('after the churn');
    const end = await settle('end');
    const final = await compareState(lab, host, after.want);
    const peakRssKb = Math.max(...sampler.between(churnFrom, churnTo + (after.ms ?? 0)));
    const hwmKb = statusKb(agent.pid, 'VmHWM');
    const heapRatio =
      start.heapUsedBytes !== undefined && end.heapUsedBytes !== undefined ? end.heapUsedBytes / start.heapUsedBytes : undefined;
    log(
      `soak: kernel ${final.equal ? 'equals' : 'DIFFERS from'} the leases (${final.expectedPeers} peers; ${final.missingCount} missing, ${final.extraCount} extra), ` +
        `converged ${after.ms === undefined ? 'never' : `${after.ms.toFixed(0)} ms`} after the churn; RSS peak during the churn ${(peakRssKb / 1024).toFixed(1)} MiB; end figure: ${memory(end)}; ` +
        `end/start: RSS ${(end.rssKb / start.rssKb).toFixed(3)}, RSS after GC ${(end.rssAfterGcKb / start.rssAfterGcKb).toFixed(3)}, heap after GC ${heapRatio?.toFixed(3) ?? '?'}`,
    );
    return {
      options: {
        population: options.population,
        rate: options.rate,
        durationMs: options.durationMs,
        warmupMs: options.warmupMs,
        settleMs: options.settleMs,
        convergeTimeoutMs: options.convergeTimeoutMs,
        ...(options.agentArgs === undefined ? {} : { agentArgs: options.agentArgs }),
      },
      warmup,
      load,
      convergeMs: after.ms,
      final,
      start,
      end,
      peakRssKb,
      hwmKb,
      rssRatio: end.rssKb / start.rssKb,
      rssAfterGcRatio: end.rssAfterGcKb / start.rssAfterGcKb,
      heapRatio,
      rssTrace: sampler.trace(origin),
      phases,
      agentPid: agent.pid,
    };
  } finally {
    sampler.stop();
    await lab.stopAgent(host, 'SIGTERM');
  }
}

/**
 * Has node write a heap snapshot (SIGUSR2, see heapSnapshotDir) and names it after `phase`. Node writes it
 * synchronously on the agent's main thread, so once /metrics answers again the file is complete.
 */
async function heapSnapshot(
  lab: NetnsLab,
  host: LabHost,
  pid: number,
  dir: string,
  phase: string,
  log: (line: string) => void,
): Promise<void> {
  const before = new Set(readdirSync(dir));
  process.kill(pid, 'SIGUSR2');
  for (let waited = 0; waited < 120_000; waited += 250) {
    await sleep(250);
    const written = readdirSync(dir).find((name) => !before.has(name) && name.endsWith('.heapsnapshot'));
    if (written === undefined) continue;
    if ((await agentMetrics(lab, host)) === '') continue;
    const target = join(dir, `soak-${pid}-${phase}.heapsnapshot`);
    renameSync(join(dir, written), target);
    log(`soak: heap snapshot ${target} (${(statSync(target).size / 1048576).toFixed(0)} MiB)`);
    return;
  }
  throw new Error(`weftd (pid ${pid}) wrote no heap snapshot into ${dir}`);
}

function memory(figure: MemoryFigure): string {
  return `RSS ${(figure.rssKb / 1024).toFixed(1)} MiB, after GC ${(figure.rssAfterGcKb / 1024).toFixed(1)} MiB, heap used after GC ${mib(figure.heapUsedBytes)}`;
}

function mib(bytes: number | undefined): string {
  return bytes === undefined ? '?' : `${(bytes / 1048576).toFixed(1)} MiB`;
}
