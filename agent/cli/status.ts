/**
 * `weftctl status`: the cluster as etcd and the agents see it. Every lease is listed; with the agents'
 * health port (--healthz-port, or WEFTD_HEALTHZ_PORT from the node's environment file) each lease's host is
 * asked for /readyz, /metrics and /peers at <PublicIP>:<port>, and what it answers is joined to its lease.
 * The hosts' probe reports together say which directions between two hosts lose packets over the overlay,
 * and whether all of them or only the full-size ones (common/reachability.ts).
 */
import { formatTable } from '../../common/table.js';
import type { IgnoredLease } from '../../common/lease-arbiter.js';
import { leaseBackend, type Lease } from '../../common/lease.js';
import {
  brokenPaths,
  parsePeersReport,
  type HostProbes,
  type PathVerdict,
  type PeerReport,
  type PeersReport,
} from '../../common/reachability.js';
import type { ReadinessReport } from '../http.js';
import { formatRemaining, leasePublicIp, leasePublicIpv6, leaseSubnetText, leaseVtepMac, type StoredLease } from './ctl-common.js';

/** What one agent's endpoint said. */
export interface AgentReport {
  /** e.g. http://192.0.2.11:9910 */
  url: string;
  reachable: boolean;
  /** Why it could not be asked (connection refused, timeout, HTTP status, …). */
  error?: string;
  ready?: boolean;
  notReady?: string[];
  /** /readyz info fields (backend mode, …). */
  info?: Record<string, unknown>;
  /** weft_peers: peers the agent has programmed. */
  peers?: number;
  /** weft_etcd_reachable == 1 */
  etcdReachable?: boolean;
  /** weft_lease_expiry_timestamp_seconds (0 for a reservation). */
  leaseExpiry?: number;
  /** weft_reconcile_runs_total, all triggers. */
  reconcileRuns?: number;
  /** /peers?state=problem: the prober's report of the peers that are not ok (absent while probing is off). */
  probes?: PeersReport;
}

export interface StatusRow {
  /** The lease's name, e.g. "198.18.5.0-24" (the probe reports name peers by it). */
  lease: string;
  /** "198.18.5.0/24", "198.18.5.0/24,2001:db8:100:5::/64" (dual stack) or the IPv6 subnet alone. */
  subnet: string;
  /** The address its agent is asked at: PublicIP, or PublicIPv6 for an IPv6-only lease. */
  publicIP: string;
  /** PublicIPv6; "" when the lease has none. */
  publicIPv6: string;
  /** The backend the lease announces ("" for none: a lease without BackendType outside a udp network). */
  backend: string;
  vtepMac: string;
  /** Seconds left; undefined for a reservation. */
  ttlSeconds: number | undefined;
  reserved: boolean;
  /** Peers this host should program: per family, the other leases of its backend with a subnet and public IP of that family; the larger count (as weft_peers counts). */
  expectedPeers: number;
  /** Undefined when no health port was given. */
  agent: AgentReport | undefined;
  /** Directions from this host to others that the probes say lose packets (lost, mtu) or cannot tell yet (unknown). */
  paths: PathVerdict[];
  /** What is wrong with this host, in words; empty when nothing is. */
  problems: string[];
}

/** Sums every sample of each metric name in a Prometheus text exposition (labels ignored). */
export function sumMetrics(text: string): Map<string, number> {
  const sums = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)/.exec(line);
    if (match === null) continue;
    const value = Number(match[3]);
    if (!Number.isFinite(value)) continue;
    sums.set(match[1], (sums.get(match[1]) ?? 0) + value);
  }
  return sums;
}

function agentUrl(publicIP: string, port: number): string {
  return `http://${publicIP.includes(':') ? `[${publicIP}]` : publicIP}:${port}`;
}

function describeFetchError(err: unknown): string {
  const error = err as Error & { cause?: { code?: string; message?: string } };
  if (error.name === 'TimeoutError' || error.name === 'AbortError') return 'timed out';
  return error.cause?.code ?? error.cause?.message ?? error.message;
}

