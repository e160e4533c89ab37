/**
 * The interface end-to-end scenarios are written against. `NetnsLab` implements it with network namespaces on
 * one machine; a Vagrant driver (one VM per host, commands over `vagrant ssh`) can implement the same surface,
 * so nothing here names a namespace, a bridge or a local path.
 *
 * Commands are shell strings (what `vagrant ssh -c` takes); quote arguments with `shellQuote`.
 */

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  /** Kill the command (SIGKILL) and reject after this long. Default 30 s. */
  timeoutMs?: number;
  /** Reject with the output when the exit code is not 0. Default false. */
  check?: boolean;
  /** Written to the command's stdin. */
  input?: string;
  /** Extra environment variables. */
  env?: Record<string, string>;
}

/** A container: a network namespace attached to its host's container bridge, like flannel's CNI bridge plugin does. */
export interface LabContainer {
  readonly name: string;
  readonly host: LabHost;
  /** Overlay address, e.g. 198.18.5.2 (the IPv6 one on an IPv6-only host). */
  readonly ip: string;
  /** Overlay IPv6 address when the host's subnet.env had FLANNEL_IPV6_SUBNET. */
  readonly ipv6: string | undefined;
  exec(command: string, options?: ExecOptions): Promise<ExecResult>;
}

export interface LabHost {
  readonly name: string;
  /** The underlay address weftd should use as its public IP (on the interface that carries the default route). */
  readonly publicIp: string;
  /** IPv6 underlay address, when the lab was created with IPv6. */
  readonly publicIpv6: string | undefined;
  /** Name of the underlay interface carrying publicIp (for --iface). */
  readonly iface: string;
  /** Containers added with addContainers, in order. */
  readonly containers: readonly LabContainer[];
}

export type ExecTarget = LabHost | LabContainer | string;

export interface AgentExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface AgentHandle {
  readonly host: LabHost;
  readonly pid: number;
  /** Every argument the agent was started with (after the lab's defaults were added). */
  readonly args: readonly string[];
  /** Resolves once the process has exited (never rejects). */
  readonly exited: Promise<AgentExit>;
  /** The exit once it happened, else undefined. */
  readonly exit: AgentExit | undefined;
  kill(signal?: NodeJS.Signals): void;
  /** Everything the agent printed on stdout and stderr so far (all runs on this host, separated by a header line). */
  log(): string;
}

/** A command running in the background, e.g. a 10 ms ping while an agent restarts. */
export interface BackgroundCommand {
  readonly pid: number;
  /** stdout and stderr collected so far. */
  output(): ExecResult;
  readonly exited: Promise<ExecResult>;
  /** Sends `signal` (default SIGINT, so ping prints its summary), waits for the exit, SIGKILL after timeoutMs. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<ExecResult>;
}

/** flannel's subnet.env, as the CNI plugin reads it. */
export interface SubnetEnv {
  /** Undefined on an IPv6-only host, as are subnet and the containers' IPv4 addresses. */
  network: string | undefined;
  /** The host's lease with host part .1, e.g. 198.18.5.1/24. */
  subnet: string | undefined;
  mtu: number;
  ipmasq: boolean;
  ipv6Network: string | undefined;
  ipv6Subnet: string | undefined;
  /** Every KEY=VALUE line as written. */
  raw: Record<string, string>;
}

export interface ClusterDriver {
  readonly runId: string;
  readonly hosts: readonly LabHost[];
  /** The host running etcd. In the namespace lab it is not in `hosts` and runs no weftd; a VM cluster may run etcd on one of its hosts. */
  readonly etcdHost: LabHost;
  /** etcd's client URL as the hosts reach it, e.g. http://192.0.2.2:2379. */
  readonly etcdEndpoint: string;

  /** A host of `hosts` by name (h1, h2, …). Throws if unknown. */
  host(name: LabHost | string): LabHost;
  /** A host, the etcd host or a container by name. Throws if unknown. */
  resolve(name: string): LabHost | LabContainer;
  exec(target: ExecTarget, command: string, options?: ExecOptions): Promise<ExecResult>;
  background(target: ExecTarget, command: string, options?: { env?: Record<string, string> }): BackgroundCommand;

