/**
 * Container to container over three data paths, side by side in one run (issue 4): the underlay without
 * an overlay (host-gw routes), kernel VXLAN, and weft's userspace path (both hosts userspace; and a mixed
 * pair, one userspace host and one kernel-VXLAN host, in both directions). iperf3 TCP throughput and ping
 * round-trip time, plus the CPU the data-path workers used per gigabit.
 */
import { loadavg } from 'node:os';
import { NetnsLab, ping, seedNetworkConfig, waitForSubnetEnv, type LabContainer, type LabHost } from '../lab/index.js';
import { figure, median, percentile } from './stats.js';
import type { Benchmark, BenchContext, BenchmarkResult, Figure } from './types.js';

export type PathName = 'underlay' | 'kernel' | 'userspace' | 'userspace-dgram' | 'mixed-tx' | 'mixed-rx';

interface PathSpec {
  name: PathName;
  label: string;
  backend: 'host-gw' | 'vxlan';
  /** --vxlan-userspace of the sending host (h1) and the receiving host (h2). */
  modes: [string, string];
  /** Environment of both agents. */
  env?: Record<string, string>;
}

const PATHS: readonly PathSpec[] = [
  { name: 'underlay', label: 'underlay, no overlay (host-gw)', backend: 'host-gw', modes: ['never', 'never'] },
  { name: 'kernel', label: 'kernel VXLAN', backend: 'vxlan', modes: ['never', 'never'] },
  { name: 'userspace', label: 'userspace path, both hosts', backend: 'vxlan', modes: ['always', 'always'] },
  {
    name: 'userspace-dgram',
    label: 'userspace path, both hosts, without the UDP addon (dgram)',
    backend: 'vxlan',
    modes: ['always', 'always'],
    env: { WEFT_USERSPACE_NATIVE_UDP: '0' },
  },
  { name: 'mixed-tx', label: 'userspace sender → kernel-VXLAN receiver', backend: 'vxlan', modes: ['always', 'never'] },
  { name: 'mixed-rx', label: 'kernel-VXLAN sender → userspace receiver', backend: 'vxlan', modes: ['never', 'always'] },
];

export interface PathRun {
  path: PathName;
  mbps: number;
  retransmits: number;
  /** every ping's round-trip time, ms */
  rttMs: number[];
  /** CPU seconds the data-path workers of both hosts used during the iperf3 run (0 for kernel paths) */
  workerCpuSeconds: number;
  loadAverage: number;
}

interface IperfJson {
  error?: string;
  end?: { sum_received?: { bits_per_second: number }; sum_sent?: { retransmits?: number } };
}

/** CPU time (utime + stime, seconds) of the data-path worker running in `host`'s network namespace. */
async function workerCpu(lab: NetnsLab, host: LabHost): Promise<number> {
  const script =
    'for p in $(pgrep -x weftd-dataplane); do [ "$(readlink /proc/$p/ns/net)" = "$(readlink /proc/self/ns/net)" ] && cut -d" " -f14,15 /proc/$p/stat; done';
  const out = (await lab.exec(host, script)).stdout;
  const ticks = out
    .split('\n')
    .filter(Boolean)
    .flatMap((line) => line.split(' ').map(Number))
    .reduce((sum, value) => sum + value, 0);
  return ticks / 100;
}

