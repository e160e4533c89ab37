/**
 * systemd's service notification protocol (sd_notify(3)), which weftd speaks under `Type=notify` as flanneld
 * does: `READY=1` once the data plane is programmed and subnet.env written, `STATUS=` lines on the way,
 * `STOPPING=1`, and `WATCHDOG=1` at half of `WatchdogSec=` for as long as the agent is alive.
 *
 * Each message is one datagram to the AF_UNIX socket named by `$NOTIFY_SOCKET`, sent by weftd's own process:
 * with `NotifyAccess=main` systemd accepts messages from the main PID only, so a `systemd-notify` child
 * would not do. Node has no AF_UNIX datagram sockets; weft's native addon sends the datagram (the released
 * `unix-dgram` package, 2.0.7, cannot address an abstract socket, `@name`, and keeps a reader polling each
 * socket it makes).
 */
import { WeftError } from '../../common/errors.js';
import { errnoName } from '../kernel/errors.js';
import type { Logger } from '../log.js';
import { loadNativeAddon } from '../native-addon.js';

/** `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` or `$WATCHDOG_PID` is unusable, or a notification could not be sent. */
export class SystemdNotifyError extends WeftError {
  constructor(message: string) {
    super('WEFT_SYSTEMD_NOTIFY', message);
  }
}

/** The variables systemd sets for a `Type=notify` service (and `WatchdogSec=`). */
const NOTIFY_VARIABLES = ['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID'] as const;

/** sun_path's size on Linux. */
const SUN_PATH_MAX = 108;

/** The socket address `$NOTIFY_SOCKET` names: an absolute path, or `@name` in the abstract namespace. */
function notifySocketAddress(value: string): Buffer {
  let address: Buffer;
  if (value.startsWith('/')) address = Buffer.from(value);
  else if (value.startsWith('@') && value.length > 1) address = Buffer.concat([Buffer.from([0]), Buffer.from(value.slice(1))]);
  else
    throw new SystemdNotifyError(`NOTIFY_SOCKET=${JSON.stringify(value)} is neither an absolute path nor an abstract socket name (@name)`);
  if (address.length > SUN_PATH_MAX)
    throw new SystemdNotifyError(`NOTIFY_SOCKET=${JSON.stringify(value)} is longer than a socket address (${SUN_PATH_MAX} bytes)`);
  return address;
}

/**
 * The watchdog period `$WATCHDOG_USEC` asks for, in ms, as sd_watchdog_enabled(3) reads it: undefined when
 * it is unset or `$WATCHDOG_PID` names another process.
 */
function watchdogPeriodMs(env: NodeJS.ProcessEnv, pid: number): number | undefined {
  const usec = env.WATCHDOG_USEC;
  if (usec === undefined || usec === '') return undefined;
  if (!/^[1-9]\d{0,15}$/.test(usec))
    throw new SystemdNotifyError(`WATCHDOG_USEC=${JSON.stringify(usec)} is not a positive number of microseconds`);
  const watchdogPid = env.WATCHDOG_PID;
  if (watchdogPid !== undefined && watchdogPid !== '') {
    if (!/^[1-9]\d{0,9}$/.test(watchdogPid))
      throw new SystemdNotifyError(`WATCHDOG_PID=${JSON.stringify(watchdogPid)} is not a process id`);
    if (Number(watchdogPid) !== pid) return undefined;
  }
  return Number(usec) / 1000;
}

/** One notification: `KEY=value` lines; a value never spans lines (a STATUS text has its newlines flattened). */
function format(fields: Readonly<Record<string, string>>): Buffer {
  return Buffer.from(
    Object.entries(fields)
      .map(([key, value]) => `${key}=${value.replace(/[\r\n]+/g, ' ')}\n`)
      .join(''),
  );
}

export interface WatchdogOptions {
  /** Whether the agent is alive; a ping is sent only when it says so. */
  alive(): boolean;
  /** Called on every tick (half the watchdog period) after the ping, e.g. to refresh STATUS. */
  tick?(): void;
}

