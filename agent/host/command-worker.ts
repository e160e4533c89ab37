/**
 * The worker thread behind createThreadedCommandRunner (command-thread.ts): runs each command it is sent
 * with the ordinary runner and posts back the result, or the error's fields.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createCommandRunner, type CommandRunnerOptions } from './command.js';
import { CommandError } from './errors.js';
import type { CommandReply, CommandRequest } from './command-thread.js';

const run = createCommandRunner(workerData as CommandRunnerOptions);
const port = parentPort!;

port.on('message', (request: CommandRequest) => {
  run(request.argv, request.stdin === undefined ? {} : { stdin: request.stdin }).then(
    (result) => port.postMessage({ id: request.id, result } satisfies CommandReply),
    (err: unknown) => {
      const error = err instanceof CommandError
        ? { message: err.message, exitCode: err.exitCode, stderr: err.stderr }
        : { message: err instanceof Error ? err.message : String(err), exitCode: undefined, stderr: '' };
      port.postMessage({ id: request.id, error } satisfies CommandReply);
    },
  );
});
