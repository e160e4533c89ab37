/**
 * Test helper: throw-away network namespaces, and running a function of a compiled module inside one.
 *
 * Node cannot setns(2), so code under test runs in a child process started with
 * `ip netns exec <ns> node test/netns-child.js <module> <export>`; the child calls the export with a JSON
 * argument and prints the JSON result (see netns-child.ts). The child must exit by itself: a child that
 * leaves a socket or timer behind is killed at the timeout and the call fails, which is how tests notice
 * resources that keep the process alive.
 *
 *   const ns = useNetns();                 // inside describe(): fresh namespace per test, always removed
 *   ns().ip('link', 'add', 've0', 'type', 'veth', 'peer', 'name', 've1');
 *   const run = scenarioRunner<typeof Scenarios>(new URL('./x.scenarios.js', import.meta.url));
 *   const result = await run(ns(), 'someExport', { arg: 1 });
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { requireOrSkip } from './requirements.js';

const CHILD = fileURLToPath(new URL('./netns-child.js', import.meta.url));
export const RESULT_MARKER = '@@WEFT_NETNS_RESULT@@';

let counter = 0;
const live = new Set<string>();

process.once('exit', () => {
  // last resort (mocha --exit, crashes): never leave namespaces behind
  for (const name of live) spawnSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
});

/** True when this process can create network namespaces (root, iproute2 present). */
let available: boolean | undefined;
export function netnsAvailable(): boolean {
  if (available === undefined) {
    available =
      (typeof process.getuid !== 'function' || process.getuid() === 0) &&
      spawnSync('ip', ['netns', 'list'], { stdio: 'ignore' }).status === 0;
  }
  return available;
}

/** What namespaces need, when this process lacks it. */
export function netnsUnavailable(): string | undefined {
  return netnsAvailable() ? undefined : 'needs root and iproute2 to create network namespaces';
}

/** Skips (outside CI) or fails (in CI) the running test or suite when namespaces cannot be created here. */
export function requireNetns(context: Mocha.Context): void {
  requireOrSkip(context, netnsUnavailable());
}

/** An error reported by the child, with the fields of the original error that survive JSON. */
export class ChildError extends Error {
  readonly code: string | undefined;
  readonly errnoName: string | undefined;
  readonly childName: string | undefined;
  constructor(message: string, fields: { name?: string; code?: string; errnoName?: string; stack?: string }) {
    super(message);
    this.name = 'ChildError';
    this.code = fields.code;
    this.errnoName = fields.errnoName;
    this.childName = fields.name;
    if (fields.stack) this.stack = `${this.name}: ${message}\n--- in namespace child ---\n${fields.stack}`;
  }
}

export interface RunOptions {
  /** kill the child and fail after this long (default 30 s) */
  timeoutMs?: number;
}

export class Netns {
  private removed = false;

  private constructor(readonly name: string) {}

  /** Creates `weft-t-<pid>-<n>` (unique per run) with loopback up. */
  static create(prefix = 'weft-t'): Netns {
    const name = `${prefix}-${process.pid}-${++counter}`;
    execFileSync('ip', ['netns', 'add', name], { stdio: ['ignore', 'ignore', 'pipe'] });
    live.add(name);
    const ns = new Netns(name);
    try {
      ns.ip('link', 'set', 'lo', 'up');
    } catch (err) {
      ns.destroy();
      throw err;
    }
    return ns;
  }

  /** `ip -n <ns> ...`; returns stdout, throws with stderr on failure. */
  ip(...args: string[]): string {
    return this.exec('ip', args);
  }

  /** `ip -j -n <ns> ...` parsed. */
  ipJson<T>(...args: string[]): T {
    const out = this.ip('-j', ...args).trim();
    return (out === '' ? [] : JSON.parse(out)) as T;
  }

