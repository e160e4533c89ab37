/**
 * The agent's side of the data-path worker (worker.ts): starts it, hands it its config and the peer tables,
 * collects its counters, and restarts it when it dies (with a growing delay while it keeps failing to
 * start). Counters survive restarts: what a dead worker last reported is kept and added to its successor's.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { WeftError } from '../../common/errors.js';
import { childEnvironment } from '../host/command.js';
import type { Logger } from '../log.js';
import {
  addDataPathCounters,
  emptyDataPathCounters,
  type DataPathCounters,
  type ParentMessage,
  type WireNet,
  type WirePeer,
  type WorkerConfig,
  type WorkerMessage,
} from './protocol.js';

const WORKER = fileURLToPath(new URL('./worker.js', import.meta.url));
const START_TIMEOUT_MS = 10_000;
const STATS_TIMEOUT_MS = 1_000;
const MIN_RESTART_DELAY_MS = 200;
const MAX_RESTART_DELAY_MS = 10_000;
/** A worker that ran this long before dying restarts at the shortest delay again. */
const HEALTHY_AFTER_MS = 30_000;

/** The data-path worker could not be started; `code` is the worker's (WEFT_USERSPACE_BIND, …) or WEFT_USERSPACE_WORKER. */
export class WorkerStartError extends WeftError {
  constructor(code: string, message: string) {
    super(code, message);
  }
}

/** libpcap's remark about a capture device without an IPv4 address: expected for ours. */
const HARMLESS_STDERR = /no IPv4 address assigned - This may not actually work/;

interface Running {
  child: ChildProcess;
  ready: boolean;
  startedAt: number;
  /** What the worker last reported. */
  counters: DataPathCounters;
  stderr: string;
}

export class DataPathWorker {
  private running: Running | undefined;
  private starting: Promise<void> | undefined;
  /** Counters of the workers that died, added up. */
  private readonly base = emptyDataPathCounters();
  private peers: Extract<ParentMessage, { t: 'peers' }> | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private restartDelay = MIN_RESTART_DELAY_MS;
  private closed = false;
  private statsId = 0;
  private readonly statsWaiters = new Map<number, (counters: DataPathCounters | undefined) => void>();
  /** Times the worker died, failed to start again or was replaced. */
  restarts = 0;

  constructor(
    private readonly config: WorkerConfig,
    private readonly log: Logger,
  ) {}

  get isRunning(): boolean {
    return this.running?.ready === true;
  }

  /** Starts the worker unless it runs; rejects with WorkerStartError when it cannot start. */
  ensureRunning(): Promise<void> {
    if (this.closed) return Promise.reject(new WorkerStartError('WEFT_USERSPACE_WORKER', 'the data-path worker is closed'));
    if (this.running?.ready === true) return Promise.resolve();
    clearTimeout(this.restartTimer);
    this.starting ??= this.start().finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }

  /** Stops the running worker and starts a new one (e.g. after its capture device was recreated). */
  async restart(): Promise<void> {
    const running = this.running;
    if (running !== undefined) {
      this.running = undefined;
      this.retire(running);
      running.child.kill('SIGKILL');
      this.restarts++;
    }
    await this.ensureRunning();
  }

  setPeers(own: WireNet | null, peers: readonly WirePeer[]): void {
    this.peers = { t: 'peers', own, peers: [...peers] };
    this.send(this.peers);
  }

