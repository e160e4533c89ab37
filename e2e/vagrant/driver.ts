/**
 * ClusterDriver over Vagrant VMs (e2e/vagrant/Vagrantfile): every command is `vagrant ssh <vm> -c <command>`
 * run as root with `sudo -n`, so the scenario suite written for the namespace lab runs unchanged on VMs.
 *
 * A driver takes the running VMs over for its lifetime: it stops the provisioned weftd.service, clears the
 * network's keys in etcd and weft's kernel and firewall state, and runs the agents the scenarios start
 * itself (`weftd` from deploy/install.sh, with --etcd-endpoints, --subnet-file under /run/weft-e2e/<run>/ and
 * --iface set to the VM's private address). destroy() removes what the run made and gives the VMs back:
 * weft's state cleared again, the saved network config restored and weftd.service started where it ran.
 *
 * The VM named weft1 runs etcd and is also a host, as in the Vagrantfile. The hosts' private network is the
 * Vagrantfile's (WEFT_VAGRANT_SUBNET, default 192.0.2). Containers are network namespaces on the VMs, wired
 * exactly as in the namespace lab (a bridge with FLANNEL_SUBNET, veth pairs).
 *
 * prepareVagrantCluster() checks, once before a run, that the VMs are up and run the weft this checkout
 * builds (syncing and re-provisioning them when not).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import ipaddr from 'ipaddr.js';
import { buildInfo } from '../../agent/build-info.js';
import { ipv4Host, parseIpv4Prefix } from '../lab/addr.js';
import {
  parseSubnetEnv,
  stopAgentHandle,
  shellQuote,
  type AgentExit,
  type AgentHandle,
  type BackgroundCommand,
  type ClusterDriver,
  type ExecOptions,
  type ExecResult,
  type ExecTarget,
  type LabContainer,
  type LabHost,
  type SubnetEnv,
} from '../lab/driver.js';

/** Where the Vagrantfile is. */
export const VAGRANT_DIR = fileURLToPath(new URL('../../../e2e/vagrant/', import.meta.url));
/** flannel's prefix, which the scenarios use. */
const NETWORK_PREFIX = '/coreos.com/network';
const RUN_ROOT = '/run/weft-e2e';
const AGENT_PID = 'WEFT_AGENT_PID=';
const AGENT_EXIT = 'WEFT_AGENT_EXIT=';
const BACKGROUND_PID = 'WEFT_BG_PID=';
/** The Vagrantfile's VM that runs etcd. */
const ETCD_VM = 'weft1';
/** Where provision.sh installs weft (deploy/install.sh's default prefix): its build's facts. */
const INSTALLED_BUILD_INFO = '/usr/local/lib/weft/dist/build-info.json';

/** The Vagrant cluster cannot be used as it is; the message says what to do. */
export class VagrantSetupError extends Error {
  readonly code = 'WEFT_VAGRANT_SETUP';
  override readonly name = 'VagrantSetupError';
}

/** The hosts' private network: WEFT_VAGRANT_SUBNET (three octets, as the Vagrantfile reads it) with .0/24. */
function vagrantNetwork(env: NodeJS.ProcessEnv = process.env): string {
  const subnet = env.WEFT_VAGRANT_SUBNET === undefined || env.WEFT_VAGRANT_SUBNET === '' ? '192.0.2' : env.WEFT_VAGRANT_SUBNET;
  if (!/^\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(subnet) || subnet.split('.').some((octet) => Number(octet) > 255)) {
    throw new VagrantSetupError(`WEFT_VAGRANT_SUBNET must be three octets such as 192.0.2, not ${JSON.stringify(subnet)}`);
  }
  return `${subnet}.0/24`;
}

export interface VagrantDriverOptions {
  /** The directory with the Vagrantfile (default: e2e/vagrant of this checkout). */
  vagrantDir?: string;
  /** The vagrant executable (default "vagrant" on PATH). */
  vagrant?: string;
  /** How many VMs to use as hosts, from the first (default: every running one). */
  hosts?: number;
  /** The private network the hosts talk over; each VM's address in it is its public IP (default: vagrantNetwork()). */
  network?: string;
  /** The VM that runs etcd (default weft1, as in the Vagrantfile). */
  etcdVm?: string;
  /** 1–5 characters [a-z0-9]; part of every name the run makes. Default: random. */
  runId?: string;
  /** The agent on the VMs (default "weftd", installed by deploy/install.sh). */
  weftd?: string;
  /** weftctl on the VMs (default "weftctl"). */
  weftctl?: string;
}

/** Runs `vagrant` with these arguments in the Vagrantfile's directory. */
class Vagrant {
  private readonly running = new Set<ChildProcess>();

