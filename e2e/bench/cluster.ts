/**
 * Cluster scale by simulation: N weft agents — weft's registry code, one etcd client each, no kernel
 * (cluster-agents.ts) — in a few processes inside lab hosts, against a 3-member TLS etcd cluster in the lab
 * (etcd-cluster.ts), scraped about once a second (etcd-metrics.ts). Four phases:
 *
 *   start     every agent starts at the same instant on an empty registry;
 *   restart   after a quiet period (the figures at rest), every agent stops and starts again at the same instant,
 *             now with a short lease renewal period;
 *   renewal   the renewals of 60 s are counted;
 *   outage    every etcd member is killed, and restarted 30 s later.
 *
 * Everything runs in the lab's namespaces and goes with the lab.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { TlsEtcdCluster } from '../lab/etcd-cluster.js';
import { NetnsLab } from '../lab/index.js';
import type { AgentsCommand, AgentsOptions, AgentsReport, CallCounts, WaitAnswer } from './cluster-agents.js';
import { gauge, increases, within, type Increase, type MemberSample, type ScrapeOptions, type ScrapeRound } from './etcd-metrics.js';
import { figure, median } from './stats.js';
import type { Benchmark, BenchContext, BenchmarkResult, Figure } from './types.js';

const TITLE = 'Cluster scale: N simulated agents against a 3-member etcd';
const PREFIX = '/coreos.com/network';
/** /29 subnets: 8191 to hand out in 198.18.0.0/16 */
const NETWORK_CONFIG = { Network: '198.18.0.0/16', SubnetLen: 29, Backend: { Type: 'vxlan' } };
const MAX_AGENTS = 8000;
const now = (): number => Number(process.hrtime.bigint()) / 1e6;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** A command as sent: the process adds the id. */
type Command = AgentsCommand extends infer C ? (C extends unknown ? Omit<C, 'id'> : never) : never;

interface Plan {
  agents: number;
  processes: number;
  restMs: number;
  outageMs: number;
  /** after the outage's re-lists, before the figures are read */
  settleMs: number;
  renewTtlSeconds: number;
  renewMarginSeconds: number;
  renewWindowMs: number;
  phaseTimeoutMs: number;
}

/** A node program in a lab namespace, spoken to with JSON lines: the agents (cluster-agents.ts) or the scraper (etcd-metrics.ts). */
class JsonChild {
  private readonly child: ChildProcess;
  private readonly waiting = new Map<number, (reply: Record<string, unknown>) => void>();
  private nextId = 0;
  private stderr = '';

