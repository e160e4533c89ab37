/**
 * The agent's HTTP endpoint (flanneld's --healthz-ip / --healthz-port):
 *
 *   GET /healthz  200 "ok" while the process is alive
 *   GET /readyz   200 when lease, dataplane and subnetEnv are all ready, else 503; JSON body either way
 *                 with the checks that are not ready and free-form info fields (backend mode, …)
 *   GET /metrics  the Prometheus text format of the agent's registry
 *   GET /peers    the peer prober's report (JSON): every peer's probe state, last RTT and since when;
 *                 ?state=problem for the peers that are not ok, ?lease=<name>,<name> for those named
 *
 * close() stops accepting, lets requests in flight finish (up to drainTimeoutMs) and ends keep-alive
 * connections; destroy() drops every connection at once.
 *
 * flanneld listens on --healthz-ip (default 0.0.0.0, every address) with Go's default server: no limit on
 * connections. This endpoint is reachable from the network in the same way, so it keeps what a client can
 * hold small: at most MAX_CONNECTIONS connections at a time (more are closed on arrival), headers of at most
 * MAX_HEADER_BYTES (431 beyond), no request bodies (413), and a request must arrive whole within
 * REQUEST_TIMEOUT_MS.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WeftError } from '../common/errors.js';
import type { PeersReport } from '../common/reachability.js';
import type { Logger } from './log.js';
import type { WeftMetrics } from './metrics.js';

export const READINESS_CHECKS = ['lease', 'dataplane', 'subnetEnv'] as const;
/** Connections served at once; Prometheus, a kubelet probe and weftctl need a handful. */
export const MAX_CONNECTIONS = 64;
/** The largest request head (request line and headers) taken. */
export const MAX_HEADER_BYTES = 8 * 1024;
/** How long a client has to send a whole request (its head: these requests have no body). */
export const REQUEST_TIMEOUT_MS = 10_000;
export type ReadinessCheck = (typeof READINESS_CHECKS)[number];
export type InfoValue = string | number | boolean | null;

export interface CheckState {
  ready: boolean;
  /** Why it is (not) ready, as last set. */
  reason?: string;
  /** ISO time of the last change. */
  since: string;
}

/** The /readyz body. */
export interface ReadinessReport {
  ready: boolean;
  notReady: ReadinessCheck[];
  checks: Record<ReadinessCheck, CheckState>;
  info: Record<string, InfoValue>;
}

/** What the agent has achieved so far; everything starts not ready. */
export class Readiness {
  private readonly checks = new Map<ReadinessCheck, CheckState>();
  private readonly info = new Map<string, InfoValue>();

  constructor() {
    const now = new Date().toISOString();
    for (const check of READINESS_CHECKS) this.checks.set(check, { ready: false, since: now });
  }

  setReady(check: ReadinessCheck, ready: boolean, reason?: string): void {
    if (!READINESS_CHECKS.includes(check)) throw new RangeError(`unknown readiness check ${JSON.stringify(check)}`);
    const current = this.checks.get(check)!;
    const since = current.ready === ready ? current.since : new Date().toISOString();
    this.checks.set(check, reason === undefined ? { ready, since } : { ready, reason, since });
  }

  /** One check, or all of them when `check` is omitted. */
  isReady(check?: ReadinessCheck): boolean {
    if (check !== undefined) return this.checks.get(check)?.ready ?? false;
    return [...this.checks.values()].every((state) => state.ready);
  }

  /** Sets a free-form field of the /readyz body; undefined removes it. */
  setInfo(key: string, value: InfoValue | undefined): void {
    if (value === undefined) this.info.delete(key);
    else this.info.set(key, value);
  }

  report(): ReadinessReport {
    const checks = Object.fromEntries(READINESS_CHECKS.map((check) => [check, { ...this.checks.get(check)! }])) as Record<
      ReadinessCheck,
      CheckState
    >;
    const notReady = READINESS_CHECKS.filter((check) => !checks[check].ready);
    return { ready: notReady.length === 0, notReady, checks, info: Object.fromEntries(this.info) };
  }
}

/** Which peers /peers reports: those not ok, and/or those named by lease. */
export interface PeersFilter {
  problems?: boolean;
  leases?: ReadonlySet<string>;
}

/** Bounds on what a /peers query may name. */
const MAX_QUERY_LEASES = 1000;
const MAX_LEASE_NAME = 100;

export interface HttpServerOptions {
  /** --healthz-ip (default 0.0.0.0). */
  host?: string;
  /** --healthz-port; 0 picks a free port. */
  port: number;
  readiness: Readiness;
  metrics: WeftMetrics;
  /** The peer prober's report; undefined (or returning undefined) while probing is off. */
  peers?: (filter: PeersFilter) => PeersReport | undefined;
  logger?: Logger;
  /** How long close() waits for requests in flight before dropping them (default 5 s). */
  drainTimeoutMs?: number;
  /** Connections served at once (default MAX_CONNECTIONS). */
  maxConnections?: number;
}

