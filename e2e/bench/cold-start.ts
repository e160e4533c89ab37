import { dirname, join } from 'node:path';
import { ETCD_IP } from '../lab/index.js';
import { ipBatch, type BatchTiming } from './ip-batch.js';
import { labNamespace, withBenchLab } from './lab.js';
import type { ColdStartRun, StartTimes } from './probe.js';
import { START_ORIGIN, START_ORIGINS } from './start-origins.js';
import { figure, median } from './stats.js';
import type { Benchmark, BenchmarkResult, Figure } from './types.js';

/** Issue 16: the whole cold start and the peak RSS at N peers. */
const TARGET_SECONDS: Record<number, number> = { 2000: 0.6, 10000: 2 };
const TARGET_RSS_MB: Record<number, number> = { 2000: 70, 10000: 90 };
/** Issue 16: node starting and loading weftd, absolute and against a bare node started in the same run. */
const START_TARGET_SECONDS = 0.2;
const START_TARGET_RATIO = 2;
/** Issue 16: the programming phase against ip -batch applying the same operations. */
const PROGRAMMING_TARGET_RATIO = 1.5;
/**
 * The packages weftd loads for every run, each measured alone in a bare node: what the memory at start is made
 * of (etcd3 brings gRPC and a .proto parser). Name → what is imported; of netlink, weftd imports some modules only.
 */
const DEPENDENCIES: Record<string, string> = {
  etcd3: 'etcd3',
  '@grpc/grpc-js': '@grpc/grpc-js',
  '@grpc/proto-loader': '@grpc/proto-loader',
  pino: 'pino',
  'prom-client': 'prom-client',
  yargs: 'yargs',
  'netlink (the modules weftd imports)': './dist/agent/kernel/netlink-parts.js',
};

interface SizeRuns {
  peers: number;
  weft: ColdStartRun[];
  weftInline: ColdStartRun[];
  /** ip -batch watched by an observer as weftd is, in both route forms */
  batch: BatchTiming[];
  batchInline: BatchTiming[];
  /** ip -batch with nothing listening in its namespace (nexthop form) */
  batchAlone: BatchTiming[];
}

export const benchmark: Benchmark = {
  name: 'cold-start',
  title: 'Cold start with N peers',
  async run(context): Promise<BenchmarkResult> {
    const sizes = context.quick ? [50] : [1000, 2000, 10000];
    const all: SizeRuns[] = [];
    let starts: StartTimes | undefined;
    await withBenchLab(context, async (bench) => {
      const subnetFile = bench.lab.subnetFile(bench.lab.hosts[0]);
      starts = await bench.probe(
        'startTimes',
        {
          shipped: bench.agent().command,
          modules: [process.execPath, join(context.repoRoot, 'dist', 'agent', 'cli', 'weftd.js')],
          // nothing listens on port 1 of the lab's etcd host: weftd loads everything, then waits for etcd
          args: [
            `--etcd-endpoints=http://${ETCD_IP}:1`,
            `--subnet-file=${subnetFile}`,
            `--node-id-file=${join(dirname(subnetFile), 'node-id')}`,
          ],
          dependencies: Object.values(DEPENDENCIES),
          repoRoot: context.repoRoot,
          rounds: context.quick ? 1 : context.runs * 3,
        },
        300_000,
      );
      for (const peers of sizes) {
        const runs = context.quick ? 1 : peers >= 10000 ? Math.max(3, context.runs - 2) : context.runs;
        const seeded = await bench.probe('seed', { etcd: bench.etcd, from: 0, count: peers }, 120_000);
        context.log(`cold start: ${peers} leases written in ${seeded.ms.toFixed(0)} ms; ${runs} runs`);
        const size: SizeRuns = { peers, weft: [], weftInline: [], batch: [], batchInline: [], batchAlone: [] };
        const timeoutMs = 60_000 + peers * 10;
        const weft = async (form: 'nexthop' | 'inline') => {
          const run = await bench.probe(
            'coldStart',
            {
              agent: bench.agent(form === 'inline' ? ['--no-nexthop-objects'] : []),
              peers,
              timeoutMs,
            },
            timeoutMs + 30_000,
          );
          await bench.wipeDevice();
          (form === 'inline' ? size.weftInline : size.weft).push(run);
          return run;
        };
        const batch = async (form: 'nexthop' | 'inline') => {
          const timing = await bench.probe(
            'watchedIpBatch',
            { netns: labNamespace(bench.lab, 'ipb'), peers, form, timeoutMs },
            timeoutMs + 30_000,
          );
          (form === 'inline' ? size.batchInline : size.batch).push(timing);
        };
        const batchAlone = async () => {
          size.batchAlone.push(await ipBatch(labNamespace(bench.lab, 'ipb'), peers, 'nexthop'));
        };
        for (let r = 0; r < runs; r++) {
          // alternate which goes first, so that a drift in the machine's load does not favour one side
          const steps = [() => weft('nexthop'), () => batch('nexthop'), batchAlone, () => weft('inline'), () => batch('inline')];
          if (r % 2 === 1) steps.reverse();
          for (const step of steps) await step();
          const last = size.weft[size.weft.length - 1];
          context.log(
            `  n=${peers} run ${r + 1}: weft ${last.totalMs.toFixed(0)} ms (programming ${last.programmingMs.toFixed(0)} ms, ` +
              `warm ${last.heal.programmingMs.toFixed(0)} ms, ` +
              `${(last.rssKb / 1024).toFixed(0)} MB), ip -batch ${observed(size.batch[size.batch.length - 1]).toFixed(0)} ms ` +
              `(alone ${size.batchAlone[size.batchAlone.length - 1].totalMs.toFixed(0)} ms); ` +
              `inline form: weft ${size.weftInline[size.weftInline.length - 1].totalMs.toFixed(0)} ms, ip -batch ${size.batchInline[size.batchInline.length - 1].totalMs.toFixed(0)} ms`,
          );
        }
        await bench.probe('unseed', { etcd: bench.etcd, leaseId: seeded.leaseId }, 60_000);
        all.push(size);
      }
    });
    return report(all, starts!);
  },
};

