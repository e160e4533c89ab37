/**
 * Building blocks of the end-to-end scenarios, written against ClusterDriver only, so that the namespace
 * lab and a multi-VM driver run the same scenarios.
 */
import { httpGet, ping, seedNetworkConfig, waitForSubnetEnv, type ClusterDriver, type LabContainer, type LabHost } from '../lab/index.js';

/** The port every agent in a scenario serves /healthz, /readyz and /metrics on (inside its own host). */
export const HEALTHZ_PORT = 9910;

export interface ClusterOptions {
  backend?: 'vxlan' | 'host-gw';
  /** Extra flags for every agent. */
  agentArgs?: readonly string[];
  /** Containers per host. */
  containers?: number;
  /** Start every agent at the same instant instead of one after another. */
  simultaneous?: boolean;
  /** The network config to seed (default: 198.18.0.0/16 with `backend`). */
  config?: object;
  /** Hosts whose agent the scenario already started. */
  hostsWithAgents?: readonly LabHost[];
}

export function agentArgs(options: ClusterOptions = {}): string[] {
  return [`--healthz-port=${HEALTHZ_PORT}`, '--resync-interval=5', ...(options.agentArgs ?? [])];
}

/** Seeds the config, starts weftd on every host, waits for their subnet.env and adds containers. */
export async function startCluster(driver: ClusterDriver, options: ClusterOptions = {}): Promise<LabContainer[]> {
  await seedNetworkConfig(driver, options.config ?? { Network: '198.18.0.0/16', Backend: { Type: options.backend ?? 'vxlan' } });
  const args = agentArgs(options);
  const hosts = driver.hosts.filter((host) => !(options.hostsWithAgents ?? []).includes(host));
  if (options.simultaneous) await Promise.all(hosts.map((host) => driver.startAgent(host, args)));
  else for (const host of hosts) await driver.startAgent(host, args);
  const containers: LabContainer[] = [];
  for (const host of driver.hosts) {
    await waitForSubnetEnv(driver, host);
    containers.push(...(await driver.addContainers(host, options.containers ?? 1)));
  }
  return containers;
}

/** Parses one sample of a Prometheus text exposition, e.g. `weft_peers{backend="vxlan"}`. */
export function metricValue(text: string, sample: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${sample} `)) return Number(line.slice(sample.length + 1));
  }
  return undefined;
}

export async function metrics(driver: ClusterDriver, host: LabHost): Promise<string> {
  const response = await httpGet(driver, host, `http://127.0.0.1:${HEALTHZ_PORT}/metrics`);
  if (response.status !== 200) throw new Error(`metrics of ${host.name}: HTTP ${response.status} ${response.body}`);
  return response.body;
}

export async function peersProgrammed(driver: ClusterDriver, host: LabHost, backend: string): Promise<number> {
  return metricValue(await metrics(driver, host), `weft_peers{backend="${backend}"}`) ?? 0;
}

/** Every ordered pair of containers on different hosts that cannot ping each other (empty = full mesh). */
export async function meshFailures(
  driver: ClusterDriver,
  containers: readonly LabContainer[],
  options: { count?: number; family?: 4 | 6 } = {},
): Promise<string[]> {
  const pairs = containers.flatMap((from) => containers.filter((to) => to.host !== from.host).map((to) => [from, to] as const));
  const results = await Promise.all(
    pairs.map(async ([from, to]) => {
      const target = options.family === 6 ? to.ipv6 : to.ip;
      if (target === undefined) return `${to.name} has no IPv${options.family ?? 4} address`;
      const result = await ping(driver, from, target, { count: options.count ?? 2, interval: 0.05, deadline: 5 });
      return result.received > 0 ? undefined : `${from.name} (${from.host.name}) -> ${target} (${to.host.name})`;
    }),
  );
  return results.filter((failure): failure is string => failure !== undefined);
}

/**
 * The kernel objects weft programmed on a host, as `ip` shows them (for asserting on peers' state). Rejects when
 * a command fails (the device is missing, say): an empty listing always means the kernel holds no such entry.
 */
export async function kernelState(
  driver: ClusterDriver,
  host: LabHost,
  device = 'weft.1',
): Promise<{ routes: string; neighbours: string; fdb: string }> {
  const run = async (command: string) => (await driver.exec(host, command, { check: true })).stdout;
  return {
    routes: await run('ip route show proto 157'),
    neighbours: await run(`ip neigh show dev ${device}`),
    fdb: await run(`bridge fdb show dev ${device}`),
  };
}