/** Asks one agent for /readyz and /metrics. Never rejects. */
export async function queryAgent(url: string, timeoutMs: number): Promise<AgentReport> {
  const get = async (path: string): Promise<{ status: number; body: string }> => {
    const response = await fetch(`${url}${path}`, { signal: AbortSignal.timeout(timeoutMs) });
    return { status: response.status, body: await response.text() };
  };
  let readyz: { status: number; body: string };
  try {
    readyz = await get('/readyz');
  } catch (err) {
    return { url, reachable: false, error: describeFetchError(err) };
  }
  const report: AgentReport = { url, reachable: true };
  try {
    const body = JSON.parse(readyz.body) as Partial<ReadinessReport>;
    report.ready = body.ready === true;
    report.notReady = Array.isArray(body.notReady) ? body.notReady.map(String) : [];
    if (body.info !== undefined && typeof body.info === 'object') report.info = body.info;
  } catch {
    return { url, reachable: true, error: `/readyz answered HTTP ${readyz.status} without a JSON body (is this a weftd?)` };
  }
  try {
    const metrics = await get('/metrics');
    if (metrics.status !== 200) {
      report.error = `/metrics answered HTTP ${metrics.status}`;
    } else {
      const sums = sumMetrics(metrics.body);
      report.peers = sums.get('weft_peers');
      const etcd = sums.get('weft_etcd_reachable');
      if (etcd !== undefined) report.etcdReachable = etcd === 1;
      report.leaseExpiry = sums.get('weft_lease_expiry_timestamp_seconds');
      report.reconcileRuns = sums.get('weft_reconcile_runs_total');
    }
  } catch (err) {
    report.error = `/metrics: ${describeFetchError(err)}`;
  }
  try {
    const peers = await get('/peers?state=problem');
    // 404: probing is off on that host (or it is a weft without probing)
    if (peers.status === 200) {
      const parsed = parsePeersReport(peers.body);
      if (typeof parsed === 'string') report.error = parsed;
      else report.probes = parsed;
    } else if (peers.status !== 404) {
      report.error = `/peers answered HTTP ${peers.status}`;
    }
  } catch (err) {
    report.error = `/peers: ${describeFetchError(err)}`;
  }
  return report;
}

/** Asks one agent for its records of the peers named; an empty map when it cannot be asked. Never rejects. */
async function queryRecords(url: string, leases: readonly string[], timeoutMs: number): Promise<Map<string, PeerReport>> {
  const records = new Map<string, PeerReport>();
  for (let at = 0; at < leases.length; at += 200) {
    const names = leases
      .slice(at, at + 200)
      .map(encodeURIComponent)
      .join(',');
    try {
      const response = await fetch(`${url}/peers?lease=${names}`, { signal: AbortSignal.timeout(timeoutMs) });
      const parsed = parsePeersReport(await response.text());
      if (response.status !== 200 || typeof parsed === 'string') continue;
      for (const record of parsed.peers) records.set(record.lease, record);
    } catch {
      // the pair's verdict says the records are missing
    }
  }
  return records;
}

/**
 * Every direction between two hosts that a probe report says is not ok, with its verdict. A host's report
 * lists only the peers it has trouble with: the other side's record of each such pair is asked for.
 */
async function probePaths(rows: readonly Omit<StatusRow, 'problems' | 'paths'>[], timeoutMs: number): Promise<PathVerdict[]> {
  const hosts = rows.map((row): HostProbes & { url: string | undefined; records: Map<string, PeerReport> } => ({
    lease: row.lease,
    publicIP: row.publicIP,
    report: row.agent?.probes,
    records: new Map((row.agent?.probes?.peers ?? []).map((record) => [record.lease, record])),
    url: row.agent?.probes === undefined ? undefined : row.agent.url,
  }));
  const byLease = new Map(hosts.map((host) => [host.lease, host]));
  const wanted = new Map<string, Set<string>>();
  for (const host of hosts) {
    for (const record of host.records.values()) {
      const other = byLease.get(record.lease);
      if (record.state === 'ok' || other?.url === undefined || other.records.has(host.lease)) continue;
      if (!wanted.has(other.lease)) wanted.set(other.lease, new Set());
      wanted.get(other.lease)!.add(host.lease);
    }
  }
  await Promise.all(
    [...wanted].map(async ([lease, names]) => {
      const host = byLease.get(lease)!;
      for (const [name, record] of await queryRecords(host.url!, [...names], timeoutMs)) host.records.set(name, record);
    }),
  );
  return brokenPaths(hosts);
}

