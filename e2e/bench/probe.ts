/**
 * The measuring side of the benchmarks. These functions run inside a lab host's network namespace (through
 * test/netns.ts's runInNamespace), where the probe process does what is timed: it starts weftd, writes and
 * deletes leases in etcd and reads etcd's answers, and takes the kernel's notifications from its observer
 * child (observer-child.ts: an rtnetlink socket in the same namespace that stamps each notification as it
 * arrives). Every time is process.hrtime (CLOCK_MONOTONIC, one clock for every process on the machine); the
 * observer is a child only because `netlink` 0.3.0 aborts a process whose notification socket overruns.
 *
 * Only what the benchmarks need is decoded from the notifications: route (IPv4, main table, weft's protocol),
 * neighbour (IPv4) and FDB (AF_BRIDGE) additions and deletions, mapped back to the synthetic peer they belong to.
 */
import { spawn, spawnSync, type ChildProcess, type ChildProcessByStdio } from 'node:child_process';
import { appendFileSync, closeSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire, SourceMap, type SourceMapPayload } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Etcd3, type IRequestOp } from 'etcd3';
import { openKernel, type NetlinkKernel } from '../../agent/kernel/index.js';
import { ipBatch, type BatchForm, type BatchTiming } from './ip-batch.js';
import { BENCH_NETWORK_CONFIG, BENCH_PREFIX, MAX_PEERS, leaseKey, leaseValue, syntheticPeer, type SyntheticPeer } from './peers.js';
import { childrenOf, commandOf, cpuMs, statusKb } from './proc.js';
import { isEtcdClientPackage, START_ORIGIN } from './start-origins.js';
import { msBetween } from './stats.js';

// ------------------------------------------------------------------------------------------- observer

export type ObjectKind = 'route' | 'neighbour' | 'fdb';
export const OBJECT_KINDS: readonly ObjectKind[] = ['route', 'neighbour', 'fdb'];
const KIND_OF: Record<string, ObjectKind> = { r: 'route', n: 'neighbour', f: 'fdb' };
const WEFT_PROTOCOL = 157;
const PEER_BASE = ((198 << 24) >>> 0) + (18 << 16) + 256;
const OBSERVER_CHILD = fileURLToPath(new URL('./observer-child.js', import.meta.url));

function peerOfAddress(value: number): number {
  const offset = value - PEER_BASE;
  if (offset < 0 || offset % 4 !== 0) return -1;
  const index = offset / 4;
  return index < MAX_PEERS ? index : -1;
}

/**
 * A kernel-side observer: route, neighbour and FDB notifications for the synthetic peers' objects, each
 * with the CLOCK_MONOTONIC time it was received at (observer-child.ts, a child process: an overrun aborts
 * `netlink` 0.3.0, so it is started again and the loss counted). Not a module of weft: a stand-in for
 * `ip monitor` with timestamps that costs almost nothing per event.
 */
class Observer {
  overruns = 0;
  events = 0;
  private child: ChildProcessByStdio<Writable, Readable, null> | undefined;
  private closed = false;

  /** `netns`: watch that namespace instead of the probe's own */
  constructor(
    private readonly onEvent: (kind: ObjectKind, added: boolean, peer: number, at: bigint) => void,
    private readonly netns?: string,
  ) {}

  /** Resolves once subscribed. */
  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      const argv = [process.execPath, OBSERVER_CHILD];
      if (this.netns !== undefined) argv.unshift('ip', 'netns', 'exec', this.netns);
      const child = spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'inherit'] });
      this.child = child;
      child.stdin.on('error', () => undefined);
      let partial = '';
      let ready = false;
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        const lines = (partial + chunk).split('\n');
        partial = lines.pop()!;
        for (const line of lines) {
          if (line === 'ready') {
            ready = true;
            resolve();
          } else if (line === 'overrun') {
            this.overruns++;
          } else {
            const [kind, added, peer, at] = line.split(' ');
            this.events++;
            this.onEvent(KIND_OF[kind], added === '1', Number(peer), BigInt(at));
          }
        }
      });
      child.on('exit', () => {
        if (this.closed || this.child !== child) return;
        if (!ready) {
          reject(new Error('the kernel observer did not start'));
          return;
        }
        // most likely the package's abort on overrun: notifications were lost; watch on
        this.overruns++;
        void this.start().catch(() => undefined);
      });
    });
  }

  close(): void {
    this.closed = true;
    this.child?.stdin.end();
    this.child?.kill('SIGTERM');
  }
}

/** Per peer: when each of its objects was last seen added and deleted. */
class PeerTimes {
  readonly added = new Map<number, [bigint | undefined, bigint | undefined, bigint | undefined]>();
  readonly deleted = new Map<number, [bigint | undefined, bigint | undefined, bigint | undefined]>();
  /** peers with all three objects present, as the notifications tell */
  readonly present = new Set<number>();
  private readonly have = new Map<number, number>();
  onChange: (() => void) | undefined;

  record(kind: ObjectKind, added: boolean, peer: number, at: bigint): void {
    const table = added ? this.added : this.deleted;
    let times = table.get(peer);
    if (times === undefined) table.set(peer, (times = [undefined, undefined, undefined]));
    const slot = OBJECT_KINDS.indexOf(kind);
    times[slot] = at;
    const bit = 1 << slot;
    const before = this.have.get(peer) ?? 0;
    const after = added ? before | bit : before & ~bit;
    this.have.set(peer, after);
    if (after === 7) this.present.add(peer);
    else this.present.delete(peer);
    this.onChange?.();
  }

  /** When the last of the peer's three objects appeared (or went), if all did after `since`. */
  complete(peer: number, added: boolean, since: bigint): bigint | undefined {
    const times = (added ? this.added : this.deleted).get(peer);
    if (times === undefined) return undefined;
    let last: bigint | undefined;
    for (const at of times) {
      if (at === undefined || at < since) return undefined;
      if (last === undefined || at > last) last = at;
    }
    return last;
  }

