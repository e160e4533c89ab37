import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { constants } from 'node:os';
import type { BackgroundCommand, ExecOptions, ExecResult } from './driver.js';

/** Every spawned command gets /usr/sbin and /sbin on its PATH (ip, bridge and sysctl live there). */
export function labEnv(extra?: Record<string, string>): NodeJS.ProcessEnv {
  const path = process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin';
  const parts = path.split(':');
  for (const dir of ['/usr/sbin', '/sbin']) if (!parts.includes(dir)) parts.push(dir);
  return { ...process.env, PATH: parts.join(':'), ...extra };
}

/** Tracks children so that a lab can kill whatever it started, even half-way through. */
export class ChildSet {
  private readonly children = new Set<ChildProcess>();

  add(child: ChildProcess): void {
    if (child.exitCode !== null || child.signalCode !== null) return;
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
  }

  get size(): number {
    return this.children.size;
  }

  /** SIGKILL to every tracked child's process group (they are started detached) and to the child itself. */
  killAll(): void {
    for (const child of this.children) killTree(child.pid, 'SIGKILL');
  }

  /** Resolves once every tracked child has exited, or after timeoutMs. */
  async waitAll(timeoutMs: number): Promise<void> {
    const pending = [...this.children].map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) resolve();
          else child.once('exit', () => resolve());
        }),
    );
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(pending), new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
  }
}

/** Signals a detached child's process group, falling back to the process alone. Ignores processes that are gone. */
export function killTree(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

/** Runs argv to completion, collecting its output. Rejects on timeout (after killing it) and, with `check`, on a non-zero exit. */
export function run(argv: readonly string[], children: ChildSet, options: ExecOptions = {}): Promise<ExecResult> {
  const [command, ...args] = argv;
  if (command === undefined) return Promise.reject(new Error('empty command'));
  const timeoutMs = options.timeoutMs ?? 30_000;
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], env: labEnv(options.env), detached: true });
    children.add(child);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.input ?? '');
    const timer = setTimeout(() => {
      timedOut = true;
      killTree(child.pid, 'SIGKILL');
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const result = { code: code ?? 128 + signalNumber(signal), stdout, stderr };
      const shown = argv.join(' ');
      if (timedOut) reject(new Error(`timed out after ${timeoutMs} ms: ${shown}\n${stdout}${stderr}`));
      else if (options.check === true && result.code !== 0) reject(new Error(`exit ${result.code}: ${shown}\n${stdout}${stderr}`));
      else resolve(result);
    });
  });
}

/** Synchronous variant for exit handlers; never throws. */
export function runSync(argv: readonly string[], input?: string): ExecResult {
  const [command, ...args] = argv;
  const result = spawnSync(command ?? 'true', args, { input: input ?? '', env: labEnv(), encoding: 'utf8', timeout: 10_000 });
  return { code: result.status ?? 1, stdout: result.stdout ?? '', stderr: result.stderr ?? '' };
}

/** Starts argv in the background (own process group), collecting its output. */
export function startBackground(argv: readonly string[], children: ChildSet, env?: Record<string, string>): BackgroundCommand {
  const [command, ...args] = argv;
  if (command === undefined) throw new Error('empty command');
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: labEnv(env), detached: true });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<ExecResult>((resolve) => {
    child.once('error', (err) => resolve({ code: 127, stdout, stderr: stderr + String(err) }));
    child.once('close', (code, signal) => resolve({ code: code ?? 128 + signalNumber(signal), stdout, stderr }));
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start ${argv.join(' ')}`);
  return {
    pid,
    exited,
    output: () => ({ code: child.exitCode ?? -1, stdout, stderr }),
    async stop(signal: NodeJS.Signals = 'SIGINT', timeoutMs = 5_000): Promise<ExecResult> {
      if (child.exitCode === null && child.signalCode === null) killTree(pid, signal);
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
      const first = await Promise.race([exited, timeout]);
      clearTimeout(timer);
      if (first !== 'timeout') return first;
      killTree(pid, 'SIGKILL');
      return exited;
    },
  };
}

function signalNumber(signal: NodeJS.Signals | null): number {
  return signal === null ? 0 : (constants.signals[signal] ?? 0);
}
