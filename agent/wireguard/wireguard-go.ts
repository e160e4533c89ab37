/**
 * wireguard-go as weftd's own child: started in the foreground (it forks into the background otherwise),
 * its output in weftd's log, stopped with weftd. It makes the TUN device itself and serves the UAPI on
 * `<socket dir>/<device>.sock`.
 *
 * wireguard-go's socket directory is fixed (/var/run/wireguard) and per mount namespace, not per network
 * namespace. With another --wireguard-socket-dir, weft starts it in a private mount namespace of its own
 * (`unshare --mount`) where that directory is bind-mounted on /var/run/wireguard: the socket appears in
 * weft's directory and two weftd in two network namespaces of one machine keep apart.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, unlinkSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { WeftError } from '../../common/errors.js';
import type { Logger } from '../log.js';

/** Where wireguard-go (and `wg`) look for UAPI sockets. */
export const WIREGUARD_SOCKET_DIR = '/var/run/wireguard';

export class WireguardGoError extends WeftError {
  constructor(message: string, cause?: unknown) {
    super('WEFT_WIREGUARD_GO', message, { cause });
  }
}

/** Whether `dir` is the system's socket directory (so no private mount namespace is needed). */
function isSystemSocketDir(dir: string): boolean {
  const full = resolve(dir);
  return full === WIREGUARD_SOCKET_DIR || full === '/run/wireguard';
}

/**
 * argv that runs `command` so that it sees `socketDir` as /var/run/wireguard: as is for the system's
 * directory, else in a private mount namespace with the directory bind-mounted there. `wg` needs the same
 * to find a device whose socket is elsewhere.
 */
export function inSocketDir(socketDir: string, command: readonly string[]): string[] {
  if (isSystemSocketDir(socketDir)) return [...command];
  const script = `mkdir -p ${WIREGUARD_SOCKET_DIR} && mount --bind "$0" ${WIREGUARD_SOCKET_DIR} && exec "$@"`;
  return ['unshare', '--mount', '--propagation', 'private', '--', 'sh', '-c', script, resolve(socketDir), ...command];
}

export interface WireguardGoOptions {
  device: string;
  socketDir: string;
  log: Logger;
  /** The executable (default: wireguard-go on the PATH). */
  command?: string;
}

const START_TIMEOUT_MS = 10_000;
/** wireguard-go's output is read line by line; longer lines are cut. */
const MAX_LINE = 2048;

export class WireguardGo {
  private child: ChildProcess | undefined;
  private exited: Promise<void> | undefined;
  private stopping = false;

  constructor(private readonly options: WireguardGoOptions) {}

  get socketPath(): string {
    return join(this.options.socketDir, `${this.options.device}.sock`);
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /**
   * Starts wireguard-go unless it runs; resolves once its socket is there. A socket left by a wireguard-go
   * that weftd no longer supervises is removed first, which makes that one exit (it watches its socket).
   */
  async start(): Promise<void> {
    if (this.running) return;
    const { device, socketDir, log } = this.options;
    mkdirSync(socketDir, { recursive: true, mode: 0o755 });
    this.dismissOrphan();
    const argv = inSocketDir(socketDir, [this.options.command ?? 'wireguard-go', '-f', device]);
    const child = spawn(argv[0], argv.slice(1), {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', WG_PROCESS_FOREGROUND: '1', LOG_LEVEL: 'error' },
    });
    this.child = child;
    const forward = (stream: NodeJS.ReadableStream): void => {
      let pending = '';
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => {
        pending += chunk;
        let at: number;
        while ((at = pending.indexOf('\n')) >= 0) {
          const line = pending.slice(0, at).slice(0, MAX_LINE);
          pending = pending.slice(at + 1);
          if (line.trim() !== '') log.warn({ device, pid: child.pid }, `wireguard-go: ${line}`);
        }
        if (pending.length > MAX_LINE) pending = pending.slice(0, MAX_LINE);
      });
    };
    forward(child.stdout);
    forward(child.stderr);
    this.exited = new Promise((done) => {
      child.on('error', (err) => {
        log.error({ device, err }, 'cannot run wireguard-go');
        done();
      });
      child.on('exit', (code, signal) => {
        if (!this.stopping) log.error({ device, code, signal }, 'wireguard-go exited; the next reconcile starts it again');
        done();
      });
    });
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (!existsSync(this.socketPath)) {
      if (!this.running)
        throw new WireguardGoError(
          `wireguard-go for ${device} exited at start (is the wireguard-go package installed? its output is in the log)`,
        );
      if (Date.now() > deadline) {
        await this.stop();
        throw new WireguardGoError(`wireguard-go for ${device} made no socket at ${this.socketPath} within ${START_TIMEOUT_MS / 1000} s`);
      }
      await new Promise((done) => setTimeout(done, 20));
    }
    log.info({ device, pid: child.pid, socket: this.socketPath }, 'started wireguard-go');
  }

  /**
   * Removes the socket of a wireguard-go weftd does not supervise (left by a weftd that was killed), which
   * makes that wireguard-go exit: it watches its socket. Says whether there was one.
   */
  dismissOrphan(): boolean {
    if (this.running || !existsSync(this.socketPath)) return false;
    this.options.log.warn(
      { device: this.options.device, socket: this.socketPath },
      'removing the socket of a wireguard-go weftd does not supervise (it exits)',
    );
    unlinkSync(this.socketPath);
    return true;
  }

  /** Stops wireguard-go (its TUN device goes with it). */
  async stop(): Promise<void> {
    const child = this.child;
    if (child === undefined) return;
    this.stopping = true;
    if (this.running) child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(timer);
    this.child = undefined;
    this.stopping = false;
  }
}