  /** Resolves when `done()` holds, checked after every event; rejects after timeoutMs. */
  until(done: () => boolean, timeoutMs: number, what: string): Promise<void> {
    if (done()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.onChange = undefined;
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      this.onChange = () => {
        if (!done()) return;
        clearTimeout(timer);
        this.onChange = undefined;
        resolve();
      };
    });
  }
}

// ---------------------------------------------------------------------------------------------- agent

export interface AgentSpec {
  /** argv before the flags, e.g. [node, dist/agent/cli/weftd.js] */
  command: string[];
  args: string[];
  logFile: string;
}

interface RunningAgent {
  child: ChildProcess;
  pid: number;
  startedAt: bigint;
  /** Date.now() at the spawn, to compare with the times in weftd's log lines */
  startedAtEpochMs: number;
  /** where this run's lines start in the log file */
  logOffset: number;
  exited: Promise<void>;
}

function startAgent(spec: AgentSpec): RunningAgent {
  appendFileSync(
    spec.logFile,
    `=== ${new Date().toISOString()} (${Date.now()}) probe starts ${[...spec.command, ...spec.args].join(' ')}\n`,
  );
  const logOffset = statSync(spec.logFile).size;
  const fd = openSync(spec.logFile, 'a');
  let child: ChildProcess;
  const startedAtEpochMs = Date.now();
  const startedAt = process.hrtime.bigint();
  try {
    child = spawn(spec.command[0], [...spec.command.slice(1), ...spec.args], { stdio: ['ignore', fd, fd] });
  } finally {
    closeSync(fd);
  }
  if (child.pid === undefined) throw new Error(`could not start ${spec.command.join(' ')}`);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return { child, pid: child.pid, startedAt, startedAtEpochMs, logOffset, exited };
}

/** What weftd's log says about one run: when each message was first logged, and the memory its 'ready' line reports. */
export interface AgentLogTimeline {
  /** message → ms from the spawn to its first line (pino's time, ms resolution) */
  firstMs: Record<string, number>;
  /** the 'ready' line's process.memoryUsage(), MB */
  ready?: { rssMB: number; heapMB: number; heapTotalMB: number; externalMB: number };
}

function agentLogTimeline(spec: AgentSpec, agent: RunningAgent): AgentLogTimeline {
  const timeline: AgentLogTimeline = { firstMs: {} };
  for (const line of readFileSync(spec.logFile).subarray(agent.logOffset).toString('utf8').split('\n')) {
    let entry: { time?: unknown; msg?: unknown; rssMB?: unknown; heapMB?: unknown; heapTotalMB?: unknown; externalMB?: unknown };
    try {
      entry = JSON.parse(line) as typeof entry;
    } catch {
      continue;
    }
    if (typeof entry.time !== 'number' || typeof entry.msg !== 'string') continue;
    timeline.firstMs[entry.msg] ??= entry.time - agent.startedAtEpochMs;
    if (entry.msg === 'ready' && timeline.ready === undefined) {
      timeline.ready = {
        rssMB: Number(entry.rssMB),
        heapMB: Number(entry.heapMB),
        heapTotalMB: Number(entry.heapTotalMB),
        externalMB: Number(entry.externalMB),
      };
    }
  }
  return timeline;
}

