/**
 * etcd's own view of a benchmark: its Prometheus counters, scraped from every member about once a second by
 * a child process inside the lab (the members are reachable only from the lab's namespaces):
 *
 *   node etcd-metrics.js '<ScrapeOptions as JSON>'
 *
 * writes one JSON line per round, `{"at": <CLOCK_MONOTONIC ms>, "members": [MemberSample | null, …]}` (null: the
 * member did not answer), until its stdin closes. `rates` turns rounds into per-second figures, counting a
 * member's restart (its counters start again from zero) as such.
 */
import { readFileSync } from 'node:fs';
import { get } from 'node:https';
import { pathToFileURL } from 'node:url';

export interface ScrapeOptions {
  /** https://ip:2379 of each member */
  endpoints: string[];
  caFile: string;
  certFile: string;
  keyFile: string;
  intervalMs: number;
}

/** What the benchmark reads of one member's /metrics. Counters end in Total. */
export interface MemberSample {
  startTime: number;
  /** gRPC calls and streams started, every method */
  requestsTotal: number;
  /** by method: Range, Txn, Put, LeaseGrant, LeaseRevoke, Watch, … */
  startedTotal: Record<string, number>;
  /** gRPC calls that ended with another code than OK */
  errorsTotal: number;
  watchStreams: number;
  watchers: number;
  leasesGrantedTotal: number;
  leasesRevokedTotal: number;
  sentBytesTotal: number;
  receivedBytesTotal: number;
  cpuSecondsTotal: number;
  rssBytes: number;
  dbBytes: number;
  openFds: number;
  slowWatchers: number;
}

export interface ScrapeRound {
  at: number;
  members: (MemberSample | null)[];
}

/** One sample from etcd's Prometheus text (etcd 3.4's metric names). */
export function parseEtcdMetrics(text: string): MemberSample {
  const sample: MemberSample = {
    startTime: 0,
    requestsTotal: 0,
    startedTotal: {},
    errorsTotal: 0,
    watchStreams: 0,
    watchers: 0,
    leasesGrantedTotal: 0,
    leasesRevokedTotal: 0,
    sentBytesTotal: 0,
    receivedBytesTotal: 0,
    cpuSecondsTotal: 0,
    rssBytes: 0,
    dbBytes: 0,
    openFds: 0,
    slowWatchers: 0,
  };
  const single: Record<string, keyof MemberSample> = {
    process_start_time_seconds: 'startTime',
    etcd_debugging_mvcc_watch_stream_total: 'watchStreams',
    etcd_debugging_mvcc_watcher_total: 'watchers',
    etcd_debugging_lease_granted_total: 'leasesGrantedTotal',
    etcd_debugging_lease_revoked_total: 'leasesRevokedTotal',
    etcd_network_client_grpc_sent_bytes_total: 'sentBytesTotal',
    etcd_network_client_grpc_received_bytes_total: 'receivedBytesTotal',
    process_cpu_seconds_total: 'cpuSecondsTotal',
    process_resident_memory_bytes: 'rssBytes',
    etcd_mvcc_db_total_size_in_bytes: 'dbBytes',
    process_open_fds: 'openFds',
    etcd_debugging_mvcc_slow_watcher_total: 'slowWatchers',
  };
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})? (\S+)/.exec(line);
    if (match === null) continue;
    const [, name, labelText = '', valueText] = match;
    const value = Number(valueText);
    if (!Number.isFinite(value)) continue;
    const field = single[name];
    if (field !== undefined) {
      (sample as unknown as Record<string, number>)[field] = value;
      continue;
    }
    if (name !== 'grpc_server_started_total' && name !== 'grpc_server_handled_total') continue;
    const labels = Object.fromEntries([...labelText.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (name === 'grpc_server_started_total') {
      sample.requestsTotal += value;
      const method = labels.grpc_method ?? '?';
      sample.startedTotal[method] = (sample.startedTotal[method] ?? 0) + value;
    } else if (labels.grpc_code !== 'OK') {
      sample.errorsTotal += value;
    }
  }
  return sample;
}

/** How much a counter of all members grew in the interval that ended at `at` (ms), and per second. */
export interface Increase {
  at: number;
  seconds: number;
  delta: number;
  perSecond: number;
}

/**
 * The growth of a counter summed over the members, per interval between consecutive rounds. A member is
 * compared with the last round it answered in; one whose start time changed (or whose counter went down)
 * restarted and counts from zero.
 */
export function increases(rounds: readonly ScrapeRound[], counter: (sample: MemberSample) => number): Increase[] {
  const last: (MemberSample | undefined)[] = [];
  const out: Increase[] = [];
  rounds.forEach((round, i) => {
    let delta = 0;
    round.members.forEach((after, member) => {
      if (after === null) return;
      const before = last[member];
      last[member] = after;
      if (before === undefined) return;
      const restarted = after.startTime !== before.startTime || counter(after) < counter(before);
      delta += restarted ? counter(after) : counter(after) - counter(before);
    });
    if (i === 0) return;
    const seconds = (round.at - rounds[i - 1].at) / 1000;
    out.push({ at: round.at, seconds, delta, perSecond: seconds > 0 ? delta / seconds : 0 });
  });
  return out;
}

/** The intervals that overlap (from, to): a window shorter than the scrape interval still gets the one that holds it. */
export function within(series: readonly Increase[], from: number, to: number): Increase[] {
  return series.filter((entry) => entry.at > from && entry.at - entry.seconds * 1000 < to);
}

/** The sum over the members that answered of a gauge. */
export function gauge(round: ScrapeRound, value: (sample: MemberSample) => number): number {
  return round.members.reduce((sum, sample) => sum + (sample === null ? 0 : value(sample)), 0);
}

function scrape(url: string, tls: { ca: Buffer; cert: Buffer; key: Buffer }, timeoutMs: number): Promise<MemberSample | null> {
  return new Promise((resolve) => {
    const request = get(`${url}/metrics`, { ...tls, timeout: timeoutMs }, (response) => {
      let body = '';
      response.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve(response.statusCode === 200 ? parseEtcdMetrics(body) : null));
      response.on('error', () => resolve(null));
    });
    request.on('timeout', () => request.destroy());
    request.on('error', () => resolve(null));
  });
}

async function main(): Promise<void> {
  const options = JSON.parse(process.argv[2] ?? '') as ScrapeOptions;
  const tls = { ca: readFileSync(options.caFile), cert: readFileSync(options.certFile), key: readFileSync(options.keyFile) };
  let open = true;
  process.stdin.on('end', () => (open = false)).resume();
  while (open) {
    const started = Date.now();
    const at = Number(process.hrtime.bigint()) / 1e6;
    const members = await Promise.all(options.endpoints.map((url) => scrape(url, tls, options.intervalMs - 100)));
    process.stdout.write(`${JSON.stringify({ at, members } satisfies ScrapeRound)}\n`);
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, options.intervalMs - (Date.now() - started))));
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    process.stderr.write(`etcd metrics: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