  constructor(
    readonly executable: string,
    readonly dir: string,
  ) {}

  spawn(args: readonly string[]): ChildProcess {
    const child = spawn(this.executable, args, {
      cwd: this.dir,
      env: { ...process.env, VAGRANT_CWD: this.dir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.running.add(child);
    child.once('close', () => this.running.delete(child));
    return child;
  }

  run(args: readonly string[], timeoutMs = 120_000): Promise<ExecResult> {
    return new Promise((resolve, reject) => {
      const child = this.spawn(args);
      let stdout = '';
      let stderr = '';
      child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`timed out after ${timeoutMs} ms: vagrant ${args.map(shellQuote).join(' ')}`));
      }, timeoutMs);
      child.once('error', (err) => {
        clearTimeout(timer);
        const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
        reject(
          new Error(missing ? `${this.executable} not found: install Vagrant (see e2e/vagrant/README.md)` : `vagrant: ${err.message}`),
        );
      });
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ code: code ?? (signal === null ? 1 : 128 + 9), stdout, stderr });
      });
    });
  }

  /** `vagrant ssh <vm> -c <command>`; the remote command's exit status is the result's code. */
  ssh(vm: string, command: string, timeoutMs?: number): Promise<ExecResult> {
    return this.run(['ssh', vm, '-c', command], timeoutMs);
  }

  killAll(): void {
    for (const child of this.running) child.kill('SIGKILL');
  }
}

/** `vagrant status --machine-readable`: machine names and states, in the Vagrantfile's order. */
export function parseVagrantStatus(text: string): { name: string; state: string }[] {
  const machines: { name: string; state: string }[] = [];
  for (const line of text.split('\n')) {
    const [, target, type, data] = line.split(',');
    if (type === 'state' && target !== undefined && target !== '' && data !== undefined)
      machines.push({ name: target, state: data.trim() });
  }
  return machines;
}

/** The first line of the error in machine-readable output (`<time>,,ui,error,<text with \n escapes>`). */
export function machineReadableError(text: string): string | undefined {
  const line = text.split('\n').find((candidate) => candidate.split(',')[3] === 'error');
  if (line === undefined) return undefined;
  return line
    .split(',')
    .slice(4)
    .join(',')
    .split('\\n')[0]
    .replace(/%!\(VAGRANT_COMMA\)/g, ',')
    .trim();
}

async function listRunning(vagrant: Vagrant): Promise<string[]> {
  const status = await vagrant.run(['status', '--machine-readable'], 60_000);
  if (status.code !== 0)
    throw new VagrantSetupError(
      `vagrant status failed (exit ${status.code}): ${machineReadableError(status.stdout) ?? status.stderr.trim()}`,
    );
  return parseVagrantStatus(status.stdout)
    .filter((machine) => machine.state === 'running')
    .map((machine) => machine.name);
}

/** The running VMs, in the Vagrantfile's order; rejects when none runs or the etcd VM does not. */
async function requireRunning(vagrant: Vagrant, etcdVm: string): Promise<string[]> {
  const running = await listRunning(vagrant);
  if (running.length === 0)
    throw new VagrantSetupError(`no Vagrant VM is running in ${vagrant.dir}: cd e2e/vagrant && vagrant up (see e2e/vagrant/README.md)`);
  if (!running.includes(etcdVm)) {
    throw new VagrantSetupError(
      `${etcdVm}, the VM that runs etcd, is not running (running: ${running.join(', ')}): cd e2e/vagrant && vagrant up ${etcdVm}`,
    );
  }
  return running;
}

/** The `source` fingerprint of the weft installed on each VM ("none" where there is none). */
async function installedSources(vagrant: Vagrant, vms: readonly string[]): Promise<Map<string, string>> {
  const read = await Promise.all(
    vms.map(async (vm): Promise<[string, string]> => {
      const result = await vagrant.ssh(vm, `cat ${INSTALLED_BUILD_INFO} 2>/dev/null || true`);
      if (result.code !== 0) throw new VagrantSetupError(`${vm}: vagrant ssh failed (exit ${result.code}): ${result.stderr.trim()}`);
      try {
        const source = (JSON.parse(result.stdout) as { source?: unknown }).source;
        return [vm, typeof source === 'string' ? source : 'none'];
      } catch {
        return [vm, 'none'];
      }
    }),
  );
  return new Map(read);
}

export interface PrepareOptions {
  vagrant?: string;
  vagrantDir?: string;
  etcdVm?: string;
  /** Sync the checkout to VMs running another build and re-provision them (default: unless WEFT_VAGRANT_SYNC=0). */
  sync?: boolean;
  /** Progress messages (default: standard error). */
  report?: (line: string) => void;
}

