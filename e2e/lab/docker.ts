/**
 * Docker hosts in the namespace lab: each lab host gets a machine of its own on which Debian's docker.io runs
 * the way it runs on a real host, under systemd, with weft's drop-in (deploy/docker/docker-weft.conf).
 *
 * A host's machine is a private mount namespace and PID namespace inside the host's network namespace:
 *
 *   nsenter --net=<host>  unshare --pid --mount  docker-init (PID 1)  systemd --user  → docker.socket, docker.service,
 *                                                                                       containerd.service, containers
 *
 * - systemd is a real service manager (a user instance: this machine class does not boot systemd, and a system
 *   instance would take over the machine). It loads Debian's own docker.service, docker.socket and
 *   containerd.service unchanged, plus weft's drop-in installed as deploy/install.sh installs it, so the
 *   ExecStartPre commands, the EnvironmentFile and the `$DOCKER_OPTS` expansion of ExecStart are systemd's own.
 *   weftd itself runs as the lab's agent (so scenarios can stop and restart it); the drop-in's `Requires=weftd.service`
 *   is met by a `weftd.service` that only stands for it, and the lab host's subnet.env is the machine's
 *   /run/flannel/subnet.env.
 * - The machine's /run, /var/lib and /opt are its own tmpfs and /etc/docker is a directory of the host's: every
 *   daemon has its own sockets, state, images and keys where a real host has them, docker's data-root and
 *   containerd's root included, and nothing of it lands on this machine's disk. What must differ from a real host
 *   is in /etc/docker/daemon.json: `storage-driver` vfs (a tiny image, no overlay mounts), `iptables` (off by
 *   default, which keeps docker out of the host's firewall tables) and `cgroup-parent` (a cgroup of the run's).
 * - When the machine's PID 1 dies — `destroy()` of the lab kills every process in its namespaces — the kernel kills
 *   every process of the machine, containers included, and its mounts go with its mount namespace; the lab then
 *   removes the run's cgroups (`weft-lab-<run>-…`).
 *
 * Commands run on the machine through `nsenter --target <PID 1> --mount --net --pid`: `docker ps` there is what a
 * user types on the host.
 */
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  closeSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from '../../test/wait.js';
import { shellQuote, type BackgroundCommand, type ExecOptions, type ExecResult, type LabHost } from './driver.js';
import { CGROUP_PREFIX, type NetnsLab } from './netns-lab.js';
import { ChildSet, run, startBackground } from './process.js';

const REPO = fileURLToPath(new URL('../../..', import.meta.url));
/** Debian's docker.io: the daemon in /usr/sbin (docker-ce's is in /usr/bin), its client and docker-init (tini) in /usr/bin. */
const DOCKERDS = ['/usr/sbin/dockerd', '/usr/bin/dockerd'];
const DOCKER_CLI = '/usr/bin/docker';
const DOCKER_INIT = '/usr/bin/docker-init';
const SYSTEMD = '/lib/systemd/systemd';
const SYSTEMCTL = '/usr/bin/systemctl';
const BUSYBOX = '/bin/busybox';
/** Units the docker.io and containerd packages install, loaded unchanged. */
const DEBIAN_UNITS = ['/lib/systemd/system/docker.service', '/lib/systemd/system/docker.socket', '/lib/systemd/system/containerd.service'];
/** The image every docker host imports: Debian's busybox-static with a link per applet. */
const LAB_IMAGE = 'weft/busybox';
/** The environment a system manager gives its services (a user manager would pass on its own). */
const MACHINE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const RUNTIME_DIR = '/run/user/0';

/** Why docker hosts cannot run here, or undefined when they can. */
export function dockerUnavailable(): string | undefined {
  const missing = [DOCKER_CLI, DOCKER_INIT, SYSTEMD, SYSTEMCTL, ...DEBIAN_UNITS, '/etc/docker'].filter((path) => !existsSync(path));
  if (!DOCKERDS.some((path) => existsSync(path))) missing.unshift('dockerd');
  if (missing.length > 0)
    return `needs Debian's docker.io and systemd (missing ${missing.join(', ')}; deploy/ensure-deps.sh installs them)`;
  if (!isStaticExecutable(BUSYBOX)) return `needs Debian's busybox-static (${BUSYBOX} is missing or dynamically linked)`;
  return undefined;
}