  /** `bridge -j -n <ns> ...` parsed. */
  bridgeJson<T>(...args: string[]): T {
    const out = execFileSync('bridge', ['-j', '-n', this.name, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
    return (out === '' ? [] : JSON.parse(out)) as T;
  }

  /** Runs any command inside the namespace. */
  exec(cmd: string, args: string[]): string {
    const full = cmd === 'ip' ? ['-n', this.name, ...args] : ['netns', 'exec', this.name, cmd, ...args];
    try {
      return execFileSync('ip', full, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      const stderr = (err as { stderr?: string }).stderr ?? '';
      throw new Error(`${cmd} ${args.join(' ')} (netns ${this.name}) failed: ${stderr.trim() || String(err)}`, { cause: err });
    }
  }

  /**
   * Calls export `fn` of the ES module at `module` with `arg` in a child process inside the namespace and
   * resolves with its JSON result; rejects with ChildError when it throws, exits badly or hangs.
   */
  run(module: URL, fn: string, arg: unknown, options: RunOptions = {}): Promise<unknown> {
    return runInNamespace(this.name, module, fn, arg, options);
  }

  /** Removes the namespace (and with it every device in it); idempotent. */
  destroy(): void {
    if (this.removed) return;
    this.removed = true;
    live.delete(this.name);
    spawnSync('ip', ['netns', 'del', this.name], { stdio: 'ignore' });
  }
}

/**
 * Calls export `fn` of the ES module at `module` with `arg` in a child process inside the named network
 * namespace (any, e.g. a lab host's) and resolves with its JSON result; rejects with ChildError when it
 * throws, exits badly or hangs. `Netns.run` for namespaces this module made.
 */
export function runInNamespace(name: string, module: URL, fn: string, arg: unknown, options: RunOptions = {}): Promise<unknown> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', name, process.execPath, CHILD, fileURLToPath(module), fn], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.stdin.end(JSON.stringify(arg ?? null));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const line = stdout.split('\n').find((l) => l.startsWith(RESULT_MARKER));
      const tail = `\n--- child stderr ---\n${stderr.trim()}`;
      if (timedOut) {
        const what = line ? 'returned but did not exit (something keeps its event loop alive)' : 'timed out';
        reject(new ChildError(`${fn} in netns ${name} ${what} after ${timeoutMs} ms${tail}`, {}));
        return;
      }
      if (!line) {
        reject(new ChildError(`${fn} in netns ${name} exited (code ${code}, signal ${signal}) without a result${tail}`, {}));
        return;
      }
      const parsed = JSON.parse(line.slice(RESULT_MARKER.length)) as
        | { ok: true; value: unknown }
        | { ok: false; error: { name?: string; message: string; code?: string; errnoName?: string; stack?: string } };
      if (parsed.ok) resolve(parsed.value);
      else reject(new ChildError(parsed.error.message, parsed.error));
    });
  });
}

type ScenarioFn = (arg: never) => unknown;
type ArgOf<F> = F extends (arg: infer A) => unknown ? A : never;
type ResultOf<F> = F extends (...args: never[]) => infer R ? Awaited<R> : never;

/**
 * A typed runner for the exports of one scenario module:
 * `scenarioRunner<typeof import('./x.scenarios.js')>(url)(ns, 'exportName', arg)`; `ns` is a Netns or the
 * name of any namespace.
 */
export function scenarioRunner<M>(module: URL) {
  return <K extends keyof M & string>(
    ns: Netns | string,
    name: K,
    arg: M[K] extends ScenarioFn ? ArgOf<M[K]> : never,
    options?: RunOptions,
  ): Promise<ResultOf<M[K]>> =>
    (typeof ns === 'string' ? runInNamespace(ns, module, name, arg, options) : ns.run(module, name, arg, options)) as Promise<
      ResultOf<M[K]>
    >;
}

/**
 * Registers mocha hooks giving each test of the enclosing describe() a fresh namespace, removed after the
 * test whatever its outcome. Skips the tests (fails them in CI) when namespaces cannot be created (not root).
 */
export function useNetns(prefix = 'weft-t'): () => Netns {
  let current: Netns | null = null;
  beforeEach(function () {
    requireNetns(this);
    current = Netns.create(prefix);
  });
  afterEach(() => {
    current?.destroy();
    current = null;
  });
  return () => {
    if (!current) throw new Error('no namespace: useNetns() accessor called outside a test');
    return current;
  };
}
