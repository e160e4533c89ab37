import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  appendFileSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  rmSync,
  rmdirSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { readFile } from 'node:fs/promises';
import { constants, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ipv4Host, ipv6Host, parseIpv4Prefix } from './addr.js';
import {
  parseSubnetEnv,
  shellQuote,
  stopAgentHandle,
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
} from './driver.js';
import { ChildSet, killTree, labEnv, run, runSync, startBackground } from './process.js';
import { shippedProgram } from './shipped.js';

/**
 * Underlay L2 segments. Every segment is a bridge in the switch namespace; the router namespace has the `.1` of
 * each and forwards between them (only when more than one segment is in use). Host number i gets `.(10 + i)` on
 * every segment it is attached to, the etcd host is 192.0.2.2 on segment a.
 */
export const SEGMENTS = {
  a: { cidr: '192.0.2.0/24', gateway: '192.0.2.1' },
  b: { cidr: '198.51.100.0/24', gateway: '198.51.100.1' },
  c: { cidr: '203.0.113.0/24', gateway: '203.0.113.1' },
} as const;
export type SegmentName = keyof typeof SEGMENTS;

export const ETCD_IP = '192.0.2.2';
export const ETCD_CLIENT_PORT = 2379;
export const ETCD_PEER_PORT = 2380;
/** IPv6 underlay (segment a only, with `ipv6: true`): gateway ::1, etcd ::2, host i ::(10+i) written in decimal digits. */
export const IPV6_UNDERLAY = { cidr: '2001:db8:0:1::/64', gateway: '2001:db8:0:1::1', etcd: '2001:db8:0:1::2' } as const;

/** Namespaces are `wlab-<runId>-<role>`. */
export const NAMESPACE_PREFIX = 'wlab';
/** IPv6 forwarding of a namespace (absent when the kernel has no IPv6). */
const IPV6_FORWARDING = '/proc/sys/net/ipv6/conf/all/forwarding';
const NETNS_DIR = '/run/netns';
const CGROUP_ROOT = '/sys/fs/cgroup';
/** Cgroups a lab's processes create (docker hosts' service managers and containers) are `weft-lab-<runId>-…`. */
export const CGROUP_PREFIX = 'weft-lab';
const MAX_HOSTS = 99;
const MAX_CONTAINERS_PER_HOST = 99;

export interface HostSpec {
  /** L2 segments the host is attached to, one underlay interface each; the first carries the default route and publicIp. Default ['a']. */
  segments?: readonly SegmentName[];
}

export interface NetnsLabOptions {
  /** 1–6 characters [a-z0-9]; part of every namespace and interface name. Default: random, unused. */
  runId?: string;
  /** Number of hosts (all on segment a) or one spec per host. Default 3. */
  hosts?: number | readonly HostSpec[];
  /** Also give segment a the IPv6 underlay 2001:db8:0:1::/64. Default false. */
  ipv6?: boolean;
  /** Root of the weft checkout (holds dist/). Default: derived from this file's location. */
  repoRoot?: string;
  /** The agent's argv before its arguments. Default [node, weftd as it ships (package.json's "bin")]. */
  agentCommand?: readonly string[];
  /** weftctl's argv before its arguments. Default [node, weftctl as it ships]. */
  ctlCommand?: readonly string[];
  /** Keep the temp dir (logs, subnet.env, etcd data) after destroy. Default: WEFT_LAB_KEEP=1 in the environment. */
  keepTemp?: boolean;
}

class Host implements LabHost {
  readonly containers: Container[] = [];
  bridge: { name: string; subnet: string | undefined; ipv6Subnet: string | undefined; mtu: number } | undefined;

  constructor(
    readonly name: string,
    readonly index: number,
    readonly netns: string,
    readonly publicIp: string,
    readonly publicIpv6: string | undefined,
    readonly iface: string,
    readonly segments: readonly SegmentName[],
    readonly dir: string,
  ) {}
}

class Container implements LabContainer {
  constructor(
    private readonly lab: NetnsLab,
    readonly name: string,
    readonly host: Host,
    readonly netns: string,
    readonly ifname: string,
    readonly ip: string,
    readonly ipv6: string | undefined,
  ) {}

  exec(command: string, options?: ExecOptions): Promise<ExecResult> {
    return this.lab.exec(this, command, options);
  }
}

class Agent implements AgentHandle {
  exit: AgentExit | undefined;
  readonly exited: Promise<AgentExit>;
  readonly pid: number;

