/**
 * One long-lived `nft` process in interactive mode (`nft -j -i`), fed a line of commands at a time on its stdin,
 * so that a change to weft's nftables table costs a write to a pipe rather than a new process: starting a
 * process from an agent holding thousands of leases stalls it for milliseconds, once per peer that joins or
 * leaves. nftables over netlink would avoid the helper process altogether, but only agent/kernel speaks
 * netlink and the nftables message format is large; nft itself stays the one that encodes it.
 *
 * nft runs each line it reads as one transaction and says nothing on success. To know when a line is done,
 * and whether it failed, every line is followed by a marker line that nft can never accept: its error, which
 * echoes the marker, closes the answer, and whatever nft wrote to stderr before it is the line's own error.
 * Output (`list …`, JSON because of -j) arrives on stdout before the marker's error. A process that dies is
 * started again by the next line (a line it died on without answering is sent again, to the new process); one
 * that does not answer in time is killed.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import type { Socket } from 'node:net';
import { excerpt } from '../../common/json.js';
import { childEnvironment, type CommandResult } from './command.js';
import { CommandError } from './errors.js';

/** A way to run nft command lines; NftSession is the real one. */
export interface NftChannel {
  /**
   * Runs one line of nft commands (`;` between them) as one transaction. Resolves with code 0 when nft reported
   * no error. A line may be applied twice (again after an nft process that died without answering it).
   */
  run(line: string): Promise<CommandResult>;
  /** Lets the nft process go; a later run() starts another. */
  close(): void;
}

export interface NftSessionOptions {
  /** Run nft inside this network namespace (`ip netns exec <netns> nft …`). */
  netns?: string | undefined;
  /** Kill nft and fail the line when it has not answered after this long (default 30 s). */
  timeoutMs?: number;
}

interface Pending {
  /** the process the line was written to */
  child: ChildProcessWithoutNullStreams;
  marker: string;
  stdout: string;
  stderr: string;
  settle(result: CommandResult | Error): void;
}

const NFT_ARGV = ['nft', '-j', '-i'] as const;

/** nft exited while a line was pending and before it said anything about it. */
class ExitedWithoutAnswer extends CommandError {}

export class NftSession implements NftChannel {
  private readonly argv: readonly string[];
  private readonly timeoutMs: number;
  private child: ChildProcessWithoutNullStreams | undefined;
  private pending: Pending | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private sequence = 0;

  constructor(options: NftSessionOptions = {}) {
    this.argv = options.netns === undefined ? NFT_ARGV : ['ip', 'netns', 'exec', options.netns, ...NFT_ARGV];
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  run(line: string): Promise<CommandResult> {
    if (/[\r\n]/.test(line)) return Promise.reject(new RangeError('an nft command line must not contain a line break'));
    const next = this.queue.then(() => this.exchange(line));
    this.queue = next.catch(() => undefined);
    return next;
  }

  close(): void {
    const child = this.child;
    this.child = undefined;
    // nft exits when its stdin ends, after the lines already written
    child?.stdin.end();
  }

  private async exchange(line: string): Promise<CommandResult> {
    try {
      return await this.send(line);
    } catch (err) {
      // A process that died while idle (its exit not yet seen when the line was written to it) never read the
      // line; one that died in the middle of it applied all of it or nothing (a line is one transaction). Either
      // way the line goes once more, to a new process: weft's lines are safe to apply twice.
      if (!(err instanceof ExitedWithoutAnswer)) throw err;
      return this.send(line);
    }
  }

  private send(line: string): Promise<CommandResult> {
    const child = this.child ?? this.start();
    const marker = `weft-sync-${++this.sequence}`;
    return new Promise<CommandResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.child === child) this.child = undefined;
        child.kill('SIGKILL');
        pending.settle(
          new CommandError(['nft', excerpt(line)], undefined, pending.stderr, `no answer from nft within ${this.timeoutMs} ms`),
        );
      }, this.timeoutMs);
      const pending: Pending = {
        child,
        marker,
        stdout: '',
        stderr: '',
        settle: (result) => {
          if (this.pending !== pending) return;
          this.pending = undefined;
          clearTimeout(timer);
          if (result instanceof Error) reject(result);
          else resolve(result);
        },
      };
      this.pending = pending;
      child.stdin.write(`${line}\n${marker}\n`);
    });
  }

  private start(): ChildProcessWithoutNullStreams {
    const child = spawn(this.argv[0], this.argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], env: childEnvironment({ LC_ALL: 'C' }) });
    this.child = child;
    // The process and its pipes never keep weftd alive; a line in flight does, through its timer.
    child.unref();
    for (const stream of [child.stdin, child.stdout, child.stderr]) (stream as unknown as Socket).unref();
    child.stdin.on('error', () => undefined); // a dead nft: its exit fails the line
    const pendingOf = () => (this.pending?.child === child ? this.pending : undefined);
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      const pending = pendingOf();
      if (pending !== undefined) pending.stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      const pending = pendingOf();
      if (pending === undefined) return;
      pending.stderr += chunk;
      this.answered(pending);
    });
    const gone = (why: string, exited: boolean) => {
      if (this.child === child) this.child = undefined;
      const pending = pendingOf();
      if (pending === undefined) return;
      const silent = exited && pending.stdout === '' && pending.stderr === '';
      pending.settle(new (silent ? ExitedWithoutAnswer : CommandError)([...this.argv], child.exitCode ?? undefined, pending.stderr, why));
    };
    child.on('error', (err) => gone(`cannot run: ${err.message}`, false));
    child.on('exit', (code, signal) => gone(`nft exited (${signal ?? `exit ${code}`})`, true));
    return child;
  }

  /** Completes `pending` once nft has rejected its marker line (the error header, the line, the caret line). */
  private answered(pending: Pending): void {
    const text = pending.stderr;
    const at = text.indexOf(`\n${pending.marker}\n`);
    if (at < 0 || text.indexOf('\n', at + pending.marker.length + 2) < 0) return;
    const header = text.lastIndexOf('Error:', at);
    const stderr = header < 0 ? '' : text.slice(0, header);
    // Output written before the marker's error is in the stdout pipe already; let the loop read it first.
    setImmediate(() => pending.settle({ code: stderr.trim() === '' ? 0 : 1, stdout: pending.stdout, stderr }));
  }
}