/**
 * Before a run: the VMs are up, the etcd VM among them, and every running VM runs the weft this checkout
 * built (the source fingerprint of dist/build-info.json, `npm run build`). VMs that do not are synced
 * (`vagrant rsync`) and re-provisioned (`vagrant provision`: rebuild and reinstall), unless `sync` is
 * false. Resolves with the running VMs; rejects with a VagrantSetupError that says what to do.
 */
export async function prepareVagrantCluster(options: PrepareOptions = {}): Promise<string[]> {
  const vagrant = new Vagrant(options.vagrant ?? 'vagrant', options.vagrantDir ?? VAGRANT_DIR);
  const report = options.report ?? ((line: string) => process.stderr.write(`${line}\n`));
  const running = await requireRunning(vagrant, options.etcdVm ?? ETCD_VM);
  const wanted = buildInfo().source;
  if (wanted === 'unknown') throw new VagrantSetupError('this checkout has no dist/build-info.json: build it first (npm run build)');
  const stale = async () => [...(await installedSources(vagrant, running))].filter(([, source]) => source !== wanted).map(([vm]) => vm);
  const behind = await stale();
  if (behind.length === 0) return running;
  const sync = options.sync ?? process.env.WEFT_VAGRANT_SYNC !== '0';
  const what = `${behind.join(', ')} ${behind.length === 1 ? 'runs' : 'run'} a weft built from other sources than this checkout`;
  if (!sync)
    throw new VagrantSetupError(
      `${what}: cd e2e/vagrant && vagrant rsync && vagrant provision (or unset WEFT_VAGRANT_SYNC to let the run do it)`,
    );
  report(
    `${what}: syncing the checkout and re-provisioning (vagrant rsync ${behind.join(' ')}; vagrant provision ${behind.join(' ')}); WEFT_VAGRANT_SYNC=0 fails instead`,
  );
  for (const step of ['rsync', 'provision']) {
    const result = await vagrant.run([step, ...behind], 60 * 60_000);
    if (result.code !== 0) {
      const why = machineReadableError(result.stdout) ?? (result.stderr.trim() || result.stdout.slice(-2000).trim());
      throw new VagrantSetupError(`vagrant ${step} ${behind.join(' ')} failed (exit ${result.code}): ${why}`);
    }
  }
  const still = await stale();
  if (still.length > 0)
    throw new VagrantSetupError(
      `${still.join(', ')} still ${still.length === 1 ? 'runs' : 'run'} another build after vagrant provision: run vagrant provision ${still.join(' ')} in e2e/vagrant and read its output`,
    );
  return running;
}

interface IpAddrJson {
  ifname?: string;
  addr_info?: { family?: string; local?: string; prefixlen?: number }[];
}

function inPrefix(address: string, cidr: string): boolean {
  if (!ipaddr.IPv4.isValidFourPartDecimal(address)) return false;
  return ipaddr.IPv4.parse(address).match(ipaddr.IPv4.parseCIDR(cidr));
}

class VmHost implements LabHost {
  readonly containers: VmContainer[] = [];
  bridge: { name: string; subnet: string; mtu: number } | undefined;
  readonly publicIpv6 = undefined;
  /** weftd.service was active when the run took the VM over. */
  serviceWasActive = false;

  constructor(
    readonly name: string,
    readonly vm: string,
    readonly publicIp: string,
    readonly iface: string,
  ) {}
}

class VmContainer implements LabContainer {
  readonly ipv6 = undefined;

  constructor(
    private readonly driver: VagrantDriver,
    readonly name: string,
    readonly host: VmHost,
    readonly netns: string,
    readonly ip: string,
  ) {}

  exec(command: string, options?: ExecOptions): Promise<ExecResult> {
    return this.driver.exec(this, command, options);
  }
}

/** Splits the marker lines a wrapper prints from the command's own output. */
function takeMarker(text: string, marker: string): { value: string | undefined; rest: string } {
  let value: string | undefined;
  const rest = text
    .split('\n')
    .filter((line) => {
      if (!line.startsWith(marker)) return true;
      value = line.slice(marker.length).trim();
      return false;
    })
    .join('\n');
  return { value, rest };
}

function exitOf(code: number): AgentExit {
  if (code > 128 && code < 160) {
    const signals: Record<number, NodeJS.Signals> = { 1: 'SIGHUP', 2: 'SIGINT', 6: 'SIGABRT', 9: 'SIGKILL', 15: 'SIGTERM' };
    const signal = signals[code - 128];
    if (signal !== undefined) return { code: null, signal };
  }
  return { code, signal: null };
}

class VmAgent implements AgentHandle {
  exit: AgentExit | undefined;
  pid = 0;
  readonly exited: Promise<AgentExit>;
  private output = '';
  /** Resolves with the pid, or rejects when the session ends before printing it. */
  readonly started: Promise<number>;

