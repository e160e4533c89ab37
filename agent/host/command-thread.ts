/**
 * A CommandRunner that starts its commands from a worker thread.
 *
 * Starting a process from node blocks the calling thread until the child has exec'd (libuv forks, then
 * waits on a pipe for the exec to succeed): about 3 ms with weftd's memory on an idle machine, and tens of
 * milliseconds on a loaded one, where the new child is not scheduled at once. weftd's periodic iptables and
 * nftables checks and its allow-list updates start such commands while lease events arrive; run from a
 * worker, they no longer hold up the event loop that programs the kernel. Commands behave exactly as with
 * createCommandRunner (same options, results and errors). The thread starts with the first command, and
 * again after it dies (the commands it was running fail with CommandError); it never keeps the process alive
 * while idle.
 */
import { Worker } from 'node:worker_threads';
import type { CommandResult, CommandRunner, CommandRunnerOptions, RunOptions } from './command.js';
import { CommandError } from './errors.js';

/** @internal the message to the worker */
export interface CommandRequest {
  id: number;
  argv: readonly string[];
  stdin?: string | undefined;
}

/** @internal the worker's answer */
export type CommandReply =
  | { id: number; result: CommandResult }
  | { id: number; error: { message: string; exitCode: number | undefined; stderr: string } };

const WORKER = new URL('./command-worker.js', import.meta.url);

export interface ThreadedCommandRunner extends CommandRunner {
  /** Stops the thread; commands still running fail. */
  close(): Promise<void>;
}

export function createThreadedCommandRunner(options: CommandRunnerOptions = {}): ThreadedCommandRunner {
  let worker: Worker | undefined;
  let nextId = 1;
  const pending = new Map<number, { argv: readonly string[]; resolve: (result: CommandResult) => void; reject: (err: Error) => void }>();

  const settleAll = (why: string) => {
    const victims = [...pending.values()];
    pending.clear();
    for (const p of victims) p.reject(new CommandError(p.argv, undefined, '', `cannot run: ${why}`));
  };

  const start = (): Worker => {
    // a small young generation: the thread only relays commands and their output
    const w = new Worker(WORKER, { workerData: options, execArgv: [], resourceLimits: { maxYoungGenerationSizeMb: 2 } });
    w.on('message', (reply: CommandReply) => {
      const p = pending.get(reply.id);
      if (p === undefined) return;
      pending.delete(reply.id);
      if (pending.size === 0) w.unref();
      if ('result' in reply) {
        p.resolve(reply.result);
      } else {
        const err = new CommandError(p.argv, reply.error.exitCode, reply.error.stderr);
        err.message = reply.error.message;
        p.reject(err);
      }
    });
    const gone = (why: string) => {
      if (worker !== w) return;
      worker = undefined;
      settleAll(why);
    };
    w.on('error', (err) => gone(`the command thread failed: ${err.message}`));
    w.on('exit', (code) => gone(`the command thread exited (${code})`));
    w.unref();
    return w;
  };

  const runner = ((argv: readonly string[], runOptions: RunOptions = {}) =>
    new Promise<CommandResult>((resolve, reject) => {
      if (argv.length === 0) {
        reject(new CommandError(argv, undefined, '', 'empty command'));
        return;
      }
      worker ??= start();
      const id = nextId++;
      pending.set(id, { argv, resolve, reject });
      worker.ref();
      worker.postMessage({ id, argv: [...argv], stdin: runOptions.stdin } satisfies CommandRequest);
    })) as ThreadedCommandRunner;
  runner.close = async () => {
    const w = worker;
    worker = undefined;
    settleAll('the command runner was closed');
    await w?.terminate();
  };
  return runner;
}