/** True when `path` is an ELF executable without a program interpreter (statically linked). */
function isStaticExecutable(path: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return false;
  }
  try {
    const header = Buffer.alloc(64);
    if (readSync(fd, header, 0, 64, 0) < 64 || header.readUInt32BE(0) !== 0x7f454c46 || header[4] !== 2) return false;
    const phoff = Number(header.readBigUInt64LE(0x20));
    const phentsize = header.readUInt16LE(0x36);
    const phnum = header.readUInt16LE(0x38);
    const table = Buffer.alloc(phentsize * phnum);
    readSync(fd, table, 0, table.length, phoff);
    for (let i = 0; i < phnum; i++) if (table.readUInt32LE(i * phentsize) === 3) return false; // PT_INTERP
    return true;
  } finally {
    closeSync(fd);
  }
}

export interface DockerHostOptions {
  /**
   * dockerd's `iptables` (daemon.json). Default false: docker stays out of the host's firewall tables. docker's
   * own masquerading (`--ip-masq=true`, what weft-docker-opts passes when weftd does not masquerade) needs true.
   */
  iptables?: boolean;
}

/** The docker side of a cluster, for scenarios that run containers with docker (see e2e/scenarios/docker.scenarios.ts). */
export interface DockerHosts {
  /** The image every docker host has imported. */
  readonly image: string;
  /**
   * Makes `host` a docker host: its service manager with Debian's docker units and weft's drop-in, then
   * `systemctl start docker.service` (which waits, through the drop-in, for the host's subnet.env) and the image.
   */
  startDocker(host: LabHost | string, options?: DockerHostOptions): Promise<void>;
  /** `docker <args>` on the host, as a user there types it. */
  docker(host: LabHost | string, args: readonly string[], options?: ExecOptions): Promise<ExecResult>;
  /** `docker <args>` on the host in the background (e.g. a ping that runs across a restart). */
  dockerBackground(host: LabHost | string, args: readonly string[]): BackgroundCommand;
  /** `systemctl <args>` on the host's service manager, e.g. ['restart', 'docker.service']. */
  systemctl(host: LabHost | string, args: readonly string[], options?: ExecOptions): Promise<ExecResult>;
  /** dockerd's command line as the kernel has it (what systemd made of ExecStart), one argument per element. */
  dockerdArgv(host: LabHost | string): Promise<string[]>;
  /** The file collecting the host's service manager's and its services' output. */
  logFile(host: LabHost | string): string;
}

/** The shell script that turns a fresh mount and PID namespace into a docker host's machine (see the file's comment). */
const MACHINE_SCRIPT = `set -eu
dir=$1 cgroup=$2 flannel=$3
mount -n -t tmpfs -o mode=755 weft-lab /run
# /run/systemd/system: systemd --user runs only on a machine that says it was booted with systemd
mkdir -p /run/systemd/system ${RUNTIME_DIR} /run/flannel
mount -n -t tmpfs -o mode=755 weft-lab /var/lib
if [ -d /opt ]; then mount -n -t tmpfs -o mode=755 weft-lab /opt; fi
mount -n --bind "$dir/etc" /etc/docker
mount -n --bind "$flannel" /run/flannel
# the service manager needs a cgroup subtree of its own: one named after the run, which the lab removes
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then hierarchies=/sys/fs/cgroup; else hierarchies="/sys/fs/cgroup/systemd /sys/fs/cgroup/unified"; fi
for hierarchy in $hierarchies; do
  if [ -d "$hierarchy" ]; then mkdir -p "$hierarchy/$cgroup"; echo $$ > "$hierarchy/$cgroup/cgroup.procs"; fi
done
exec env -i PATH=${MACHINE_PATH} XDG_RUNTIME_DIR=${RUNTIME_DIR} SYSTEMD_UNIT_PATH="$dir/units" \\
  ${SYSTEMD} --user --unit=weft-lab.target --log-target=console --default-standard-output=inherit --default-standard-error=inherit
`;

/** Units a booted machine has and a user manager lacks; targets only group units, so empty ones do. */
const LAB_TARGETS = ['weft-lab', 'basic', 'sockets', 'sysinit', 'paths', 'timers', 'shutdown'];
const WEFTD_STAND_IN = `[Unit]
Description=weftd (runs as the lab's agent on this host; this unit only stands for it)

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/true
`;