/**
 * The CPU profiles' origins, each with its ms per run (0 where a run had none), the largest first; packages under
 * 2 ms (median) together as one.
 */
function startOrigins(starts: StartTimes): { origin: string; samples: number[] }[] {
  const names = [...new Set(starts.profiles.flatMap((profile) => Object.keys(profile)))];
  const all = names.map((origin) => ({ origin, samples: starts.profiles.map((profile) => profile[origin] ?? 0) }));
  const small = all.filter(({ origin, samples }) => !START_ORIGINS.has(origin) && median(samples) < 2);
  const rest = all.filter((entry) => !small.includes(entry));
  if (small.length > 0)
    rest.push({
      origin: `other packages (${small.map(({ origin }) => origin).join(', ')})`,
      samples: starts.profiles.map((_, run) => small.reduce((sum, { samples }) => sum + samples[run], 0)),
    });
  return rest.sort((a, b) => median(b.samples) - median(a.samples));
}

/** ip -batch's first peer object → last as its observer saw them; its processes' run time where the observer lost some. */
function observed(timing: BatchTiming): number {
  return timing.observedMs ?? timing.totalMs;
}

/** ms from the spawn to weftd's first log line with `message`, per run (NaN where it logged none). */
function logged(runs: readonly ColdStartRun[], message: string): number[] {
  return runs.map((run) => run.log.firstMs[message] ?? NaN);
}

