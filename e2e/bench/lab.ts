/** What every benchmark does first: a namespace lab with etcd and one host, and a probe in that host. */
import { readFileSync, writeFileSync } from 'node:fs';
import { scenarioRunner } from '../../test/netns.js';
import { NetnsLab, seedNetworkConfig } from '../lab/index.js';
import { BENCH_AGENT_SUBNET_ENV, BENCH_NETWORK_CONFIG } from './peers.js';
import type * as Probe from './probe.js';
import type { AgentSpec } from './probe.js';
import type { BenchContext } from './types.js';

const runProbe = scenarioRunner<typeof Probe>(new URL('./probe.js', import.meta.url));

export interface BenchLab {
  lab: NetnsLab;
  /** the host weftd runs on, and the probe with it */
  netns: string;
  etcd: string;
  /** weftd on the host, with `extra` flags */
  agent(extra?: readonly string[]): AgentSpec;
  probe: <K extends Extract<keyof typeof Probe, string>>(
    name: K,
    arg: Parameters<(typeof Probe)[K] extends (arg: never) => unknown ? (typeof Probe)[K] : never>[0],
    timeoutMs: number,
  ) => ReturnType<typeof runProbe<K>>;
  /** removes weftd's device and with it every neighbour, FDB entry, nexthop and route on it */
  wipeDevice(): Promise<void>;
}

/** Runs `body` with a fresh lab (one host), removed afterwards whatever happens. */
export async function withBenchLab<T>(context: BenchContext, body: (bench: BenchLab) => Promise<T>): Promise<T> {
  const lab = await NetnsLab.create({ hosts: 1, repoRoot: context.repoRoot });
  context.log(`lab ${lab.runId}${process.env.WEFT_LAB_KEEP === '1' ? ` (files kept in ${lab.tempDir})` : ''}`);
  try {
    await seedNetworkConfig(lab, BENCH_NETWORK_CONFIG);
    const host = lab.hosts[0];
    writeFileSync(lab.subnetFile(host), BENCH_AGENT_SUBNET_ENV);
    const netns = lab.namespaceOf(host);
    const bench: BenchLab = {
      lab,
      netns,
      etcd: lab.etcdEndpoint,
      agent: (extra = []) => ({
        command: [...lab.agentCommand],
        args: [`--etcd-endpoints=${lab.etcdEndpoint}`, `--subnet-file=${lab.subnetFile(host)}`, ...extra],
        logFile: lab.agentLogFile(host),
      }),
      probe: (name, arg, timeoutMs) => runProbe(netns, name, arg as never, { timeoutMs }),
      wipeDevice: async () => {
        await lab.exec(host, 'ip link del weft.1 2>/dev/null || true', { check: true });
      },
    };
    return await body(bench);
  } catch (err) {
    let log = '';
    try {
      log = readFileSync(lab.agentLogFile(lab.hosts[0]), 'utf8');
    } catch {
      // no agent ran
    }
    if (log !== '') context.log(`weftd log tail:\n${log.slice(-3000)}`);
    throw err;
  } finally {
    await lab.destroy();
  }
}

/** A namespace name inside the lab's prefix, so that the lab removes it if the benchmark does not. */
export function labNamespace(lab: NetnsLab, role: string): string {
  return `${lab.prefix}-${role}`;
}
