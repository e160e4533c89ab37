/**
 * The simulated hosts of the cluster benchmark (cluster.ts): `count` weft agents in one process, each with
 * weft's own registry code wired as weftd wires it — its own etcd client from connectEtcd, a ConfigWatcher,
 * a LeaseWatcher and a SubnetLeaseManager — and no kernel. Started by the benchmark inside a lab host's
 * namespace:
 *
 *   node cluster-agents.js '<AgentsOptions as JSON>'
 *
 * Commands come as JSON lines on stdin (`{"id":1,"op":"start",…}`), and each gets one JSON line on stdout
 * with the same id. Times are CLOCK_MONOTONIC milliseconds (process.hrtime), the same clock in every process.
 * Each agent's etcd calls are counted per second of that clock by kind, so that the benchmark can show when
 * the agents listed, and the lease watchers' re-lists are recorded as they happen.
 */
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import type { Etcd3 } from 'etcd3';
import { destination } from 'pino';
import { IpAddress } from '../../common/cidr.js';
import { createLogger, type Logger } from '../../agent/log.js';
import { ConfigWatcher } from '../../agent/registry/config-watcher.js';
import { connectEtcd, NetworkKeys } from '../../agent/registry/etcd.js';
import { LeaseWatcher } from '../../agent/registry/lease-watcher.js';
import { SubnetLeaseManager, type LeaseRequest } from '../../agent/registry/subnet-lease.js';

export interface AgentsOptions {
  /** global index of this process's first agent; agent i is host i of the cluster */
  first: number;
  count: number;
  /** agents in the whole cluster: an agent is complete when it sees this many leases */
  total: number;
  endpoints: string[];
  caFile: string;
  certFile: string;
  keyFile: string;
  prefix: string;
  logFile: string;
}

export type AgentsCommand =
  | { id: number; op: 'start'; at: number; ttlSeconds?: number; renewMarginSeconds?: number }
  | { id: number; op: 'wait'; until: 'complete'; timeoutMs: number }
  | { id: number; op: 'wait'; until: 'relisted'; since: number; timeoutMs: number }
  | { id: number; op: 'stop' }
  | { id: number; op: 'report' }
  | { id: number; op: 'exit' };

/** etcd calls of one second, by kind: `list` (a page of a prefix listing), `get`, `txn`, `txn-lost`, `grant`, `revoke`; `failed` counts calls that failed. */
export type CallCounts = Record<string, number>;

export interface AgentsReport {
  /** second of the monotonic clock → counts */
  calls: Record<number, CallCounts>;
  /** lease watcher listings after a disruption: time and reason */
  relists: { at: number; reason: string }[];
  /** own-lease renewals (the manager's 'renewed' events) */
  renewals: number[];
  /** own leases lost (deleted, expired or taken over) */
  lost: number;
  /** the lease managers' 'error' events: a renewal or re-acquisition that failed and is retried */
  leaseErrors: number;
  /** failed acquisitions (retried) */
  acquireErrors: number;
  rssBytes: number;
  heapUsedBytes: number;
  /** CPU time of the process so far (user + system) */
  cpuSeconds: number;
}

/** When every agent of this process got there (ms; null: not yet), for `wait`. */
export interface WaitAnswer {
  /** per agent: when it held its lease, and when it had seen every lease of the cluster (complete) */
  leasedAt: (number | null)[];
  completeAt: (number | null)[];
  /** per agent: its first lease watcher listing since `since` (relisted) */
  relistedAt: (number | null)[];
  timedOut: boolean;
}

const now = (): number => Number(process.hrtime.bigint()) / 1e6;

class Tally {
  readonly calls = new Map<number, CallCounts>();

  count(kind: string, n = 1): void {
    const second = Math.floor(now() / 1000);
    let counts = this.calls.get(second);
    if (counts === undefined) this.calls.set(second, (counts = {}));
    counts[kind] = (counts[kind] ?? 0) + n;
  }