async function measure(context: BenchContext, spec: PathSpec, seconds: number, pings: number): Promise<PathRun> {
  const lab = await NetnsLab.create({ hosts: 2, repoRoot: context.repoRoot });
  try {
    await seedNetworkConfig(lab, { Network: '198.18.0.0/16', Backend: { Type: spec.backend } });
    const [h1, h2] = [lab.hosts[0], lab.hosts[1]];
    await lab.startAgent(h1, [`--vxlan-userspace=${spec.modes[0]}`], spec.env);
    await lab.startAgent(h2, [`--vxlan-userspace=${spec.modes[1]}`], spec.env);
    await waitForSubnetEnv(lab, h1, { timeoutMs: 60_000 });
    await waitForSubnetEnv(lab, h2, { timeoutMs: 60_000 });
    const [client] = (await lab.addContainers(h1, 1)) as [LabContainer];
    const [server] = (await lab.addContainers(h2, 1)) as [LabContainer];
    const warm = await ping(lab, client, server.ip, { count: Math.min(20, pings), interval: 0.05, deadline: 15 });
    if (warm.received === 0) throw new Error(`${spec.name}: no ping from ${client.name} to ${server.ip}`);
    const rtt = await ping(lab, client, server.ip, { count: pings, interval: 0.01, deadline: Math.ceil(pings * 0.01) + 10 });
    const rttMs = [...rtt.output.matchAll(/time=([\d.]+) ms/g)].map((match) => Number(match[1]));
    const daemon = lab.background(server, 'iperf3 -s -1');
    try {
      for (let i = 0; i < 100 && !(await lab.exec(server, "ss -ltnH 'sport = :5201'")).stdout.includes(':5201'); i++)
        await new Promise((r) => setTimeout(r, 50));
      const cpuBefore = (await workerCpu(lab, h1)) + (await workerCpu(lab, h2));
      const run = await lab.exec(client, `iperf3 -c ${server.ip} -t ${seconds} -J`, { timeoutMs: (seconds + 30) * 1000 });
      const cpuAfter = (await workerCpu(lab, h1)) + (await workerCpu(lab, h2));
      const json = JSON.parse(run.stdout) as IperfJson;
      if (json.error !== undefined || json.end?.sum_received === undefined)
        throw new Error(`${spec.name}: iperf3: ${json.error ?? run.stderr}`);
      return {
        path: spec.name,
        mbps: json.end.sum_received.bits_per_second / 1e6,
        retransmits: json.end.sum_sent?.retransmits ?? 0,
        rttMs,
        workerCpuSeconds: cpuAfter - cpuBefore,
        loadAverage: loadavg()[0],
      };
    } finally {
      await daemon.stop('SIGTERM');
    }
  } finally {
    await lab.destroy();
  }
}

/** Runs every path once per round, the paths interleaved so that each round sees the same machine load. */
export async function benchUserspacePaths(
  context: BenchContext,
  options: { rounds: number; seconds: number; pings: number; paths?: readonly PathName[] },
): Promise<PathRun[]> {
  const runs: PathRun[] = [];
  const specs = PATHS.filter((spec) => options.paths === undefined || options.paths.includes(spec.name));
  for (let round = 1; round <= options.rounds; round++) {
    for (const spec of specs) {
      const run = await measure(context, spec, options.seconds, options.pings);
      runs.push(run);
      context.log(
        `round ${round} ${spec.name}: ${run.mbps.toFixed(0)} Mbit/s (${run.retransmits} retransmits), ` +
          `rtt p50 ${percentile(run.rttMs, 50).toFixed(3)} ms p99 ${percentile(run.rttMs, 99).toFixed(3)} ms, workers ${run.workerCpuSeconds.toFixed(2)} CPU s, load ${run.loadAverage.toFixed(1)}`,
      );
    }
  }
  return runs;
}

