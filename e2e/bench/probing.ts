/**
 * What probing every peer costs: weftd's CPU with thousands of synthetic peers, probing on (the defaults:
 * every 10 s, at most 500 probes/s) against probing off, in the same lab, over the same window.
 *
 * The synthetic peers' public IPs (198.19.0.0/16) are routed into a blackhole in the agent host's namespace
 * (the lab does that on every host): the kernel encapsulates every probe and drops it there, so nothing is
 * sent to them and none answers.
 */
import { httpGet } from '../lab/index.js';
import { withBenchLab } from './lab.js';
import { cpuMs } from './proc.js';
import { figure } from './stats.js';
import type { Benchmark, BenchmarkResult } from './types.js';

const HEALTHZ_PORT = 9910;
/** Flags of both runs: no timer-driven work besides probing, so that the difference is the probes'. */
const QUIET = ['--resync-interval=3600', '--iptables-resync=3600', '--ingress-allow-list=false', `--healthz-port=${HEALTHZ_PORT}`];

interface Window {
  cpuMs: number;
  seconds: number;
  probes: number;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function sample(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split('\n')) if (line.startsWith(name)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  return sum;
}

export const benchmark: Benchmark = {
  name: 'probing',
  title: 'Peer probing: CPU cost with thousands of peers',
  async run(context): Promise<BenchmarkResult> {
    const peers = context.quick ? 200 : 5000;
    const windowMs = context.quick ? 3_000 : 60_000;
    const runs = context.quick ? 1 : Math.min(context.runs, 3);
    const on: Window[] = [];
    const off: Window[] = [];
    await withBenchLab(context, async (bench) => {
      const { lab } = bench;
      const host = lab.hosts[0];
      await bench.probe('seed', { etcd: bench.etcd, from: 0, count: peers }, 120_000);
      // the lab routes 198.19.0.0/16 into a blackhole on every host: nothing reaches the synthetic peers
      const blackhole = await lab.exec(host, 'ip route show type blackhole 198.19.0.0/16', { check: true });
      if (blackhole.stdout.trim() === '') throw new Error('the lab host has no blackhole route for the synthetic peers');
      const metricsText = async () => (await httpGet(lab, host, `http://127.0.0.1:${HEALTHZ_PORT}/metrics`)).body;
      const measure = async (probing: boolean): Promise<Window> => {
        const agent = await lab.startAgent(host, [...QUIET, `--probe-interval=${probing ? 10 : 0}`]);
        try {
          const deadline = Date.now() + 180_000;
          while (sample(await metricsText().catch(() => ''), 'weft_peers{') < peers) {
            if (Date.now() > deadline || agent.exit !== undefined) throw new Error(`weftd did not program ${peers} peers within 180 s`);
            await sleep(500);
          }
          // one whole probe round (5000 peers at 500 probes/s: 20 s) before measuring
          await sleep(context.quick ? 1_000 : 25_000);
          const probesBefore = sample(await metricsText(), 'weft_peer_probes_total{');
          const cpuBefore = cpuMs(agent.pid)!;
          const started = performance.now();
          await sleep(windowMs);
          const cpu = cpuMs(agent.pid)! - cpuBefore;
          const seconds = (performance.now() - started) / 1000;
          const probes = sample(await metricsText(), 'weft_peer_probes_total{') - probesBefore;
          return { cpuMs: cpu, seconds, probes };
        } finally {
          await lab.stopAgent(host);
        }
      };
      for (let r = 0; r < runs; r++) {
        // alternating order, so that a drift in the machine's load favours neither
        const [first, second] = r % 2 === 0 ? [true, false] : [false, true];
        const a = await measure(first);
        const b = await measure(second);
        const [withProbes, without] = first ? [a, b] : [b, a];
        on.push(withProbes);
        off.push(without);
        context.log(
          `run ${r + 1}: probing on ${(withProbes.cpuMs / withProbes.seconds / 10).toFixed(2)} % of a core (${(withProbes.probes / withProbes.seconds).toFixed(0)} probes/s), ` +
            `off ${(without.cpuMs / without.seconds / 10).toFixed(2)} %`,
        );
      }
    });
    const percent = (window: Window) => window.cpuMs / window.seconds / 10;
    return {
      name: 'probing',
      title: 'Peer probing: CPU cost with thousands of peers',
      method: [
        `weftd programs ${peers} synthetic peers (public IPs in 198.19.0.0/16, routed into a blackhole in its namespace, so every`,
        'probe is encapsulated and dropped there: no answers, as for peers that are all down) and runs with the default probing',
        `(--probe-interval 10, --probe-rate 500: a round of ${peers} peers takes ${Math.max(10, (peers * 2) / 500)} s), then with probing off`,
        '(--probe-interval=0), the order alternating between runs. Other timers are turned down (--resync-interval=3600,',
        "--iptables-resync=3600, no ingress allow-list). After the peers are programmed and one probe round has passed, weftd's CPU",
        `time (user + system, /proc) is read over ${windowMs / 1000} s; the cost of probing is the difference between the two.`,
      ].join(' '),
      figures: [
        figure({
          id: 'probing.cost',
          label: `probing ${peers} peers: CPU (on − off)`,
          unit: '% of a core',
          samples: on.map((window, i) => percent(window) - percent(off[i])),
          target: { op: '<=', value: 1, source: 'issue 15' },
        }),
        figure({ id: 'probing.on', label: 'weftd CPU, probing on', unit: '% of a core', samples: on.map(percent) }),
        figure({ id: 'probing.off', label: 'weftd CPU, probing off', unit: '% of a core', samples: off.map(percent) }),
        figure({ id: 'probing.rate', label: 'probes sent', unit: 'probes/s', samples: on.map((window) => window.probes / window.seconds) }),
      ],
      notes: [],
      details: { on, off },
    };
  },
};
