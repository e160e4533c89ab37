/**
 * `weftctl status`: the cluster as etcd and the agents see it. Every lease is listed; with the agents'
 * health port (--healthz-port, or WEFTD_HEALTHZ_PORT from the node's environment file) each lease's host is
 * asked for /readyz and /metrics at <PublicIP>:<port>, and what it answers is joined to its lease.
 */
import { formatTable } from '../../common/table.js';
import type { IgnoredLease } from '../../common/lease-arbiter.js';
import { leaseBackend, type Lease } from '../../common/lease.js';
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
}

export interface StatusRow {
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
  return report;
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
      return other.name !== lease.name
        && leaseBackend(other.attrs, networkBackend) === backend
        && subnet(other) !== undefined
        && address !== undefined
        && !(own !== undefined && address.equals(own));
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
  return Promise.all(leases.map(async ({ lease }, i) => {
    const publicIP = leasePublicIp(lease);
    const unused = ignored.get(lease.name);
    const asked = options.healthzPort > 0 && publicIP !== '' && unused === undefined;
    const agent = asked ? await queryAgent(agentUrl(publicIP, options.healthzPort), options.timeoutMs) : undefined;
    const row = {
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
    return { ...row, problems: unused === undefined ? problemsOf(row) : [`every weftd ignores this lease: ${unused.detail}`] };
  }));
}

function agentState(agent: AgentReport | undefined): string {
  if (agent === undefined) return '-';
  if (!agent.reachable) return 'unreachable';
  if (agent.ready === undefined) return 'unknown';
  return agent.ready ? 'ready' : 'not ready';
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
