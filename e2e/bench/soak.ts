import { withBenchLab } from './lab.js';
import { runSoak, type SoakResult } from './soak-driver.js';
import { figure } from './stats.js';
import type { Benchmark, BenchmarkResult } from './types.js';

const TITLE = 'Soak: one agent under peer churn, then its state and memory';

export const benchmark: Benchmark = {
  name: 'soak',
  title: TITLE,
  async run(context): Promise<BenchmarkResult> {
    const population = context.quick ? 50 : 1000;
    const rate = context.quick ? 100 : 500;
    const durationMs = context.quick ? 2_000 : 60_000;
    const warmupMs = context.quick ? 1_000 : 15_000;
    const settleMs = context.quick ? 2_000 : 15_000;
    // one long run: a soak is about what accumulates, not about the spread between runs
    const result: SoakResult = await withBenchLab(context, (bench) =>
      runSoak(bench.lab, {
        population,
        rate,
        durationMs,
        warmupMs,
        settleMs,
        convergeTimeoutMs: 120_000,
        log: context.log,
        ...(process.env.WEFT_SOAK_HEAP_SNAPSHOTS ? { heapSnapshotDir: process.env.WEFT_SOAK_HEAP_SNAPSHOTS } : {}),
      }),
    );
    const notes: string[] = [];
    const { load, final } = result;
    if (load.joins + load.leaves < load.scheduled)
      notes.push(`only ${load.joins + load.leaves} of ${load.scheduled} events were acknowledged by etcd (${load.failed} failed).`);
    if (load.achievedRate < rate * 0.98)
      notes.push(
        `the load generator achieved ${load.achievedRate.toFixed(0)} events/s, below the ${rate}/s asked for (it fell up to ${load.maxSlipMs.toFixed(0)} ms behind its schedule).`,
      );
    if (!final.equal)
      notes.push(`the final kernel state differs from the leases: missing ${final.missing.join('; ')}; extra ${final.extra.join('; ')}.`);
    const mib = (kb: number) => kb / 1024;
    return {
      name: 'soak',
      title: TITLE,
      method: [
        `weftd (vxlan backend, default 30 s resync) runs in a lab host with ${population} synthetic peers. A load generator in the same`,
        `host writes ${rate} events per second to etcd, joins (a new lease) and leaves (the oldest lease deleted) alternating, so the`,
        `population stays at ${population} while it moves; it does not wait for the agent. First a ${warmupMs / 1000} s warm-up churn,`,
        `then, once the kernel matches the leases and after ${settleMs / 1000} s of quiet, the start memory figure; then the churn of`,
        `${durationMs / 1000} s; then, once the kernel matches the leases again and after the same ${settleMs / 1000} s, the end figure.`,
        "RSS is the median of the VmRSS samples (every 250 ms, /proc/<pid>/status of weftd's main process) in the last 5 s of each",
        'settle period; then the agent is made to run a low-memory garbage collection (DevTools `HeapProfiler.collectGarbage` through',
        'its inspector, opened with SIGUSR1 before the warm-up) and RSS and heap used (`nodejs_heap_size_used_bytes`) are read again:',
        "what it retains, independent of when V8's memory reducer runs by itself. The final state is `ip -j neigh`/`bridge -j fdb`/",
        '`ip -j route`/`ip -j nexthop`/`nft -j list set` in the namespace compared object by object with what the leases in etcd ask for, computed',
        "independently of weft's code. Per-operation lag is the churn benchmark's subject; here the figure is how long after the",
        'load generator finished the kernel matched the leases (at most: it includes reading the leases and the dumps).',
      ].join(' '),
      figures: [
        figure({
          id: 'soak.events',
          label: 'events acknowledged by etcd (joins + leaves)',
          unit: 'events',
          samples: [load.joins + load.leaves],
        }),
        figure({
          id: 'soak.rate',
          label: 'achieved event rate',
          unit: 'events/s',
          samples: [load.achievedRate],
          target: { op: '>=', value: rate * 0.98, source: 'issue 6' },
        }),
        figure({
          id: 'soak.converge',
          label: 'kernel matches the leases, after the churn (at most)',
          unit: 'ms',
          samples: [result.convergeMs ?? NaN],
        }),
        figure({
          id: 'soak.final-equal',
          label: 'final kernel state equals the desired state (1 = yes)',
          unit: '',
          samples: [final.equal ? 1 : 0],
          target: { op: '>=', value: 1, source: 'issue 6' },
        }),
        figure({
          id: 'soak.rss.start',
          label: 'RSS before the churn (after the warm-up)',
          unit: 'MiB',
          samples: [mib(result.start.rssKb)],
        }),
        figure({ id: 'soak.rss.peak', label: 'RSS, highest sample during the churn', unit: 'MiB', samples: [mib(result.peakRssKb)] }),
        figure({ id: 'soak.rss.end', label: 'RSS after the churn and the settle period', unit: 'MiB', samples: [mib(result.end.rssKb)] }),
        figure({
          id: 'soak.rss.ratio',
          label: 'RSS end / start',
          unit: '',
          samples: [result.rssRatio],
          target: { op: '<=', value: 1.1, source: 'issue 6' },
        }),
        figure({
          id: 'soak.rss-gc.start',
          label: 'RSS before the churn, after a forced GC',
          unit: 'MiB',
          samples: [mib(result.start.rssAfterGcKb)],
        }),
        figure({
          id: 'soak.rss-gc.end',
          label: 'RSS after the churn, after a forced GC',
          unit: 'MiB',
          samples: [mib(result.end.rssAfterGcKb)],
        }),
        figure({
          id: 'soak.rss-gc.ratio',
          label: 'RSS after a forced GC, end / start',
          unit: '',
          samples: [result.rssAfterGcRatio],
          target: { op: '<=', value: 1.1, source: 'issue 6' },
        }),
        figure({
          id: 'soak.heap.ratio',
          label: 'heap used after a forced GC, end / start',
          unit: '',
          samples: [result.heapRatio ?? NaN],
          target: { op: '<=', value: 1.1, source: 'issue 6' },
        }),
      ],
      notes,
      details: result,
    };
  },
};