interface Machine {
  readonly host: LabHost;
  /** The PID (as this process sees it) of the machine's PID 1, docker-init; undefined while it starts. */
  init: number | undefined;
}

/** Docker hosts for the hosts of a NetnsLab. The lab's destroy() removes everything they made. */
export class NetnsDocker implements DockerHosts {
  readonly image = LAB_IMAGE;
  private readonly machines = new Map<string, Machine>();
  private readonly children = new ChildSet();
  private imageTar: string | undefined;

  constructor(readonly lab: NetnsLab) {}

  private machine(hostRef: LabHost | string): Machine {
    const host = this.lab.host(hostRef);
    const machine = this.machines.get(host.name);
    if (machine === undefined) throw new Error(`${host.name} is not a docker host: startDocker first`);
    return machine;
  }

  logFile(hostRef: LabHost | string): string {
    return join(this.lab.host(hostRef).dir, 'docker', 'machine.log');
  }

  /** The image's tar: busybox-static at /bin/busybox and a symlink per applet (what `docker import` takes). */
  private buildImage(): string {
    if (this.imageTar !== undefined) return this.imageTar;
    const root = join(this.lab.tempDir, 'image', 'rootfs');
    mkdirSync(join(root, 'bin'), { recursive: true });
    mkdirSync(join(root, 'tmp'), { mode: 0o1777 });
    copyFileSync(BUSYBOX, join(root, 'bin', 'busybox'));
    chmodSync(join(root, 'bin', 'busybox'), 0o755);
    const applets = spawnSync(BUSYBOX, ['--list'], { encoding: 'utf8' })
      .stdout.split('\n')
      .filter((name) => /^[a-z0-9_.[-]+$/.test(name) && name !== 'busybox');
    for (const applet of applets) symlinkSync('busybox', join(root, 'bin', applet));
    const tar = join(this.lab.tempDir, 'image', 'busybox.tar');
    const packed = spawnSync('tar', ['-C', root, '-cf', tar, '.'], { encoding: 'utf8' });
    if (packed.status !== 0) throw new Error(`could not pack the image: ${packed.stderr}`);
    this.imageTar = tar;
    return tar;
  }

  /** Lays out the host's machine directory: units, drop-in, weft-docker-opts, /etc/docker. */
  private layout(host: LabHost, options: DockerHostOptions): string {
    const dir = join(this.lab.host(host).dir, 'docker');
    const units = join(dir, 'units');
    mkdirSync(join(units, 'docker.service.d'), { recursive: true });
    mkdirSync(join(dir, 'bin'), { recursive: true });
    mkdirSync(join(dir, 'etc'), { recursive: true });
    for (const unit of DEBIAN_UNITS) copyFileSync(unit, join(units, unit.split('/').pop()!));
    // as deploy/install.sh installs them: weft-docker-opts into the bin directory, the drop-in with @BINDIR@ replaced
    copyFileSync(join(REPO, 'deploy', 'docker', 'weft-docker-opts.sh'), join(dir, 'bin', 'weft-docker-opts'));
    chmodSync(join(dir, 'bin', 'weft-docker-opts'), 0o755);
    const dropIn = readFileSync(join(REPO, 'deploy', 'docker', 'docker-weft.conf'), 'utf8').replaceAll('@BINDIR@', join(dir, 'bin'));
    writeFileSync(join(units, 'docker.service.d', 'weft.conf'), dropIn);
    for (const target of LAB_TARGETS)
      writeFileSync(join(units, `${target}.target`), `[Unit]\nDescription=${target}.target of the lab's machine\n`);
    writeFileSync(join(units, 'weftd.service'), WEFTD_STAND_IN);
    writeFileSync(
      join(dir, 'etc', 'daemon.json'),
      `${JSON.stringify(
        {
          'storage-driver': 'vfs',
          iptables: options.iptables ?? false,
          'cgroup-parent': `/${this.cgroup(host)}/docker`,
        },
        null,
        2,
      )}\n`,
    );
    return dir;
  }

  private cgroup(host: LabHost): string {
    return `${CGROUP_PREFIX}-${this.lab.runId}-${host.name}`;
  }

  /** Boots the host's machine and waits for its service manager to answer. */
  private async boot(host: LabHost, options: DockerHostOptions): Promise<Machine> {
    const dir = this.layout(host, options);
    const flannelDir = this.lab.host(host).dir; // holds the host's subnet.env
    const child = this.lab.spawnInNetns(
      host,
      [
        'unshare',
        '--pid',
        '--fork',
        '--kill-child',
        '--mount',
        '--propagation',
        'private',
        '--mount-proc',
        DOCKER_INIT,
        '--',
        'sh',
        '-c',
        MACHINE_SCRIPT,
        'sh',
        dir,
        this.cgroup(host),
        flannelDir,
      ],
      this.logFile(host),
    );
    const machine: Machine = { host, init: undefined };
    this.machines.set(host.name, machine);
    machine.init = await waitFor(
      () => {
        if (child.exitCode !== null || child.signalCode !== null)
          throw new Error(`the machine of ${host.name} exited: ${this.logTail(host)}`);
        const children = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim();
        return children === '' ? undefined : Number(children.split(' ')[0]);
      },
      `the machine of ${host.name} to start`,
      10_000,
      20,
    );
    await waitFor(
      async () => (await this.systemctl(host, ['show-environment'])).code === 0,
      `the service manager of ${host.name} (log: ${this.logFile(host)})`,
      20_000,
      50,
    );
    return machine;
  }

  private logTail(host: LabHost): string {
    try {
      return readFileSync(this.logFile(host), 'utf8').slice(-3000);
    } catch {
      return '(no log)';
    }
  }

  private machineArgv(machine: Machine, argv: readonly string[]): string[] {
    if (machine.init === undefined) throw new Error(`the machine of ${machine.host.name} is not up`);
    return [
      'nsenter',
      `--target=${machine.init}`,
      '--mount',
      '--net',
      '--pid',
      '--',
      'env',
      '-i',
      `PATH=${MACHINE_PATH}`,
      `XDG_RUNTIME_DIR=${RUNTIME_DIR}`,
      ...argv,
    ];
  }

  /** Runs argv on the host's machine. */
  runOn(hostRef: LabHost | string, argv: readonly string[], options?: ExecOptions): Promise<ExecResult> {
    return run(this.machineArgv(this.machine(hostRef), argv), this.children, options);
  }

  /** The shell prefix that runs a command on the host's machine, e.g. `<prefix> docker ps` (for people exploring a lab). */
  enterCommand(hostRef: LabHost | string): string {
    return this.machineArgv(this.machine(hostRef), []).map(shellQuote).join(' ');
  }

  async startDocker(hostRef: LabHost | string, options: DockerHostOptions = {}): Promise<void> {
    const host = this.lab.host(hostRef);
    if (!this.machines.has(host.name)) await this.boot(host, options);
    const started = await this.systemctl(host, ['start', 'docker.service'], { timeoutMs: 180_000 });
    if (started.code !== 0) {
      const status = await this.systemctl(host, ['status', '--no-pager', '--lines=0', 'docker.service', 'containerd.service']);
      throw new Error(
        `systemctl start docker.service on ${host.name}: exit ${started.code}: ${started.stderr}\n${status.stdout}\n${this.logTail(host)}`,
      );
    }
    await this.docker(host, ['import', this.buildImage(), this.image], { check: true, timeoutMs: 60_000 });
  }

  docker(hostRef: LabHost | string, args: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    return this.runOn(hostRef, [DOCKER_CLI, ...args], { timeoutMs: 60_000, ...options });
  }

  dockerBackground(hostRef: LabHost | string, args: readonly string[]): BackgroundCommand {
    return startBackground(this.machineArgv(this.machine(hostRef), [DOCKER_CLI, ...args]), this.children);
  }

  systemctl(hostRef: LabHost | string, args: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    return this.runOn(hostRef, [SYSTEMCTL, '--user', ...args], options);
  }

  async dockerdArgv(hostRef: LabHost | string): Promise<string[]> {
    const shown = await this.systemctl(hostRef, ['show', '--property=MainPID', '--value', 'docker.service'], { check: true });
    const pid = Number(shown.stdout.trim());
    if (!(pid > 0)) throw new Error(`docker.service on ${this.lab.host(hostRef).name} has no main process`);
    const cmdline = await this.runOn(hostRef, ['cat', `/proc/${pid}/cmdline`], { check: true });
    return cmdline.stdout.split('\0').slice(0, -1);
  }
}

/** `docker <args>` as a user types it on a host, for printing. */
export function dockerCommandLine(args: readonly string[]): string {
  return ['docker', ...args].map(shellQuote).join(' ');
}