async function stopAgent(agent: RunningAgent): Promise<void> {
  if (agent.child.exitCode !== null || agent.child.signalCode !== null) return;
  agent.child.kill('SIGTERM');
  const timer = setTimeout(() => agent.child.kill('SIGKILL'), 10_000);
  await agent.exited;
  clearTimeout(timer);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ----------------------------------------------------------------------------------------------- etcd

function connect(endpoint: string): Etcd3 {
  return new Etcd3({ hosts: endpoint });
}

async function grant(client: Etcd3, ttlSeconds: number): Promise<string> {
  return String((await client.leaseClient.leaseGrant({ TTL: ttlSeconds })).ID);
}

export interface SeedArg {
  etcd: string;
  from: number;
  count: number;
  /** also write the network config */
  config?: boolean;
}

/** Writes `count` synthetic leases (attached to one etcd lease, 128 keys a transaction); returns that lease. */
export async function seed(arg: SeedArg): Promise<{ leaseId: string; ms: number }> {
  const client = connect(arg.etcd);
  try {
    const started = process.hrtime.bigint();
    if (arg.config === true) await client.put(`${BENCH_PREFIX}/config`).value(JSON.stringify(BENCH_NETWORK_CONFIG));
    const leaseId = await grant(client, 24 * 3600);
    const batches: Promise<unknown>[] = [];
    for (let start = arg.from; start < arg.from + arg.count; start += 128) {
      const success: IRequestOp[] = [];
      for (let index = start; index < Math.min(arg.from + arg.count, start + 128); index++) {
        const peer = syntheticPeer(index);
        success.push({ request_put: { key: Buffer.from(leaseKey(peer)), value: Buffer.from(leaseValue(peer)), lease: leaseId } });
      }
      batches.push(client.kv.txn({ compare: [], success }));
      if (batches.length >= 8) await Promise.all(batches.splice(0));
    }
    await Promise.all(batches);
    return { leaseId, ms: msBetween(started, process.hrtime.bigint()) };
  } finally {
    client.close();
  }
}

/** Deletes every synthetic lease attached to `leaseId` by revoking it (a mass expiry). */
export async function unseed(arg: { etcd: string; leaseId: string }): Promise<void> {
  const client = connect(arg.etcd);
  try {
    await client.leaseClient.leaseRevoke({ ID: arg.leaseId });
  } finally {
    client.close();
  }
}

// ------------------------------------------------------------------------------------------ start-up

export interface StartTimesArg {
  /** weftd as it ships, and weftd from tsc's per-module output: argv before the flags */
  shipped: string[];
  modules: string[];
  /** flags for a run that loads everything and then only waits: an etcd endpoint where nothing listens */
  args: string[];
  /** packages whose memory is measured alone: each loaded by a bare node, resolved from this directory */
  dependencies: string[];
  repoRoot: string;
  rounds: number;
}

/** Start-up alone, side by side in each round (the order rotating, so that a drift in load favours none); ms. */
export interface StartTimes {
  /** `node -e 0` */
  node: number[];
  /** `weftd --version` as it ships: node starting, loading weftd, reading its flags */
  version: number[];
  /** the same from tsc's per-module output */
  versionModules: number[];
  /** spawned → 'weftd starting' logged (every module a run uses is loaded then; no work done yet), as it ships */
  loaded: number[];
  /** the same from tsc's per-module output */
  loadedModules: number[];
  /** the CPU time (user + system) of the same runs: less at the mercy of the machine's load than the wall time */
  cpu: { node: number[]; version: number[]; versionModules: number[]; loaded: number[]; loadedModules: number[] };
  /** their peak RSS (VmHWM), kB: as they exit, or at 'weftd starting' */
  peakRssKb: { node: number[]; version: number[]; versionModules: number[]; loaded: number[]; loadedModules: number[] };
  /** peak RSS (kB) of a bare node that loaded only that package, per dependency */
  dependencyRssKb: Record<string, number[]>;
  /** weftd as it ships, profiled until 'weftd starting': CPU ms by where it went (StartOrigin), one entry per run */
  profiles: Record<string, number>[];
}

/**
 * Preloaded (node -r) into the processes that exit by themselves: reports their CPU time (ms) and peak RSS
 * (VmHWM, kB) on fd 3 as they exit.
 */
const AT_EXIT = [
  "process.on('exit', () => { const fs = require('node:fs'); const u = process.cpuUsage();",
  "const hwm = /VmHWM:\\s+(\\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'));",
  'fs.writeSync(3, `${(u.user + u.system) / 1000} ${hwm === null ? NaN : hwm[1]}`); });\n',
].join(' ');

interface StartRun {
  wallMs: number;
  cpuMs: number;
  peakRssKb: number;
}

function timeExit(argv: readonly string[], preload: string): StartRun {
  const started = process.hrtime.bigint();
  const run = spawnSync(argv[0], ['-r', preload, ...argv.slice(1)], { stdio: ['ignore', 'ignore', 'pipe', 'pipe'] });
  const wallMs = msBetween(started, process.hrtime.bigint());
  if (run.status !== 0) throw new Error(`${argv.join(' ')} exited with ${run.status ?? run.signal}: ${run.stderr?.toString().slice(-500)}`);
  const [cpu, hwm] = (run.output[3]?.toString() ?? '').split(' ');
  return { wallMs, cpuMs: Number(cpu), peakRssKb: Number(hwm) };
}

/** Spawns weftd, and kills it once it logs 'weftd starting': ms from the spawn to that line's timestamp, its CPU time and peak RSS then. */
async function timeLoaded(argv: readonly string[]): Promise<StartRun> {
  const startedAtEpochMs = Date.now();
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  try {
    return await new Promise((resolve, reject) => {
      let text = '';
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (chunk: string) => {
        text += chunk;
        const line = text.split('\n').find((candidate) => candidate.includes('"msg":"weftd starting"'));
        if (line !== undefined) {
          resolve({
            wallMs: (JSON.parse(line) as { time: number }).time - startedAtEpochMs,
            cpuMs: cpuMs(child.pid!) ?? NaN,
            peakRssKb: statusKb(child.pid!, 'VmHWM') ?? NaN,
          });
        }
      });
      child.once('exit', (code, signal) =>
        reject(new Error(`${argv.join(' ')} exited (${code ?? signal}) before 'weftd starting': ${text.slice(-500)}`)),
      );
    });
  } finally {
    child.kill('SIGKILL');
    if (child.exitCode === null && child.signalCode === null) await new Promise((resolve) => child.once('exit', resolve));
  }
}