/**
 * Peers `lease`'s host should program: per family it has, the other leases of its backend with a subnet and
 * public IP of that family (not its own public IP). weft_peers is the larger of the per-family counts.
 */
function expectedPeers(lease: Lease, all: readonly Lease[], networkBackend: string | undefined): number {
  const backend = leaseBackend(lease.attrs, networkBackend);
  const count = (family: 4 | 6): number => {
    const subnet = (of: Lease) => (family === 4 ? of.subnets.ipv4 : of.subnets.ipv6);
    const publicIP = (of: Lease) => (family === 4 ? of.attrs.publicIP : of.attrs.publicIPv6);
    if (subnet(lease) === undefined) return 0;
    const own = publicIP(lease);
    return all.filter((other) => {
      const address = publicIP(other);
      return (
        other.name !== lease.name &&
        leaseBackend(other.attrs, networkBackend) === backend &&
        subnet(other) !== undefined &&
        address !== undefined &&
        !(own !== undefined && address.equals(own))
      );
    }).length;
  };
  return Math.max(count(4), count(6));
}

function problemsOf(row: Omit<StatusRow, 'problems'>): string[] {
  const problems: string[] = [];
  if (row.ttlSeconds !== undefined && row.ttlSeconds < 0) problems.push('lease expired');
  const agent = row.agent;
  if (agent === undefined) return problems;
  if (!agent.reachable) {
    // a reservation may name a host that is not up yet: that is no fault
    if (!row.reserved) problems.push(`agent unreachable at ${agent.url} (${agent.error ?? 'no answer'})`);
    return problems;
  }
  if (agent.ready === undefined) {
    problems.push(agent.error ?? 'no readiness report');
    return problems;
  }
  if (!agent.ready) problems.push(`not ready: ${(agent.notReady ?? []).join(', ') || 'unknown'}`);
  if (agent.etcdReachable === false) problems.push('agent cannot reach etcd');
  const takeover = agent.info?.leaseTakenOver;
  if (typeof takeover === 'string') problems.push(takeover);
  if (agent.peers !== undefined && agent.ready && agent.peers < row.expectedPeers) {
    problems.push(`programs ${agent.peers} of ${row.expectedPeers} peers (see its log for "not programming a peer lease")`);
  }
  if (agent.error !== undefined) problems.push(agent.error);
  for (const path of row.paths) {
    if (path.state === 'lost' || path.state === 'mtu')
      problems.push(`${path.detail}${path.since === null ? '' : ` (since ${path.since})`}`);
  }
  return problems;
}

export interface StatusOptions {
  /** The agents' --healthz-port; 0 = do not contact them. */
  healthzPort: number;
  timeoutMs: number;
  /** The config's Backend.Type (a lease without BackendType is a udp host's in a udp network). */
  networkBackend: string | undefined;
}

/**
 * Joins the leases with their agents' reports; agents are asked in parallel. A lease every weftd ignores
 * (`ignored`) counts as nobody's peer, and its row has that as its problem (its agent is not asked).
 */