  async call<T>(kind: string, request: Promise<T>): Promise<T> {
    this.count(kind);
    try {
      return await request;
    } catch (err) {
      this.count('failed');
      throw err;
    }
  }
}

/** Counts the calls the registry code makes (the client's own methods, wrapped in place). */
function instrument(client: Etcd3, tally: Tally): void {
  const kv = client.kv;
  const range = kv.range.bind(kv);
  const txn = kv.txn.bind(kv);
  kv.range = (request, options) => tally.call(request.range_end === undefined ? 'get' : 'list', range(request, options));
  kv.txn = async (request, options) => {
    const response = await tally.call('txn', txn(request, options));
    if (!response.succeeded) tally.count('txn-lost');
    return response;
  };
  const leases = client.leaseClient;
  const grant = leases.leaseGrant.bind(leases);
  const revoke = leases.leaseRevoke.bind(leases);
  leases.leaseGrant = (request, options) => tally.call('grant', grant(request, options));
  leases.leaseRevoke = (request, options) => tally.call('revoke', revoke(request, options));
}

const hex = (n: number): string => n.toString(16).padStart(2, '0');

class SimAgent {
  leasedAt: number | undefined;
  completeAt: number | undefined;
  readonly relists: number[] = [];
  private client: Etcd3 | undefined;
  private configWatcher: ConfigWatcher | undefined;
  private leaseWatcher: LeaseWatcher | undefined;
  private manager: SubnetLeaseManager | undefined;
  private abort = new AbortController();
  private running: Promise<void> | undefined;

  constructor(
    readonly index: number,
    private readonly options: AgentsOptions,
    private readonly tally: Tally,
    private readonly report: AgentsReport,
    private readonly log: Logger,
  ) {}

  /** What the agent publishes: a public IP of 198.19.0.0/16 (never contacted) and a VtepMAC of its own. */
  private request(): LeaseRequest {
    const host = this.index + 1;
    return {
      publicIP: IpAddress.parse(`198.19.${host >>> 8}.${host & 255}`),
      publicIPv6: undefined,
      backendType: 'vxlan',
      backendData: { VNI: 1, VtepMAC: `0e:57:00:${hex((host >>> 16) & 255)}:${hex((host >>> 8) & 255)}:${hex(host & 255)}` },
      backendV6Data: undefined,
      nodeId: `sim-${this.index}`,
    };
  }

  /** Forgets the last start's times: a `wait` that comes before the next start must not see them. */
  reset(): void {
    this.leasedAt = undefined;
    this.completeAt = undefined;
  }

  start(ttlSeconds: number | undefined, renewMarginSeconds: number | undefined): void {
    this.abort = new AbortController();
    const client = connectEtcd({
      endpoints: this.options.endpoints,
      caFile: this.options.caFile,
      certFile: this.options.certFile,
      keyFile: this.options.keyFile,
    });
    instrument(client, this.tally);
    const keys = new NetworkKeys(this.options.prefix);
    const log = this.log.child({ agent: this.index });
    this.client = client;
    this.configWatcher = new ConfigWatcher({ client, keys, logger: log });
    const leaseWatcher = new LeaseWatcher({ client, keys, logger: log });
    this.leaseWatcher = leaseWatcher;
    const manager = new SubnetLeaseManager({ client, keys, logger: log, ttlSeconds, renewMarginSeconds });
    this.manager = manager;
    leaseWatcher.on('synced', (reason) => {
      if (reason === 'initial list') return;
      const at = now();
      this.relists.push(at);
      this.report.relists.push({ at, reason });
    });
    leaseWatcher.on('lease', () => this.checkComplete());
    manager.on('renewed', () => this.report.renewals.push(now()));
    manager.on('lost', () => this.report.lost++);
    manager.on('error', () => this.report.leaseErrors++);
    this.running = this.run(this.configWatcher, leaseWatcher, manager).catch((err: Error) => {
      if (!this.abort.signal.aborted) log.error({ err: err.message }, 'simulated agent failed');
    });
  }

