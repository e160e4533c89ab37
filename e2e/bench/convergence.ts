import { withBenchLab } from './lab.js';
import type { ConvergenceRun } from './probe.js';
import { figure, median, percentile, perRun } from './stats.js';
import type { Benchmark, BenchmarkResult } from './types.js';

/** Issue 16: a lease put acknowledged → its route, neighbour and FDB entry in the kernel. */
const JOIN_TARGET_P50_MS = 0.5;
const JOIN_TARGET_P99_MS = 3;

export const benchmark: Benchmark = {
  name: 'convergence',
  title: 'Convergence: a new lease to kernel state',
  async run(context): Promise<BenchmarkResult> {
    const base = context.quick ? 20 : 1000;
    const joins = context.quick ? 10 : 200;
    const runs = context.quick ? 1 : context.runs;
    const results: ConvergenceRun[] = [];
    await withBenchLab(context, async (bench) => {
      await bench.probe('seed', { etcd: bench.etcd, from: 0, count: base }, 120_000);
      for (let r = 0; r < runs; r++) {
        const run = await bench.probe(
          'convergence',
          { agent: bench.agent(), etcd: bench.etcd, base, joins, gapMs: 10, timeoutMs: 10_000 },
          300_000,
        );
        await bench.wipeDevice();
        results.push(run);
        context.log(
          `convergence run ${r + 1}: p50 ${percentile(run.joinFromAckMs, 50).toFixed(2)} ms, p99 ${percentile(run.joinFromAckMs, 99).toFixed(2)} ms, ` +
            `max ${Math.max(...run.joinFromAckMs).toFixed(2)} ms over ${run.joinFromAckMs.length} joins (${run.timeouts} timeouts)`,
        );
      }
    });
    const per = (pick: (run: ConvergenceRun) => number[], p: number | 'max') => perRun(results, pick, p);
    const join = (run: ConvergenceRun) => run.joinFromAckMs;
    const notes: string[] = [];
    const timeouts = results.reduce((sum, run) => sum + run.timeouts, 0);
    if (timeouts > 0) notes.push(`${timeouts} join(s) or leave(s) did not show in the kernel within 10 s and are not in the percentiles.`);
    const floorFailures = results.reduce((sum, run) => sum + run.floorFailures, 0);
    if (floorFailures > 0)
      notes.push(`${floorFailures} kernel floor write(s) failed or did not show within 10 s and are not in its percentiles.`);
    const negative = results.reduce((sum, run) => sum + run.joinFromAckMs.filter((ms) => ms < 0).length, 0);
    if (negative > 0) {
      notes.push(
        `${negative} join(s) were in the kernel before the probe had read etcd's answer to its put (negative "from ack" times): ` +
          "etcd notifies watchers and answers the writer at the same moment, and weft was faster than the probe's gRPC client.",
      );
    }
    const p50 = median(per(join, 50));
    const p99 = median(per(join, 99));
    if (p50 > JOIN_TARGET_P50_MS || p99 > JOIN_TARGET_P99_MS) {
      const floor50 = median(per((run) => run.floorMs, 50));
      const floor99 = median(per((run) => run.floorMs, 99));
      const weft50 = median(per((run) => run.joinFromWatchMs, 50));
      notes.push(
        `Join: p50 ${p50.toFixed(2)} ms (target ${JOIN_TARGET_P50_MS}), p99 ${p99.toFixed(2)} ms (target ${JOIN_TARGET_P99_MS}). The kernel ` +
          `writing the same four objects and notifying them takes ${floor50.toFixed(2)} ms at p50 and ${floor99.toFixed(2)} ms at p99 ` +
          `whoever writes them; from the probe's own etcd watch delivering the put to the kernel having it takes ${weft50.toFixed(2)} ms ` +
          "at p50: weftd's etcd client decoding the watch response (grpc-js, protobufjs, etcd3, as in the probe) and weft's handling " +
          `of the event, ${Math.max(0, weft50 - floor50).toFixed(2)} ms over the floor. Next step: an etcd client that decodes ` +
          "less per event (etcd's JSON gateway over node's http) and less work per lease event in weftd; for the p99, whatever " +
          "else holds weftd's event loop when an event arrives (garbage collections among it).",
      );
    }
    return {
      name: 'convergence',
      title: 'Convergence: a new lease to kernel state',
      method: [
        `weftd runs with its defaults (the ingress allow-list on: a join also adds the peer to its nftables set). ${base} peers are programmed; then ${joins} peers join one at a time (a lease put into etcd, the next one after`,
        "the previous one converged) and leave again the same way. One probe process in the agent host's namespace does the puts",
        'and watches the kernel through an rtnetlink notification socket of its own (a child stamping each notification with',
        'CLOCK_MONOTONIC, the clock the probe reads too), so one clock times both ends: a join has converged',
        'when the notifications for its route, neighbour and FDB entry have all arrived. Times are from etcd acknowledging the put',
        '(the lease is committed and watchers are notified at that moment) and, for reference, from sending it and from the',
        "probe's own etcd watch on the same prefix delivering the put (about when weftd receives it: weft's own share).",
        'After each join has converged the probe writes the same four objects (neighbour, FDB entry, nexthop, route) for a peer',
        "weftd does not have, on a VXLAN device of its own, through weft's kernel layer in one sendmsg as weftd does: the kernel",
        'floor is from that sendmsg to the three notifications, what the kernel and the observer take of any join; the next',
        'join is put 10 ms after that.',
        "Each figure is the median over runs of that run's percentile, with the runs' min and max.",
      ].join(' '),
      figures: [
        figure({
          id: 'convergence.p50',
          label: 'join: put acknowledged → route, neighbour and FDB in the kernel, p50',
          unit: 'ms',
          samples: per(join, 50),
          target: { op: '<=', value: JOIN_TARGET_P50_MS, source: 'issue 16' },
        }),
        figure({
          id: 'convergence.p99',
          label: 'join, p99',
          unit: 'ms',
          samples: per(join, 99),
          target: { op: '<=', value: JOIN_TARGET_P99_MS, source: 'issue 16' },
        }),
        figure({ id: 'convergence.max', label: 'join, max', unit: 'ms', samples: per(join, 'max') }),
        figure({
          id: 'convergence.from-send.p50',
          label: 'join: put sent → in the kernel, p50',
          unit: 'ms',
          samples: per((run) => run.joinFromSendMs, 50),
        }),
        figure({
          id: 'convergence.from-send.p99',
          label: 'join: put sent → in the kernel, p99',
          unit: 'ms',
          samples: per((run) => run.joinFromSendMs, 99),
        }),
        figure({
          id: 'convergence.put.p50',
          label: 'etcd put round trip (for reference), p50',
          unit: 'ms',
          samples: per((run) => run.putMs, 50),
        }),
        figure({
          id: 'convergence.from-watch.p50',
          label: "join: a watcher's event → in the kernel (weft's own share), p50",
          unit: 'ms',
          samples: per((run) => run.joinFromWatchMs, 50),
        }),
        figure({
          id: 'convergence.from-watch.p99',
          label: "join: a watcher's event → in the kernel (weft's own share), p99",
          unit: 'ms',
          samples: per((run) => run.joinFromWatchMs, 99),
        }),
        figure({
          id: 'convergence.kernel-floor.p50',
          label: "kernel floor: the same four objects in one sendmsg of weft's kernel layer → in the kernel, p50",
          unit: 'ms',
          samples: per((run) => run.floorMs, 50),
        }),
        figure({
          id: 'convergence.kernel-floor.p99',
          label: "kernel floor: the same four objects in one sendmsg of weft's kernel layer → in the kernel, p99",
          unit: 'ms',
          samples: per((run) => run.floorMs, 99),
        }),
        figure({
          id: 'convergence.leave.p50',
          label: 'leave: delete acknowledged → all three gone, p50',
          unit: 'ms',
          samples: per((run) => run.leaveFromAckMs, 50),
        }),
        figure({ id: 'convergence.leave.p99', label: 'leave, p99', unit: 'ms', samples: per((run) => run.leaveFromAckMs, 99) }),
        figure({
          id: 'convergence.joins',
          label: 'joins measured per run',
          unit: 'joins',
          samples: results.map((run) => run.joinFromAckMs.length),
        }),
      ],
      notes,
      details: results,
    };
  },
};
