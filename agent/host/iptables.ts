/**
 * flannel's firewall rules, in chains that belong to weft:
 *
 *   filter FORWARD     → WEFT-FORWARD   (--iptables-forward-rules)   -s <Network> ACCEPT, -d <Network> ACCEPT
 *   nat    POSTROUTING → WEFT-POSTRTG   (--ip-masq)
 *        -m mark --mark 0x4000/0x4000       RETURN       kube-proxy masquerades what it marked: no double NAT
 *        -s <Network>   -d <Network>        RETURN       traffic inside the overlay keeps its addresses
 *        -s <Network> ! -d 224.0.0.0/4      MASQUERADE   containers leaving the overlay (not multicast)
 *      ! -s <Network>   -d <own subnet>     RETURN       outside → local containers, untouched
 *      ! -s <Network>   -d <Network>        MASQUERADE   host → remote containers get the host's address
 *
 * MASQUERADE carries --random-fully where iptables has it (1.6.2 and newer), as flanneld's rules do.
 * Each chain is applied in one `iptables-restore --noflush` transaction that declares the chain (so the
 * kernel replaces its rules as a whole) and fixes the jump to it, which must exist exactly once (inserted
 * first in the built-in chain, as flanneld's). check() compares with `iptables -S`; start() resyncs
 * periodically (flanneld's --iptables-resync) and logs what it restored; remove() deletes weft's chains
 * and the jumps to them and nothing else. IPv6 is the same code with ip6tables (multicast is ff00::/8 there).
 */
import type { Family, Prefix } from '../../common/cidr.js';
import type { Logger } from '../log.js';
import { createCommandRunner, type CommandRunner } from './command.js';
import { IptablesError } from './errors.js';

export type IptablesTable = 'filter' | 'nat';

/** One chain of weft's, the built-in chain that jumps to it, and its rules (as `iptables -S` prints them). */
export interface ChainSpec {
  table: IptablesTable;
  chain: string;
  /** The built-in chain holding the jump. */
  hook: string;
  /** The jump rule's spec (without `-A <hook>`). */
  jump: readonly string[];
  rules: readonly (readonly string[])[];
}

export const FORWARD_CHAIN = 'WEFT-FORWARD';
export const MASQ_CHAIN = 'WEFT-POSTRTG';
export const DEFAULT_RESYNC_SECONDS = 5;
const FORWARD_COMMENT = 'weft forward';
const MASQ_COMMENT = 'weft masq';
const MULTICAST: Record<Family, string> = { 4: '224.0.0.0/4', 6: 'ff00::/8' };
/** The mark kube-proxy puts on packets it masquerades itself (its --iptables-masquerade-bit, 14). */
export const KUBE_PROXY_MARK = '0x4000/0x4000';

function comment(text: string): string[] {
  return ['-m', 'comment', '--comment', text];
}

/** The filter chain accepting forwarded traffic from and to the overlay network. */
export function forwardChainSpec(network: Prefix): ChainSpec {
  const net = network.toString();
  return {
    table: 'filter',
    chain: FORWARD_CHAIN,
    hook: 'FORWARD',
    jump: [...comment(FORWARD_COMMENT), '-j', FORWARD_CHAIN],
    rules: [
      ['-s', net, ...comment(FORWARD_COMMENT), '-j', 'ACCEPT'],
      ['-d', net, ...comment(FORWARD_COMMENT), '-j', 'ACCEPT'],
    ],
  };
}

/** The nat chain implementing flannel's --ip-masq for `network` and this host's lease `subnet`. */
export function masqChainSpec(network: Prefix, subnet: Prefix, randomFully: boolean): ChainSpec {
  const net = network.toString();
  const masquerade = ['-j', 'MASQUERADE', ...(randomFully ? ['--random-fully'] : [])];
  return {
    table: 'nat',
    chain: MASQ_CHAIN,
    hook: 'POSTROUTING',
    jump: [...comment(MASQ_COMMENT), '-j', MASQ_CHAIN],
    rules: [
      ['-m', 'mark', '--mark', KUBE_PROXY_MARK, ...comment(MASQ_COMMENT), '-j', 'RETURN'],
      ['-s', net, '-d', net, ...comment(MASQ_COMMENT), '-j', 'RETURN'],
      ['-s', net, '!', '-d', MULTICAST[network.family], ...comment(MASQ_COMMENT), ...masquerade],
      ['!', '-s', net, '-d', subnet.toString(), ...comment(MASQ_COMMENT), '-j', 'RETURN'],
      ['!', '-s', net, '-d', net, ...comment(MASQ_COMMENT), ...masquerade],
    ],
  };
}