  constructor(
    private readonly driver: VagrantDriver,
    readonly host: VmHost,
    readonly args: readonly string[],
    child: ChildProcess,
    header: string,
  ) {
    this.output = `${header}\n`;
    let buffered = '';
    let resolvePid: (pid: number) => void = () => undefined;
    let rejectPid: (err: Error) => void = () => undefined;
    this.started = new Promise((resolve, reject) => {
      resolvePid = resolve;
      rejectPid = reject;
    });
    this.started.catch(() => undefined);
    let exitCode: number | undefined;
    const consume = (chunk: Buffer): void => {
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const line of lines) {
        if (line.startsWith(AGENT_PID)) {
          this.pid = Number(line.slice(AGENT_PID.length));
          resolvePid(this.pid);
        } else if (line.startsWith(AGENT_EXIT)) {
          exitCode = Number(line.slice(AGENT_EXIT.length));
        } else {
          this.output += `${line}\n`;
        }
      }
    };
    child.stdout!.on('data', consume);
    child.stderr!.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    this.exited = new Promise((resolve) => {
      child.once('close', (code) => {
        if (buffered !== '') this.output += buffered;
        rejectPid(new Error(`weftd on ${host.name} ended before it started:\n${this.output}`));
        this.exit = exitCode !== undefined ? exitOf(exitCode) : { code: code ?? null, signal: null };
        resolve(this.exit);
      });
    });
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.exit !== undefined || this.pid === 0) return;
    this.driver.track(this.driver.sudo(this.host, `kill -s ${signal.replace(/^SIG/, '')} ${this.pid} 2>/dev/null || true`));
  }

  log(): string {
    return this.output;
  }
}

/** The cluster of running Vagrant VMs, taken over for one scenario. */
export class VagrantDriver implements ClusterDriver {
  readonly runId: string;
  readonly hosts: readonly VmHost[];
  readonly etcdHost: VmHost;
  readonly etcdEndpoint: string;
  readonly runDir: string;
  private readonly vagrant: Vagrant;
  private readonly weftd: string;
  private readonly weftctl: string;
  private readonly agents = new Map<string, VmAgent>();
  private readonly pending = new Set<Promise<unknown>>();
  private savedConfig: string | undefined;
  private destroying: Promise<void> | undefined;

  /** Finds the running VMs and their private addresses, then takes them over (see the file comment). */
  static async create(options: VagrantDriverOptions = {}): Promise<VagrantDriver> {
    const vagrantDir = options.vagrantDir ?? VAGRANT_DIR;
    const vagrant = new Vagrant(options.vagrant ?? 'vagrant', vagrantDir);
    const etcdVm = options.etcdVm ?? ETCD_VM;
    const network = options.network ?? vagrantNetwork();
    const running = await requireRunning(vagrant, etcdVm);
    const wanted = options.hosts ?? running.length;
    if (wanted > running.length)
      throw new VagrantSetupError(
        `${wanted} hosts wanted but only ${running.length} VMs run (${running.join(', ')}): WEFT_VAGRANT_HOSTS=${wanted} vagrant up`,
      );
    const privateAddress = async (vm: string): Promise<{ address: string; iface: string }> => {
      const facts = await vagrant.ssh(vm, 'ip -j -4 addr show');
      if (facts.code !== 0) throw new Error(`${vm}: ip -j -4 addr show failed (exit ${facts.code}): ${facts.stderr.trim()}`);
      let links: IpAddrJson[];
      try {
        links = JSON.parse(facts.stdout) as IpAddrJson[];
      } catch {
        throw new Error(`${vm}: ip -j -4 addr show printed no JSON: ${facts.stdout.slice(0, 200)}`);
      }
      for (const link of links) {
        for (const address of link.addr_info ?? []) {
          if (address.family === 'inet' && address.local !== undefined && link.ifname !== undefined && inPrefix(address.local, network)) {
            return { address: address.local, iface: link.ifname };
          }
        }
      }
      throw new VagrantSetupError(
        `${vm} has no address in ${network}: is it on the Vagrantfile's private network (WEFT_VAGRANT_SUBNET the same as at vagrant up)?`,
      );
    };
    const hostVms = running.slice(0, wanted);
    // asked side by side, reported in the VMs' order: the first VM's problem is the one named, whatever answers first
    const answers = await Promise.allSettled(hostVms.map(privateAddress));
    const hosts = answers.map((answer, i) => {
      if (answer.status === 'rejected') throw answer.reason;
      return new VmHost(`h${i + 1}`, hostVms[i], answer.value.address, answer.value.iface);
    });
    const etcdHost = hosts.find((host) => host.vm === etcdVm);
    const etcd = etcdHost === undefined ? await privateAddress(etcdVm) : { address: etcdHost.publicIp, iface: etcdHost.iface };
    const runId = options.runId ?? randomBytes(4).readUInt32BE(0).toString(36).slice(-5);
    if (!/^[a-z0-9]{1,5}$/.test(runId)) throw new Error(`runId must be 1-5 characters [a-z0-9], got ${JSON.stringify(runId)}`);
    const driver = new VagrantDriver(
      vagrant,
      hosts,
      new VmHost('etcd', etcdVm, etcd.address, etcd.iface),
      runId,
      options.weftd ?? 'weftd',
      options.weftctl ?? 'weftctl',
    );
    try {
      await driver.takeOver();
    } catch (err) {
      await driver.destroy();
      throw err;
    }
    return driver;
  }

