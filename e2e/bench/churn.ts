import { withBenchLab } from './lab.js';
import type { ChurnRun } from './probe.js';
import { figure, percentile, perRun } from './stats.js';
import type { Benchmark, BenchmarkResult } from './types.js';

export const benchmark: Benchmark = {
  name: 'churn',
  title: 'Churn: joins and leaves at a steady rate',
  async run(context): Promise<BenchmarkResult> {
    const base = context.quick ? 50 : 1000;
    const rate = context.quick ? 50 : 200;
    const durationMs = context.quick ? 2000 : 30_000;
    const runs = context.quick ? 1 : Math.min(3, context.runs);
    const results: ChurnRun[] = [];
    await withBenchLab(context, async (bench) => {
      for (let r = 0; r < runs; r++) {
        const seeded = await bench.probe('seed', { etcd: bench.etcd, from: 0, count: base }, 120_000);
        const run = await bench.probe(
          'churn',
          { agent: bench.agent(), etcd: bench.etcd, base, rate, durationMs, timeoutMs: 15_000 },
          durationMs + 180_000,
        );
        await bench.wipeDevice();
        await bench.probe('unseed', { etcd: bench.etcd, leaseId: seeded.leaseId }, 60_000);
        results.push(run);
        const lags = [...run.joinLagMs, ...run.leaveLagMs];
        context.log(
          `churn run ${r + 1}: ${run.joins} joins + ${run.leaves} leaves, lag p50 ${percentile(lags, 50).toFixed(2)} ms, ` +
            `p99 ${percentile(lags, 99).toFixed(2)} ms, max ${Math.max(...lags).toFixed(1)} ms; final state ${run.finalEqual ? 'equal' : 'DIFFERENT'} ` +
            `(${run.final.expected} peers; ${run.final.missingCount} missing, ${run.final.extraCount} extra)`,
        );
        if (process.env.WEFT_BENCH_DEBUG === '1') context.log(`slowest: ${JSON.stringify(run.slowest)}`);
      }
    });
    const lags = (run: ChurnRun) => [...run.joinLagMs, ...run.leaveLagMs];
    const per = (pick: (run: ChurnRun) => number[], p: number | 'max') => perRun(results, pick, p);
    const notes: string[] = [];
    for (const [i, run] of results.entries()) {
      if (!run.finalEqual) {
        notes.push(
          `run ${i + 1}: the final kernel state differs from the live leases: missing ${run.final.missing.join('; ')}; extra ${run.final.extra.join('; ')}` +
            ` (etcd holds ${run.etcdKeys} synthetic leases, ${run.final.expected} expected).`,
        );
      }
      if (run.unconverged > 0) notes.push(`run ${i + 1}: ${run.unconverged} operation(s) never showed in the kernel within 15 s.`);
      if (run.scheduleSlipMs > 50)
        notes.push(`run ${i + 1}: the load generator fell ${run.scheduleSlipMs.toFixed(0)} ms behind its schedule at the end.`);
      if (run.etcdErrors > 0) notes.push(`run ${i + 1}: etcd refused or timed out ${run.etcdErrors} put(s) or delete(s).`);
      if (run.overruns > 0)
        notes.push(`run ${i + 1}: the observer's notification socket overran ${run.overruns} time(s); some lag samples may be missing.`);
    }
    return {
      name: 'churn',
      title: 'Churn: joins and leaves at a steady rate',
      method: [
        `With ${base} peers programmed, the probe adds ${rate} new leases and deletes ${rate} existing ones (oldest first) per second,`,
        `one of each every ${(1000 / rate).toFixed(0)} ms, for ${durationMs / 1000} s, without waiting for the agent. The lag of an`,
        'operation is from etcd acknowledging it to the notification that completes it in the kernel (all three objects there, or',
        "all three gone), timed by the same probe process; weft's own share is from the probe's own etcd watch delivering the",
        'change (as etcd delivers it to weftd) to the same notification. Afterwards the kernel state on the host is compared object by object',
        '(neighbour → MAC, FDB MAC → public IP, route → gateway onlink, and no unused weft nexthop) with what the live leases ask for.',
        'The agent runs with its default 30 s full resync, so a resync falls inside most runs.',
      ].join(' '),
      figures: [
        figure({ id: 'churn.lag.p50', label: 'lag (joins and leaves), p50', unit: 'ms', samples: per(lags, 50) }),
        figure({ id: 'churn.lag.p99', label: 'lag (joins and leaves), p99', unit: 'ms', samples: per(lags, 99) }),
        figure({ id: 'churn.lag.max', label: 'lag (joins and leaves), max', unit: 'ms', samples: per(lags, 'max') }),
        figure({
          id: 'churn.from-watch.p50',
          label: "lag from a watcher's event (weft's own share), p50",
          unit: 'ms',
          samples: per((run) => run.fromWatchMs, 50),
        }),
        figure({
          id: 'churn.from-watch.p99',
          label: "lag from a watcher's event (weft's own share), p99",
          unit: 'ms',
          samples: per((run) => run.fromWatchMs, 99),
        }),
        figure({
          id: 'churn.put.p99',
          label: 'etcd put / delete round trip under the churn, p99',
          unit: 'ms',
          samples: per((run) => run.putMs, 99),
        }),
        figure({ id: 'churn.join.p99', label: 'join lag, p99', unit: 'ms', samples: per((run) => run.joinLagMs, 99) }),
        figure({ id: 'churn.leave.p99', label: 'leave lag, p99', unit: 'ms', samples: per((run) => run.leaveLagMs, 99) }),
        figure({
          id: 'churn.operations',
          label: 'operations per run (joins + leaves)',
          unit: 'ops',
          samples: results.map((run) => run.joins + run.leaves),
        }),
        figure({
          id: 'churn.final-equal',
          label: 'final kernel state equals the desired state (1 = yes)',
          unit: '',
          samples: results.map((run) => (run.finalEqual ? 1 : 0)),
          target: { op: '>=', value: 1, source: 'issue 7' },
        }),
      ],
      notes,
      details: results.map((run) => ({ ...run, joinLagMs: undefined, leaveLagMs: undefined, fromWatchMs: undefined, putMs: undefined })),
    };
  },
};