/** Splits one line of `iptables -S` / iptables-save output into tokens (double quotes, \" and \\ escapes). */
export function tokenizeRule(line: string): string[] {
  const tokens: string[] = [];
  let i = 0;
  while (i < line.length) {
    while (i < line.length && /\s/.test(line[i])) i++;
    if (i >= line.length) break;
    let token = '';
    while (i < line.length && !/\s/.test(line[i])) {
      if (line[i] === '"') {
        i++;
        while (i < line.length && line[i] !== '"') {
          if (line[i] === '\\' && i + 1 < line.length) i++;
          token += line[i++];
        }
        i++;
      } else {
        token += line[i++];
      }
    }
    tokens.push(token);
  }
  return tokens;
}

/** Quotes a token for an iptables-restore line. */
function quote(token: string): string {
  return /^[^\s"'\\]+$/.test(token) ? token : `"${token.replace(/(["\\])/g, '\\$1')}"`;
}

/** `op` is e.g. "-A WEFT-POSTRTG" or "-I POSTROUTING 1"; the rule's tokens are quoted as needed. */
function ruleLine(op: string, rule: readonly string[]): string {
  return [op, ...rule.map(quote)].join(' ');
}

function sameRule(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((token, i) => token === b[i]);
}

/** True when `rule` jumps (-j) or goes (-g) to `chain`. */
function targets(rule: readonly string[], chain: string): boolean {
  return rule.some((token, i) => (token === '-j' || token === '-g') && rule[i + 1] === chain);
}

/** One table as `iptables -S` shows it. */
export interface TableState {
  chains: Set<string>;
  /** Rule specs per chain, in order, without the leading `-A <chain>`. */
  rules: Map<string, string[][]>;
}

export function parseTableListing(text: string): TableState {
  const state: TableState = { chains: new Set(), rules: new Map() };
  for (const line of text.split('\n')) {
    const tokens = tokenizeRule(line);
    const [op, chain] = tokens;
    if (chain === undefined) continue;
    if (op === '-P' || op === '-N') {
      state.chains.add(chain);
    } else if (op === '-A') {
      state.chains.add(chain);
      let rules = state.rules.get(chain);
      if (!rules) state.rules.set(chain, (rules = []));
      rules.push(tokens.slice(2));
    }
  }
  return state;
}

/** Jumps to `chain` from anywhere in the table, as [from chain, rule spec]. */
function jumpsTo(state: TableState, chain: string): [string, string[]][] {
  const found: [string, string[]][] = [];
  for (const [from, rules] of state.rules) for (const rule of rules) if (from !== chain && targets(rule, chain)) found.push([from, rule]);
  return found;
}

function iptablesCommand(family: Family): 'iptables' | 'ip6tables' {
  return family === 4 ? 'iptables' : 'ip6tables';
}

/** One table of one family as `iptables -S` (ip6tables for IPv6) lists it. */
export async function readTable(runner: CommandRunner, family: Family, table: IptablesTable): Promise<TableState> {
  const argv = [iptablesCommand(family), '-w', '5', '-t', table, '-S'];
  const result = await runner(argv);
  if (result.code !== 0) throw new IptablesError(argv, result.code, result.stderr);
  return parseTableListing(result.stdout);
}

/**
 * The commands (argv each, in order) that delete a chain found in `state` (one table's listing): every jump
 * to it, then its rules and the chain itself.
 */
export function chainRemovalCommands(family: Family, table: IptablesTable, chain: string, state: TableState): string[][] {
  const command = [iptablesCommand(family), '-w', '5', '-t', table];
  return [
    ...jumpsTo(state, chain).map(([from, rule]) => [...command, '-D', from, ...rule]),
    ...(state.chains.has(chain)
      ? [
          [...command, '-F', chain],
          [...command, '-X', chain],
        ]
      : []),
  ];
}

export interface IptablesCheck {
  ok: boolean;
  /** Human-readable differences, e.g. "nat POSTROUTING: no jump to WEFT-POSTRTG". */
  problems: string[];
}

export interface IptablesOptions {
  family: Family;
  /** The overlay network of this family (flannel's Network / IPv6Network). */
  network: Prefix;
  /** This host's lease subnet of this family. */
  subnet: Prefix;
  /** flanneld --ip-masq (default false). */
  ipMasq?: boolean;
  /** flanneld --iptables-forward-rules (default true). */
  forwardRules?: boolean;
  /** Default: iptables/ip6tables on this host (createCommandRunner()). */
  runner?: CommandRunner;
  logger?: Logger;
  /** Use MASQUERADE --random-fully; default: when iptables is 1.6.2 or newer (as flannel decides). */
  randomFully?: boolean;
  /** Seconds between resyncs once start()ed (flanneld --iptables-resync, default 5). */
  resyncSeconds?: number;
  /** Called after a resync restored rules, with what it found wrong (e.g. to count it in a metric). */
  onRestore?: (problems: string[]) => void;
}

/** Parses "iptables v1.8.9 (nf_tables)"; undefined when the text has no version. */
export function parseIptablesVersion(text: string): [number, number, number] | undefined {
  const match = /v(\d+)\.(\d+)\.(\d+)/.exec(text);
  return match ? [Number(match[1]), Number(match[2]), Number(match[3])] : undefined;
}

function versionAtLeast(version: readonly number[], minimum: readonly number[]): boolean {
  for (let i = 0; i < minimum.length; i++) {
    if (version[i] !== minimum[i]) return version[i] > minimum[i];
  }
  return true;
}

/** The firewall rules of one address family. */
export class IptablesRules {
  readonly family: Family;
  private network: Prefix;
  private subnet: Prefix;
  private ipMasq: boolean;
  private forwardRules: boolean;
  private readonly runner: CommandRunner;
  private readonly logger: Logger | undefined;
  private randomFully: boolean | undefined;
  private readonly resyncMs: number;
  private readonly onRestore: ((problems: string[]) => void) | undefined;
  private readonly iptables: string;
  private readonly restore: string;
  private queue: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private inFlight: Promise<unknown> | undefined;

  constructor(options: IptablesOptions) {
    this.family = options.family;
    this.network = options.network;
    this.subnet = options.subnet;
    this.checkLease();
    this.ipMasq = options.ipMasq ?? false;
    this.forwardRules = options.forwardRules ?? true;
    this.runner = options.runner ?? createCommandRunner();
    this.logger = options.logger;
    this.randomFully = options.randomFully;
    const seconds = options.resyncSeconds ?? DEFAULT_RESYNC_SECONDS;
    if (!(seconds > 0)) throw new RangeError(`resyncSeconds must be positive, got ${seconds}`);
    this.resyncMs = seconds * 1000;
    this.onRestore = options.onRestore;
    this.iptables = iptablesCommand(this.family);
    this.restore = `${this.iptables}-restore`;
  }

  /** The chains weft wants in the current configuration (disabled ones are absent). */
  async desired(): Promise<ChainSpec[]> {
    const specs: ChainSpec[] = [];
    if (this.forwardRules) specs.push(forwardChainSpec(this.network));
    if (this.ipMasq) specs.push(masqChainSpec(this.network, this.subnet, await this.supportsRandomFully()));
    return specs;
  }

  /** Installs or replaces the enabled chains and their jumps; removes the chains of disabled features. */
  apply(): Promise<void> {
    return this.exclusive(() => this.applyNow());
  }

  /** Compares the kernel's rules with the desired ones. */
  check(): Promise<IptablesCheck> {
    return this.exclusive(() => this.checkNow());
  }

  /** Changes the lease or the features and applies (e.g. after the lease moved to another subnet). */
  update(changes: { network?: Prefix; subnet?: Prefix; ipMasq?: boolean; forwardRules?: boolean }): Promise<void> {
    return this.exclusive(async () => {
      const before = [this.network, this.subnet] as const;
      this.network = changes.network ?? this.network;
      this.subnet = changes.subnet ?? this.subnet;
      try {
        this.checkLease();
      } catch (err) {
        [this.network, this.subnet] = before;
        throw err;
      }
      this.ipMasq = changes.ipMasq ?? this.ipMasq;
      this.forwardRules = changes.forwardRules ?? this.forwardRules;
      await this.applyNow();
    });
  }

  /** One resync round: restores the rules when check() finds a difference; returns the differences found. */
  resync(): Promise<string[]> {
    return this.exclusive(async () => {
      const { ok, problems } = await this.checkNow();
      if (ok) return [];
      this.logger?.warn({ family: this.family, problems }, 'iptables rules missing or changed; restoring them');
      await this.applyNow();
      this.logger?.info({ family: this.family }, 'iptables rules restored');
      this.onRestore?.(problems);
      return problems;
    });
  }

  /** Resyncs every resyncSeconds until stop(); errors are logged and retried at the next round. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.schedule();
  }

  /** Stops the periodic resync and waits for a round in progress. */
  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.inFlight?.catch(() => {});
  }

  /** Stops resyncing, then deletes weft's chains (both, whatever is enabled) and every jump to them. */
  async remove(): Promise<void> {
    await this.stop();
    await this.exclusive(async () => {
      for (const [table, chain] of [
        ['filter', FORWARD_CHAIN],
        ['nat', MASQ_CHAIN],
      ] as const) {
        await this.removeChain(table, chain, await this.list(table));
      }
    });
  }

  private schedule(): void {
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.inFlight = this.resync()
        .catch((err: unknown) => this.logger?.error({ err, family: this.family }, 'iptables resync failed'))
        .finally(() => {
          this.inFlight = undefined;
          if (this.running) this.schedule();
        });
    }, this.resyncMs);
    this.timer.unref();
  }

  private checkLease(): void {
    if (this.network.family !== this.family || this.subnet.family !== this.family) {
      throw new RangeError(`IPv${this.family} rules need IPv${this.family} prefixes, got ${this.network} and ${this.subnet}`);
    }
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => {});
    return next;
  }

  private async supportsRandomFully(): Promise<boolean> {
    if (this.randomFully === undefined) {
      const result = await this.runner([this.iptables, '--version']);
      const version = parseIptablesVersion(result.stdout + result.stderr);
      if (result.code !== 0 || version === undefined) {
        throw new IptablesError(
          [this.iptables, '--version'],
          result.code,
          result.stderr,
          result.code === 0 ? 'no version in output' : undefined,
        );
      }
      this.randomFully = versionAtLeast(version, [1, 6, 2]);
    }
    return this.randomFully;
  }

  private list(table: IptablesTable): Promise<TableState> {
    return readTable(this.runner, this.family, table);
  }

  private async restoreTable(table: IptablesTable, lines: string[]): Promise<void> {
    const argv = [this.restore, '-w', '5', '--noflush'];
    const input = [`*${table}`, ...lines, 'COMMIT', ''];
    const result = await this.runner(argv, { stdin: input.join('\n') });
    if (result.code !== 0) {
      // "Error occurred at line: N" refers to our input: show that line too
      const at = /line:? (\d+)/.exec(result.stderr);
      const line = at ? input[Number(at[1]) - 1] : undefined;
      throw new IptablesError(
        argv,
        result.code,
        line === undefined ? result.stderr : `${result.stderr.trim()} [input line ${at![1]}: ${line}]`,
      );
    }
  }

  private async applyNow(): Promise<void> {
    const wanted = await this.desired();
    const states = new Map<IptablesTable, TableState>();
    const state = async (table: IptablesTable): Promise<TableState> => {
      let found = states.get(table);
      if (!found) states.set(table, (found = await this.list(table)));
      return found;
    };
    for (const spec of wanted) {
      const current = await state(spec.table);
      const lines = [`:${spec.chain} - [0:0]`, ...spec.rules.map((rule) => ruleLine(`-A ${spec.chain}`, rule))];
      const jumps = (current.rules.get(spec.hook) ?? []).filter((rule) => targets(rule, spec.chain));
      const keep = jumps.findIndex((rule) => sameRule(rule, spec.jump));
      jumps.forEach((rule, i) => {
        if (i !== keep) lines.push(ruleLine(`-D ${spec.hook}`, rule));
      });
      if (keep < 0) lines.push(ruleLine(`-I ${spec.hook} 1`, spec.jump));
      await this.restoreTable(spec.table, lines);
    }
    for (const [table, chain] of [
      ['filter', FORWARD_CHAIN],
      ['nat', MASQ_CHAIN],
    ] as const) {
      if (!wanted.some((spec) => spec.chain === chain)) await this.removeChain(table, chain, await state(table));
    }
  }

  private async removeChain(table: IptablesTable, chain: string, current: TableState): Promise<void> {
    const lines = jumpsTo(current, chain).map(([from, rule]) => ruleLine(`-D ${from}`, rule));
    if (current.chains.has(chain)) lines.push(`-F ${chain}`, `-X ${chain}`);
    if (lines.length === 0) return;
    await this.restoreTable(table, lines);
    this.logger?.info({ family: this.family, table, chain }, `removed iptables chain ${chain}`);
  }

  private async checkNow(): Promise<IptablesCheck> {
    const wanted = await this.desired();
    const problems: string[] = [];
    const states = new Map<IptablesTable, TableState>();
    for (const table of ['filter', 'nat'] as const) states.set(table, await this.list(table));
    for (const spec of wanted) {
      const current = states.get(spec.table)!;
      const where = `${spec.table} ${spec.chain}`;
      if (!current.chains.has(spec.chain)) {
        problems.push(`${where}: chain missing`);
      } else {
        const rules = current.rules.get(spec.chain) ?? [];
        const before = problems.length;
        for (const rule of spec.rules) {
          if (!rules.some((r) => sameRule(r, rule))) problems.push(`${where}: missing rule: ${ruleLine(`-A ${spec.chain}`, rule)}`);
        }
        for (const rule of rules) {
          if (!spec.rules.some((r) => sameRule(r, rule))) problems.push(`${where}: unexpected rule: ${ruleLine(`-A ${spec.chain}`, rule)}`);
        }
        if (
          problems.length === before &&
          !(rules.length === spec.rules.length && rules.every((rule, i) => sameRule(rule, spec.rules[i])))
        ) {
          problems.push(`${where}: rules out of order`);
        }
      }
      const jumps = (current.rules.get(spec.hook) ?? []).filter((rule) => targets(rule, spec.chain));
      const canonical = jumps.filter((rule) => sameRule(rule, spec.jump)).length;
      if (jumps.length === 0) problems.push(`${spec.table} ${spec.hook}: no jump to ${spec.chain}`);
      else if (jumps.length > 1) problems.push(`${spec.table} ${spec.hook}: ${jumps.length} jumps to ${spec.chain} (want 1)`);
      else if (canonical === 0)
        problems.push(`${spec.table} ${spec.hook}: jump to ${spec.chain} differs: ${ruleLine(`-A ${spec.hook}`, jumps[0])}`);
    }
    for (const [table, chain] of [
      ['filter', FORWARD_CHAIN],
      ['nat', MASQ_CHAIN],
    ] as const) {
      if (wanted.some((spec) => spec.chain === chain)) continue;
      const current = states.get(table)!;
      if (current.chains.has(chain) || jumpsTo(current, chain).length > 0) problems.push(`${table} ${chain}: present although disabled`);
    }
    return { ok: problems.length === 0, problems };
  }
}