export class HealthServer {
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly server: Server,
    /** Shared with the request handler: once set, responses carry `Connection: close`. */
    private readonly state: { draining: boolean },
    readonly host: string,
    readonly port: number,
    private readonly drainTimeoutMs: number,
  ) {}

  /** Starts listening; rejects with WeftError WEFT_HTTP_LISTEN when the address is taken or invalid. */
  static async listen(options: HttpServerOptions): Promise<HealthServer> {
    const host = options.host ?? '0.0.0.0';
    const state = { draining: false };
    const server = createServer(
      { maxHeaderSize: MAX_HEADER_BYTES, requestTimeout: REQUEST_TIMEOUT_MS, headersTimeout: REQUEST_TIMEOUT_MS },
      (req, res) => {
        if (state.draining) res.setHeader('Connection', 'close');
        handle(req, res, options).catch((err: unknown) => {
          options.logger?.error({ err, url: req.url }, 'HTTP handler failed');
          if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', 'internal error\n');
          else res.destroy();
        });
      },
    );
    server.maxConnections = options.maxConnections ?? MAX_CONNECTIONS;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void =>
        reject(new WeftError('WEFT_HTTP_LISTEN', `cannot listen on ${host}:${options.port}: ${err.message}`, { cause: err }));
      server.once('error', onError);
      server.listen(options.port, host, () => {
        server.off('error', onError);
        resolve();
      });
    });
    const address = server.address() as AddressInfo;
    const instance = new HealthServer(server, state, address.address, address.port, options.drainTimeoutMs ?? 5000);
    options.logger?.info({ host: address.address, port: address.port }, 'serving /healthz, /readyz and /metrics');
    return instance;
  }

  /** e.g. http://127.0.0.1:9123 */
  get url(): string {
    return `http://${this.host.includes(':') ? `[${this.host}]` : this.host}:${this.port}`;
  }

  /** Stops accepting connections and resolves once requests in flight are answered (or the drain timeout hit). */
  close(): Promise<void> {
    if (!this.closing) {
      this.state.draining = true;
      this.closing = new Promise<void>((resolve) => {
        const timer = setTimeout(() => this.server.closeAllConnections(), this.drainTimeoutMs);
        timer.unref();
        this.server.close(() => {
          clearTimeout(timer);
          resolve();
        });
        this.server.closeIdleConnections();
      });
    }
    return this.closing;
  }

  /** Drops every connection now, answered or not. */
  destroy(): Promise<void> {
    const closed = this.close();
    this.server.closeAllConnections();
    return closed;
  }
}

function send(res: ServerResponse, status: number, contentType: string, body: string, head = false): void {
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
  res.end(head ? undefined : body);
}

async function handle(req: IncomingMessage, res: ServerResponse, options: HttpServerOptions): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const path = url.pathname;
  const known = path === '/healthz' || path === '/readyz' || path === '/metrics' || path === '/peers';
  if (!known) {
    send(res, 404, 'text/plain; charset=utf-8', 'not found\n');
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('Allow', 'GET, HEAD');
    send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n');
    return;
  }
  if (
    (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0') ||
    req.headers['transfer-encoding'] !== undefined
  ) {
    // Not read: the connection ends with the answer.
    res.setHeader('Connection', 'close');
    send(res, 413, 'text/plain; charset=utf-8', 'requests take no body\n');
    return;
  }
  const head = req.method === 'HEAD';
  switch (path) {
    case '/healthz':
      send(res, 200, 'text/plain; charset=utf-8', 'ok', head);
      return;
    case '/readyz': {
      const report = options.readiness.report();
      send(res, report.ready ? 200 : 503, 'application/json', `${JSON.stringify(report)}\n`, head);
      return;
    }
    case '/peers': {
      const filter = peersFilter(url.searchParams);
      if (typeof filter === 'string') {
        send(res, 400, 'text/plain; charset=utf-8', `${filter}\n`, head);
        return;
      }
      const report = options.peers?.(filter);
      if (report === undefined)
        send(res, 404, 'text/plain; charset=utf-8', 'peer probing is off (weftd --probe-interval=0, or no IPv4 overlay)\n', head);
      else send(res, 200, 'application/json', `${JSON.stringify(report)}\n`, head);
      return;
    }
    default:
      send(res, 200, options.metrics.contentType, await options.metrics.text(), head);
  }
}

/** The /peers query (?state=problem, ?lease=a,b), bounded; a string says what is wrong with it. */
function peersFilter(params: URLSearchParams): PeersFilter | string {
  const filter: PeersFilter = {};
  for (const key of params.keys())
    if (key !== 'state' && key !== 'lease')
      return `unknown query parameter ${JSON.stringify(key.slice(0, MAX_LEASE_NAME))} (state=problem, lease=<name>,…)`;
  const state = params.get('state');
  if (state !== null) {
    if (state !== 'problem') return 'state: only state=problem (the peers that are not ok) is known';
    filter.problems = true;
  }
  const leases = params
    .getAll('lease')
    .flatMap((value) => value.split(','))
    .filter((name) => name !== '');
  if (leases.length > MAX_QUERY_LEASES || leases.some((name) => name.length > MAX_LEASE_NAME))
    return `lease: at most ${MAX_QUERY_LEASES} names of at most ${MAX_LEASE_NAME} characters`;
  if (params.has('lease')) filter.leases = new Set(leases);
  return filter;
}