function report(all: SizeRuns[], starts: StartTimes): BenchmarkResult {
  const inSeconds = (ms: readonly number[]) => ms.map((value) => value / 1000);
  const perNode = (ms: readonly number[]) => ms.map((value, i) => value / starts.node[i]);
  const perNodeCpu = (ms: readonly number[]) => ms.map((value, i) => value / starts.cpu.node[i]);
  const inMB = (kb: readonly number[]) => kb.map((value) => value / 1024);
  const figures: Figure[] = [
    figure({ id: 'cold-start.node', label: 'node -e 0: a bare node starting', unit: 's', samples: inSeconds(starts.node) }),
    figure({
      id: 'cold-start.version',
      label: 'weftd --version as it ships (dist/bin): node starting, loading weftd and reading its flags',
      unit: 's',
      samples: inSeconds(starts.version),
      target: { op: '<=', value: START_TARGET_SECONDS, source: 'issue 16' },
    }),
    figure({
      id: 'cold-start.version-ratio',
      label: 'weftd --version as it ships / node -e 0',
      unit: '×',
      samples: perNode(starts.version),
      target: { op: '<=', value: START_TARGET_RATIO, source: 'issue 16' },
    }),
    figure({
      id: 'cold-start.version-modules',
      label: "weftd --version from tsc's per-module output (dist/agent/cli/weftd.js)",
      unit: 's',
      samples: inSeconds(starts.versionModules),
    }),
    figure({
      id: 'cold-start.version-modules-ratio',
      label: "weftd --version from tsc's output / node -e 0",
      unit: '×',
      samples: perNode(starts.versionModules),
    }),
    figure({
      id: 'cold-start.module-loading',
      label: "weftd spawned → 'weftd starting' logged, as it ships: node starting and loading every module of a run",
      unit: 's',
      samples: inSeconds(starts.loaded),
      target: { op: '<=', value: START_TARGET_SECONDS, source: 'issue 16' },
    }),
    figure({
      id: 'cold-start.module-loading-ratio',
      label: "weftd spawned → 'weftd starting', as it ships / node -e 0",
      unit: '×',
      samples: perNode(starts.loaded),
      target: { op: '<=', value: START_TARGET_RATIO, source: 'issue 16' },
    }),
    figure({
      id: 'cold-start.module-loading-modules',
      label:
        "weftd spawned → 'weftd starting', from tsc's per-module output (how weftd ran before the bundle; its --version loaded as much)",
      unit: 's',
      samples: inSeconds(starts.loadedModules),
    }),
    figure({
      id: 'cold-start.module-loading-modules-ratio',
      label: "weftd spawned → 'weftd starting', from tsc's output / node -e 0",
      unit: '×',
      samples: perNode(starts.loadedModules),
    }),
    // the same runs' CPU time, which the other processes on the machine disturb less than the wall time
    figure({ id: 'cold-start.cpu.node', label: 'CPU time: node -e 0', unit: 's', samples: inSeconds(starts.cpu.node) }),
    figure({
      id: 'cold-start.cpu.version',
      label: 'CPU time: weftd --version as it ships',
      unit: 's',
      samples: inSeconds(starts.cpu.version),
    }),
    figure({
      id: 'cold-start.cpu.version-ratio',
      label: 'CPU time: weftd --version as it ships / node -e 0',
      unit: '×',
      samples: perNodeCpu(starts.cpu.version),
    }),
    figure({
      id: 'cold-start.cpu.module-loading',
      label: "CPU time: weftd until 'weftd starting', as it ships",
      unit: 's',
      samples: inSeconds(starts.cpu.loaded),
    }),
    figure({
      id: 'cold-start.cpu.module-loading-ratio',
      label: "CPU time: weftd until 'weftd starting', as it ships / node -e 0",
      unit: '×',
      samples: perNodeCpu(starts.cpu.loaded),
    }),
    figure({
      id: 'cold-start.cpu.module-loading-modules-ratio',
      label: "CPU time: weftd until 'weftd starting', from tsc's output / node -e 0",
      unit: '×',
      samples: perNodeCpu(starts.cpu.loadedModules),
    }),
    // memory before any work: what a bare node takes, what weftd's modules add, and which packages that is
    figure({ id: 'cold-start.rss.node', label: 'peak RSS: node -e 0', unit: 'MB', samples: inMB(starts.peakRssKb.node) }),
    figure({
      id: 'cold-start.rss.version',
      label: 'peak RSS: weftd --version as it ships',
      unit: 'MB',
      samples: inMB(starts.peakRssKb.version),
    }),
    figure({
      id: 'cold-start.rss.module-loading',
      label: "peak RSS: weftd at 'weftd starting' (every module of a run loaded, no work done), as it ships",
      unit: 'MB',
      samples: inMB(starts.peakRssKb.loaded),
    }),
    ...Object.entries(DEPENDENCIES).map(([name, specifier]) =>
      figure({
        id: `cold-start.rss.dependency.${name.split(' ')[0]}`,
        label: `peak RSS: a bare node that loaded ${name} alone, over node -e 0`,
        unit: 'MB',
        samples: starts.dependencyRssKb[specifier].map((kb, i) => (kb - starts.peakRssKb.node[i]) / 1024),
      }),
    ),
    ...startOrigins(starts).map(({ origin, samples }) =>
      figure({
        id: `cold-start.profile.${origin.split(' ')[0].replace(/[^a-z0-9]/gi, '')}`,
        label: `CPU until 'weftd starting' (profiled), ${origin}`,
        unit: 's',
        samples: samples.map((ms) => ms / 1000),
      }),
    ),
  ];
  const notes: string[] = [];
  for (const size of all) {
    const n = size.peers;
    const seconds = TARGET_SECONDS[n];
    const rssMB = TARGET_RSS_MB[n];
    const id = `cold-start.n${n}`;
    const ratio = (a: readonly number[], b: readonly number[]) => a.map((value, i) => value / b[i]);
    const weftTotal = size.weft.map((run) => run.totalMs);
    const weftProgramming = size.weft.map((run) => run.programmingMs);
    const batchTotal = size.batchAlone.map((run) => run.totalMs);
    const batchWatched = size.batch.map(observed);
    const healProgramming = size.weft.map((run) => run.heal.programmingMs);
    figures.push(
      figure({
        id: `${id}.weft`,
        label: `N=${n}: weftd start → every peer programmed`,
        unit: 's',
        samples: weftTotal.map((ms) => ms / 1000),
        ...(seconds === undefined ? {} : { target: { op: '<=', value: seconds, source: 'issue 16' } }),
      }),
      figure({
        id: `${id}.weft-programming`,
        label: `N=${n}: weft's programming phase (first peer object → last)`,
        unit: 's',
        samples: weftProgramming.map((ms) => ms / 1000),
      }),
      figure({
        id: `${id}.ip-batch`,
        label: `N=${n}: ip -batch, same operations, nothing listening in its namespace`,
        unit: 's',
        samples: batchTotal.map((ms) => ms / 1000),
      }),
      figure({
        id: `${id}.ip-batch-watched`,
        label: `N=${n}: ip -batch watched by the probe's observer as weftd is (first peer object → last)`,
        unit: 's',
        samples: batchWatched.map((ms) => ms / 1000),
      }),
      figure({
        id: `${id}.ratio`,
        label: `N=${n}: weft whole cold start / ip -batch`,
        unit: '×',
        samples: ratio(weftTotal, batchTotal),
        target: { op: '<=', value: 1.5, source: 'issue 7' },
      }),
      figure({
        id: `${id}.programming-ratio`,
        label: `N=${n}: weft programming phase / ip -batch, both watched by the same observer`,
        unit: '×',
        samples: ratio(weftProgramming, batchWatched),
        target: { op: '<=', value: PROGRAMMING_TARGET_RATIO, source: 'issue 16' },
      }),
      figure({
        id: `${id}.programming-ratio-alone`,
        label: `N=${n}: weft programming phase / ip -batch with nothing listening`,
        unit: '×',
        samples: ratio(weftProgramming, batchTotal),
      }),
      figure({
        id: `${id}.heal`,
        label: `N=${n}: the same weftd once its code is warm: its device deleted → every peer programmed again`,
        unit: 's',
        samples: size.weft.map((run) => run.heal.totalMs / 1000),
      }),
      figure({
        id: `${id}.heal-programming`,
        label: `N=${n}: programming phase with warm code (after the device was deleted)`,
        unit: 's',
        samples: healProgramming.map((ms) => ms / 1000),
      }),
      figure({
        id: `${id}.heal-programming-ratio`,
        label: `N=${n}: programming phase with warm code / ip -batch watched`,
        unit: '×',
        samples: ratio(healProgramming, batchWatched),
      }),
      figure({
        id: `${id}.rss`,
        label: `N=${n}: weftd peak RSS (main process)`,
        unit: 'MB',
        samples: size.weft.map((run) => run.rssKb / 1024),
        ...(rssMB === undefined ? {} : { target: { op: '<=', value: rssMB, source: 'issue 16' } }),
      }),
      figure({
        id: `${id}.cpu`,
        label: `N=${n}: CPU time weftd had used when the last peer was programmed`,
        unit: 's',
        samples: size.weft.map((run) => run.cpuMs / 1000),
      }),
      figure({
        id: `${id}.phase.config`,
        label: `N=${n}: weftd spawned → config read from etcd ('using the public interface')`,
        unit: 's',
        samples: inSeconds(logged(size.weft, 'using the public interface')),
      }),
      figure({
        id: `${id}.phase.lease`,
        label: `N=${n}: weftd spawned → own lease held, the leases listed ('holding a subnet lease')`,
        unit: 's',
        samples: inSeconds(logged(size.weft, 'holding a subnet lease')),
      }),
      figure({
        id: `${id}.phase.first-object`,
        label: `N=${n}: weftd spawned → first peer object in the kernel`,
        unit: 's',
        samples: inSeconds(size.weft.map((run) => run.firstObjectMs)),
      }),
      figure({
        id: `${id}.heap`,
        label: `N=${n}: weftd's heap used when ready ('ready' line)`,
        unit: 'MB',
        samples: size.weft.map((run) => run.log.ready?.heapMB ?? NaN),
      }),
    );
    // weftd's children: the nft session of the ingress allow-list (and the kernel monitor where weft's addon is not built)
    const commands = [...new Set(size.weft.flatMap((run) => run.childCommands))];
    if (commands.length > 0) {
      figures.push(
        figure({
          id: `${id}.child-rss`,
          label: `N=${n}: peak RSS of weftd's child processes (${commands.join(', ')})`,
          unit: 'MB',
          samples: size.weft.map((run) => (run.childRssKb ?? 0) / 1024),
        }),
        figure({
          id: `${id}.total-rss`,
          label: `N=${n}: peak RSS of weftd and its child processes together`,
          unit: 'MB',
          samples: size.weft.map((run) => (run.rssKb + (run.childRssKb ?? 0)) / 1024),
        }),
        figure({
          id: `${id}.child-cpu`,
          label: `N=${n}: CPU time of weftd's child processes by then`,
          unit: 's',
          samples: size.weft.map((run) => run.childCpuMs / 1000),
        }),
      );
    } else {
      notes.push(`N=${n}: weftd ran no child process, so its RSS and CPU are the whole agent's.`);
    }
    figures.push(
      figure({
        id: `${id}.inline.weft`,
        label: `N=${n}, flannel's route form (--no-nexthop-objects): weftd cold start`,
        unit: 's',
        samples: size.weftInline.map((run) => run.totalMs / 1000),
      }),
      figure({
        id: `${id}.inline.ip-batch`,
        label: `N=${n}, flannel's route form: ip -batch (watched)`,
        unit: 's',
        samples: size.batchInline.map((run) => run.totalMs / 1000),
      }),
      figure({
        id: `${id}.inline.ratio`,
        label: `N=${n}, flannel's route form: weft / ip -batch`,
        unit: '×',
        samples: ratio(
          size.weftInline.map((run) => run.totalMs),
          size.batchInline.map((run) => run.totalMs),
        ),
      }),
    );
    const coldRatio = median(ratio(weftProgramming, batchWatched));
    const warmRatio = median(ratio(healProgramming, batchWatched));
    // both by the ip processes' run time
    const listenerCost = median(size.batch.map((run) => run.totalMs)) / median(batchTotal) - 1;
    let programmingNote =
      `N=${n}: the programming phase is ${coldRatio.toFixed(2)} × ip -batch (both watched) at the cold start and ${warmRatio.toFixed(2)} × ` +
      `when the same weftd programs the same peers again with warm code (${(median(healProgramming) / 1000).toFixed(3)} s against ` +
      `${(median(weftProgramming) / 1000).toFixed(3)} s). One listener (the observer) makes ip -batch ${Math.round(100 * listenerCost)} % slower ` +
      'than with nothing listening.';
    if (coldRatio > PROGRAMMING_TARGET_RATIO) {
      programmingNote +=
        warmRatio <= PROGRAMMING_TARGET_RATIO
          ? ' With warm code weftd is within the target: what the cold start adds is code running for the first time (V8 ' +
            'interpreting it, compiling each function at its first call, its inline caches still empty) and the garbage ' +
            'collections of the start. Next step: less work per request on that path (no promise per request, encoding ' +
            'straight into the batch buffer), which cold code pays for most.'
          : " Warm code is over the target as well, so the work per request bounds it: weftd's encoding and bookkeeping, " +
            "the kernel's answers, and the notifications to weftd's own monitor that the kernel cannot drop (FDB " +
            'notifications carry no sender port). Next step: no promise per request (apply → kernel → socket callback) and ' +
            'encoding straight into the batch buffer.';
    }
    notes.push(programmingNote);
    const overruns = [...size.weft, ...size.weftInline].reduce((sum, run) => sum + run.overruns + run.heal.overruns, 0);
    if (overruns > 0)
      notes.push(`N=${n}: the observer's notification socket overran ${overruns} time(s); those runs were timed by polling dumps (±5 ms).`);
    const inlineUsed = size.weft.filter((run) => run.nexthopRoutes < n).length;
    if (inlineUsed > 0) notes.push(`N=${n}: ${inlineUsed} run(s) did not use nexthop objects for every route (kernel without them?).`);
    const loading = median(logged(size.weft, 'weftd starting')) / 1000;
    notes.push(
      `N=${n}: node starting and loading weftd's modules (spawned → 'weftd starting', ${loading.toFixed(2)} s) is ${Math.round((100 * loading * 1000) / median(weftTotal))} % of the whole cold start, ` +
        `${(loading / (median(batchTotal) / 1000)).toFixed(1)} × what ip -batch takes for everything.`,
    );
    const atStartMB = median(starts.peakRssKb.loaded) / 1024;
    notes.push(
      `N=${n}: ${Math.round((100 * atStartMB * 1024) / median(size.weft.map((run) => run.rssKb)))} % of weftd's peak RSS (${atStartMB.toFixed(0)} MB) is there at 'weftd starting', ` +
        `before any work: node itself and the modules loaded.`,
    );
    const batchSplit = size.batchAlone.map((b) => `${b.neighbourMs.toFixed(0)}/${b.fdbMs.toFixed(0)}/${b.routeMs.toFixed(0)}`).join(', ');
    const inlineSplit = size.batchInline.map((b) => `${b.neighbourMs.toFixed(0)}/${b.fdbMs.toFixed(0)}/${b.routeMs.toFixed(0)}`).join(', ');
    notes.push(
      `N=${n}: ip -batch neighbours/FDB/routes in ms per run: nexthop form, nothing listening ${batchSplit}; inline form, watched ${inlineSplit}.`,
    );
    const unobserved = [...size.batch, ...size.batchInline].filter((timing) => timing.observedMs === undefined).length;
    if (unobserved > 0)
      notes.push(
        `N=${n}: in ${unobserved} ip -batch run(s) the observer lost notifications; those are timed by the ip processes' run time.`,
      );
  }
  const origins = startOrigins(starts);
  const profiled = origins.reduce((sum, { samples }) => sum + median(samples), 0);
  const share = (origin: string) => median(origins.find((entry) => entry.origin === origin)?.samples ?? [0]);
  const loadedRatio = median(perNode(starts.loaded));
  notes.push(
    `Start: weftd has loaded every module of a run ('weftd starting') ${loadedRatio.toFixed(2)} × as late as node -e 0 has exited` +
      (loadedRatio > START_TARGET_RATIO ? ` (target ${START_TARGET_RATIO.toFixed(2)} ×). ` : '. ') +
      `A CPU profile of that part after node's boot (${profiled.toFixed(0)} ms profiled) says where it goes: ` +
      origins.map(({ origin, samples }) => `${origin} ${median(samples).toFixed(0)} ms`).join(', ') +
      '.' +
      (loadedRatio > START_TARGET_RATIO
        ? ' Three of them come with what weft loads, not with what its code does: V8 compiling the bundle, node loading ' +
          "its own modules (http2, tls and net among them, for gRPC) and etcd's client setting up (protobufjs building etcd's " +
          `API from its definitions): ${(share(START_ORIGIN.compile) + share(START_ORIGIN.node) + share(START_ORIGIN.etcd)).toFixed(0)} ms. ` +
          'Next step: a V8 startup snapshot of weftd (node --build-snapshot; the native addons loaded after it), which skips ' +
          "compiling and setting up what it holds, or an etcd client on etcd's JSON gateway over node's http, without gRPC or protobufjs."
        : ''),
  );
  const nodeMB = median(starts.peakRssKb.node) / 1024;
  const heaviest = Object.entries(DEPENDENCIES)
    .map(([name, specifier]) => ({ name, mb: median(starts.dependencyRssKb[specifier]) / 1024 - nodeMB }))
    .sort((a, b) => b.mb - a.mb)
    .map(({ name, mb }) => `${name} ${mb.toFixed(0)} MB`);
  notes.push(
    `Memory before any work: a bare node peaks at ${nodeMB.toFixed(0)} MB and weftd at 'weftd starting' at ${(median(starts.peakRssKb.loaded) / 1024).toFixed(0)} MB. ` +
      `Loaded alone, over a bare node: ${heaviest.join(', ')} (each alone also pays for node's module loader, so they overlap). ` +
      'A peak RSS target below what weftd holds at start can only be met by loading less. etcd3 is the most: grpc-js ' +
      "brings node's http2 and TLS, protobufjs its reflection of etcd's API. The next step is an etcd client on etcd's " +
      "JSON gateway (/v3/kv/range, /v3/watch, /v3/lease/*, served on the same port) over node's http, which needs none of them.",
  );
  return {
    name: 'cold-start',
    title: 'Cold start with N peers',
    method: [
      'N synthetic peer leases (subnets /30 of 198.18.0.0/16, public IPs in 198.19.0.0/16, never contacted) are in etcd before',
      "weftd starts on a lab host. A probe process in the host's namespace spawns weftd and watches the kernel through an",
      'rtnetlink notification socket of its own (a child that stamps each notification with CLOCK_MONOTONIC as it arrives); the',
      "time is from the spawn to the notification that completes the last peer's neighbour,",
      "FDB entry and route (checked against dumps afterwards). It includes node's start, loading the modules, the etcd",
      'round trips, iptables and the programming itself. The *programming phase* is from the first peer object to the last.',
      "weftd runs as it ships (package.json's bin: the bundle in dist/bin). Node's start and the module loading alone are timed",
      'before the runs by the probe on the lab host, side by side in rounds of rotating order: `node -e 0`; `weftd --version`',
      "(node, weftd and its flags: the agent's modules load only for a run); and the time from the spawn to weftd's",
      "'weftd starting' line, logged once every module a run uses is loaded and before any work (pino's timestamp, ms",
      'resolution; weftd is pointed at an etcd port where nothing listens, and killed at that line). The last two both as weftd',
      "ships and from tsc's per-module output (dist/agent/cli/weftd.js), which is how it shipped before the bundle. With each",
      'the CPU time (user + system) it used: reported by the process itself as it exits (a preloaded `node -r` hook), or read',
      "from /proc at the 'weftd starting' line (10 ms ticks), and its peak RSS (VmHWM) read the same ways. In each round a bare",
      "node also loads each package weftd loads for every run alone (its peak RSS over `node -e 0`'s in the same round):",
      'what the memory weftd has before any work is made of. The phases',
      "of the cold-start runs are likewise taken from weftd's log lines, and its heap from the 'ready' line.",
      'Peak RSS is VmHWM of the weftd process one second after the last peer is programmed; CPU time is utime + stime of the',
      'weftd process (and separately of its child processes: the nft session that keeps the ingress allow-list) when the last peer was programmed.',
      "Three seconds after the last peer is programmed (weftd has turned V8's optimising compiler on when ready), the probe",
      'deletes the VXLAN device under the running weftd and times it again: from the deletion, and from the first peer',
      "object back to the last (the programming phase with warm code); the device's deletion takes every peer object with it.",
      'Between runs the VXLAN device is deleted (taking every peer object with it); the host keeps its own lease, as after a reboot.',
      'The baseline, in the same run and alternating order, is `ip -batch` (neighbours, nexthops + routes) and `bridge -batch` (FDB)',
      "applying the same operations in a fresh namespace with the same VXLAN device, once in weft's route form (nexthop objects)",
      "and once in flannel's (`via <gw> onlink` per route); weft is also run with `--no-nexthop-objects` against the latter.",
      "The probe's observer watches that namespace too, as it watches weftd's, and times ip -batch the same way (first peer",
      'object → last): every notification it receives is work for the kernel and for a process on this 2-core machine, in',
      "weftd's runs as in the baseline. weftd's own kernel monitor is a listener as well, and its cost is weft's. For reference",
      "ip -batch also runs (nexthop form) with nothing listening in its namespace, timed by its processes' run time.",
    ].join(' '),
    figures,
    notes,
    details: all,
  };
}
