/**
 * Running host tools (iptables, ip) behind a small injectable function, so that modules can be pointed at a
 * network namespace (`ip netns exec <ns> …`) or replaced by a fake in tests.
 */
import { spawn } from 'node:child_process';
import { CommandError, formatCommand } from './errors.js';

export interface CommandResult {
  /** Exit status; 128 + signal number when the command was killed by a signal. */
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Written to the command's stdin, which is then closed. */
  stdin?: string;
}

/**
 * Runs argv (no shell) and resolves with its exit status and output, whatever the status. Rejects only when
 * the command cannot be started or times out (CommandError).
 */
export type CommandRunner = (argv: readonly string[], options?: RunOptions) => Promise<CommandResult>;

export interface CommandRunnerOptions {
  /** Run every command inside this network namespace (`ip netns exec <netns> …`). */
  netns?: string | undefined;
  /** Kill the command and reject after this long (default 30 s). */
  timeoutMs?: number;
}

/** Variables holding etcd settings: weftd's and flanneld's (password, TLS key and certificate paths), etcdctl's, etcd's own. */
const ETCD_SETTING = /^(WEFTD_ETCD_|FLANNELD_ETCD_|ETCDCTL_|ETCD_)/i;

/**
 * The environment of a process weft starts (host tools, its own helper processes): this process's
 * without the etcd settings, which carry the etcd password and the paths of the client key. No tool needs
 * them, and a child would pass them on to its own children and show them in /proc/<pid>/environ.
 */
export function childEnvironment(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!ETCD_SETTING.test(name)) env[name] = value;
  return { ...env, ...extra };
}

const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGTERM: 15 };

/** The default runner: spawns the command with LC_ALL=C (stable messages) and no etcd settings in its environment, optionally in a namespace. */
export function createCommandRunner(options: CommandRunnerOptions = {}): CommandRunner {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const prefix = options.netns === undefined ? [] : ['ip', 'netns', 'exec', options.netns];
  return (argv, runOptions = {}) =>
    new Promise<CommandResult>((resolve, reject) => {
      if (argv.length === 0) {
        reject(new CommandError(argv, undefined, '', 'empty command'));
        return;
      }
      const full = [...prefix, ...argv];
      const child = spawn(full[0], full.slice(1), {
        stdio: ['pipe', 'pipe', 'pipe'],
        env: childEnvironment({ LC_ALL: 'C' }),
      });
      let stdout = '';
      let stderr = '';
      let timedOut = false;
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
      // a command that exits without reading stdin makes the write fail with EPIPE: its exit status tells
      child.stdin.on('error', () => {});
      child.stdin.end(runOptions.stdin ?? '');
      const timer = setTimeout(() => {
        timedOut = true;
        child.kill('SIGKILL');
      }, timeoutMs);
      child.on('error', (err) => {
        clearTimeout(timer);
        reject(new CommandError(full, undefined, stderr, `cannot run: ${err.message}`));
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        if (timedOut) {
          reject(new CommandError(full, undefined, stderr, `timed out after ${timeoutMs} ms`));
          return;
        }
        resolve({ code: code ?? 128 + (signal ? (SIGNALS[signal] ?? 0) : 0), stdout, stderr });
      });
    });
}

/** Runs argv and returns stdout, throwing CommandError (naming the command and stderr) on a non-zero exit. */
export async function runChecked(runner: CommandRunner, argv: readonly string[], options?: RunOptions): Promise<string> {
  const result = await runner(argv, options);
  if (result.code !== 0) throw new CommandError(argv, result.code, result.stderr);
  return result.stdout;
}

export { formatCommand };