  /**
   * A shell command that runs weftctl with `args` on whichever host it is exec'd on, against the cluster's etcd:
   * the driver adds `--etcd-endpoints` unless `args` has it, and makes weftctl read the node's settings the way
   * the driver's agents get theirs (the lab: no environment file; a VM: its /etc/weft/weftd.env).
   */
  weftctlCommand(args: readonly string[]): string;

  /** Runs `etcdctl` (API v3) against the lab's etcd with these arguments (no shell). */
  etcdctl(args: readonly string[], options?: ExecOptions): Promise<ExecResult>;
  /** Kills etcd (SIGKILL: an outage); its data stays. */
  stopEtcd(): Promise<void>;
  /** Starts etcd again on the same data and waits until it is healthy. */
  startEtcd(): Promise<void>;

  /**
   * Starts weftd on `host`. The lab adds `--subnet-file <its path for host>` and `--etcd-endpoints <etcdEndpoint>`
   * unless `args` already has them. Rejects if the host already runs an agent.
   */
  startAgent(host: LabHost | string, args?: readonly string[], env?: Record<string, string>): Promise<AgentHandle>;
  /** Sends `signal` (default SIGTERM) and waits for the exit; SIGKILL after timeoutMs (default 10 s). */
  stopAgent(host: LabHost | string, signal?: NodeJS.Signals, timeoutMs?: number): Promise<AgentExit | undefined>;
  /** The host's running (or last) agent. */
  agent(host: LabHost | string): AgentHandle | undefined;

  /** The path of the host's subnet.env (as the host sees it). */
  subnetFile(host: LabHost | string): string;
  /** The host's subnet.env, or undefined while it does not exist. */
  readSubnetEnv(host: LabHost | string): Promise<SubnetEnv | undefined>;

  /**
   * Emulates flannel's CNI bridge plugin from the host's subnet.env: a container bridge carrying FLANNEL_SUBNET
   * (MTU FLANNEL_MTU), and `count` containers on it with the next free addresses and a default route via the
   * bridge. Calling it again adds more containers to the same bridge.
   */
  addContainers(host: LabHost | string, count: number): Promise<LabContainer[]>;
  /** Removes the host's containers and container bridge (e.g. before re-adding them after a lease change). */
  removeContainers(host: LabHost | string): Promise<void>;

  /** Stops everything the driver started and removes everything it created. Safe to call twice. */
  destroy(): Promise<void>;
}

/** Quotes one argument for a POSIX shell. */
export function shellQuote(argument: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(argument) ? argument : `'${argument.replace(/'/g, `'\\''`)}'`;
}

/** Parses subnet.env text (flannel writes KEY=VALUE lines without quotes; quotes are tolerated). */
export function parseSubnetEnv(text: string): SubnetEnv | undefined {
  const raw: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const match = /^\s*(?:export\s+)?([A-Z0-9_]+)=(.*?)\s*$/.exec(line);
    if (match === null) continue;
    raw[match[1]] = match[2].replace(/^(['"])(.*)\1$/, '$2');
  }
  const network = raw.FLANNEL_NETWORK || undefined;
  const subnet = raw.FLANNEL_SUBNET || undefined;
  const ipv6Network = raw.FLANNEL_IPV6_NETWORK || undefined;
  const ipv6Subnet = raw.FLANNEL_IPV6_SUBNET || undefined;
  const mtu = Number(raw.FLANNEL_MTU);
  const complete = (network !== undefined && subnet !== undefined) || (ipv6Network !== undefined && ipv6Subnet !== undefined);
  if (!complete || !Number.isInteger(mtu) || mtu <= 0) return undefined;
  return { network, subnet, mtu, ipmasq: raw.FLANNEL_IPMASQ === 'true', ipv6Network, ipv6Subnet, raw };
}

/** Sends `signal` to the agent, waits for its exit, and SIGKILLs it after timeoutMs (stopAgent of every driver). */
export async function stopAgentHandle(
  agent: AgentHandle | undefined,
  signal: NodeJS.Signals,
  timeoutMs: number,
): Promise<AgentExit | undefined> {
  if (agent === undefined) return undefined;
  if (agent.exit !== undefined) return agent.exit;
  agent.kill(signal);
  let timer: NodeJS.Timeout | undefined;
  const timedOut = await Promise.race([
    agent.exited.then(() => false),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), timeoutMs))),
  ]);
  clearTimeout(timer);
  if (timedOut) agent.kill('SIGKILL');
  return agent.exited;
}