export const benchmark: Benchmark = {
  name: 'userspace',
  title: 'Data paths: underlay, kernel VXLAN and the userspace path',
  async run(context): Promise<BenchmarkResult> {
    const rounds = context.quick ? 1 : context.runs;
    const seconds = context.quick ? 1 : 10;
    const pings = context.quick ? 10 : 500;
    const runs = await benchUserspacePaths(context, { rounds, seconds, pings });
    const of = (path: PathName) => runs.filter((run) => run.path === path);
    const mbps = (path: PathName) => of(path).map((run) => run.mbps);
    const rtt = (path: PathName) => of(path).map((run) => percentile(run.rttMs, 50));
    const ratio = (a: number[], b: number[]) => a.map((value, i) => value / b[i]);
    const figures: Figure[] = [];
    for (const spec of PATHS) {
      figures.push(
        figure({
          id: `userspace.tcp.${spec.name}`,
          label: `iperf3 TCP, ${spec.label}`,
          unit: 'Mbit/s',
          samples: mbps(spec.name),
          ...(spec.name === 'userspace' ? { target: { op: '>=' as const, value: 450, source: 'issue 4' } } : {}),
        }),
      );
    }
    for (const spec of PATHS) {
      figures.push(figure({ id: `userspace.rtt.${spec.name}`, label: `ping RTT p50, ${spec.label}`, unit: 'ms', samples: rtt(spec.name) }));
    }
    figures.push(
      figure({
        id: 'userspace.rtt.ratio',
        label: 'ping RTT p50, userspace path (both hosts) ÷ kernel VXLAN',
        unit: '×',
        samples: ratio(rtt('userspace'), rtt('kernel')),
        target: { op: '<=', value: 3, source: 'issue 4' },
      }),
    );
    figures.push(
      figure({
        id: 'userspace.rtt.ratio.mixed',
        label: 'ping RTT p50, mixed pair ÷ kernel VXLAN',
        unit: '×',
        samples: ratio(rtt('mixed-tx'), rtt('kernel')),
      }),
    );
    figures.push(
      figure({
        id: 'userspace.tcp.ratio',
        label: 'TCP throughput, userspace path ÷ kernel VXLAN',
        unit: '×',
        samples: ratio(mbps('userspace'), mbps('kernel')),
      }),
    );
    figures.push(
      figure({
        id: 'userspace.tcp.addon',
        label: 'TCP throughput, userspace path with the UDP addon ÷ without (dgram)',
        unit: '×',
        samples: ratio(mbps('userspace'), mbps('userspace-dgram')),
      }),
    );
    figures.push(
      figure({
        id: 'userspace.rtt.ratio.dgram',
        label: 'ping RTT p50, userspace path without the UDP addon ÷ kernel VXLAN',
        unit: '×',
        samples: ratio(rtt('userspace-dgram'), rtt('kernel')),
      }),
    );
    const perGbit = (path: PathName) => of(path).map((run) => run.workerCpuSeconds / seconds / (run.mbps / 1000));
    figures.push(
      figure({
        id: 'userspace.cpu.per-gbit',
        label: 'data-path workers, CPU cores per Gbit/s (both hosts)',
        unit: 'cores',
        samples: perGbit('userspace'),
      }),
    );
    const notes = [
      `Load average during the runs: median ${median(runs.map((run) => run.loadAverage)).toFixed(1)} (2 cores: anything above ~1 means other work competed with the measured paths).`,
    ];
    return {
      name: 'userspace',
      title: 'Data paths: underlay, kernel VXLAN and the userspace path',
      method: [
        'For each path a fresh lab of two hosts with one container each (MTU: 1500 underlay, 1450 VXLAN overlay), weftd on both;',
        `${pings} pings at 10 ms intervals (after ${Math.min(20, pings)} to warm up) give the RTT, then iperf3 TCP for ${seconds} s from the first host's`,
        "container to the second's (one stream) gives the throughput. The paths run interleaved, one of each per round.",
        '"Underlay" is host-gw: routes over the underlay, no encapsulation. "Userspace" runs weftd --vxlan-userspace=always on both',
        'hosts (with weft\'s UDP addon: UDP GSO trains out, recvmmsg with UDP GRO in; the "dgram" row turns the addon off with',
        'WEFT_USERSPACE_NATIVE_UDP=0, which is what a host without the built addon runs); the mixed rows put it on the sender or on',
        'the receiver only, the other host using kernel VXLAN.',
        "Worker CPU is the utime + stime of both hosts' weftd-dataplane processes over the iperf3 run (kernel work done in their system",
        "calls included: on one machine that is much of the receiving side's stack too).",
      ].join(' '),
      figures,
      notes,
      details: runs.map((run) => ({
        ...run,
        rttMs: { p50: percentile(run.rttMs, 50), p99: percentile(run.rttMs, 99), count: run.rttMs.length },
      })),
    };
  },
};