  private constructor(vagrant: Vagrant, hosts: VmHost[], etcdHost: VmHost, runId: string, weftd: string, weftctl: string) {
    this.vagrant = vagrant;
    this.hosts = hosts;
    this.runId = runId;
    this.weftd = weftd;
    this.weftctl = weftctl;
    this.etcdHost = etcdHost;
    this.etcdEndpoint = `http://${etcdHost.publicIp}:2379`;
    this.runDir = `${RUN_ROOT}/${runId}`;
  }

  // ---- plumbing ----

  /** Keeps a fire-and-forget command so that destroy() can wait for it. */
  track(promise: Promise<unknown>): void {
    const settled = promise.catch(() => undefined);
    this.pending.add(settled);
    void settled.finally(() => this.pending.delete(settled));
  }

  /** Runs a shell command as root on the host's VM. */
  sudo(host: VmHost, command: string, options: ExecOptions = {}): Promise<ExecResult> {
    return this.remote(host.vm, command, options);
  }

  private remoteCommand(command: string, options: { input?: string; env?: Record<string, string>; netns?: string }): string {
    const env = Object.entries(options.env ?? {}).map(([name, value]) => shellQuote(`${name}=${value}`));
    const inner = [
      ...(options.netns === undefined ? [] : ['ip', 'netns', 'exec', shellQuote(options.netns)]),
      ...(env.length > 0 ? ['env', ...env] : []),
      'sh',
      '-c',
      shellQuote(command),
    ];
    const root = `sudo -n ${inner.join(' ')}`;
    // stdin is not forwarded by every vagrant version: the input travels inside the command
    return options.input === undefined
      ? root
      : `printf %s ${shellQuote(Buffer.from(options.input).toString('base64'))} | base64 -d | ${root}`;
  }

  private async remote(vm: string, command: string, options: ExecOptions & { netns?: string } = {}): Promise<ExecResult> {
    this.assertOpen();
    const remote = this.remoteCommand(command, options);
    const result = await this.vagrant.ssh(vm, remote, options.timeoutMs ?? 30_000);
    if (options.check === true && result.code !== 0) {
      throw new Error(`exit ${result.code} on ${vm}: ${command}\n${result.stdout}${result.stderr}`);
    }
    return result;
  }

  private assertOpen(): void {
    if (this.destroying !== undefined && !this.tearingDown) throw new Error(`Vagrant run ${this.runId} is destroyed`);
  }

  private tearingDown = false;

  // ---- targets ----

  resolve(name: string): VmHost | VmContainer {
    if (name === this.etcdHost.name) return this.etcdHost;
    for (const host of this.hosts) {
      if (host.name === name || host.vm === name) return host;
      for (const container of host.containers) if (container.name === name) return container;
    }
    throw new Error(`Vagrant run ${this.runId} has no host or container named ${name}`);
  }

  host(ref: LabHost | string): VmHost {
    const name = typeof ref === 'string' ? ref : ref.name;
    const host = this.hosts.find((candidate) => candidate.name === name || candidate.vm === name);
    if (host === undefined) throw new Error(`Vagrant run ${this.runId} has no host ${name}`);
    return host;
  }

  private target(target: ExecTarget): { host: VmHost; netns: string | undefined } {
    const resolved = this.resolve(typeof target === 'string' ? target : target.name);
    return resolved instanceof VmContainer ? { host: resolved.host, netns: resolved.netns } : { host: resolved, netns: undefined };
  }

  exec(target: ExecTarget, command: string, options: ExecOptions = {}): Promise<ExecResult> {
    const { host, netns } = this.target(target);
    return this.remote(host.vm, command, { ...options, ...(netns === undefined ? {} : { netns }) });
  }