/** Sends systemd notifications for this process; made by `fromEnvironment` when systemd asked for them. */
export class SystemdNotifier {
  private watchdog: NodeJS.Timeout | undefined;
  private refusedPing = false;

  private constructor(
    private readonly address: Buffer,
    private readonly send: (address: Buffer, message: Buffer) => number,
    /** Half of it is the ping interval; undefined without `WatchdogSec=`. */
    readonly watchdogMs: number | undefined,
    private readonly log: Logger,
  ) {}

  /**
   * A notifier when `$NOTIFY_SOCKET` is set, else undefined. Takes the variables out of `env`, as
   * sd_notify(3) with unset_environment does, so that weftd's children do not notify in its name. Throws
   * SystemdNotifyError when a variable is unusable or weft's native addon, which sends the datagrams, is not built.
   */
  static fromEnvironment(log: Logger, env: NodeJS.ProcessEnv = process.env, pid = process.pid): SystemdNotifier | undefined {
    const socket = env.NOTIFY_SOCKET;
    try {
      if (socket === undefined || socket === '') return undefined;
      const address = notifySocketAddress(socket);
      const watchdogMs = watchdogPeriodMs(env, pid);
      const loaded = loadNativeAddon();
      if (!('addon' in loaded)) {
        throw new SystemdNotifyError(
          `NOTIFY_SOCKET is set (systemd Type=notify) but weft's native addon, which sends the notifications, is missing: ${loaded.error}; build it (npm run build needs make and a C compiler) or run weftd as Type=simple`,
        );
      }
      const { addon } = loaded;
      return new SystemdNotifier(address, (to, message) => addon.unixDatagram(to, message), watchdogMs, log);
    } finally {
      for (const name of NOTIFY_VARIABLES) delete env[name];
    }
  }

  /** Sends one notification; a failure is logged and reported as false, never thrown. */
  notify(fields: Readonly<Record<string, string>>): boolean {
    const result = this.send(this.address, format(fields));
    if (result >= 0) return true;
    this.log.warn({ err: errnoName(-result), fields: Object.keys(fields) }, 'could not notify systemd');
    return false;
  }

  /** READY=1 with a status line; retried a few times when systemd's queue is full, for it starts the unit's dependents. */
  async ready(status: string): Promise<boolean> {
    for (let attempt = 0; attempt < 5; attempt++) {
      if (this.notify({ READY: '1', STATUS: status })) return true;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    return false;
  }

  status(text: string): boolean {
    return this.notify({ STATUS: text });
  }

  /** STOPPING=1; the watchdog stops too. */
  stopping(status: string): boolean {
    this.stopWatchdog();
    return this.notify({ STOPPING: '1', STATUS: status });
  }

  /**
   * Pings (WATCHDOG=1) every half watchdog period while `alive()` says so; a missed ping is logged once per
   * stretch. Without `WatchdogSec=` only `tick` runs, every 10 s. The timer does not keep the process alive.
   */
  startWatchdog(options: WatchdogOptions): void {
    this.stopWatchdog();
    const watchdogMs = this.watchdogMs;
    this.watchdog = setInterval(
      () => {
        if (watchdogMs !== undefined) {
          if (options.alive()) {
            this.refusedPing = false;
            this.notify({ WATCHDOG: '1' });
          } else if (!this.refusedPing) {
            this.refusedPing = true;
            this.log.error({ watchdogMs }, "the reconcile loop makes no progress: not pinging systemd's watchdog");
          }
        }
        options.tick?.();
      },
      watchdogMs === undefined ? 10_000 : Math.max(1, Math.floor(watchdogMs / 2)),
    );
    this.watchdog.unref();
  }

  stopWatchdog(): void {
    clearInterval(this.watchdog);
    this.watchdog = undefined;
  }
}