  /** Everything counted so far, the running worker's latest included. */
  async counters(): Promise<DataPathCounters> {
    const running = this.running;
    const fresh = running?.ready === true ? await this.requestCounters() : undefined;
    const total = emptyDataPathCounters();
    // A worker that died meanwhile has been added to base already.
    addDataPathCounters(total, this.base);
    if (running !== undefined && this.running === running) addDataPathCounters(total, fresh ?? running.counters);
    return total;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.restartTimer);
    const running = this.running;
    this.running = undefined;
    if (running === undefined) return;
    const exited = new Promise<void>((resolve) => running.child.once('exit', () => resolve()));
    if (running.child.connected) running.child.disconnect();
    const timer = setTimeout(() => running.child.kill('SIGKILL'), 2000);
    await exited;
    clearTimeout(timer);
  }

  private send(message: ParentMessage): void {
    const child = this.running?.child;
    if (child?.connected) child.send(message, (err) => err && this.log.debug({ err }, 'worker message not sent'));
  }

  private requestCounters(): Promise<DataPathCounters | undefined> {
    const id = ++this.statsId;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.statsWaiters.delete(id);
        resolve(undefined);
      }, STATS_TIMEOUT_MS);
      this.statsWaiters.set(id, (counters) => {
        clearTimeout(timer);
        this.statsWaiters.delete(id);
        resolve(counters);
      });
      this.send({ t: 'stats', id });
    });
  }

  private start(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      // No core file when a native addon aborts the worker; the agent restarts it.
      const child = spawn('/bin/sh', ['-c', 'ulimit -c 0; exec "$0" "$@"', process.execPath, WORKER], {
        stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
        serialization: 'json',
        env: childEnvironment(),
      });
      const running: Running = { child, ready: false, startedAt: Date.now(), counters: emptyDataPathCounters(), stderr: '' };
      this.running = running;
      let settled = false;
      const settle = (err?: WorkerStartError): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err === undefined) resolve();
        else reject(err);
      };
      const timer = setTimeout(() => {
        settle(new WorkerStartError('WEFT_USERSPACE_WORKER', `the data-path worker did not start within ${START_TIMEOUT_MS} ms`));
        child.kill('SIGKILL');
      }, START_TIMEOUT_MS);
      child.stderr?.setEncoding('utf8');
      if (child.stderr) {
        createInterface({ input: child.stderr }).on('line', (line) => {
          running.stderr = `${running.stderr}${line}\n`.slice(-2000);
          if (HARMLESS_STDERR.test(line)) this.log.debug({ line }, 'data-path worker');
          else this.log.warn({ line }, 'data-path worker');
        });
      }
      child.on('message', (message: WorkerMessage) => {
        switch (message.t) {
          case 'ready':
            running.ready = true;
            this.log.info({ pid: child.pid }, 'data-path worker running');
            settle();
            return;
          case 'failed':
            settle(new WorkerStartError(message.code, message.message));
            return;
          case 'stats':
            running.counters = message.counters;
            if (message.id !== null) this.statsWaiters.get(message.id)?.(message.counters);
            return;
          case 'log':
            this.log[message.level]({ worker: child.pid, ...message.fields }, message.message);
            return;
        }
      });
      child.on('error', (err) =>
        settle(new WorkerStartError('WEFT_USERSPACE_WORKER', `cannot start the data-path worker: ${err.message}`)),
      );
      child.on('exit', (code, signal) => {
        settle(
          new WorkerStartError(
            'WEFT_USERSPACE_WORKER',
            `the data-path worker exited (code ${code}, signal ${signal}) before it was ready${running.stderr ? `: ${running.stderr.trim()}` : ''}`,
          ),
        );
        if (this.running !== running) return;
        this.running = undefined;
        this.retire(running);
        if (this.closed) return;
        const ranFor = Date.now() - running.startedAt;
        if (running.ready) {
          this.log.error(
            { code, signal, ranForMs: ranFor, stderr: running.stderr.trim() || undefined },
            'data-path worker died; restarting it',
          );
        }
        this.restarts++;
        if (ranFor > HEALTHY_AFTER_MS) this.restartDelay = MIN_RESTART_DELAY_MS;
        const delay = this.restartDelay;
        this.restartDelay = Math.min(MAX_RESTART_DELAY_MS, this.restartDelay * 2);
        this.restartTimer = setTimeout(() => {
          this.ensureRunning().catch((err: Error) =>
            this.log.warn({ err, retryMs: this.restartDelay }, 'data-path worker did not start; retrying'),
          );
        }, delay);
        this.restartTimer.unref();
      });
      child.send({ t: 'start', config: this.config });
      if (this.peers !== undefined) child.send(this.peers);
    });
  }

  /** Keeps a finished worker's counts and answers whoever waits for its counters. */
  private retire(running: Running): void {
    addDataPathCounters(this.base, running.counters);
    running.counters = emptyDataPathCounters();
    for (const waiter of [...this.statsWaiters.values()]) waiter(undefined);
  }
}