  /** weftd's start, registry part: the config, then the lease and the lease watcher side by side. */
  private async run(configWatcher: ConfigWatcher, leaseWatcher: LeaseWatcher, manager: SubnetLeaseManager): Promise<void> {
    const config = await configWatcher.waitForValid(this.abort.signal);
    const acquire = async () => {
      let delay = 500;
      for (;;) {
        try {
          await manager.acquire(config, this.request());
          this.leasedAt = now();
          return;
        } catch (err) {
          if (this.abort.signal.aborted) throw err;
          this.report.acquireErrors++;
          await new Promise((resolve) => setTimeout(resolve, delay));
          delay = Math.min(delay * 2, 30_000);
        }
      }
    };
    await Promise.all([acquire(), leaseWatcher.start(config)]);
    this.checkComplete();
  }

  private checkComplete(): void {
    if (this.completeAt === undefined && this.leasedAt !== undefined && (this.leaseWatcher?.leases.size ?? 0) >= this.options.total)
      this.completeAt = now();
  }

  /** weftd's SIGTERM: stop watching and renewing, keep the lease, close the client. */
  async stop(): Promise<void> {
    this.abort.abort();
    await this.leaseWatcher?.stop();
    await this.configWatcher?.stop();
    await this.manager?.stop();
    await this.running;
    this.client?.close();
    this.client = undefined;
  }
}

async function main(): Promise<void> {
  const options = JSON.parse(process.argv[2] ?? '') as AgentsOptions;
  const log = createLogger('info', destination({ dest: options.logFile, sync: false }));
  const tally = new Tally();
  const report: AgentsReport = {
    calls: {},
    relists: [],
    renewals: [],
    lost: 0,
    leaseErrors: 0,
    acquireErrors: 0,
    rssBytes: 0,
    heapUsedBytes: 0,
    cpuSeconds: 0,
  };
  const agents = Array.from({ length: options.count }, (_, i) => new SimAgent(options.first + i, options, tally, report, log));
  const reply = (id: number, body: object) => process.stdout.write(`${JSON.stringify({ id, ...body })}\n`);

  const wait = async (command: Extract<AgentsCommand, { op: 'wait' }>): Promise<WaitAnswer> => {
    const deadline = now() + command.timeoutMs;
    const relistedAt = (agent: SimAgent) => (command.until === 'relisted' ? agent.relists.find((at) => at >= command.since) : undefined);
    const done = (agent: SimAgent) => (command.until === 'complete' ? agent.completeAt !== undefined : relistedAt(agent) !== undefined);
    while (!agents.every(done) && now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    return {
      leasedAt: agents.map((agent) => agent.leasedAt ?? null),
      completeAt: agents.map((agent) => agent.completeAt ?? null),
      relistedAt: agents.map((agent) => relistedAt(agent) ?? null),
      timedOut: !agents.every(done),
    };
  };

  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    const command = JSON.parse(line) as AgentsCommand;
    switch (command.op) {
      case 'start':
        for (const agent of agents) agent.reset();
        setTimeout(
          () => {
            for (const agent of agents) agent.start(command.ttlSeconds, command.renewMarginSeconds);
          },
          Math.max(0, command.at - now()),
        );
        reply(command.id, {});
        break;
      case 'wait':
        void wait(command).then((answer) => reply(command.id, answer));
        break;
      case 'stop': {
        const started = now();
        await Promise.all(agents.map((agent) => agent.stop()));
        reply(command.id, { ms: now() - started });
        break;
      }
      case 'report': {
        const memory = process.memoryUsage();
        const cpu = process.cpuUsage();
        reply(command.id, {
          ...report,
          calls: Object.fromEntries(tally.calls),
          rssBytes: memory.rss,
          heapUsedBytes: memory.heapUsed,
          cpuSeconds: (cpu.user + cpu.system) / 1e6,
        });
        break;
      }
      case 'exit':
        await Promise.all(agents.map((agent) => agent.stop()));
        reply(command.id, {});
        process.exit(0);
    }
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    process.stderr.write(`cluster agents: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
