/** Scenario helpers built only on ClusterDriver, so they work with every driver. */
import { waitFor } from '../../test/wait.js';
import { shellQuote, type ClusterDriver, type ExecTarget, type LabHost, type SubnetEnv } from './driver.js';

/** flannel's default etcd prefix. */
export const NETWORK_PREFIX = '/coreos.com/network';
/** The network config the scenarios seed (overlay 198.18.0.0/16, the documentation and benchmark ranges the lab uses). */
export const LAB_NETWORK_CONFIG = { Network: '198.18.0.0/16', Backend: { Type: 'vxlan' } } as const;

// ---- ping ----

export interface PingOptions {
  /** Echo requests to send. Default 3. */
  count?: number;
  /** Seconds between requests (below 0.002 needs root; the lab runs as root). Default 0.2. */
  interval?: number;
  /** Overall deadline in seconds. Default count × interval + 2. */
  deadline?: number;
}

export interface PingResult {
  transmitted: number;
  received: number;
  /** 0–100, from transmitted and received. */
  lossPercent: number;
  /** The longest run of consecutive unanswered requests (e.g. × interval = the longest outage). */
  longestLossRun: number;
  output: string;
}

/**
 * Parses iputils ping output (without -q: one line per reply, then the summary), or busybox ping's (in containers
 * of docker hosts: `seq=` counted from 0, "N packets received"). With `inFlightAtEnd`, a last request that had no
 * answer yet is not counted (a ping stopped with SIGINT has usually just sent one).
 */
export function parsePing(output: string, options: { inFlightAtEnd?: boolean } = {}): PingResult {
  const seqs = new Set<number>();
  for (const match of output.matchAll(/bytes from .*?icmp_seq=(\d+)/g)) seqs.add(Number(match[1]));
  for (const match of output.matchAll(/bytes from .*? seq=(\d+)/g)) seqs.add(Number(match[1]) + 1);
  const summary = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(output);
  let transmitted = summary === null ? Math.max(0, ...seqs) : Number(summary[1]);
  let received = summary === null ? seqs.size : Number(summary[2]);
  if (options.inFlightAtEnd === true && transmitted > 0 && !seqs.has(transmitted) && seqs.size === received) transmitted--;
  received = Math.min(received, transmitted);
  let longestLossRun = 0;
  let previous = 0;
  for (const seq of [...seqs].filter((seq) => seq <= transmitted).sort((a, b) => a - b)) {
    longestLossRun = Math.max(longestLossRun, seq - previous - 1);
    previous = seq;
  }
  longestLossRun = Math.max(longestLossRun, transmitted - previous);
  const lossPercent = transmitted === 0 ? 100 : ((transmitted - received) * 100) / transmitted;
  return { transmitted, received, lossPercent, longestLossRun, output };
}

function pingCommand(toIp: string, options: PingOptions & { count?: number | undefined }): string {
  const args = ['ping', '-n', '-i', String(options.interval ?? 0.2)];
  if (options.count !== undefined) args.push('-c', String(options.count));
  if (options.deadline !== undefined) args.push('-w', String(options.deadline));
  args.push(toIp);
  return args.map(shellQuote).join(' ');
}

/** Pings `toIp` from a host or container and reports the loss (never rejects on loss). */
export async function ping(driver: ClusterDriver, from: ExecTarget, toIp: string, options: PingOptions = {}): Promise<PingResult> {
  const count = options.count ?? 3;
  const interval = options.interval ?? 0.2;
  const deadline = options.deadline ?? Math.ceil(count * interval + 2);
  const result = await driver.exec(from, pingCommand(toIp, { count, interval, deadline }), { timeoutMs: (deadline + 5) * 1000 });
  if (result.code !== 0 && result.code !== 1)
    throw new Error(`ping ${toIp} failed (exit ${result.code}): ${result.stderr}${result.stdout}`);
  return parsePing(result.stdout);
}

export interface PingStream {
  readonly pid: number;
  /** Replies so far. */
  progress(): PingResult;
  /** Stops the ping (SIGINT) and reports; a last request still in flight is not counted as lost. */
  stop(): Promise<PingResult>;
}

/** A ping that keeps going (default every 10 ms) until stopped, e.g. across an agent restart. */
export function startPing(driver: ClusterDriver, from: ExecTarget, toIp: string, options: { interval?: number } = {}): PingStream {
  const command = driver.background(from, pingCommand(toIp, { interval: options.interval ?? 0.01 }));
  return {
    pid: command.pid,
    progress: () => parsePing(command.output().stdout, { inFlightAtEnd: true }),
    async stop() {
      const result = await command.stop('SIGINT');
      return parsePing(result.stdout, { inFlightAtEnd: true });
    },
  };
}

// ---- HTTP (healthz, readyz, metrics) ----

/**
 * GETs `url` from inside a host or container with Node's fetch (no curl needed; every weft host has node).
 * Resolves with status 0 and the error message when the request fails.
 */