  constructor(
    readonly host: Host,
    readonly args: readonly string[],
    child: ChildProcess,
    private readonly logFile: string,
  ) {
    if (child.pid === undefined) throw new Error(`weftd on ${host.name} did not start`);
    this.pid = child.pid;
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      });
    });
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.exit !== undefined) return;
    try {
      process.kill(this.pid, signal);
    } catch {
      // already gone
    }
  }

  log(): string {
    try {
      return readFileSync(this.logFile, 'utf8');
    } catch {
      return '';
    }
  }
}

// ---- exit hooks: a Ctrl-C, a SIGTERM or process.exit() still removes every live lab ----

const liveLabs = new Set<NetnsLab>();
let signalled = false;

function onExit(): void {
  for (const lab of [...liveLabs]) lab.destroySync();
}

function onSignal(signal: NodeJS.Signals): void {
  const code = 128 + (constants.signals[signal] ?? 0);
  if (signalled) {
    onExit();
    process.exit(code);
  }
  signalled = true;
  process.stderr.write(`weft lab: ${signal}, removing ${liveLabs.size} lab(s)\n`);
  void Promise.allSettled([...liveLabs].map((lab) => lab.destroy())).then(() => process.exit(code));
}

function track(lab: NetnsLab): void {
  if (liveLabs.size === 0) {
    process.on('exit', onExit);
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    process.on('SIGHUP', onSignal);
  }
  liveLabs.add(lab);
}

function untrack(lab: NetnsLab): void {
  if (!liveLabs.delete(lab) || liveLabs.size > 0) return;
  process.off('exit', onExit);
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  process.off('SIGHUP', onSignal);
}

function listNamespaces(): string[] {
  try {
    return readdirSync(NETNS_DIR);
  } catch {
    return [];
  }
}

/** Pids of processes whose network namespace is one of `namespaces` (what `ip netns pids` does, in one pass). */
function pidsInNamespaces(namespaces: readonly string[]): number[] {
  const inodes = new Set<number>();
  for (const name of namespaces) {
    try {
      inodes.add(statSync(join(NETNS_DIR, name)).ino);
    } catch {
      // already gone
    }
  }
  if (inodes.size === 0) return [];
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (inodes.has(statSync(`/proc/${entry}/ns/net`).ino)) pids.push(Number(entry));
    } catch {
      // exited meanwhile, or a kernel thread
    }
  }
  return pids;
}

function killPids(pids: readonly number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

/** Top-level cgroups of run `runId` in every mounted hierarchy (cgroup v1 controllers and the unified one). */
function cgroupsOf(runId: string): string[] {
  const found: string[] = [];
  let hierarchies: string[];
  try {
    hierarchies = readdirSync(CGROUP_ROOT);
  } catch {
    return [];
  }
  // cgroup v1 (and hybrid): one hierarchy per directory of /sys/fs/cgroup; cgroup v2: /sys/fs/cgroup itself
  for (const hierarchy of [CGROUP_ROOT, ...hierarchies.map((name) => join(CGROUP_ROOT, name))]) {
    try {
      for (const entry of readdirSync(hierarchy)) {
        if (entry.startsWith(`${CGROUP_PREFIX}-${runId}-`)) found.push(join(hierarchy, entry));
      }
    } catch {
      // not a directory (a file of the cgroup2 root), or not a cgroup hierarchy
    }
  }
  return found;
}

/** Directories under `dir` (itself included), deepest first. */
function directoriesDeepestFirst(dir: string): string[] {
  const out: string[] = [];
  try {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.isDirectory()) out.push(...directoriesDeepestFirst(join(dir, entry.name)));
    }
  } catch {
    return out;
  }
  out.push(dir);
  return out;
}

/**
 * One pass over run `runId`'s cgroups, deepest first: kills the processes still in them and removes the empty ones.
 * A cgroup can only be removed once its last process has been reaped, a moment after SIGKILL; returns those left.
 */
function removeCgroupsOnce(runId: string): string[] {
  const left: string[] = [];
  for (const top of cgroupsOf(runId)) {
    for (const dir of directoriesDeepestFirst(top)) {
      try {
        killPids(readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number));
      } catch {
        // gone meanwhile
      }
      try {
        rmdirSync(dir);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') left.push(dir);
      }
    }
  }
  return left;
}

/** removeCgroupsOnce until nothing is left or `timeoutMs` passed, blocking (for exit handlers); returns what is left. */
function removeCgroupsSync(runId: string, timeoutMs: number): string[] {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = removeCgroupsOnce(runId);
    if (left.length === 0 || Date.now() > deadline) return left;
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
  }
}

