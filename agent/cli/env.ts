/**
 * Flags and environment as flanneld (a Go program) reads them, for weftd and weftctl: `-name` as well as
 * `--name`, Go's spellings of booleans, `FLANNELD_<FLAG>` variables (and weft's own `WEFTD_<FLAG>`), an empty
 * variable counting as unset.
 */
import type { Options } from 'yargs';
import { WeftError } from '../../common/errors.js';

/** A bad command-line flag or environment value; weftd and weftctl exit with code 2. */
export class UsageError extends WeftError {
  readonly flag: string;
  constructor(flag: string, message: string) {
    super('WEFT_USAGE', `--${flag}: ${message}`);
    this.flag = flag;
  }
}

/** The etcd connection flags weftd and weftctl share, named as flanneld names them. */
export const ETCD_OPTIONS = {
  'etcd-endpoints': { type: 'string', default: 'http://127.0.0.1:2379', describe: 'comma-separated list of etcd endpoints' },
  'etcd-prefix': { type: 'string', default: '/coreos.com/network', describe: 'etcd prefix of the network config and leases' },
  'etcd-cafile': {
    type: 'string',
    describe: "CA certificate to verify etcd servers (default: Node.js's CA store, which NODE_EXTRA_CA_CERTS adds to)",
  },
  'etcd-certfile': { type: 'string', describe: 'client certificate for etcd (TLS; with --etcd-keyfile)' },
  'etcd-keyfile': { type: 'string', describe: 'client key for etcd (TLS; with --etcd-certfile)' },
  'etcd-username': { type: 'string', describe: 'etcd user name for authentication' },
  'etcd-password': { type: 'string', describe: 'etcd password for authentication' },
} as const satisfies Record<string, Options>;

/** A boolean flag (`-name`, `-name=<bool>`) or one that takes a value (`-name value`, `-name=value`). */
export type FlagKind = 'boolean' | 'value';

const GO_TRUE = ['1', 't', 'T', 'TRUE', 'true', 'True'];
const GO_FALSE = ['0', 'f', 'F', 'FALSE', 'false', 'False'];

/** A boolean as Go's strconv.ParseBool (so flanneld, for flags and variables) reads it; undefined otherwise. */
export function parseGoBool(text: string): boolean | undefined {
  if (GO_TRUE.includes(text)) return true;
  if (GO_FALSE.includes(text)) return false;
  return undefined;
}

function notBoolean(text: string): string {
  return `"${text}" is not a boolean (one of ${[...GO_TRUE, ...GO_FALSE].join(', ')})`;
}

/** The kind of each option of a yargs option table. */
export function flagKinds(options: Readonly<Record<string, Options>>): Map<string, FlagKind> {
  return new Map(Object.entries(options).map(([name, option]) => [name, option.type === 'boolean' ? 'boolean' : 'value']));
}

/** A flanneld flag weftd does not have, and what to tell whoever sets it. */
export interface FlanneldOnlyFlag {
  kind: FlagKind;
  reason: string;
}

const KUBE_ONLY = "it belongs to flanneld's Kubernetes subnet manager (--kube-subnet-mgr), which weft does not have";
const CLIENT_SERVER = "flanneld's old client/server mode (before v0.8) does not exist in weft: every weftd talks to etcd itself";
const KLOG = "flanneld's log verbosity; weftd logs at --log-level";

/** flanneld's flags (of v0.7 to v0.28) that weftd does not have. */
export const FLANNELD_ONLY_FLAGS: ReadonlyMap<string, FlanneldOnlyFlag> = new Map<string, FlanneldOnlyFlag>([
  ['kube-subnet-mgr', { kind: 'boolean', reason: 'weft has no Kubernetes subnet manager: subnets come from etcd (--etcd-endpoints)' }],
  ['kube-api-url', { kind: 'value', reason: KUBE_ONLY }],
  ['kube-annotation-prefix', { kind: 'value', reason: KUBE_ONLY }],
  ['kubeconfig-file', { kind: 'value', reason: KUBE_ONLY }],
  ['net-config-path', { kind: 'value', reason: `${KUBE_ONLY}; the network config comes from etcd` }],
  ['set-node-network-unavailable', { kind: 'boolean', reason: KUBE_ONLY }],
  [
    'iface-can-reach',
    { kind: 'value', reason: 'weft picks the public interface by --iface, --iface-regex, --public-ip or the default route' },
  ],
  ['ip-blackhole-route', { kind: 'boolean', reason: 'weft adds no blackhole route for its own subnet' }],
  ['listen', { kind: 'value', reason: CLIENT_SERVER }],
  ['remote', { kind: 'value', reason: CLIENT_SERVER }],
  ['remote-keyfile', { kind: 'value', reason: CLIENT_SERVER }],
  ['remote-certfile', { kind: 'value', reason: CLIENT_SERVER }],
  ['remote-cafile', { kind: 'value', reason: CLIENT_SERVER }],
  ['v', { kind: 'value', reason: KLOG }],
  ['vmodule', { kind: 'value', reason: KLOG }],
  ['log_backtrace_at', { kind: 'value', reason: KLOG }],
]);

/** A flag or variable weftd does not use, as given (`--kube-subnet-mgr`, `FLANNELD_KUBE_SUBNET_MGR`), and why. */
export interface IgnoredSetting {
  setting: string;
  reason: string;
}

/**
 * Rewrites a command line that Go's flag package (so flanneld) accepts into one yargs reads the same way:
 * `-name` and `-name=value` (one dash) become `--name`…; a boolean's `=value` must be one of Go's spellings
 * and becomes `--name` or `--no-name`; the flags of `ignored` are taken out, with their value, and reported.
 * One-letter flags (`-o`) and everything from `--` on stay as they are. A value flag's separate value is
 * passed through untouched, even when it starts with a dash.
 */