export async function httpGet(
  driver: ClusterDriver,
  from: ExecTarget,
  url: string,
  options: { timeoutMs?: number } = {},
): Promise<{ status: number; body: string }> {
  const timeoutMs = options.timeoutMs ?? 2_000;
  const script =
    `fetch(${JSON.stringify(url)}, { signal: AbortSignal.timeout(${timeoutMs}) })` +
    '.then(async (r) => console.log(JSON.stringify({ status: r.status, body: await r.text() })))' +
    '.catch((e) => console.log(JSON.stringify({ status: 0, body: String(e && e.cause ? e.cause : e) })))';
  const result = await driver.exec(from, `node -e ${shellQuote(script)}`, { timeoutMs: timeoutMs + 10_000, check: true });
  return JSON.parse(result.stdout) as { status: number; body: string };
}

// ---- subnet.env ----

/** Waits until the host's subnet.env exists and is complete (and, with `not`, names a subnet other than `not`). */
export function waitForSubnetEnv(
  driver: ClusterDriver,
  host: LabHost | string,
  options: { timeoutMs?: number; not?: string } = {},
): Promise<SubnetEnv> {
  const name = typeof host === 'string' ? host : host.name;
  return waitFor(
    async () => {
      const env = await driver.readSubnetEnv(host);
      if (env === undefined) return undefined;
      return options.not === undefined || (env.subnet ?? env.ipv6Subnet) !== options.not ? env : undefined;
    },
    `subnet.env of ${name}`,
    options.timeoutMs ?? 20_000,
    50,
  );
}

// ---- etcd (through etcdctl on the etcd host) ----

export interface EtcdEntry {
  key: string;
  value: string;
  /** The etcd lease (hex, as `etcdctl lease` takes it); undefined for a key without one (a reservation). */
  leaseId: string | undefined;
}

async function etcdctlChecked(driver: ClusterDriver, args: readonly string[]): Promise<string> {
  const result = await driver.etcdctl(args);
  if (result.code !== 0) throw new Error(`etcdctl ${args.join(' ')} failed (exit ${result.code}): ${result.stderr}`);
  return result.stdout;
}

export async function etcdPut(driver: ClusterDriver, key: string, value: string): Promise<void> {
  await etcdctlChecked(driver, ['put', '--', key, value]);
}

export async function etcdGet(driver: ClusterDriver, key: string, options: { prefix?: boolean } = {}): Promise<EtcdEntry[]> {
  const stdout = await etcdctlChecked(driver, ['get', '-w', 'json', ...(options.prefix === true ? ['--prefix'] : []), '--', key]);
  // Lease ids are int64: keep their digits exact.
  const parsed = JSON.parse(stdout.replace(/"lease":(\d+)/g, '"lease":"$1"')) as {
    kvs?: { key: string; value?: string; lease?: string }[];
  };
  return (parsed.kvs ?? []).map((kv) => ({
    key: Buffer.from(kv.key, 'base64').toString('utf8'),
    value: Buffer.from(kv.value ?? '', 'base64').toString('utf8'),
    leaseId: kv.lease === undefined || kv.lease === '0' ? undefined : BigInt(kv.lease).toString(16),
  }));
}

/** Deletes a key (or every key under a prefix); returns how many were deleted. */
export async function etcdDel(driver: ClusterDriver, key: string, options: { prefix?: boolean } = {}): Promise<number> {
  const stdout = await etcdctlChecked(driver, ['del', ...(options.prefix === true ? ['--prefix'] : []), '--', key]);
  return Number(stdout.trim());
}

/** Writes `<prefix>/config` (default prefix /coreos.com/network). */
export async function seedNetworkConfig(
  driver: ClusterDriver,
  config: object | string = LAB_NETWORK_CONFIG,
  prefix = NETWORK_PREFIX,
): Promise<void> {
  await etcdPut(driver, `${prefix}/config`, typeof config === 'string' ? config : JSON.stringify(config));
}

export interface SubnetLeaseEntry extends EtcdEntry {
  /** e.g. 198.18.5.0/24 (the IPv4 part of the key). */
  subnet: string;
  /** The lease value parsed as JSON (undefined if it is not JSON). */
  attrs: { PublicIP?: string; BackendType?: string; BackendData?: unknown; [field: string]: unknown } | undefined;
}

/** Every key under `<prefix>/subnets/`. */
export async function listSubnetLeases(driver: ClusterDriver, prefix = NETWORK_PREFIX): Promise<SubnetLeaseEntry[]> {
  const entries = await etcdGet(driver, `${prefix}/subnets/`, { prefix: true });
  return entries.map((entry) => {
    const name = entry.key.slice(`${prefix}/subnets/`.length).split('&')[0];
    let attrs: SubnetLeaseEntry['attrs'];
    try {
      attrs = JSON.parse(entry.value) as SubnetLeaseEntry['attrs'];
    } catch {
      attrs = undefined;
    }
    return { ...entry, subnet: name.replace(/-(\d+)$/, '/$1'), attrs };
  });
}

/** The lease key of the host whose PublicIP is `publicIp`, if any. */
export async function leaseOf(driver: ClusterDriver, publicIp: string, prefix = NETWORK_PREFIX): Promise<SubnetLeaseEntry | undefined> {
  return (await listSubnetLeases(driver, prefix)).find((entry) => entry.attrs?.PublicIP === publicIp);
}