  constructor(netns: string, script: string, options: AgentsOptions | ScrapeOptions, onLine?: (line: string) => void) {
    this.child = spawn('ip', ['netns', 'exec', netns, process.execPath, '--max-old-space-size=4096', script, JSON.stringify(options)], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (this.stderr = (this.stderr + chunk).slice(-4000)));
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      if (onLine !== undefined) {
        onLine(line);
        return;
      }
      const reply = JSON.parse(line) as { id: number };
      this.waiting.get(reply.id)?.(reply);
      this.waiting.delete(reply.id);
    });
    this.child.on('exit', (code, signal) => {
      for (const resolve of this.waiting.values()) resolve({ error: `exited (${signal ?? code}): ${this.stderr}` });
      this.waiting.clear();
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  async send<T>(command: Command): Promise<T> {
    const id = ++this.nextId;
    const reply = new Promise<Record<string, unknown>>((resolve) => this.waiting.set(id, resolve));
    this.child.stdin!.write(`${JSON.stringify({ ...command, id })}\n`);
    const answer = await reply;
    if (typeof answer.error === 'string') throw new Error(`child process: ${answer.error}`);
    return answer as T;
  }

  close(): void {
    this.child.stdin!.end();
  }

  kill(): void {
    this.child.kill('SIGKILL');
  }
}

interface PhaseTimes {
  /** seconds from the common start until every agent held a lease / had seen every lease */
  leasedS: number;
  completeS: number;
  /** median agent */
  completeMedianS: number;
  timedOut: boolean;
}

/** Seconds from `at`; NaN for an agent that did not get there. */
function secondsFrom(at: number, times: readonly (number | null)[]): number[] {
  return times.map((t) => (t === null ? NaN : (t - at) / 1000));
}

function phaseTimes(at: number, answers: readonly WaitAnswer[]): PhaseTimes {
  const leased = secondsFrom(
    at,
    answers.flatMap((answer) => answer.leasedAt),
  );
  const complete = secondsFrom(
    at,
    answers.flatMap((answer) => answer.completeAt),
  );
  const worst = (values: number[]) => (values.some(Number.isNaN) ? NaN : Math.max(...values));
  return {
    leasedS: worst(leased),
    completeS: worst(complete),
    completeMedianS: median(complete.filter(Number.isFinite)),
    timedOut: answers.some((answer) => answer.timedOut),
  };
}

interface EtcdWindow {
  /** etcd's gRPC calls and streams started, all members, per second: highest one-second interval and mean */
  peakPerSecond: number;
  meanPerSecond: number;
  /** the same for Range calls (listings and gets) */
  rangePeakPerSecond: number;
  sentMiB: number;
  cpuSeconds: number;
  /** calls and streams started in the window, by gRPC method */
  byMethod: Record<string, number>;
}

function etcdWindow(rounds: readonly ScrapeRound[], from: number, to: number): EtcdWindow {
  const of = (counter: (sample: MemberSample) => number): Increase[] => within(increases(rounds, counter), from, to);
  const requests = of((sample) => sample.requestsTotal);
  const seconds = requests.reduce((sum, entry) => sum + entry.seconds, 0);
  const total = requests.reduce((sum, entry) => sum + entry.delta, 0);
  const sum = (series: Increase[]) => series.reduce((acc, entry) => acc + entry.delta, 0);
  return {
    peakPerSecond: Math.max(0, ...requests.map((entry) => entry.perSecond)),
    meanPerSecond: seconds > 0 ? total / seconds : NaN,
    rangePeakPerSecond: Math.max(0, ...of((sample) => sample.startedTotal.Range ?? 0).map((entry) => entry.perSecond)),
    sentMiB: sum(of((sample) => sample.sentBytesTotal)) / 2 ** 20,
    cpuSeconds: sum(of((sample) => sample.cpuSecondsTotal)),
    byMethod: Object.fromEntries(
      ['Range', 'Txn', 'Put', 'DeleteRange', 'LeaseGrant', 'LeaseRevoke', 'LeaseTimeToLive', 'LeaseKeepAlive', 'Watch']
        .map((method) => [method, sum(of((sample) => sample.startedTotal[method] ?? 0))] as const)
        .filter(([, count]) => count > 0),
    ),
  };
}

/** Sums the processes' per-second call counts of `kind` into seconds relative to `from`, within [from, to). */
function callHistogram(reports: readonly AgentsReport[], kind: string, from: number, to: number): number[] {
  const first = Math.floor(from / 1000);
  const bins = new Array<number>(Math.max(0, Math.ceil(to / 1000) - first)).fill(0);
  for (const report of reports) {
    for (const [second, counts] of Object.entries<CallCounts>(report.calls)) {
      const bin = Number(second) - first;
      if (bin >= 0 && bin < bins.length) bins[bin] += counts[kind] ?? 0;
    }
  }
  return bins;
}

function sumCalls(reports: readonly AgentsReport[], kind: string, from: number, to: number): number {
  return callHistogram(reports, kind, from, to).reduce((a, b) => a + b, 0);
}

/** The seconds that had any, as `label: count`. */
function histogramText(bins: readonly number[], label: (i: number) => string): string {
  return bins.flatMap((count, i) => (count === 0 ? [] : [`${label(i)}: ${count}`])).join(', ');
}

/** The outage's re-lists per second, and the listing attempts behind them. */
export function outageNotes(r: SizeResult): string[] {
  const pages = r.outage.listPagesPerSecond;
  return [
    `${r.agents} agents: lease watcher re-lists per second after the etcd members were restarted (seconds with none left out): ` +
      `${histogramText(r.outage.relistsPerSecond, (i) => `+${i} s`)}.`,
    `${r.agents} agents: listing pages requested, agent side, from 2 s before the outage until the end: ${pages.reduce((a, b) => a + b, 0)} ` +
      `in ${pages.filter((count) => count > 0).length} s, at most ${Math.max(0, ...pages)} in one second (attempts that failed included).`,
  ];
}

export interface SizeResult {
  agents: number;
  processes: number;
  start: PhaseTimes & { etcd: EtcdWindow; listings: number; racesLost: number; agentCpuSeconds: number };
  rest: {
    etcdPerSecond: number;
    watchStreams: number;
    watchers: number;
    openFds: number;
    etcdRssMiB: number;
    dbMiB: number;
    agentRssMiBPerAgent: number;
    agentHeapMiBPerAgent: number;
  };
  restart: PhaseTimes & { etcd: EtcdWindow; listings: number; agentCpuSeconds: number };
  outage: {
    /** from the members' restart to etcd answering `etcdctl endpoint health` on all three */
    healthyS: number;
    /** from the members' restart to every agent's lease watcher having listed again */
    recoveredS: number;
    /** agents whose lease watcher had not listed again when the wait timed out */
    notRelisted: number;
    /** etcd requests per second while every member was down (the agents' failed attempts reach no one: agent side) */
    attemptsPerSecondDown: number;
    /** lease watcher re-lists per second from the members' restart on */
    relistsPerSecond: number[];
    /** listing pages per second, agent side, from the outage on */
    listPagesPerSecond: number[];
    /** seconds in which re-lists happened, and the most in one second */
    relistSeconds: number;
    relistPeakPerSecond: number;
    etcd: EtcdWindow;
    timedOut: boolean;
    stillComplete: boolean;
  };
  renewal: {
    ttlSeconds: number;
    marginSeconds: number;
    renewals: number;
    perSecond: number;
    peakPerSecond: number;
    /** etcd requests in the window per renewal */
    requestsPerRenewal: number;
    etcd: EtcdWindow;
  };
  /** over the whole run: own leases lost (deleted or expired), failed renewals or re-acquisitions, failed acquisitions */
  leasesLost: number;
  leaseErrors: number;
  acquireErrors: number;
  /** every scrape, for the JSON */
  scrapes: number;
}

async function runSize(context: BenchContext, plan: Plan): Promise<SizeResult> {
  const benchDir = fileURLToPath(new URL('.', import.meta.url));
  const lab = await NetnsLab.create({ hosts: plan.processes, repoRoot: context.repoRoot });
  context.log(`lab ${lab.runId}: ${plan.agents} agents in ${plan.processes} processes`);
  const children: JsonChild[] = [];
  try {
    const etcd = await TlsEtcdCluster.start(lab);
    const seeded = await etcd.etcdctl(`put ${PREFIX}/config '${JSON.stringify(NETWORK_CONFIG)}'`);
    if (seeded.code !== 0) throw new Error(`seeding the config: ${seeded.stderr}`);
    const rounds: ScrapeRound[] = [];
    const scraper = new JsonChild(
      lab.etcdHost.netns,
      join(benchDir, 'etcd-metrics.js'),
      {
        endpoints: etcd.endpoints,
        ...etcd.client,
        intervalMs: 1000,
      },
      (line) => rounds.push(JSON.parse(line) as ScrapeRound),
    );
    children.push(scraper);

    const per = Math.ceil(plan.agents / plan.processes);
    const agents = lab.hosts.map(
      (host, i) =>
        new JsonChild(lab.namespaceOf(host), join(benchDir, 'cluster-agents.js'), {
          first: i * per,
          count: Math.max(0, Math.min(per, plan.agents - i * per)),
          total: plan.agents,
          endpoints: etcd.endpoints,
          ...etcd.client,
          prefix: PREFIX,
          logFile: join(lab.tempDir, `agents-${i + 1}.log`),
        }),
    );
    children.push(...agents);
    const all = <T>(command: Command) => Promise.all(agents.map((process) => process.send<T>(command)));
    const startAll = async (renewal?: { ttlSeconds: number; renewMarginSeconds: number }) => {
      const at = now() + 1000;
      await all({ op: 'start', at, ...renewal });
      const answers = await all<WaitAnswer>({ op: 'wait', until: 'complete', timeoutMs: plan.phaseTimeoutMs });
      return { at, answers, done: now() };
    };
    const log = (line: string) => context.log(`${plan.agents}: ${line}`);

    const agentCpu = async () => (await all<AgentsReport>({ op: 'report' })).reduce((sum, report) => sum + report.cpuSeconds, 0);

    // start: an empty registry, every agent at once
    const cpuBeforeStart = await agentCpu();
    const first = await startAll();
    const startAgentCpu = (await agentCpu()) - cpuBeforeStart;
    const start = phaseTimes(first.at, first.answers);
    log(
      `start: every lease held after ${start.leasedS.toFixed(1)} s, every lease seen by all after ${start.completeS.toFixed(1)} s${start.timedOut ? ' (TIMED OUT)' : ''}`,
    );

    // at rest
    await sleep(plan.restMs);
    const restFrom = now() - plan.restMs + Math.min(5000, plan.restMs / 3);
    const restTo = now();
    const restRound = rounds.at(-1)!;
    const memory = await all<AgentsReport>({ op: 'report' });
    const agentRss = memory.reduce((sum, report) => sum + report.rssBytes, 0);
    const agentHeap = memory.reduce((sum, report) => sum + report.heapUsedBytes, 0);
    log(
      `at rest: ${gauge(restRound, (s) => s.watchStreams)} watch streams, ${gauge(restRound, (s) => s.watchers)} watchers; agents ${(agentRss / 2 ** 20).toFixed(0)} MiB RSS`,
    );

    // restart: every agent stops (keeping its lease) and starts again at once, now with a short TTL, so that
    // renewals happen within the renewal window that follows
    await all({ op: 'stop' });
    const cpuBeforeRestart = await agentCpu();
    const second = await startAll({ ttlSeconds: plan.renewTtlSeconds, renewMarginSeconds: plan.renewMarginSeconds });
    const restartAgentCpu = (await agentCpu()) - cpuBeforeRestart;
    const restart = phaseTimes(second.at, second.answers);
    log(`restart: every agent complete after ${restart.completeS.toFixed(1)} s${restart.timedOut ? ' (TIMED OUT)' : ''}`);

    // renewal: from the first agents' first renewal on, and past the restart's own calls (etcd's counters are read once a second)
    await sleep(Math.max(2000, second.at + (plan.renewTtlSeconds - plan.renewMarginSeconds + 1) * 1000 - now()));
    const renewFrom = now();
    await sleep(plan.renewWindowMs);
    const renewTo = now();

    // outage: every member down, then back
    const down = now();
    await Promise.all([0, 1, 2].map((index) => etcd.stopMember(index)));
    await sleep(plan.outageMs);
    const back = now();
    await Promise.all([0, 1, 2].map((index) => etcd.restartMember(index)));
    await etcd.waitHealthy([0, 1, 2]);
    const healthy = now();
    const relisted = await all<WaitAnswer>({ op: 'wait', until: 'relisted', since: down, timeoutMs: plan.phaseTimeoutMs });
    const relistTimes = secondsFrom(
      back,
      relisted.flatMap((answer) => answer.relistedAt),
    );
    const notRelisted = relistTimes.filter(Number.isNaN).length;
    const recoveredS = notRelisted > 0 ? NaN : Math.max(...relistTimes);
    await sleep(plan.settleMs);
    const afterOutage = now();
    const stillComplete = (await all<WaitAnswer>({ op: 'wait', until: 'complete', timeoutMs: 1000 })).every((answer) => !answer.timedOut);
    log(
      `outage: etcd healthy ${((healthy - back) / 1000).toFixed(1)} s after the members' restart; every agent listed again after ${recoveredS.toFixed(1)} s` +
        `${notRelisted > 0 ? ` (${notRelisted} agents had not listed again after ${plan.phaseTimeoutMs / 1000} s)` : ''}`,
    );

    const reports = await all<AgentsReport>({ op: 'report' });
    await Promise.all(agents.map((process) => process.send({ op: 'exit' })));

    const renewals = reports.flatMap((report) => report.renewals).filter((t) => t >= renewFrom && t < renewTo);
    const renewalBins = new Array<number>(Math.ceil((renewTo - renewFrom) / 1000)).fill(0);
    for (const t of renewals) renewalBins[Math.floor((t - renewFrom) / 1000)] += 1;
    const renewEtcd = etcdWindow(rounds, renewFrom, renewTo);
    const renewRequests = within(
      increases(rounds, (s) => s.requestsTotal),
      renewFrom,
      renewTo,
    ).reduce((sum, entry) => sum + entry.delta, 0);
    log(
      `renewal (TTL ${plan.renewTtlSeconds} s, margin ${plan.renewMarginSeconds} s): ${renewals.length} renewals in ${((renewTo - renewFrom) / 1000).toFixed(0)} s; ` +
        `etcd calls then: ${JSON.stringify(renewEtcd.byMethod)}`,
    );

    const relistBins = new Array<number>(Math.max(1, Math.ceil((afterOutage - back) / 1000))).fill(0);
    for (const { at } of reports.flatMap((report) => report.relists)) {
      if (at >= back && at < afterOutage) relistBins[Math.floor((at - back) / 1000)] += 1;
    }
    while (relistBins.length > 1 && relistBins.at(-1) === 0) relistBins.pop();
    const downSeconds = (back - down) / 1000;
    return {
      agents: plan.agents,
      processes: plan.processes,
      start: {
        ...start,
        etcd: etcdWindow(rounds, first.at - 1000, first.done),
        listings: sumCalls(reports, 'list', first.at - 1000, first.done),
        racesLost: sumCalls(reports, 'txn-lost', first.at - 1000, first.done),
        agentCpuSeconds: startAgentCpu,
      },
      rest: {
        etcdPerSecond: etcdWindow(rounds, restFrom, restTo).meanPerSecond,
        watchStreams: gauge(restRound, (s) => s.watchStreams),
        watchers: gauge(restRound, (s) => s.watchers),
        openFds: gauge(restRound, (s) => s.openFds),
        etcdRssMiB: gauge(restRound, (s) => s.rssBytes) / 2 ** 20,
        dbMiB: Math.max(...restRound.members.map((s) => (s === null ? 0 : s.dbBytes))) / 2 ** 20,
        agentRssMiBPerAgent: agentRss / 2 ** 20 / plan.agents,
        agentHeapMiBPerAgent: agentHeap / 2 ** 20 / plan.agents,
      },
      restart: {
        ...restart,
        etcd: etcdWindow(rounds, second.at - 1000, second.done),
        listings: sumCalls(reports, 'list', second.at - 1000, second.done),
        agentCpuSeconds: restartAgentCpu,
      },
      outage: {
        healthyS: (healthy - back) / 1000,
        recoveredS,
        notRelisted,
        attemptsPerSecondDown: (sumCalls(reports, 'list', down, back) + sumCalls(reports, 'get', down, back)) / downSeconds,
        relistsPerSecond: relistBins,
        listPagesPerSecond: callHistogram(reports, 'list', down - 2000, afterOutage),
        relistSeconds: relistBins.filter((count) => count > 0).length,
        relistPeakPerSecond: Math.max(...relistBins),
        etcd: etcdWindow(rounds, back, afterOutage),
        timedOut: relisted.some((answer) => answer.timedOut),
        stillComplete,
      },
      renewal: {
        ttlSeconds: plan.renewTtlSeconds,
        marginSeconds: plan.renewMarginSeconds,
        renewals: renewals.length,
        perSecond: renewals.length / ((renewTo - renewFrom) / 1000),
        peakPerSecond: Math.max(0, ...renewalBins),
        requestsPerRenewal: renewals.length > 0 ? renewRequests / renewals.length : NaN,
        etcd: renewEtcd,
      },
      leasesLost: reports.reduce((sum, report) => sum + report.lost, 0),
      leaseErrors: reports.reduce((sum, report) => sum + report.leaseErrors, 0),
      acquireErrors: reports.reduce((sum, report) => sum + report.acquireErrors, 0),
      scrapes: rounds.length,
    };
  } finally {
    for (const child of children) child.close();
    await sleep(200);
    for (const child of children) child.kill();
    await lab.destroy();
  }
}

/** The sizes to simulate: WEFT_BENCH_CLUSTER_SIZES=100,1000,5000 overrides the default 100 and 1000 (a larger machine can run 5000). */
function plans(quick: boolean): Plan[] {
  if (quick) {
    return [
      {
        agents: 12,
        processes: 2,
        restMs: 3000,
        outageMs: 5000,
        settleMs: 2000,
        renewTtlSeconds: 60,
        renewMarginSeconds: 55,
        renewWindowMs: 10_000,
        phaseTimeoutMs: 60_000,
      },
    ];
  }
  const common = { processes: 4, restMs: 20_000, outageMs: 30_000, settleMs: 5000, renewWindowMs: 60_000, phaseTimeoutMs: 900_000 };
  const sizes = process.env.WEFT_BENCH_CLUSTER_SIZES?.split(',').map(Number) ?? [100, 1000];
  if (sizes.some((size) => !Number.isInteger(size) || size < 1 || size > MAX_AGENTS)) {
    throw new Error(`WEFT_BENCH_CLUSTER_SIZES: sizes are 1-${MAX_AGENTS} agents, got ${process.env.WEFT_BENCH_CLUSTER_SIZES}`);
  }
  // A lease expires only after 10 min without a renewal (the agents of a loaded machine renew late). Each renewal
  // moves the lease key onto a new etcd lease, an event for every agent's watch: 1000 agents renewing every 30 s
  // kept this 2-core machine's simulated agents too busy to restart, so the period grows with the size.
  return sizes.map((agents) => ({
    agents,
    ...common,
    renewTtlSeconds: 600,
    renewMarginSeconds: 600 - Math.max(30, Math.ceil(agents * 0.12)),
  }));
}

/** Lease renewals per second with flannel's defaults (24 h TTL, renewed 1 h before expiry) for `agents` hosts. */
export function defaultRenewalsPerSecond(agents: number): number {
  return agents / (23 * 3600);
}

export const benchmark: Benchmark = {
  name: 'cluster',
  title: TITLE,
  async run(context): Promise<BenchmarkResult> {
    const results: SizeResult[] = [];
    for (const plan of plans(context.quick)) results.push(await runSize(context, plan));
    const figures: Figure[] = [];
    const notes: string[] = [];
    for (const r of results) {
      const n = r.agents;
      const f = (id: string, label: string, unit: string, value: number, note?: string) =>
        figures.push(
          figure({
            id: `cluster.n${n}.${id}`,
            label: `${n} agents: ${label}`,
            unit,
            samples: [value],
            ...(note === undefined ? {} : { note }),
          }),
        );
      f('start.leased', 'all start at once → every agent holds a lease', 's', r.start.leasedS);
      f('start.complete', 'all start at once → every agent has seen every lease', 's', r.start.completeS);
      f('start.complete-median', 'all start at once → the median agent has seen every lease', 's', r.start.completeMedianS);
      f('start.races-lost', 'create races lost during the start', 'races', r.start.racesLost);
      f('start.listings', 'listing pages the agents asked for during the start', 'pages', r.start.listings);
      f('start.etcd-peak', 'etcd requests/s during the start, peak (1 s)', 'req/s', r.start.etcd.peakPerSecond);
      f('start.etcd-sent', 'etcd bytes sent during the start', 'MiB', r.start.etcd.sentMiB);
      f('start.etcd-cpu', 'etcd CPU time during the start, all 3 members', 's', r.start.etcd.cpuSeconds);
      f('start.agent-cpu', "the simulated agents' CPU time during the start, all processes", 's', r.start.agentCpuSeconds);
      f('rest.etcd', 'etcd requests/s at rest', 'req/s', r.rest.etcdPerSecond);
      f('rest.watch-streams', 'watch streams held (etcd_debugging_mvcc_watch_stream_total, all members)', 'streams', r.rest.watchStreams);
      f('rest.watchers', 'watchers (etcd_debugging_mvcc_watcher_total)', 'watchers', r.rest.watchers);
      f('rest.etcd-rss', 'etcd RSS, all 3 members, at rest', 'MiB', r.rest.etcdRssMiB);
      f('rest.db', 'etcd database size', 'MiB', r.rest.dbMiB);
      f('rest.agent-rss', 'agent process RSS per simulated agent (one etcd client each)', 'MiB', r.rest.agentRssMiBPerAgent);
      f('restart.complete', 'all restart at once → every agent has seen every lease', 's', r.restart.completeS);
      f('restart.complete-median', 'all restart at once → the median agent has seen every lease', 's', r.restart.completeMedianS);
      f('restart.etcd-peak', 'etcd requests/s during the restart, peak (1 s)', 'req/s', r.restart.etcd.peakPerSecond);
      f('restart.etcd-cpu', 'etcd CPU time during the restart, all 3 members', 's', r.restart.etcd.cpuSeconds);
      f('restart.agent-cpu', "the simulated agents' CPU time during the restart, all processes", 's', r.restart.agentCpuSeconds);
      f('outage.healthy', 'etcd members restarted after 30 s down → all three healthy (etcdctl)', 's', r.outage.healthyS);
      f('outage.recovered', 'etcd members restarted → every agent has listed again', 's', r.outage.recoveredS);
      f('outage.relist-peak', 'lease re-lists in the busiest second after the outage', 're-lists', r.outage.relistPeakPerSecond);
      f('outage.relist-seconds', 'seconds over which the re-lists spread', 's', r.outage.relistSeconds);
      f('outage.etcd-peak', 'etcd requests/s after the outage, peak (1 s)', 'req/s', r.outage.etcd.peakPerSecond);
      f('outage.attempts', "agents' etcd attempts/s while etcd was down", 'req/s', r.outage.attemptsPerSecondDown);
      f(
        'renewal.rate',
        `lease renewals/s with a ${r.renewal.ttlSeconds} s TTL renewed ${r.renewal.marginSeconds} s before expiry`,
        '/s',
        r.renewal.perSecond,
      );
      f(
        'renewal.requests',
        'etcd requests per renewal (grant, txn, revoke; all other traffic in the window included)',
        'req',
        r.renewal.requestsPerRenewal,
      );
      f(
        'renewal.default',
        'lease renewals/s with the defaults (24 h TTL, renewed 1 h before): N / 82 800 s',
        '/s',
        defaultRenewalsPerSecond(n),
      );

      notes.push(...outageNotes(r));
      if (r.start.timedOut || r.restart.timedOut || r.outage.timedOut)
        notes.push(
          `${n} agents: a phase timed out (start ${r.start.timedOut}, restart ${r.restart.timedOut}, outage ${r.outage.timedOut}).`,
        );
      if (!r.outage.stillComplete) notes.push(`${n} agents: after the outage not every agent saw every lease.`);
      if (r.outage.notRelisted > 0) notes.push(`${n} agents: ${r.outage.notRelisted} agents had not listed again when the wait ended.`);
      if (r.leasesLost + r.leaseErrors + r.acquireErrors > 0) {
        notes.push(
          `${n} agents: over the run ${r.leasesLost} own leases were lost (deleted or expired) and acquired again, ` +
            `${r.leaseErrors} renewals or re-acquisitions and ${r.acquireErrors} acquisitions failed and were retried.`,
        );
      }
    }
    notes.push('One run per size (each takes minutes); the machine is shared with other work, see the load average.');
    return {
      name: 'cluster',
      title: TITLE,
      method: [
        "Each simulated agent is weft's registry code wired as weftd wires it — its own etcd3 client (connectEtcd: TLS, one HTTP/2",
        'connection per member it talks to), a ConfigWatcher, a LeaseWatcher and a SubnetLeaseManager — without a kernel; the',
        `agents run in ${results[0]?.processes ?? 4} node processes, each in a lab host's namespace, against a 3-member TLS etcd cluster in the lab's`,
        'etcd namespace. Network 198.18.0.0/16 with /29 subnets; public IPs from 198.19.0.0/16, never contacted. Phases: all agents',
        "start at the same instant on an empty registry (flannel's 24 h lease TTL); after 20 s at rest all stop and start again at",
        'the same instant, now with a 600 s TTL renewed every 30 s (every N × 0.12 s above 250 agents), and the renewals of 60 s',
        "from the first renewal on are counted (the agents came back over the restart's duration: at 1000 the window holds the",
        "renewals of part of them); then all three etcd members are killed and restarted 30 s later. etcd's figures come from its own /metrics, scraped once a second from every",
        'member (grpc_server_started_total for requests, etcd_debugging_mvcc_watch_stream_total and _watcher_total, process and',
        "database size), a restarted member's counters counted from zero; the agents count their own etcd calls per second and",
        'record each re-list of their lease watcher. "Complete" means an agent holds its lease and its lease watcher holds every',
        "agent's lease.",
      ].join(' '),
      figures,
      notes,
      details: results,
    };
  },
};