export function normalizeArgv(
  argv: readonly string[],
  kinds: ReadonlyMap<string, FlagKind>,
  ignored: ReadonlyMap<string, FlanneldOnlyFlag> = new Map(),
): { argv: string[]; ignored: IgnoredSetting[] } {
  const out: string[] = [];
  const dropped: IgnoredSetting[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      out.push(...argv.slice(i));
      break;
    }
    const match = /^--?([A-Za-z][\w.-]*)(?:=([\s\S]*))?$/.exec(arg);
    if (match === null) {
      out.push(arg);
      continue;
    }
    const name = match[1];
    const value = match[2];
    const flanneldOnly = ignored.get(name);
    if (flanneldOnly !== undefined) {
      dropped.push({ setting: `--${name}`, reason: flanneldOnly.reason });
      if (flanneldOnly.kind === 'value' && value === undefined) i++;
      continue;
    }
    if (name.length === 1 && !arg.startsWith('--')) {
      out.push(arg);
      continue;
    }
    const kind = kinds.get(name);
    if (kind === 'boolean' && value !== undefined) {
      const parsed = parseGoBool(value);
      if (parsed === undefined) throw new UsageError(name, notBoolean(value));
      out.push(parsed ? `--${name}` : `--no-${name}`);
      continue;
    }
    out.push(value === undefined ? `--${name}` : `--${name}=${value}`);
    if (kind === 'value' && value === undefined && i + 1 < argv.length) out.push(argv[++i]);
  }
  return { argv: out, ignored: dropped };
}

/** `FLANNELD_IP_MASQ` for prefix FLANNELD and flag ip-masq, as flagutil names it (dashes and dots as `_`). */
function envName(prefix: string, flag: string): string {
  return `${prefix}_${flag.toUpperCase().replace(/[-.]/g, '_')}`;
}

/**
 * Flags for every option of `kinds` set in the environment but not on the (normalized) command line:
 * `WEFTD_<FLAG>`, or for drop-in use of an existing flanneld unit's environment file, `FLANNELD_<FLAG>`
 * (weft's own wins). An empty value counts as unset, as in flanneld; a boolean takes Go's spellings; a list
 * flag takes a comma-separated value.
 */
export function flagsFromEnvironment(kinds: ReadonlyMap<string, FlagKind>, argv: readonly string[], env: NodeJS.ProcessEnv): string[] {
  const given = (flag: string) => argv.some((arg) => arg === `--${flag}` || arg.startsWith(`--${flag}=`) || arg === `--no-${flag}`);
  const added: string[] = [];
  for (const [flag, kind] of kinds) {
    if (given(flag)) continue;
    const variable = [envName('WEFTD', flag), envName('FLANNELD', flag)].find((name) => (env[name] ?? '') !== '');
    if (variable === undefined) continue;
    const value = env[variable]!;
    if (kind === 'value') {
      added.push(`--${flag}=${value}`);
      continue;
    }
    const parsed = parseGoBool(value);
    if (parsed === undefined) throw new UsageError(flag, `${variable}=${notBoolean(value)}`);
    added.push(parsed ? `--${flag}` : `--no-${flag}`);
  }
  return added;
}

/** The non-empty WEFTD_* and FLANNELD_* variables of `env` that set none of the flags of `kinds`, and why. */
export function ignoredEnvironment(kinds: ReadonlyMap<string, FlagKind>, env: NodeJS.ProcessEnv): IgnoredSetting[] {
  const read = new Set([...kinds.keys()].flatMap((flag) => [envName('WEFTD', flag), envName('FLANNELD', flag)]));
  const flanneldOnly = new Map(
    [...FLANNELD_ONLY_FLAGS].flatMap(([flag, entry]) => [
      [envName('WEFTD', flag), entry],
      [envName('FLANNELD', flag), entry],
    ]),
  );
  const ignored: IgnoredSetting[] = [];
  for (const variable of Object.keys(env).sort()) {
    if (!/^(WEFTD|FLANNELD)_./.test(variable) || (env[variable] ?? '') === '' || read.has(variable)) continue;
    ignored.push({ setting: variable, reason: flanneldOnly.get(variable)?.reason ?? 'no flag of flanneld or weftd has this name' });
  }
  return ignored;
}

/** The etcd TLS files as given; `undefined` for those not given. */
export interface EtcdTlsFiles {
  caFile: string | undefined;
  certFile: string | undefined;
  keyFile: string | undefined;
}

/**
 * The etcd TLS flags as flanneld takes them: an empty value is none, and a client certificate and its key
 * come together, with or without a CA file (without one the server is verified against the default CA store).
 */
export function etcdTlsFiles(args: {
  'etcd-cafile'?: string | undefined;
  'etcd-certfile'?: string | undefined;
  'etcd-keyfile'?: string | undefined;
}): EtcdTlsFiles {
  const file = (value: string | undefined) => (value === '' ? undefined : value);
  const files = { caFile: file(args['etcd-cafile']), certFile: file(args['etcd-certfile']), keyFile: file(args['etcd-keyfile']) };
  if (files.certFile !== undefined && files.keyFile === undefined)
    throw new UsageError('etcd-keyfile', 'missing: --etcd-certfile needs the key of its certificate');
  if (files.keyFile !== undefined && files.certFile === undefined)
    throw new UsageError('etcd-certfile', 'missing: --etcd-keyfile needs the certificate it is the key of');
  return files;
}