export async function collectStatus(
  leases: readonly StoredLease[],
  remaining: readonly (number | undefined)[],
  options: StatusOptions,
  ignored: ReadonlyMap<string, IgnoredLease> = new Map(),
): Promise<StatusRow[]> {
  const all = leases.map((stored) => stored.lease).filter((lease) => !ignored.has(lease.name));
  const rows = await Promise.all(
    leases.map(async ({ lease }, i) => {
      const publicIP = leasePublicIp(lease);
      const unused = ignored.get(lease.name);
      const asked = options.healthzPort > 0 && publicIP !== '' && unused === undefined;
      const agent = asked ? await queryAgent(agentUrl(publicIP, options.healthzPort), options.timeoutMs) : undefined;
      return {
        lease: lease.name,
        unused,
        subnet: leaseSubnetText(lease),
        publicIP,
        publicIPv6: leasePublicIpv6(lease),
        backend: leaseBackend(lease.attrs, options.networkBackend),
        vtepMac: leaseVtepMac(lease),
        ttlSeconds: remaining[i],
        reserved: lease.reservation,
        expectedPeers: unused === undefined ? expectedPeers(lease, all, options.networkBackend) : 0,
        agent,
      };
    }),
  );
  const paths = await probePaths(rows, options.timeoutMs);
  return rows.map(({ unused, ...row }) => {
    const withPaths = { ...row, paths: paths.filter((path) => path.from === row.lease) };
    return { ...withPaths, problems: unused === undefined ? problemsOf(withPaths) : [`every weftd ignores this lease: ${unused.detail}`] };
  });
}

function agentState(agent: AgentReport | undefined): string {
  if (agent === undefined) return '-';
  if (!agent.reachable) return 'unreachable';
  if (agent.ready === undefined) return 'unknown';
  return agent.ready ? 'ready' : 'not ready';
}

/** At most this many hosts get the reachability matrix in the table output (every broken path is listed). */
const MATRIX_HOSTS = 16;
const PATH_CELL: Record<PathVerdict['state'], string> = { ok: 'ok', lost: 'LOST', mtu: 'MTU', unknown: '?' };

/**
 * The directions between the hosts whose agents report probes: a matrix (row: from, column: to) for a
 * small cluster, and a line for each direction that loses packets, saying why. Empty when no agent probes.
 */
export function formatReachability(rows: readonly StatusRow[]): string {
  const probing = rows.filter((row) => row.agent?.probes !== undefined);
  if (probing.length === 0) return '';
  const name = (lease: string) => rows.find((row) => row.lease === lease)?.publicIP ?? lease;
  const lines: string[] = [];
  if (rows.length <= MATRIX_HOSTS) {
    const cell = (from: StatusRow, to: StatusRow): string => {
      if (from === to) return '-';
      const verdict = from.paths.find((path) => path.to === to.lease);
      if (verdict !== undefined) return PATH_CELL[verdict.state];
      return from.agent?.probes !== undefined || to.agent?.probes !== undefined ? 'ok' : '?';
    };
    lines.push(
      '',
      '',
      'REACHABILITY over the overlay, row to column (ok; LOST: no packet arrives; MTU: only small packets arrive; ?: not known)',
    );
    lines.push(
      formatTable([
        ['FROM \\ TO', ...rows.map((row) => row.publicIP)],
        ...rows.map((from) => [from.publicIP, ...rows.map((to) => cell(from, to))]),
      ]),
    );
  }
  const broken = rows.flatMap((row) => row.paths.filter((path) => path.state === 'lost' || path.state === 'mtu'));
  lines.push('', broken.length === 0 ? 'no broken paths' : `BROKEN PATHS (${broken.length})`);
  for (const path of broken) {
    lines.push(
      `${name(path.from)} → ${name(path.to)}: ${path.state === 'mtu' ? 'MTU' : 'no reply'}: ${path.detail}${path.since === null ? '' : ` (since ${path.since})`}`,
    );
  }
  return lines.join('\n');
}

export function formatStatus(rows: readonly StatusRow[]): string {
  return formatTable([
    ['SUBNET', 'PUBLIC IP', 'BACKEND', 'EXPIRES', 'AGENT', 'PEERS', 'PROBLEMS'],
    ...rows.map((row) => [
      row.subnet,
      [row.publicIP, row.publicIPv6].filter((ip, i, both) => ip !== '' && both.indexOf(ip) === i).join(','),
      row.backend || '-',
      row.reserved ? 'reserved' : formatRemaining(row.ttlSeconds ?? 0),
      agentState(row.agent),
      row.agent?.peers === undefined ? '-' : `${row.agent.peers}/${row.expectedPeers}`,
      row.problems.join('; ') || '-',
    ]),
  ]);
}