async function removeCgroups(runId: string, timeoutMs: number): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = removeCgroupsOnce(runId);
    if (left.length === 0 || Date.now() > deadline) return left;
    await sleep(20);
  }
}

function hasFlag(args: readonly string[], flag: string): boolean {
  return args.some((arg) => arg === flag || arg.startsWith(`${flag}=`));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * A weft cluster in network namespaces on this machine. Nothing is configured in the root namespace: the
 * underlay switch, the router, etcd, every host and every container are namespaces named `wlab-<runId>-…`,
 * wired with veth pairs created directly inside them. Create with `NetnsLab.create()`, always `destroy()`.
 */
export class NetnsLab implements ClusterDriver {
  readonly runId: string;
  /** `wlab-<runId>`: every namespace this lab makes starts with `<prefix>-`. */
  readonly prefix: string;
  readonly tempDir: string;
  readonly hosts: readonly Host[];
  readonly etcdHost: Host;
  readonly etcdEndpoint = `http://${ETCD_IP}:${ETCD_CLIENT_PORT}`;
  readonly switchNetns: string;
  readonly routerNetns: string;
  readonly segments: readonly SegmentName[];
  readonly agentCommand: readonly string[];
  readonly ctlCommand: readonly string[];

  private readonly ipv6: boolean;
  private readonly keepTemp: boolean;
  private readonly children = new ChildSet();
  private readonly agents = new Map<string, Agent>();
  private etcdChild: ChildProcess | undefined;
  private destroying: Promise<void> | undefined;

  /** Builds a lab; on failure removes whatever was already made and rethrows. */
  static async create(options: NetnsLabOptions = {}): Promise<NetnsLab> {
    const lab = new NetnsLab(options);
    try {
      await lab.build();
    } catch (err) {
      await lab.destroy();
      throw err;
    }
    return lab;
  }

  /**
   * Removes namespaces and temp dirs of labs whose owning process is gone (e.g. killed with SIGKILL).
   * Returns the run ids it removed. A lab whose owner is alive is never touched. With `onlyRunId`, looks at that run only.
   */
  static sweepStale(onlyRunId?: string): string[] {
    const byRun = new Map<string, string[]>();
    for (const name of listNamespaces()) {
      const match = new RegExp(`^${NAMESPACE_PREFIX}-([a-z0-9]{1,6})-`).exec(name);
      if (match !== null) byRun.set(match[1], [...(byRun.get(match[1]) ?? []), name]);
    }
    const dirs = readdirSync(tmpdir()).filter((entry) => /^weft-lab-[a-z0-9]{1,6}-/.test(entry));
    for (const dir of dirs) {
      const runId = /^weft-lab-([a-z0-9]{1,6})-/.exec(dir)![1];
      if (!byRun.has(runId)) byRun.set(runId, []);
    }
    const removed: string[] = [];
    for (const [runId, namespaces] of byRun) {
      if (onlyRunId !== undefined && runId !== onlyRunId) continue;
      const runDirs = dirs.filter((dir) => dir.startsWith(`weft-lab-${runId}-`)).map((dir) => join(tmpdir(), dir));
      const owners = runDirs.map((dir) => {
        try {
          return Number(readFileSync(join(dir, 'owner.pid'), 'utf8'));
        } catch {
          return NaN;
        }
      });
      const alive = owners.some((pid) => {
        if (!Number.isInteger(pid) || pid <= 0) return false;
        try {
          process.kill(pid, 0);
          return true;
        } catch {
          return false;
        }
      });
      if (alive) continue;
      killPids(pidsInNamespaces(namespaces));
      if (namespaces.length > 0) runSync(['ip', '-force', '-batch', '-'], namespaces.map((ns) => `netns del ${ns}\n`).join(''));
      removeCgroupsSync(runId, 2_000);
      for (const dir of runDirs) rmSync(dir, { recursive: true, force: true });
      removed.push(runId);
    }
    return removed;
  }

  private constructor(options: NetnsLabOptions) {
    const existing = listNamespaces();
    let runId = options.runId;
    if (runId === undefined) {
      do runId = randomBytes(4).readUInt32BE(0).toString(36).padStart(5, '0').slice(-5);
      while (existing.some((name) => name.startsWith(`${NAMESPACE_PREFIX}-${runId}-`)));
    } else if (!/^[a-z0-9]{1,6}$/.test(runId)) {
      throw new Error(`runId must be 1-6 characters [a-z0-9], got ${JSON.stringify(runId)}`);
    } else if (existing.some((name) => name.startsWith(`${NAMESPACE_PREFIX}-${runId}-`))) {
      throw new Error(`namespaces of run ${runId} already exist (ip netns list); pick another runId or NetnsLab.sweepStale()`);
    }
    this.runId = runId;
    this.prefix = `${NAMESPACE_PREFIX}-${runId}`;
    this.ipv6 = options.ipv6 ?? false;
    this.keepTemp = options.keepTemp ?? process.env.WEFT_LAB_KEEP === '1';
    this.switchNetns = `${this.prefix}-sw`;
    this.routerNetns = `${this.prefix}-rt`;

    const repoRoot = options.repoRoot ?? fileURLToPath(new URL('../../..', import.meta.url));
    this.agentCommand = options.agentCommand ?? [process.execPath, shippedProgram('weftd', repoRoot)];
    this.ctlCommand = options.ctlCommand ?? [process.execPath, shippedProgram('weftctl', repoRoot)];

    const specs: readonly HostSpec[] =
      typeof options.hosts === 'number' || options.hosts === undefined
        ? Array.from({ length: options.hosts ?? 3 }, () => ({}))
        : options.hosts;
    if (specs.length < 1 || specs.length > MAX_HOSTS) throw new Error(`a lab has 1-${MAX_HOSTS} hosts, asked for ${specs.length}`);
    specs.forEach((spec, position) => {
      const segments = spec.segments ?? ['a'];
      if (
        segments.length === 0 ||
        new Set(segments).size !== segments.length ||
        segments.some((segment) => !Object.hasOwn(SEGMENTS, segment))
      ) {
        throw new Error(`host ${position + 1}: segments must be distinct names from ${Object.keys(SEGMENTS).join(', ')}`);
      }
    });

    this.tempDir = mkdtempSync(join(tmpdir(), `weft-lab-${runId}-`));
    writeFileSync(join(this.tempDir, 'owner.pid'), String(process.pid));
    track(this);

    const id = this.runId;
    const hosts = specs.map((spec, position) => {
      const index = position + 1;
      const segments = spec.segments ?? ['a'];
      const primary = segments[0];
      const name = `h${index}`;
      const dir = join(this.tempDir, name);
      mkdirSync(dir);
      return new Host(
        name,
        index,
        `${this.prefix}-${name}`,
        ipv4Host(parseIpv4Prefix(SEGMENTS[primary].cidr), 10 + index),
        this.ipv6 && segments.includes('a') ? `2001:db8:0:1::${10 + index}` : undefined,
        `u${id}${name}${primary}`,
        segments,
        dir,
      );
    });
    this.hosts = hosts;
    const etcdDir = join(this.tempDir, 'etcd');
    mkdirSync(etcdDir);
    this.etcdHost = new Host(
      'etcd',
      0,
      `${this.prefix}-etcd`,
      ETCD_IP,
      this.ipv6 ? IPV6_UNDERLAY.etcd : undefined,
      `u${id}e`,
      ['a'],
      etcdDir,
    );
    const used = new Set<SegmentName>(['a']);
    for (const host of hosts) for (const segment of host.segments) used.add(segment);
    this.segments = (Object.keys(SEGMENTS) as SegmentName[]).filter((segment) => used.has(segment));
  }

  // ---- building ----

  private async ip(netns: string | undefined, lines: readonly string[]): Promise<void> {
    const argv = netns === undefined ? ['ip', '-batch', '-'] : ['ip', '-n', netns, '-batch', '-'];
    await run(argv, this.children, { input: `${lines.join('\n')}\n`, check: true });
  }

  private async build(): Promise<void> {
    const id = this.runId;
    const all = [this.switchNetns, this.routerNetns, this.etcdHost.netns, ...this.hosts.map((host) => host.netns)];
    await this.ip(
      undefined,
      all.map((ns) => `netns add ${ns}`),
    );

    // The switch: one bridge per segment; every other namespace's underlay veth is created from here, its peer
    // going straight into the other namespace.
    const sw = ['link set lo up'];
    const port = (name: string, peer: string, peerNetns: string, segment: SegmentName): void => {
      sw.push(
        `link add ${name} type veth peer name ${peer} netns ${peerNetns}`,
        `link set ${name} master b${id}${segment}`,
        `link set ${name} up`,
      );
    };
    for (const segment of this.segments) {
      sw.push(`link add b${id}${segment} type bridge`, `link set b${id}${segment} up`);
      port(`s${id}r${segment}`, `r${id}${segment}`, this.routerNetns, segment);
    }
    port(`s${id}e`, this.etcdHost.iface, this.etcdHost.netns, 'a');
    for (const host of this.hosts) {
      for (const segment of host.segments) port(`s${id}${host.name}${segment}`, `u${id}${host.name}${segment}`, host.netns, segment);
    }
    await this.ip(this.switchNetns, sw);

    const v6 = (address: string, dev: string): string => `addr add ${address}/64 dev ${dev} nodad`;
    const rt = ['link set lo up'];
    for (const segment of this.segments) {
      const prefix = parseIpv4Prefix(SEGMENTS[segment].cidr);
      rt.push(`addr add ${SEGMENTS[segment].gateway}/${prefix.length} dev r${id}${segment}`, `link set r${id}${segment} up`);
      if (segment === 'a' && this.ipv6) rt.push(v6(IPV6_UNDERLAY.gateway, `r${id}a`));
    }
    const etcd = [
      'link set lo up',
      `addr add ${ETCD_IP}/24 dev ${this.etcdHost.iface}`,
      `link set ${this.etcdHost.iface} up`,
      `route add default via ${SEGMENTS.a.gateway}`,
    ];
    if (this.ipv6) etcd.push(v6(IPV6_UNDERLAY.etcd, this.etcdHost.iface), `route add ::/0 via ${IPV6_UNDERLAY.gateway}`);
    const hostBatches = this.hosts.map((host) => {
      const lines = ['link set lo up'];
      for (const segment of host.segments) {
        const dev = `u${id}${host.name}${segment}`;
        const prefix = parseIpv4Prefix(SEGMENTS[segment].cidr);
        lines.push(`addr add ${ipv4Host(prefix, 10 + host.index)}/${prefix.length} dev ${dev}`, `link set ${dev} up`);
        if (segment === 'a' && host.publicIpv6 !== undefined) lines.push(v6(host.publicIpv6, dev));
      }
      lines.push(`route add default via ${SEGMENTS[host.segments[0]].gateway}`);
      // synthetic peers are never contacted: what weftd sends them (its peer probes) dies here
      lines.push('route add blackhole 198.19.0.0/16');
      if (host.publicIpv6 !== undefined) lines.push(`route add ::/0 via ${IPV6_UNDERLAY.gateway}`);
      return this.ip(host.netns, lines);
    });
    const batches = [this.ip(this.routerNetns, rt), this.ip(this.etcdHost.netns, etcd), ...hostBatches];
    // Forwarding is set here, never inherited (a new namespace copies net.ipv4.ip_forward from the root one):
    // the router forwards between segments; hosts start with it off in both families (weftd turns it on).
    const forwarding = (netns: string, value: 0 | 1) =>
      run(
        [
          'ip',
          'netns',
          'exec',
          netns,
          'sh',
          '-c',
          `echo ${value} > /proc/sys/net/ipv4/ip_forward && { [ ! -e ${IPV6_FORWARDING} ] || echo ${value} > ${IPV6_FORWARDING}; }`,
        ],
        this.children,
        { check: true },
      ).then(() => undefined);
    batches.push(forwarding(this.routerNetns, this.segments.length > 1 ? 1 : 0), ...this.hosts.map((host) => forwarding(host.netns, 0)));
    await Promise.all(batches);
    await this.startEtcd();
  }

  // ---- targets and commands ----

  private assertOpen(): void {
    if (this.destroying !== undefined) throw new Error(`lab ${this.runId} is destroyed`);
  }

  resolve(name: string): Host | Container {
    if (name === this.etcdHost.name) return this.etcdHost;
    for (const host of this.hosts) {
      if (host.name === name) return host;
      for (const container of host.containers) if (container.name === name) return container;
    }
    throw new Error(`lab ${this.runId} has no host or container named ${name}`);
  }

  /** A host of this lab (not the etcd host). */
  host(ref: LabHost | string): Host {
    const name = typeof ref === 'string' ? ref : ref.name;
    const host = this.hosts.find((candidate) => candidate.name === name);
    if (host === undefined) throw new Error(`lab ${this.runId} has no host ${name}`);
    return host;
  }

  /** The network namespace a host or container lives in. */
  namespaceOf(target: ExecTarget): string {
    const resolved = this.resolve(typeof target === 'string' ? target : target.name);
    return resolved.netns;
  }

  exec(target: ExecTarget, command: string, options?: ExecOptions): Promise<ExecResult> {
    return this.execIn(this.namespaceOf(target), command, options);
  }

  /** Runs a shell command in any namespace of this lab, e.g. `switchNetns` or `routerNetns`. */
  execIn(netns: string, command: string, options?: ExecOptions): Promise<ExecResult> {
    this.assertOpen();
    if (!netns.startsWith(`${this.prefix}-`)) throw new Error(`${netns} is not a namespace of lab ${this.runId}`);
    return run(['ip', 'netns', 'exec', netns, 'sh', '-c', command], this.children, options);
  }

  background(target: ExecTarget, command: string, options: { env?: Record<string, string> } = {}): BackgroundCommand {
    this.assertOpen();
    return startBackground(['ip', 'netns', 'exec', this.namespaceOf(target), 'sh', '-c', command], this.children, options.env);
  }

  /**
   * Starts a long-running command in the network namespace of a host and nothing else (`nsenter --net`: `ip netns
   * exec` also mounts the namespace's own sysfs over /sys, which hides the cgroup mounts that service managers and
   * container runtimes need). Output is appended to `logFile`; destroy() kills it with everything in the namespace.
   */
  spawnInNetns(target: ExecTarget, argv: readonly string[], logFile: string): ChildProcess {
    this.assertOpen();
    const fd = openSync(logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn('nsenter', [`--net=${join(NETNS_DIR, this.namespaceOf(target))}`, ...argv], {
        stdio: ['ignore', fd, fd],
        env: labEnv(),
        detached: true,
      });
    } finally {
      closeSync(fd);
    }
    this.children.add(child);
    return child;
  }

  /**
   * Takes a host off the underlay (its switch ports down: as if its cable were pulled) or puts it back.
   * Not part of ClusterDriver: a VM driver would do this with its hypervisor or a firewall.
   */
  async setUnderlay(hostRef: LabHost | string, up: boolean): Promise<void> {
    this.assertOpen();
    const host = this.host(hostRef);
    await this.ip(
      this.switchNetns,
      host.segments.map((segment) => `link set s${this.runId}${host.name}${segment} ${up ? 'up' : 'down'}`),
    );
  }

  // ---- etcd ----

  /** weftctl against this lab's etcd; `--environment-file=` keeps this machine's /etc/weft/weftd.env (if any) out of it. */
  weftctlCommand(args: readonly string[]): string {
    const full = [
      ...this.ctlCommand,
      '--environment-file=',
      ...(hasFlag(args, '--etcd-endpoints') ? [] : [`--etcd-endpoints=${this.etcdEndpoint}`]),
      ...args,
    ];
    return full.map(shellQuote).join(' ');
  }

  etcdctl(args: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    this.assertOpen();
    return run(['ip', 'netns', 'exec', this.etcdHost.netns, 'etcdctl', `--endpoints=${this.etcdEndpoint}`, ...args], this.children, {
      ...options,
      env: { ETCDCTL_API: '3', ...options.env },
    });
  }

  async startEtcd(): Promise<void> {
    this.assertOpen();
    if (this.etcdChild !== undefined && this.etcdChild.exitCode === null && this.etcdChild.signalCode === null) return;
    const client = this.etcdEndpoint;
    const peer = `http://${ETCD_IP}:${ETCD_PEER_PORT}`;
    const logFile = join(this.etcdHost.dir, 'etcd.log');
    appendFileSync(logFile, `=== ${new Date().toISOString()} etcd start\n`);
    const fd = openSync(logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn(
        'ip',
        [
          'netns',
          'exec',
          this.etcdHost.netns,
          'etcd',
          '--name',
          'weft-lab',
          '--data-dir',
          join(this.etcdHost.dir, 'data'),
          '--listen-client-urls',
          client,
          '--advertise-client-urls',
          client,
          '--listen-peer-urls',
          peer,
          '--initial-advertise-peer-urls',
          peer,
          '--initial-cluster',
          `weft-lab=${peer}`,
          '--logger',
          'zap',
          '--log-level',
          'warn',
        ],
        { stdio: ['ignore', fd, fd], env: labEnv(), detached: true },
      );
    } finally {
      closeSync(fd);
    }
    this.children.add(child);
    this.etcdChild = child;
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`etcd exited (${child.exitCode ?? child.signalCode}):\n${readFileSync(logFile, 'utf8').slice(-2000)}`);
      }
      const health = await this.etcdctl(['endpoint', 'health', '--command-timeout=1s'], { timeoutMs: 5_000 }).catch(() => undefined);
      if (health?.code === 0) return;
      if (Date.now() > deadline) throw new Error(`etcd not healthy after 20 s:\n${readFileSync(logFile, 'utf8').slice(-2000)}`);
      await sleep(100);
    }
  }

  async stopEtcd(): Promise<void> {
    const child = this.etcdChild;
    this.etcdChild = undefined;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    killTree(child.pid, 'SIGKILL');
    await exited;
  }

  // ---- agents ----

  subnetFile(hostRef: LabHost | string): string {
    return join(this.host(hostRef).dir, 'subnet.env');
  }

  /** The file collecting the host's agent output (every run, appended). */
  agentLogFile(hostRef: LabHost | string): string {
    return join(this.host(hostRef).dir, 'weftd.log');
  }

  async readSubnetEnv(hostRef: LabHost | string): Promise<SubnetEnv | undefined> {
    try {
      return parseSubnetEnv(await readFile(this.subnetFile(hostRef), 'utf8'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async startAgent(hostRef: LabHost | string, args: readonly string[] = [], env?: Record<string, string>): Promise<AgentHandle> {
    this.assertOpen();
    const host = this.host(hostRef);
    const current = this.agents.get(host.name);
    if (current !== undefined && current.exit === undefined) throw new Error(`${host.name} already runs weftd (pid ${current.pid})`);
    const script = this.agentCommand[1];
    if (this.agentCommand[0] === process.execPath && script !== undefined && !existsSync(script)) {
      throw new Error(`${script} does not exist: build weft first (npm run build)`);
    }
    const full = [...args];
    if (!hasFlag(full, '--subnet-file')) full.unshift(`--subnet-file=${this.subnetFile(host)}`);
    if (!hasFlag(full, '--node-id-file')) full.unshift(`--node-id-file=${join(dirname(this.subnetFile(host)), 'node-id')}`);
    if (!hasFlag(full, '--etcd-endpoints')) full.unshift(`--etcd-endpoints=${this.etcdEndpoint}`);
    const logFile = this.agentLogFile(host);
    appendFileSync(logFile, `=== ${new Date().toISOString()} ${host.name}: ${[...this.agentCommand, ...full].join(' ')}\n`);
    const fd = openSync(logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn('ip', ['netns', 'exec', host.netns, ...this.agentCommand, ...full], {
        stdio: ['ignore', fd, fd],
        env: labEnv(env),
        detached: true,
      });
    } finally {
      closeSync(fd);
    }
    if (child.pid === undefined) {
      throw await new Promise<Error>((resolve) =>
        child.once('error', (err) => resolve(new Error(`weftd on ${host.name} did not start: ${err.message}`))),
      );
    }
    this.children.add(child);
    const agent = new Agent(host, full, child, logFile);
    this.agents.set(host.name, agent);
    return agent;
  }

  agent(hostRef: LabHost | string): AgentHandle | undefined {
    return this.agents.get(this.host(hostRef).name);
  }

  stopAgent(hostRef: LabHost | string, signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000): Promise<AgentExit | undefined> {
    return stopAgentHandle(this.agents.get(this.host(hostRef).name), signal, timeoutMs);
  }

  // ---- containers ----

  async addContainers(hostRef: LabHost | string, count: number): Promise<LabContainer[]> {
    this.assertOpen();
    const host = this.host(hostRef);
    if (!Number.isInteger(count) || count < 1) throw new Error(`container count must be a positive integer, got ${count}`);
    if (host.containers.length + count > MAX_CONTAINERS_PER_HOST) throw new Error(`at most ${MAX_CONTAINERS_PER_HOST} containers per host`);
    const env = await this.readSubnetEnv(host);
    if (env === undefined) throw new Error(`${host.name} has no complete subnet.env at ${this.subnetFile(host)} yet`);
    if (
      host.bridge !== undefined &&
      (host.bridge.subnet !== env.subnet || host.bridge.ipv6Subnet !== env.ipv6Subnet || host.bridge.mtu !== env.mtu)
    ) {
      throw new Error(
        `${host.name}'s subnet.env now says ${env.subnet} mtu ${env.mtu} but its containers use ${host.bridge.subnet} mtu ${host.bridge.mtu}: removeContainers first`,
      );
    }
    const id = this.runId;
    const subnet = env.subnet === undefined ? undefined : parseIpv4Prefix(env.subnet);
    const gateway = env.subnet?.split('/')[0];
    const gateway6 = env.ipv6Subnet?.split('/')[0];
    const bridge = host.bridge?.name ?? `c${id}${host.name}`;
    const hostLines: string[] = [];
    if (host.bridge === undefined) {
      hostLines.push(`link add ${bridge} type bridge`, `link set ${bridge} mtu ${env.mtu}`);
      if (env.subnet !== undefined) hostLines.push(`addr add ${env.subnet} dev ${bridge}`);
      if (env.ipv6Subnet !== undefined) hostLines.push(`addr add ${env.ipv6Subnet} dev ${bridge} nodad`);
      hostLines.push(`link set ${bridge} up`);
    }
    const created: Container[] = [];
    const containerBatches: [string, string[]][] = [];
    for (let k = 0; k < count; k++) {
      const number = host.containers.length + k + 1;
      const name = `${host.name}c${number}`;
      const netns = `${this.prefix}-${name}`;
      const ifname = `e${id}${name}`;
      const hostSide = `v${id}${name}`;
      const ipv4 = subnet === undefined ? undefined : ipv4Host(subnet, 1 + number);
      const ipv6 = env.ipv6Subnet === undefined ? undefined : ipv6Host(env.ipv6Subnet, 1 + number);
      hostLines.push(
        `link add ${hostSide} mtu ${env.mtu} type veth peer name ${ifname} mtu ${env.mtu} netns ${netns}`,
        `link set ${hostSide} master ${bridge}`,
        `link set ${hostSide} up`,
      );
      const lines = ['link set lo up', `link set ${ifname} up`];
      if (ipv4 !== undefined) lines.push(`addr add ${ipv4}/${subnet!.length} dev ${ifname}`, `route add default via ${gateway}`);
      if (ipv6 !== undefined)
        lines.push(`addr add ${ipv6}/${env.ipv6Subnet!.split('/')[1]} dev ${ifname} nodad`, `route add ::/0 via ${gateway6}`);
      containerBatches.push([netns, lines]);
      created.push(new Container(this, name, host, netns, ifname, (ipv4 ?? ipv6)!, ipv6));
    }
    await this.ip(
      undefined,
      containerBatches.map(([netns]) => `netns add ${netns}`),
    );
    await this.ip(host.netns, hostLines);
    host.bridge = { name: bridge, subnet: env.subnet, ipv6Subnet: env.ipv6Subnet, mtu: env.mtu };
    await Promise.all(containerBatches.map(([netns, lines]) => this.ip(netns, lines)));
    host.containers.push(...created);
    return created;
  }

  async removeContainers(hostRef: LabHost | string): Promise<void> {
    this.assertOpen();
    const host = this.host(hostRef);
    const namespaces = listNamespaces().filter((name) => name.startsWith(`${host.netns}c`));
    killPids(pidsInNamespaces(namespaces));
    if (namespaces.length > 0)
      await this.ip(
        undefined,
        namespaces.map((ns) => `netns del ${ns}`),
      );
    if (host.bridge !== undefined) await this.ip(host.netns, [`link del ${host.bridge.name}`]);
    host.containers.length = 0;
    host.bridge = undefined;
  }

  // ---- teardown ----

  /** Every namespace of this lab that exists now. */
  namespaces(): string[] {
    return listNamespaces().filter((name) => name.startsWith(`${this.prefix}-`));
  }

  destroy(): Promise<void> {
    this.destroying ??= this.teardown();
    return this.destroying;
  }

  private async teardown(): Promise<void> {
    this.children.killAll();
    for (let round = 0; round < 20; round++) {
      const pids = pidsInNamespaces(this.namespaces());
      if (pids.length === 0) break;
      killPids(pids);
      await sleep(25);
    }
    await this.children.waitAll(5_000);
    const namespaces = this.namespaces();
    if (namespaces.length > 0) {
      await run(['ip', '-force', '-batch', '-'], new ChildSet(), { input: namespaces.map((ns) => `netns del ${ns}\n`).join('') }).catch(
        () => undefined,
      );
    }
    const cgroupsLeft = await removeCgroups(this.runId, 5_000);
    if (cgroupsLeft.length > 0) process.stderr.write(`weft lab ${this.runId}: could not remove cgroups ${cgroupsLeft.join(' ')}\n`);
    if (!this.keepTemp) rmSync(this.tempDir, { recursive: true, force: true });
    untrack(this);
  }

  /** Synchronous teardown for process exit handlers. */
  destroySync(): void {
    this.destroying ??= Promise.resolve();
    this.children.killAll();
    for (let round = 0; round < 5; round++) {
      const pids = pidsInNamespaces(this.namespaces());
      if (pids.length === 0) break;
      killPids(pids);
    }
    const namespaces = this.namespaces();
    if (namespaces.length > 0) runSync(['ip', '-force', '-batch', '-'], namespaces.map((ns) => `netns del ${ns}\n`).join(''));
    removeCgroupsSync(this.runId, 2_000);
    if (!this.keepTemp) rmSync(this.tempDir, { recursive: true, force: true });
    untrack(this);
  }
}