export async function startTimes(arg: StartTimesArg): Promise<StartTimes> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-bench-start-'));
  const preload = join(dir, 'at-exit.cjs');
  writeFileSync(preload, AT_EXIT);
  const resolveFromRepo = createRequire(join(arg.repoRoot, 'package.json')).resolve;
  try {
    const steps: [Exclude<keyof StartTimes, 'cpu' | 'peakRssKb' | 'dependencyRssKb' | 'profiles'>, () => StartRun | Promise<StartRun>][] = [
      ['node', () => timeExit([process.execPath, '-e', '0'], preload)],
      ['version', () => timeExit([...arg.shipped, '--version'], preload)],
      ['versionModules', () => timeExit([...arg.modules, '--version'], preload)],
      ['loaded', () => timeLoaded([...arg.shipped, ...arg.args])],
      ['loadedModules', () => timeLoaded([...arg.modules, ...arg.args])],
    ];
    const times: StartTimes = {
      node: [],
      version: [],
      versionModules: [],
      loaded: [],
      loadedModules: [],
      cpu: { node: [], version: [], versionModules: [], loaded: [], loadedModules: [] },
      peakRssKb: { node: [], version: [], versionModules: [], loaded: [], loadedModules: [] },
      dependencyRssKb: Object.fromEntries(arg.dependencies.map((name) => [name, []])),
      profiles: [],
    };
    for (let round = 0; round < arg.rounds; round++) {
      for (let i = 0; i < steps.length; i++) {
        const [name, step] = steps[(round + i) % steps.length];
        const run = await step();
        times[name].push(run.wallMs);
        times.cpu[name].push(run.cpuMs);
        times.peakRssKb[name].push(run.peakRssKb);
      }
      for (const name of arg.dependencies) {
        const entry = pathToFileURL(resolveFromRepo(name)).href;
        times.dependencyRssKb[name].push(timeExit([process.execPath, '-e', `import(${JSON.stringify(entry)})`], preload).peakRssKb);
      }
    }
    for (let run = 0; run < Math.max(1, Math.ceil(arg.rounds / 3)); run++)
      times.profiles.push(await profileLoaded([...arg.shipped, ...arg.args], join(dir, `profile-${run}`)));
    return times;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Where a CPU profile sample's time went while weftd loads. */
function startOrigin(frame: CpuProfileFrame, sources: SourceMaps): string {
  if (frame.url === '') {
    if (frame.functionName === '(garbage collector)') return START_ORIGIN.gc;
    if (frame.functionName === '(idle)') return 'idle';
    return START_ORIGIN.native;
  }
  if (frame.url.startsWith('node:')) {
    // V8 parsing and compiling an ES module's source: the bundle's chunks
    return frame.functionName === 'compileSourceTextModule' ? START_ORIGIN.compile : START_ORIGIN.node;
  }
  const source = sources.original(frame);
  if (source === undefined) return START_ORIGIN.glue;
  const at = source.lastIndexOf('node_modules/');
  if (at < 0) return START_ORIGIN.weft;
  const [scope, name] = source.slice(at + 'node_modules/'.length).split('/');
  const pkg = scope.startsWith('@') ? `${scope}/${name}` : scope;
  return isEtcdClientPackage(pkg) ? START_ORIGIN.etcd : pkg;
}

interface CpuProfileFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

interface CpuProfile {
  nodes: { id: number; callFrame: CpuProfileFrame }[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** The bundle's source maps, read as needed: which original file a frame of dist/bin is in. */
class SourceMaps {
  private readonly maps = new Map<string, SourceMap | undefined>();

  original(frame: CpuProfileFrame): string | undefined {
    const file = fileURLToPath(frame.url);
    let map = this.maps.get(file);
    if (!this.maps.has(file)) {
      try {
        map = new SourceMap(JSON.parse(readFileSync(`${file}.map`, 'utf8')) as SourceMapPayload);
      } catch {
        map = undefined; // not bundled (tsc's output): the path says it
      }
      this.maps.set(file, map);
    }
    if (map === undefined) return file;
    const entry = map.findEntry(frame.lineNumber, frame.columnNumber) as { originalSource?: string };
    return entry.originalSource;
  }
}

/**
 * Runs weftd under V8's CPU profiler (a sample every 0.1 ms) until it logs 'weftd starting', and sums the samples
 * up to that line by where they went. The profile starts once node has booted (node -e 0 times that part). The
 * profiler slows what it watches, so these are shares rather than the unprofiled times.
 */
async function profileLoaded(argv: readonly string[], dir: string): Promise<Record<string, number>> {
  const child = spawn(argv[0], ['--cpu-prof', `--cpu-prof-dir=${dir}`, '--cpu-prof-interval=100', ...argv.slice(1)], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let text = '';
  let startingUs: number | undefined;
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    text += chunk;
    if (startingUs !== undefined || !text.includes('"msg":"weftd starting"')) return;
    startingUs = Number(process.hrtime.bigint() / 1000n);
    // weftd writes its profile as it exits; its signal handlers are set a moment after that line
    setTimeout(() => child.kill('SIGTERM'), 500).unref();
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  await new Promise((resolve) => child.once('exit', resolve));
  clearTimeout(timer);
  if (startingUs === undefined) throw new Error(`${argv.join(' ')} exited before 'weftd starting': ${text.slice(-500)}`);
  const file = readdirSync(dir).find((name) => name.endsWith('.cpuprofile'));
  if (file === undefined) throw new Error(`${argv.join(' ')} wrote no CPU profile`);
  const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile;
  const frames = new Map(profile.nodes.map((node) => [node.id, node.callFrame]));
  const sources = new SourceMaps();
  const totals: Record<string, number> = {};
  // V8 stamps samples with CLOCK_MONOTONIC in µs, the clock of process.hrtime
  let at = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    at += profile.timeDeltas[i];
    if (at > startingUs) break;
    const origin = startOrigin(frames.get(profile.samples[i])!, sources);
    // a sample stands for the time until the next one
    totals[origin] = (totals[origin] ?? 0) + (profile.timeDeltas[i + 1] ?? 0) / 1000;
  }
  delete totals['idle'];
  return totals;
}

// ----------------------------------------------------------------------------------------- cold start

export interface ColdStartArg {
  agent: AgentSpec;
  peers: number;
  timeoutMs: number;
}

export interface ColdStartRun {
  /** weftd spawned → the last peer's route (with its neighbour and FDB entry) in the kernel */
  totalMs: number;
  /** first synthetic-peer object → last one: the programming phase alone */
  programmingMs: number;
  /** weftd spawned → first synthetic-peer object */
  firstObjectMs: number;
  /** peak RSS (VmHWM) of weftd's main process, and of its child processes together (undefined: it has none), kB */
  rssKb: number;
  childRssKb: number | undefined;
  /** the child processes' command lines */
  childCommands: string[];
  /** CPU time weftd's main process and its child processes had used when the last peer was programmed, ms */
  cpuMs: number;
  childCpuMs: number;
  /** notifications the observer lost (its socket overran); the timing is then from a dump */
  overruns: number;
  /** checked with dumps once the notifications said done */
  verified: { neighbours: number; fdb: number; routes: number };
  /** which route form weft used */
  nexthopRoutes: number;
  /**
   * The same weftd once its code is warm: its device deleted a few seconds after the cold start (taking every peer
   * object with it), times until every peer is programmed again.
   */
  heal: {
    /** device deleted → the last peer's three objects back */
    totalMs: number;
    /** first peer object back → last one: the programming phase with warm code */
    programmingMs: number;
    overruns: number;
  };
  /** the phases weftd logs ('weftd starting' once its modules are loaded, 'using the public interface' once etcd gave it the config, ...) */
  log: AgentLogTimeline;
}

async function kernelCounts(
  kernel: NetlinkKernel,
  device: string,
): Promise<{ neighbours: number; fdb: number; routes: number; nexthopRoutes: number }> {
  const link = await kernel.getLink(device);
  if (link === null) return { neighbours: 0, fdb: 0, routes: 0, nexthopRoutes: 0 };
  const [neighbours, fdb, routes] = await Promise.all([
    kernel.listNeighbours(link.index, 4),
    kernel.listFdb(link.index),
    kernel.listRoutes({ family: 4, protocol: WEFT_PROTOCOL }),
  ]);
  const synthetic = routes.filter((route) => route.dst.endsWith('/30') && peerOfAddress(ipValue(route.dst.split('/')[0])) >= 0);
  return {
    neighbours: neighbours.filter((n) => n.permanent && peerOfAddress(ipValue(n.ip)) >= 0).length,
    fdb: fdb.filter((f) => f.self && f.mac.startsWith('02:19:00:')).length,
    routes: synthetic.length,
    nexthopRoutes: synthetic.filter((route) => route.nexthopId !== null).length,
  };
}

function ipValue(text: string): number {
  return text.split('.').reduce((value, part) => value * 256 + Number(part), 0);
}

/** The peer objects seen added since it was made: when the first and the last of them arrived. */
class Programming {
  readonly times = new PeerTimes();
  first: bigint | undefined;
  last: bigint | undefined;

  record(kind: ObjectKind, added: boolean, peer: number, at: bigint): void {
    if (added) {
      if (this.first === undefined || at < this.first) this.first = at;
      if (this.last === undefined || at > this.last) this.last = at;
    }
    this.times.record(kind, added, peer, at);
  }
}

/**
 * Waits until the notifications say every peer is programmed (or some were lost), then checks with dumps and,
 * if anything is missing, polls until it is there. Returns when the last object arrived and the dumps' counts.
 */
async function untilProgrammed(
  programming: Programming,
  observer: Observer,
  kernel: NetlinkKernel,
  agent: RunningAgent,
  peers: number,
  timeoutMs: number,
): Promise<{ done: bigint; counts: Awaited<ReturnType<typeof kernelCounts>> }> {
  const overrunsBefore = observer.overruns;
  const exited = agent.exited.then(() => {
    throw new Error('weftd exited while programming its peers');
  });
  await Promise.race([
    programming.times.until(
      () => programming.times.present.size >= peers || observer.overruns > overrunsBefore,
      timeoutMs,
      `${peers} peers programmed`,
    ),
    exited,
  ]);
  let done = programming.last!;
  let polled = false;
  let counts = await kernelCounts(kernel, 'weft.1');
  const deadline = Date.now() + timeoutMs;
  while (counts.neighbours < peers || counts.fdb < peers || counts.routes < peers) {
    polled = true;
    if (Date.now() > deadline) throw new Error(`programming incomplete: ${JSON.stringify(counts)} of ${peers}`);
    await sleep(5);
    counts = await kernelCounts(kernel, 'weft.1');
    done = process.hrtime.bigint();
  }
  if (observer.overruns > overrunsBefore && !polled) done = process.hrtime.bigint();
  return { done, counts };
}

/**
 * Starts weftd with `peers` synthetic leases in etcd and times it until every peer is programmed; then deletes
 * its device and times it programming them all again.
 */
export async function coldStart(arg: ColdStartArg): Promise<ColdStartRun> {
  let programming = new Programming();
  const observer = new Observer((kind, added, peer, at) => programming.record(kind, added, peer, at));
  await observer.start();
  const kernel = openKernel();
  const agent = startAgent(arg.agent);
  try {
    const cold = programming;
    const { done, counts } = await untilProgrammed(cold, observer, kernel, agent, arg.peers, arg.timeoutMs);
    const cpuAtDone = cpuMs(agent.pid) ?? NaN;
    const childCpuAtDone = childrenOf(agent.pid)
      .map((pid) => cpuMs(pid) ?? 0)
      .reduce((a, b) => a + b, 0);
    // Peak RSS includes what follows programming (the resync that the device's own notifications cause).
    await sleep(1000);
    const rssKb = statusKb(agent.pid, 'VmHWM') ?? NaN;
    const children = childrenOf(agent.pid);
    const childRssKb = children.length === 0 ? undefined : children.reduce((sum, pid) => sum + (statusKb(pid, 'VmHWM') ?? 0), 0);
    const childCommands = children.map(commandOf);
    const healOverruns = observer.overruns;
    // weftd has turned its optimising compiler on by now ('ready'); let what it optimises settle
    await sleep(2000);
    const device = await kernel.getLink('weft.1');
    if (device === null) throw new Error('weft.1 is gone before the probe deleted it');
    programming = new Programming();
    const deleted = process.hrtime.bigint();
    await kernel.deleteLink(device.index);
    const healed = await untilProgrammed(programming, observer, kernel, agent, arg.peers, arg.timeoutMs);
    return {
      totalMs: msBetween(agent.startedAt, done),
      programmingMs: msBetween(cold.first!, done),
      firstObjectMs: msBetween(agent.startedAt, cold.first!),
      rssKb,
      childRssKb,
      childCommands,
      cpuMs: cpuAtDone,
      childCpuMs: childCpuAtDone,
      overruns: healOverruns,
      verified: { neighbours: counts.neighbours, fdb: counts.fdb, routes: counts.routes },
      nexthopRoutes: counts.nexthopRoutes,
      log: agentLogTimeline(arg.agent, agent),
      heal: {
        totalMs: msBetween(deleted, healed.done),
        programmingMs: msBetween(programming.first!, healed.done),
        overruns: observer.overruns - healOverruns,
      },
    };
  } finally {
    await stopAgent(agent);
    observer.close();
    await kernel.close();
  }
}

export interface WatchedIpBatchArg {
  netns: string;
  peers: number;
  form: BatchForm;
  timeoutMs: number;
}

/**
 * The cold start's baseline under the same instrument as weftd: ip -batch applying the peers' objects while an
 * observer like the one watching weftd's namespace watches this one (each notification it receives is work for
 * the kernel and a process on this machine, as in weftd's runs). Its observed time is the first peer object →
 * the last, as weft's programming phase is timed.
 */
export async function watchedIpBatch(arg: WatchedIpBatchArg): Promise<BatchTiming> {
  const programming = new Programming();
  let observer: Observer | undefined;
  return ipBatch(arg.netns, arg.peers, arg.form, {
    start: async (netns) => {
      observer = new Observer((kind, added, peer, at) => programming.record(kind, added, peer, at), netns);
      await observer.start();
    },
    finish: async () => {
      await programming.times.until(
        () => programming.times.present.size >= arg.peers || observer!.overruns > 0,
        arg.timeoutMs,
        `${arg.peers} peers in the ip -batch namespace`,
      );
      return observer!.overruns > 0 ? undefined : msBetween(programming.first!, programming.last!);
    },
    close: () => observer?.close(),
  });
}

// ---------------------------------------------------------------------------------------- convergence

export interface ConvergenceArg {
  agent: AgentSpec;
  etcd: string;
  /** synthetic peers already in etcd (0 .. base-1) */
  base: number;
  joins: number;
  /** pause between one join converging and the next put */
  gapMs: number;
  timeoutMs: number;
}

export interface ConvergenceRun {
  /** per join: put acknowledged by etcd → route, neighbour and FDB entry all in the kernel (ms) */
  joinFromAckMs: number[];
  /** per join: put sent → the same */
  joinFromSendMs: number[];
  /** per join: put sent → acknowledged (etcd's own latency) */
  putMs: number[];
  /** per leave (the joined peers deleted again, one at a time): delete acknowledged → all three gone */
  leaveFromAckMs: number[];
  /**
   * per join: the probe's own etcd watch delivering the put → all three in the kernel. The probe watches the
   * same prefix as weftd, so this is close to weft's own share (receiving the event to the kernel having it).
   */
  joinFromWatchMs: number[];
  /**
   * per join: the kernel floor. Right after the join converged, the probe writes the same four objects for a peer
   * weftd does not have (neighbour, FDB entry, nexthop, route) on a VXLAN device of its own through weft's kernel
   * layer, in one sendmsg as weftd does; this is from that sendmsg to the three notifications at the observer: what
   * the kernel and the observer take of a join, whoever writes it.
   */
  floorMs: number[];
  /** floor writes the kernel refused or whose notifications did not all come within the timeout */
  floorFailures: number;
  timeouts: number;
  overruns: number;
}

/**
 * The kernel floor's objects (ConvergenceRun.floorMs): a VXLAN device weftd does not manage, routes in a table
 * of their own (weftd reads and repairs the main table only) and nexthop ids far below weft's.
 */
const FLOOR = { device: 'floor.1', vni: 4242, port: 4799, table: 100, nexthopBase: 1_000_000 } as const;

/**
 * Writes floor peer `peer`'s four objects on device `index` in one sendmsg; resolves with the time just before
 * that sendmsg (after the messages were made), or rejects with the kernel's refusal.
 */
async function writeFloor(kernel: NetlinkKernel, index: number, peer: SyntheticPeer): Promise<bigint> {
  const id = FLOOR.nexthopBase + peer.index;
  const written = Promise.all([
    kernel.replaceNeighbour(index, peer.gateway, peer.vtepMac),
    kernel.replaceFdb(index, peer.vtepMac, peer.publicIP),
    kernel.addNexthop({ id, gateway: peer.gateway, ifindex: index, onlink: true, protocol: WEFT_PROTOCOL }),
    kernel.addRoute({ dst: peer.subnet, nexthopId: id, protocol: WEFT_PROTOCOL, table: FLOOR.table }),
  ]);
  const sent = process.hrtime.bigint();
  kernel.flush();
  await written;
  return sent;
}

async function waitForBase(times: PeerTimes, agent: RunningAgent, base: number, timeoutMs: number): Promise<void> {
  const exited = agent.exited.then(() => {
    throw new Error('weftd exited before programming the base peers');
  });
  await Promise.race([times.until(() => times.present.size >= base, timeoutMs, `${base} base peers programmed`), exited]);
}

/** One join at a time: put a new lease, wait until its three objects are in the kernel, note the times. */
export async function convergence(arg: ConvergenceArg): Promise<ConvergenceRun> {
  const times = new PeerTimes();
  const observer = new Observer((kind, added, peer, at) => times.record(kind, added, peer, at));
  await observer.start();
  const client = connect(arg.etcd);
  const agent = startAgent(arg.agent);
  const out: ConvergenceRun = {
    joinFromAckMs: [],
    joinFromSendMs: [],
    putMs: [],
    leaveFromAckMs: [],
    joinFromWatchMs: [],
    floorMs: [],
    floorFailures: 0,
    timeouts: 0,
    overruns: 0,
  };
  const kernel = openKernel();
  let floorIndex: number | undefined;
  const watched = new Map<string, bigint>();
  const watcher = await client.watch().prefix(`${BENCH_PREFIX}/subnets/`).create();
  watcher.on('put', (kv) => {
    const key = kv.key.toString();
    if (!watched.has(key)) watched.set(key, process.hrtime.bigint());
  });
  try {
    await waitForBase(times, agent, arg.base, arg.timeoutMs);
    await sleep(1500); // let the follow-up of the start settle
    floorIndex = (await kernel.createVxlan({ name: FLOOR.device, vni: FLOOR.vni, port: FLOOR.port, up: true })).index;
    const leaseId = await grant(client, 3600);
    const joined: number[] = [];
    for (let j = 0; j < arg.joins; j++) {
      const peer = syntheticPeer(arg.base + j);
      const sent = process.hrtime.bigint();
      await client.kv.put({ key: Buffer.from(leaseKey(peer)), value: Buffer.from(leaseValue(peer)), lease: leaseId });
      const acked = process.hrtime.bigint();
      joined.push(peer.index);
      try {
        await times.until(() => times.complete(peer.index, true, sent) !== undefined, arg.timeoutMs, `peer ${peer.name}`);
        const done = times.complete(peer.index, true, sent)!;
        out.joinFromAckMs.push(msBetween(acked, done));
        out.joinFromSendMs.push(msBetween(sent, done));
        out.putMs.push(msBetween(sent, acked));
        const seen = watched.get(leaseKey(peer));
        if (seen !== undefined) out.joinFromWatchMs.push(msBetween(seen, done));
      } catch {
        out.timeouts++;
      }
      // the floor peers count down from the last synthetic peer: never one in etcd
      const floorPeer = syntheticPeer(MAX_PEERS - 1 - j);
      try {
        const sent = await writeFloor(kernel, floorIndex, floorPeer);
        await times.until(() => times.complete(floorPeer.index, true, sent) !== undefined, arg.timeoutMs, `floor peer ${floorPeer.name}`);
        out.floorMs.push(msBetween(sent, times.complete(floorPeer.index, true, sent)!));
      } catch {
        out.floorFailures++;
      }
      await sleep(arg.gapMs);
    }
    for (const index of joined) {
      const peer = syntheticPeer(index);
      const sent = process.hrtime.bigint();
      await client.kv.deleteRange({ key: Buffer.from(leaseKey(peer)) });
      const acked = process.hrtime.bigint();
      try {
        await times.until(() => times.complete(index, false, sent) !== undefined, arg.timeoutMs, `peer ${peer.name} removed`);
        out.leaveFromAckMs.push(msBetween(acked, times.complete(index, false, sent)!));
      } catch {
        out.timeouts++;
      }
      await sleep(arg.gapMs);
    }
    await client.leaseClient.leaseRevoke({ ID: leaseId }).catch(() => undefined);
    out.overruns = observer.overruns;
    return out;
  } finally {
    await watcher.cancel().catch(() => undefined);
    await stopAgent(agent);
    // its neighbours, FDB entries and nexthops go with it, and the routes with the nexthops
    if (floorIndex !== undefined) await kernel.deleteLink(floorIndex).catch(() => undefined);
    await kernel.close();
    observer.close();
    client.close();
  }
}

// ---------------------------------------------------------------------------------------------- churn

export interface ChurnArg {
  agent: AgentSpec;
  etcd: string;
  /** synthetic peers already in etcd (0 .. base-1); the first to leave */
  base: number;
  /** joins per second, and as many leaves */
  rate: number;
  durationMs: number;
  timeoutMs: number;
}

export interface ChurnRun {
  joins: number;
  leaves: number;
  /** per join / leave: etcd acknowledged → the kernel has all three objects / none of them (ms) */
  joinLagMs: number[];
  leaveLagMs: number[];
  /** per operation: the probe's own etcd watch delivering it → done in the kernel (weft's own share) */
  fromWatchMs: number[];
  /** per operation: etcd's round trip for the put or delete */
  putMs: number[];
  /** operations whose kernel effect never showed within the timeout */
  unconverged: number;
  /** how far behind schedule the last operation was sent (etcd keeping up?) */
  scheduleSlipMs: number;
  /** the kernel state after the churn equals the desired state (the live leases), exactly */
  finalEqual: boolean;
  final: {
    expected: number;
    neighbours: number;
    fdb: number;
    routes: number;
    nexthops: number;
    missingCount: number;
    extraCount: number;
    /** up to 20 examples each */
    missing: string[];
    extra: string[];
  };
  etcdKeys: number;
  overruns: number;
  /** puts or deletes etcd refused or timed out (their operations are not lag samples) */
  etcdErrors: number;
  /** the five slowest operations: when each object showed, from the acknowledgement */
  slowest: { peer: string; op: 'join' | 'leave'; lagMs: number; putMs: number; objectsMs: Record<string, number> }[];
}

/** `rate` joins and `rate` leaves per second against one agent, then a comparison of kernel and desired state. */
export async function churn(arg: ChurnArg): Promise<ChurnRun> {
  const times = new PeerTimes();
  const observer = new Observer((kind, added, peer, at) => times.record(kind, added, peer, at));
  await observer.start();
  const client = connect(arg.etcd);
  const kernel = openKernel();
  const agent = startAgent(arg.agent);
  try {
    await waitForBase(times, agent, arg.base, arg.timeoutMs);
    await sleep(1500);
    // the probe's own watch on the prefix: when etcd delivered each change to a watcher (as it does to weftd)
    const watchedPut = new Map<string, bigint>();
    const watchedDelete = new Map<string, bigint>();
    const watcher = await client.watch().prefix(`${BENCH_PREFIX}/subnets/`).create();
    watcher.on('put', (kv) => {
      const key = kv.key.toString();
      if (!watchedPut.has(key)) watchedPut.set(key, process.hrtime.bigint());
    });
    watcher.on('delete', (kv) => {
      const key = kv.key.toString();
      if (!watchedDelete.has(key)) watchedDelete.set(key, process.hrtime.bigint());
    });
    const leaseId = await grant(client, 3600);
    const live: number[] = Array.from({ length: arg.base }, (_, index) => index);
    let head = 0;
    const joins: { index: number; sent: bigint; acked?: bigint }[] = [];
    const leaves: { index: number; sent: bigint; acked?: bigint }[] = [];
    const inflight: Promise<unknown>[] = [];
    const interval = 1000 / arg.rate;
    const operations = Math.round((arg.durationMs / 1000) * arg.rate);
    const start = performance.now();
    let slip = 0;
    let etcdErrors = 0;
    for (let k = 0; k < operations; k++) {
      const due = start + k * interval;
      const wait = due - performance.now();
      if (wait > 1) await sleep(wait);
      slip = Math.max(0, performance.now() - due);
      const joiner = syntheticPeer(arg.base + k);
      const join: (typeof joins)[number] = { index: joiner.index, sent: process.hrtime.bigint() };
      joins.push(join);
      inflight.push(
        client.kv.put({ key: Buffer.from(leaseKey(joiner)), value: Buffer.from(leaseValue(joiner)), lease: leaseId }).then(
          () => {
            join.acked = process.hrtime.bigint();
          },
          () => {
            etcdErrors++;
          },
        ),
      );
      live.push(joiner.index);
      const leaver = syntheticPeer(live[head++]);
      const leave: (typeof leaves)[number] = { index: leaver.index, sent: process.hrtime.bigint() };
      leaves.push(leave);
      inflight.push(
        client.kv.deleteRange({ key: Buffer.from(leaseKey(leaver)) }).then(
          () => {
            leave.acked = process.hrtime.bigint();
          },
          () => {
            etcdErrors++;
          },
        ),
      );
      if (inflight.length > 256) await Promise.all(inflight.splice(0, 128));
    }
    await Promise.all(inflight);
    const alive = new Set(live.slice(head));
    const unsettled = () =>
      joins.filter((op) => alive.has(op.index) && times.complete(op.index, true, op.sent) === undefined).length +
      leaves.filter((op) => times.complete(op.index, false, op.sent) === undefined).length;
    const settleBy = Date.now() + arg.timeoutMs;
    while (unsettled() > 0 && Date.now() < settleBy) await sleep(20);
    const joinLagMs: number[] = [];
    const leaveLagMs: number[] = [];
    const fromWatchMs: number[] = [];
    const putMs = [...joins, ...leaves].filter((op) => op.acked !== undefined).map((op) => msBetween(op.sent, op.acked!));
    const slowest: ChurnRun['slowest'] = [];
    const note = (op: { index: number; sent: bigint; acked?: bigint }, added: boolean, lag: number) => {
      if (slowest.length >= 5 && lag <= slowest[slowest.length - 1].lagMs) return;
      const times = (added ? timesOf.added : timesOf.deleted).get(op.index) ?? [];
      slowest.push({
        peer: syntheticPeer(op.index).name,
        op: added ? 'join' : 'leave',
        lagMs: lag,
        putMs: op.acked === undefined ? NaN : msBetween(op.sent, op.acked),
        objectsMs: Object.fromEntries(
          OBJECT_KINDS.map((kind, i) => [kind, times[i] === undefined || op.acked === undefined ? NaN : msBetween(op.acked, times[i])]),
        ),
      });
      slowest.sort((a, b) => b.lagMs - a.lagMs);
      slowest.length = Math.min(slowest.length, 5);
    };
    const timesOf = times;
    let unconverged = 0;
    for (const op of joins) {
      // a peer that joined and left again before its join showed is not a lag sample
      const done = times.complete(op.index, true, op.sent);
      if (done !== undefined && op.acked !== undefined) {
        joinLagMs.push(msBetween(op.acked, done));
        note(op, true, msBetween(op.acked, done));
        const seen = watchedPut.get(leaseKey(syntheticPeer(op.index)));
        if (seen !== undefined) fromWatchMs.push(msBetween(seen, done));
      } else if (alive.has(op.index)) unconverged++;
    }
    for (const op of leaves) {
      const done = times.complete(op.index, false, op.sent);
      if (done !== undefined && op.acked !== undefined) {
        leaveLagMs.push(msBetween(op.acked, done));
        note(op, false, msBetween(op.acked, done));
        const seen = watchedDelete.get(leaseKey(syntheticPeer(op.index)));
        if (seen !== undefined) fromWatchMs.push(msBetween(seen, done));
      } else unconverged++;
    }
    // Final state: what the kernel has against what the live leases ask for, compared object by object.
    await sleep(500);
    const final = await compareFinal(kernel, alive);
    const keys = await client.getAll().prefix(`${BENCH_PREFIX}/subnets/198.18.`).keys();
    const syntheticKeys = keys.filter((key) => !key.includes('/198.18.0.'));
    await watcher.cancel().catch(() => undefined);
    await client.leaseClient.leaseRevoke({ ID: leaseId }).catch(() => undefined);
    return {
      joins: joins.length,
      leaves: leaves.length,
      joinLagMs,
      leaveLagMs,
      fromWatchMs,
      putMs,
      unconverged,
      scheduleSlipMs: slip,
      finalEqual: final.missingCount === 0 && final.extraCount === 0 && syntheticKeys.length === alive.size,
      final,
      etcdKeys: syntheticKeys.length,
      overruns: observer.overruns,
      etcdErrors,
      slowest,
    };
  } finally {
    await stopAgent(agent);
    observer.close();
    client.close();
    await kernel.close();
  }
}

async function compareFinal(kernel: NetlinkKernel, alive: ReadonlySet<number>): Promise<ChurnRun['final']> {
  const link = await kernel.getLink('weft.1');
  if (link === null) throw new Error('weft.1 is gone');
  const [neighbours, fdb, routes, nexthops] = await Promise.all([
    kernel.listNeighbours(link.index, 4),
    kernel.listFdb(link.index),
    kernel.listRoutes({ family: 4 }),
    kernel.listNexthops().catch(() => []),
  ]);
  const nexthopById = new Map(nexthops.map((n) => [n.id, n]));
  const have = new Set<string>();
  for (const n of neighbours) have.add(`neigh ${n.ip} ${n.mac ?? '-'}${n.permanent ? '' : ' (not permanent)'}`);
  for (const f of fdb) if (f.self) have.add(`fdb ${f.mac} ${f.dst ?? '-'}`);
  for (const r of routes) {
    if (r.ifindex !== link.index && r.protocol !== WEFT_PROTOCOL) continue;
    if (r.protocol === 2 /* kernel */) continue;
    const nh = r.nexthopId === null ? undefined : nexthopById.get(r.nexthopId);
    const gateway = nh?.gateway ?? r.gateway ?? '-';
    const onlink = nh?.onlink ?? r.onlink;
    have.add(`route ${r.dst} via ${gateway}${onlink ? ' onlink' : ''}`);
  }
  const want = new Set<string>();
  for (const index of alive) {
    const peer = syntheticPeer(index);
    want.add(`neigh ${peer.gateway} ${peer.vtepMac}`);
    want.add(`fdb ${peer.vtepMac} ${peer.publicIP}`);
    want.add(`route ${peer.subnet} via ${peer.gateway} onlink`);
  }
  // the agent's own subnet is not a peer: nothing of it belongs on weft.1
  const missing = [...want].filter((entry) => !have.has(entry));
  const extra = [...have].filter((entry) => !want.has(entry));
  const weftNexthops = nexthops.filter((n) => n.protocol === WEFT_PROTOCOL && n.ifindex === link.index);
  const used = new Set(routes.map((r) => r.nexthopId).filter((id) => id !== null));
  const orphans = weftNexthops.filter((n) => !used.has(n.id));
  for (const n of orphans) extra.push(`nexthop ${n.id} via ${n.gateway ?? '-'} (unused)`);
  return {
    expected: alive.size,
    neighbours: neighbours.length,
    fdb: fdb.filter((f) => f.self).length,
    routes: [...have].filter((entry) => entry.startsWith('route ')).length,
    nexthops: weftNexthops.length,
    missingCount: missing.length,
    extraCount: extra.length,
    missing: missing.slice(0, 20),
    extra: extra.slice(0, 20),
  };
}
