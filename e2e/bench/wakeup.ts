/**
 * What waking a Node process costs on this machine, beside C: the floor under the userspace path's RTT
 * (issue 4), which wakes a worker three times per ping through two userspace hosts (docs/userspace.md).
 *
 * Two namespaces joined by a veth, no weft. One C client measures UDP echo round trips against three
 * servers: C (epoll), Node on weft's UDP addon (as the data path uses it) and Node on dgram; kernel ping
 * runs over the same veth. Each server wakes once per round trip and the client is the same, so the
 * difference between two servers' RTT is the difference between their wake-ups.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadUdpNative } from '../../agent/userspace/udp-native.js';
import { WeftError } from '../../common/errors.js';
import { NetnsLab, shellQuote, type BackgroundCommand } from '../lab/index.js';
import { ChildSet, run, startBackground } from '../lab/process.js';
import { labNamespace } from './lab.js';
import { figure, median, percentile } from './stats.js';
import type { Benchmark, BenchContext, BenchmarkResult, Figure } from './types.js';

/** `cc` is not on PATH: this benchmark compiles its C echo server and client when it runs. */
export class CompilerMissingError extends WeftError {
  constructor() {
    super(
      'WEFT_BENCH_NO_CC',
      'the wakeup benchmark compiles e2e/bench/udp-echo.c with `cc`, which is not on PATH: install gcc (apt-get install gcc)',
    );
  }
}

export type Responder = 'c' | 'addon' | 'dgram' | 'kernel';

interface ResponderSpec {
  name: Responder;
  label: string;
  /** the echo server's UDP port; the kernel answers ping */
  port?: number;
}

const RESPONDERS: readonly ResponderSpec[] = [
  { name: 'c', label: 'C server (epoll)', port: 7001 },
  { name: 'addon', label: "Node server on weft's UDP addon", port: 7002 },
  { name: 'dgram', label: 'Node server on dgram', port: 7003 },
  { name: 'kernel', label: 'kernel ICMP echo (ping)' },
];

const CLIENT_ADDRESS = '192.0.2.201';
const SERVER_ADDRESS = '192.0.2.202';
/** The addon reports no source port, so its server answers to this one, which the client binds. */
const CLIENT_PORT = 7100;
/** The userspace bench's ping interval: every round trip starts from an idle server. */
const INTERVAL_US = 10_000;