  background(target: ExecTarget, command: string, options: { env?: Record<string, string> } = {}): BackgroundCommand {
    this.assertOpen();
    const { host, netns } = this.target(target);
    const inner = this.remoteCommand(command, { ...options, ...(netns === undefined ? {} : { netns }) });
    // the remote shell reports the command's pid (for stop()) and waits for it
    const wrapped = `${inner} & pid=$!; echo ${BACKGROUND_PID}$pid >&2; wait $pid`;
    const child = this.vagrant.spawn(['ssh', host.vm, '-c', wrapped]);
    let stdout = '';
    let stderr = '';
    let pid: number | undefined;
    child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      const taken = takeMarker(stderr, BACKGROUND_PID);
      if (taken.value !== undefined) {
        pid = Number(taken.value);
        stderr = taken.rest;
      }
    });
    const exited = new Promise<ExecResult>((resolve) => {
      child.once('error', (err) => resolve({ code: 127, stdout, stderr: stderr + String(err) }));
      child.once('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    });
    this.track(exited);
    const signalRemote = (signal: NodeJS.Signals): Promise<unknown> =>
      pid === undefined
        ? Promise.resolve()
        : this.remote(host.vm, `kill -s ${signal.replace(/^SIG/, '')} ${pid} 2>/dev/null || true`).catch(() => undefined);
    return {
      pid: child.pid ?? 0,
      exited,
      output: () => ({ code: child.exitCode ?? -1, stdout, stderr }),
      async stop(signal: NodeJS.Signals = 'SIGINT', timeoutMs = 5_000): Promise<ExecResult> {
        if (child.exitCode === null) await signalRemote(signal);
        let timer: NodeJS.Timeout | undefined;
        const first = await Promise.race([
          exited,
          new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs))),
        ]);
        clearTimeout(timer);
        if (first !== 'timeout') return first;
        await signalRemote('SIGKILL');
        child.kill('SIGKILL');
        return exited;
      },
    };
  }

  weftctlCommand(args: readonly string[]): string {
    const endpoints = args.some((arg) => arg === '--etcd-endpoints' || arg.startsWith('--etcd-endpoints='))
      ? []
      : [`--etcd-endpoints=${this.etcdEndpoint}`];
    return [this.weftctl, ...endpoints, ...args].map(shellQuote).join(' ');
  }

  // ---- etcd ----

  etcdctl(args: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    return this.exec(this.etcdHost, ['etcdctl', `--endpoints=${this.etcdEndpoint}`, ...args].map(shellQuote).join(' '), {
      ...options,
      env: { ETCDCTL_API: '3', ...options.env },
    });
  }

  async stopEtcd(): Promise<void> {
    await this.exec(this.etcdHost, 'systemctl kill --signal=SIGKILL etcd; systemctl stop etcd', { check: true });
  }

  async startEtcd(): Promise<void> {
    await this.exec(this.etcdHost, 'systemctl start etcd', { check: true });
    const deadline = Date.now() + 20_000;
    for (;;) {
      const health = await this.etcdctl(['endpoint', 'health', '--command-timeout=1s']).catch(() => undefined);
      if (health?.code === 0) return;
      if (Date.now() > deadline) throw new Error(`etcd on ${this.etcdHost.vm} not healthy after 20 s: ${health?.stderr ?? ''}`);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }

  // ---- agents ----

  subnetFile(ref: LabHost | string): string {
    this.host(ref);
    return `${this.runDir}/subnet.env`;
  }

  async readSubnetEnv(ref: LabHost | string): Promise<SubnetEnv | undefined> {
    const file = this.subnetFile(ref);
    const result = await this.exec(this.host(ref), `cat ${shellQuote(file)} 2>/dev/null || true`);
    return result.stdout === '' ? undefined : parseSubnetEnv(result.stdout);
  }

  async startAgent(ref: LabHost | string, args: readonly string[] = [], env: Record<string, string> = {}): Promise<AgentHandle> {
    this.assertOpen();
    const host = this.host(ref);
    const current = this.agents.get(host.name);
    if (current !== undefined && current.exit === undefined)
      throw new Error(`${host.name} (${host.vm}) already runs weftd (pid ${current.pid})`);
    const has = (flag: string) => args.some((arg) => arg === flag || arg.startsWith(`${flag}=`));
    const full = [...args];
    if (!has('--iface') && !has('--iface-regex') && !has('--public-ip')) full.unshift(`--iface=${host.publicIp}`);
    if (!has('--subnet-file')) full.unshift(`--subnet-file=${this.subnetFile(host)}`);
    if (!has('--etcd-endpoints')) full.unshift(`--etcd-endpoints=${this.etcdEndpoint}`);
    const agent = [this.weftd, ...full].map(shellQuote).join(' ');
    const envPart = Object.entries(env)
      .map(([name, value]) => shellQuote(`${name}=${value}`))
      .join(' ');
    const script = `mkdir -p ${shellQuote(this.runDir)} && { ${envPart === '' ? '' : `env ${envPart} `}${agent} 2>&1 & pid=$!; echo ${AGENT_PID}$pid; wait $pid; echo ${AGENT_EXIT}$?; }`;
    const child = this.vagrant.spawn(['ssh', host.vm, '-c', `sudo -n sh -c ${shellQuote(script)}`]);
    const handle = new VmAgent(
      this,
      host,
      full,
      child,
      `=== ${new Date().toISOString()} ${host.name} (${host.vm}): ${this.weftd} ${full.join(' ')}`,
    );
    this.agents.set(host.name, handle);
    this.track(handle.exited);
    await handle.started;
    return handle;
  }

  agent(ref: LabHost | string): AgentHandle | undefined {
    return this.agents.get(this.host(ref).name);
  }

  stopAgent(ref: LabHost | string, signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000): Promise<AgentExit | undefined> {
    return stopAgentHandle(this.agents.get(this.host(ref).name), signal, timeoutMs);
  }

  // ---- containers ----

  private names(host: VmHost, number: number): { name: string; netns: string; hostSide: string; inside: string } {
    const name = `${host.name}c${number}`;
    return { name, netns: `wv${this.runId}-${name}`, hostSide: `v${this.runId}${name}`, inside: `e${this.runId}${name}` };
  }

  async addContainers(ref: LabHost | string, count: number): Promise<LabContainer[]> {
    this.assertOpen();
    const host = this.host(ref);
    if (!Number.isInteger(count) || count < 1) throw new Error(`container count must be a positive integer, got ${count}`);
    if (host.containers.length + count > 99) throw new Error('at most 99 containers per host');
    const env = await this.readSubnetEnv(host);
    if (env?.subnet === undefined)
      throw new Error(`${host.name} (${host.vm}) has no complete IPv4 subnet.env at ${this.subnetFile(host)} yet`);
    if (host.bridge !== undefined && (host.bridge.subnet !== env.subnet || host.bridge.mtu !== env.mtu)) {
      throw new Error(
        `${host.name}'s subnet.env now says ${env.subnet} mtu ${env.mtu} but its containers use ${host.bridge.subnet} mtu ${host.bridge.mtu}: removeContainers first`,
      );
    }
    const envSubnet = env.subnet;
    const subnet = parseIpv4Prefix(envSubnet);
    const gateway = envSubnet.split('/')[0];
    const bridge = host.bridge?.name ?? `c${this.runId}${host.name}`;
    const lines: string[] = [];
    const namespaces: string[] = [];
    if (host.bridge === undefined) {
      lines.push(
        `link add ${bridge} type bridge`,
        `link set ${bridge} mtu ${env.mtu}`,
        `addr add ${env.subnet} dev ${bridge}`,
        `link set ${bridge} up`,
      );
    }
    const created: VmContainer[] = [];
    const inside: string[] = [];
    for (let k = 0; k < count; k++) {
      const number = host.containers.length + k + 1;
      const names = this.names(host, number);
      const ip = ipv4Host(subnet, 1 + number);
      namespaces.push(names.netns);
      lines.push(
        `link add ${names.hostSide} mtu ${env.mtu} type veth peer name ${names.inside} mtu ${env.mtu} netns ${names.netns}`,
        `link set ${names.hostSide} master ${bridge}`,
        `link set ${names.hostSide} up`,
      );
      inside.push(
        `ip -n ${names.netns} link set lo up`,
        `ip -n ${names.netns} addr add ${ip}/${subnet.length} dev ${names.inside}`,
        `ip -n ${names.netns} link set ${names.inside} up`,
        `ip -n ${names.netns} route add default via ${gateway}`,
      );
      created.push(new VmContainer(this, names.name, host, names.netns, ip));
    }
    const script = [...namespaces.map((netns) => `ip netns add ${netns}`), 'ip -batch -', ...inside].join(' && ');
    await this.exec(host, script, { input: `${lines.join('\n')}\n`, check: true });
    host.bridge = { name: bridge, subnet: envSubnet, mtu: env.mtu };
    host.containers.push(...created);
    return created;
  }

  async removeContainers(ref: LabHost | string): Promise<void> {
    const host = this.host(ref);
    await this.exec(host, this.containerCleanup(host), { check: true });
    host.containers.length = 0;
    host.bridge = undefined;
  }

  private containerCleanup(host: VmHost): string {
    const prefix = `wv${this.runId}-${host.name}c`;
    return [
      `for ns in $(ip netns list | cut -d' ' -f1 | grep '^${prefix}'); do ip netns pids "$ns" | xargs -r kill -9; ip netns del "$ns"; done`,
      `ip link del c${this.runId}${host.name} 2>/dev/null || true`,
    ].join('; ');
  }

  // ---- taking the VMs over and giving them back ----

  /** Removes weft's device, routes, nexthops, iptables chains and ingress table from a VM (what weftd leaves on SIGKILL). */
  static readonly CLEAN_WEFT_STATE = [
    "for dev in $(ip -o link show type vxlan | awk -F': ' '{print $2}' | cut -d@ -f1 | grep '^weft\\.'); do ip link del \"$dev\"; done",
    'ip route flush proto 157 2>/dev/null',
    // nexthop objects of weft's (protocol 157) outside its device (host-gw); node is on every weft host
    `ip -j nexthop show 2>/dev/null | node -e 'let s="";process.stdin.on("data",(d)=>(s+=d)).on("end",()=>{for(const n of JSON.parse(s||"[]"))if(String(n.protocol)==="157")console.log(n.id)})' | xargs -r -n1 ip nexthop del id 2>/dev/null`,
    "while iptables -w 5 -t filter -D FORWARD -m comment --comment 'weft forward' -j WEFT-FORWARD 2>/dev/null; do :; done",
    'iptables -w 5 -t filter -F WEFT-FORWARD 2>/dev/null; iptables -w 5 -t filter -X WEFT-FORWARD 2>/dev/null',
    "while iptables -w 5 -t nat -D POSTROUTING -m comment --comment 'weft masq' -j WEFT-POSTRTG 2>/dev/null; do :; done",
    'iptables -w 5 -t nat -F WEFT-POSTRTG 2>/dev/null; iptables -w 5 -t nat -X WEFT-POSTRTG 2>/dev/null',
    'nft delete table inet weft 2>/dev/null',
    'true',
  ].join('; ');

  private async takeOver(): Promise<void> {
    await Promise.all(
      this.hosts.map(async (host) => {
        const active = await this.exec(host, 'systemctl is-active weftd.service || true');
        host.serviceWasActive = active.stdout.trim() === 'active';
        await this.exec(
          host,
          `systemctl stop weftd.service 2>/dev/null; ${VagrantDriver.CLEAN_WEFT_STATE}; mkdir -p ${shellQuote(this.runDir)}`,
          { check: true },
        );
      }),
    );
    const saved = await this.etcdctl(['get', '--print-value-only', `${NETWORK_PREFIX}/config`]);
    if (saved.code !== 0) throw new Error(`etcd at ${this.etcdEndpoint} does not answer: ${saved.stderr.trim()}`);
    this.savedConfig = saved.stdout.trim() === '' ? undefined : saved.stdout.replace(/\n$/, '');
    await this.etcdctl(['del', '--prefix', `${NETWORK_PREFIX}/`], { check: true });
  }

  destroy(): Promise<void> {
    this.destroying ??= this.teardown();
    return this.destroying;
  }

  private async teardown(): Promise<void> {
    this.tearingDown = true;
    const errors: string[] = [];
    const attempt = async (what: string, fn: () => Promise<unknown>): Promise<void> => {
      try {
        await fn();
      } catch (err) {
        errors.push(`${what}: ${(err as Error).message}`);
      }
    };
    await Promise.all(
      this.hosts.map((host) =>
        attempt(`${host.vm}: stop agents and clean up`, async () => {
          const agent = this.agents.get(host.name);
          const kill = agent !== undefined && agent.exit === undefined && agent.pid > 0 ? `kill -s KILL ${agent.pid} 2>/dev/null; ` : '';
          await this.exec(
            host,
            `${kill}${this.containerCleanup(host)}; ${VagrantDriver.CLEAN_WEFT_STATE}; rm -rf ${shellQuote(this.runDir)}`,
            { check: true, timeoutMs: 60_000 },
          );
        }),
      ),
    );
    await attempt('etcd', async () => {
      await this.startEtcd();
      await this.etcdctl(['del', '--prefix', `${NETWORK_PREFIX}/`], { check: true });
      if (this.savedConfig !== undefined) await this.etcdctl(['put', `${NETWORK_PREFIX}/config`, this.savedConfig], { check: true });
    });
    await Promise.all(
      this.hosts
        .filter((host) => host.serviceWasActive)
        .map((host) => attempt(`${host.vm}: start weftd.service`, () => this.exec(host, 'systemctl start weftd.service', { check: true }))),
    );
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all([...this.pending]), new Promise((resolve) => (timer = setTimeout(resolve, 15_000)))]);
    clearTimeout(timer);
    this.vagrant.killAll();
    this.tearingDown = false;
    if (errors.length > 0) throw new Error(`Vagrant run ${this.runId} could not clean up everything:\n${errors.join('\n')}`);
  }
}