export interface EchoRun {
  responder: Responder;
  round: number;
  /** every answered round trip, µs */
  rttUs: number[];
  lost: number;
  loadAverage: number;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Compiles udp-echo.c into `dir`; returns the binary's path. */
function compileEcho(repoRoot: string, dir: string): string {
  const binary = join(dir, 'udp-echo');
  const compiled = spawnSync('cc', ['-O2', '-Wall', '-o', binary, join(repoRoot, 'e2e', 'bench', 'udp-echo.c')], { encoding: 'utf8' });
  const error: NodeJS.ErrnoException | undefined = compiled.error;
  if (error?.code === 'ENOENT') throw new CompilerMissingError();
  if (compiled.error !== undefined) throw compiled.error;
  if (compiled.status !== 0) throw new Error(`cc e2e/bench/udp-echo.c failed (exit ${compiled.status}):\n${compiled.stderr}`);
  return binary;
}

/** Two namespaces of the lab joined by a veth: the client's and the servers'. */
async function buildVeth(lab: NetnsLab, children: ChildSet): Promise<{ client: string; server: string }> {
  const client = labNamespace(lab, 'wkc');
  const server = labNamespace(lab, 'wks');
  await run(['ip', '-batch', '-'], children, { input: `netns add ${client}\nnetns add ${server}\n`, check: true });
  const configure = (netns: string, lines: string[]) =>
    run(['ip', '-n', netns, '-batch', '-'], children, { input: `${lines.join('\n')}\n`, check: true });
  await configure(server, [
    'link set lo up',
    `link add wks type veth peer name wkc netns ${client}`,
    `addr add ${SERVER_ADDRESS}/24 dev wks`,
    'link set wks up',
  ]);
  await configure(client, ['link set lo up', `addr add ${CLIENT_ADDRESS}/24 dev wkc`, 'link set wkc up']);
  return { client, server };
}

/** Starts an echo server in `netns` and waits for its "ready" line. */
async function startServer(netns: string, argv: readonly string[], children: ChildSet): Promise<BackgroundCommand> {
  const server = startBackground(['ip', 'netns', 'exec', netns, ...argv], children);
  let exited = false;
  void server.exited.then(() => (exited = true));
  const deadline = Date.now() + 10_000;
  while (!server.output().stdout.includes('ready\n')) {
    if (exited || Date.now() > deadline) {
      await server.stop('SIGKILL');
      const output = server.output();
      throw new Error(
        `${argv.join(' ')} ${exited ? 'exited' : 'was not ready after 10 s'}: ${output.stderr.trim() || output.stdout.trim()}`,
      );
    }
    await sleep(20);
  }
  return server;
}

const roundTripSeconds = (count: number) => (count * INTERVAL_US) / 1e6;

async function echoRoundTrips(
  lab: NetnsLab,
  client: string,
  binary: string,
  port: number,
  warmup: number,
  count: number,
): Promise<number[]> {
  const command = [binary, 'client', SERVER_ADDRESS, String(port), String(CLIENT_PORT), String(warmup), String(count), String(INTERVAL_US)];
  const result = await lab.execIn(client, command.map(shellQuote).join(' '), {
    check: true,
    timeoutMs: (roundTripSeconds(warmup + count) + 30) * 1000,
  });
  return result.stdout
    .split('\n')
    .filter((line) => line !== '')
    .map(Number);
}

async function pingRoundTrips(lab: NetnsLab, client: string, warmup: number, count: number): Promise<number[]> {
  // -s 64: the same IP packet size as the 64-byte UDP echo
  const command = `ping -n -c ${warmup + count} -i ${INTERVAL_US / 1e6} -s 64 -W 1 ${SERVER_ADDRESS}`;
  const result = await lab.execIn(client, command, { timeoutMs: (roundTripSeconds(warmup + count) + 30) * 1000 });
  if (result.code !== 0 && result.code !== 1) throw new Error(`${command} failed (exit ${result.code}): ${result.stderr}${result.stdout}`);
  return [...result.stdout.matchAll(/icmp_seq=(\d+) .*time=([\d.]+) ms/g)]
    .filter((match) => Number(match[1]) > warmup)
    .map((match) => Number(match[2]) * 1000);
}

/** Every responder once per round, the order reversed every other round so that a drift in load favours none. */
export async function benchWakeups(
  context: BenchContext,
  options: { rounds: number; warmup: number; count: number; addon: boolean },
): Promise<EchoRun[]> {
  const responders = RESPONDERS.filter((spec) => spec.name !== 'addon' || options.addon);
  const dir = mkdtempSync(join(tmpdir(), 'weft-bench-wakeup-'));
  try {
    const binary = compileEcho(context.repoRoot, dir);
    // Only two namespaces of the lab are used: it names them for this run and removes them, and whatever runs
    // in them, also on a failure or a signal.
    const lab = await NetnsLab.create({ hosts: 1, repoRoot: context.repoRoot });
    context.log(`lab ${lab.runId}`);
    const children = new ChildSet();
    const servers: BackgroundCommand[] = [];
    try {
      // nothing here talks to etcd: stopped so that it adds no wake-ups of its own to the measurement
      await lab.stopEtcd();
      const { client, server } = await buildVeth(lab, children);
      const nodeServer = fileURLToPath(new URL('./udp-echo-server.js', import.meta.url));
      const argv: Record<Exclude<Responder, 'kernel'>, (port: number) => string[]> = {
        c: (port) => [binary, 'server', String(port)],
        addon: (port) => [process.execPath, nodeServer, 'addon', String(port), String(CLIENT_PORT)],
        dgram: (port) => [process.execPath, nodeServer, 'dgram', String(port)],
      };
      for (const spec of responders) {
        if (spec.name !== 'kernel') servers.push(await startServer(server, argv[spec.name](spec.port!), children));
      }
      const runs: EchoRun[] = [];
      for (let round = 1; round <= options.rounds; round++) {
        const order = round % 2 === 0 ? [...responders].reverse() : responders;
        for (const spec of order) {
          const rttUs =
            spec.port === undefined
              ? await pingRoundTrips(lab, client, options.warmup, options.count)
              : await echoRoundTrips(lab, client, binary, spec.port, options.warmup, options.count);
          if (rttUs.length === 0) throw new Error(`${spec.label}: no answer to ${options.count} round trips`);
          runs.push({ responder: spec.name, round, rttUs, lost: options.count - rttUs.length, loadAverage: loadavg()[0] });
        }
        context.log(
          `round ${round}: ${responders
            .map((spec) => {
              const run = runs.find((candidate) => candidate.round === round && candidate.responder === spec.name)!;
              return `${spec.name} p50 ${percentile(run.rttUs, 50).toFixed(0)} µs p99 ${percentile(run.rttUs, 99).toFixed(0)} µs${run.lost > 0 ? ` (${run.lost} lost)` : ''}`;
            })
            .join(', ')}; load ${loadavg()[0].toFixed(1)}`,
        );
      }
      return runs;
    } finally {
      await Promise.all(servers.map((server) => server.stop('SIGTERM')));
      children.killAll();
      await lab.destroy();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export const benchmark: Benchmark = {
  name: 'wakeup',
  title: 'Wake-up cost of a Node process: UDP echo through C and Node',
  async run(context): Promise<BenchmarkResult> {
    const rounds = context.quick ? 1 : context.runs;
    const warmup = context.quick ? 5 : 20;
    const count = context.quick ? 20 : 200;
    const addon = loadUdpNative();
    const hasAddon = !('error' in addon);
    const runs = await benchWakeups(context, { rounds, warmup, count, addon: hasAddon });
    const ran = RESPONDERS.filter((spec) => spec.name !== 'addon' || hasAddon);
    const perRound = (responder: Responder, p: number) =>
      runs.filter((run) => run.responder === responder).map((run) => percentile(run.rttUs, p));
    const overC = (responder: Responder) => {
      const c = perRound('c', 50);
      return perRound(responder, 50).map((value, i) => value - c[i]);
    };
    const figures: Figure[] = [];
    for (const p of [50, 99]) {
      for (const spec of ran) {
        figures.push(
          figure({
            id: `wakeup.${spec.name}.p${p}`,
            label: `${spec.name === 'kernel' ? 'ping' : 'UDP echo'} RTT p${p}, ${spec.label}`,
            unit: 'µs',
            samples: perRound(spec.name, p),
          }),
        );
      }
    }
    if (hasAddon) {
      figures.push(
        figure({
          id: 'wakeup.addon-over-c',
          label: 'echo RTT p50, Node server on the addon − C server: the extra cost of a Node wake-up',
          unit: 'µs',
          samples: overC('addon'),
        }),
      );
    }
    figures.push(
      figure({ id: 'wakeup.dgram-over-c', label: 'echo RTT p50, Node server on dgram − C server', unit: 'µs', samples: overC('dgram') }),
    );
    const addonExtra = median(overC('addon'));
    const dgramExtra = median(overC('dgram'));
    const wakeupExtra = hasAddon ? addonExtra : dgramExtra;
    const notes = [
      `Load average during the runs: median ${median(runs.map((run) => run.loadAverage)).toFixed(1)} (2 cores: anything above ~1 means other work competed with the measured processes).`,
      ...('error' in addon ? [`No addon rows: weft's UDP addon is not used here: ${addon.error}.`] : []),
      'Every round trip wakes the echo server once, and the client is the same C program: in this run the Node server answered ' +
        (hasAddon
          ? `${addonExtra.toFixed(0)} µs later than the C server with weft's addon and ${dgramExtra.toFixed(0)} µs later with dgram`
          : `${dgramExtra.toFixed(0)} µs later than the C server with dgram`) +
        ' (median over rounds of the p50 difference): what waking Node and running a JavaScript callback costs over returning from epoll_wait in C.',
      'A ping through two userspace hosts wakes their workers three times (h1 captures the request; h2 receives it and captures the reply in the same turn; ' +
        `h1 receives the reply), so the userspace path's RTT (${hasAddon ? 'userspace.rtt.userspace' : 'userspace.rtt.userspace-dgram'}) carries about ` +
        `3 × ${wakeupExtra.toFixed(0)} = ${(3 * wakeupExtra).toFixed(0)} µs more than C workers doing the same packet work would. ` +
        'The target userspace.rtt.ratio ≤ 3 leaves the three wake-ups, packet work included, 2 × userspace.rtt.kernel in all.',
      'ping stamps each reply when the kernel receives it (SO_TIMESTAMP), as in the userspace bench; the echo client reads its clock after its own wake-up, ' +
        "so an echo RTT also holds the client's wake-up and is not directly comparable with the ping row.",
    ];
    const lost = runs.filter((run) => run.lost > 0);
    if (lost.length > 0)
      notes.push(
        `Unanswered round trips (1 s timeout): ${lost.map((run) => `${run.responder} round ${run.round}: ${run.lost}`).join(', ')}.`,
      );
    return {
      name: 'wakeup',
      title: 'Wake-up cost of a Node process: UDP echo through C and Node',
      method: [
        `Two namespaces of their own joined by a veth (${CLIENT_ADDRESS} and ${SERVER_ADDRESS}), no weft, no bridge. A C client (e2e/bench/udp-echo.c, compiled`,
        `with cc -O2 when the bench runs) sends ${count} UDP datagrams of 64 bytes, after ${warmup} to warm up, one every ${INTERVAL_US / 1000} ms as the userspace bench pings`,
        '(a datagram waits for the previous answer), and times each round trip with CLOCK_MONOTONIC. The echo servers, started once and idle between round trips:',
        "a C epoll server (epoll_wait, then recvfrom/sendto); a Node server on weft's UDP addon as the userspace data path uses it (one JavaScript",
        "callback per recvmmsg batch, a synchronous send); a Node dgram server ('message' event, socket.send). Kernel ping",
        `(${count} at the same interval, same IP packet size) runs over the same veth. Per round every responder once, the order reversed every other round;`,
        "each figure is the median over rounds of that round's p50 or p99, and a difference (−) is taken within each round.",
      ].join(' '),
      figures,
      notes,
      details: runs.map((run) => ({
        ...run,
        rttUs: { p50: percentile(run.rttUs, 50), p99: percentile(run.rttUs, 99), count: run.rttUs.length },
      })),
    };
  },
};
