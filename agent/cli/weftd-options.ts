import yargs from 'yargs';
import { IpAddress } from '../../common/cidr.js';
import { WIREGUARD_IMPLEMENTATIONS, type UserspaceMode, type WireguardHostOptions } from '../../common/config.js';
import { buildInfo } from '../build-info.js';
import { DEFAULT_NODE_ID_FILE } from '../host/node-id.js';
import { LOG_LEVELS } from '../log.js';
import { DEFAULT_WIREGUARD_KEY_FILE } from '../wireguard/keys.js';
import { WIREGUARD_SOCKET_DIR } from '../wireguard/wireguard-go.js';
import {
  ETCD_OPTIONS,
  etcdTlsFiles,
  FLANNELD_ONLY_FLAGS,
  flagKinds,
  flagsFromEnvironment,
  ignoredEnvironment,
  normalizeArgv,
  UsageError,
  type IgnoredSetting,
} from './env.js';

export { UsageError };

export interface WeftdOptions {
  etcd: {
    endpoints: string[];
    prefix: string;
    caFile: string | undefined;
    certFile: string | undefined;
    keyFile: string | undefined;
    username: string | undefined;
    password: string | undefined;
  };
  iface: string[];
  ifaceRegex: RegExp[];
  publicIP: IpAddress | undefined;
  publicIPv6: IpAddress | undefined;
  subnetFile: string;
  ipMasq: boolean;
  /** MASQUERADE without --random-fully even where iptables has it (flanneld's --ip-masq-fully-random-disable). */
  ipMasqRandomFullyDisable: boolean;
  iptablesForwardRules: boolean;
  iptablesResyncSeconds: number;
  leaseTtlSeconds: number;
  leaseRenewMarginSeconds: number;
  healthzIP: string;
  healthzPort: number;
  resyncIntervalSeconds: number;
  logLevel: (typeof LOG_LEVELS)[number];
  releaseOnExit: boolean;
  /** Install peer routes through kernel nexthop objects (falls back to inline gateways on kernels without them). */
  nexthopObjects: boolean;
  nodeIdFile: string;
  ingressAllowList: boolean;
  /** This host's choice of VXLAN data path, overriding the config's Backend.Userspace; undefined: the config's. */
  vxlanUserspace: UserspaceMode | undefined;
  /** Seconds between two probes of a peer over the overlay; 0: no probing. */
  probeIntervalSeconds: number;
  /** At most this many probe packets per second, all peers together. */
  probeRate: number;
  /** Probe metrics with a series per peer. */
  probeMetricsPerPeer: boolean;
  /** flanneld flags and WEFTD_* / FLANNELD_* variables weftd does not use, to warn about. */
  ignored: IgnoredSetting[];
  wireguard: WireguardHostOptions;
}

/** weftd's flags (weftctl reuses the node-level ones for `status` and `doctor`). */
export const WEFTD_OPTIONS = {
  ...ETCD_OPTIONS,
  iface: {
    type: 'string',
    array: true,
    default: [] as string[],
    describe:
      'interface (name or IP) for inter-host traffic; repeatable, first match wins (default: the interface of the default route, the IPv6 one for an IPv6-only network)',
  },
  'iface-regex': {
    type: 'string',
    array: true,
    default: [] as string[],
    describe: 'regex matched against interface names and IPs; repeatable',
  },
  'public-ip': { type: 'string', describe: 'IPv4 address other hosts reach this one at (default: the interface address)' },
  'public-ipv6': { type: 'string', describe: 'IPv6 address other hosts reach this one at' },
  'subnet-file': { type: 'string', default: '/run/flannel/subnet.env', describe: 'where to write the subnet.env for CNI and docker' },
  'ip-masq': { type: 'boolean', default: false, describe: 'masquerade traffic leaving the overlay network' },
  'ip-masq-fully-random-disable': {
    type: 'boolean',
    default: false,
    describe: 'masquerade without --random-fully, also where iptables has it',
  },
  'iptables-forward-rules': { type: 'boolean', default: true, describe: 'add FORWARD accept rules for the overlay network' },
  'iptables-resync': { type: 'number', default: 5, describe: "seconds between checks of weft's iptables rules" },
  'subnet-lease-renew-margin': { type: 'number', default: 60, describe: 'minutes before expiry to renew the subnet lease' },
  'subnet-lease-ttl': { type: 'number', default: 24 * 60, describe: 'minutes a subnet lease lives unless renewed' },
  'healthz-ip': { type: 'string', default: '0.0.0.0', describe: 'address of the healthz/readyz/metrics endpoint' },
  'healthz-port': { type: 'number', default: 0, describe: 'port of the healthz/readyz/metrics endpoint (0 = disabled)' },
  'resync-interval': { type: 'number', default: 30, describe: 'seconds between full reconciles of the kernel state' },
  'log-level': { type: 'string', default: 'info', describe: `log level (${LOG_LEVELS.join(', ')})` },
  'release-on-exit': { type: 'boolean', default: false, describe: 'on exit, delete the lease and what weft created' },
  'nexthop-objects': {
    type: 'boolean',
    default: true,
    describe: 'route peers through kernel nexthop objects (same routes, O(1) to add; Linux ≥ 5.3, else inline gateways as flannel)',
  },
  'ingress-allow-list': { type: 'boolean', default: true, describe: 'accept tunnel (VXLAN, udp) datagrams only from current peers' },
  'vxlan-userspace': {
    type: 'string',
    choices: ['auto', 'always', 'never'] as const,
    describe:
      "this host's VXLAN data path, overriding the network config's Backend.Userspace: kernel VXLAN (never), weft's userspace path (always), or the kernel when it can (auto)",
  },
  'node-id-file': {
    type: 'string',
    default: DEFAULT_NODE_ID_FILE,
    describe: 'where this host keeps its identity (created on first start)',
  },
  'wireguard-implementation': {
    type: 'string',
    choices: WIREGUARD_IMPLEMENTATIONS,
    default: 'auto',
    describe: 'the WireGuard device: kernel WireGuard, wireguard-go on TUN (userspace), or the kernel when it can (auto)',
  },
  'wireguard-key-file': {
    type: 'string',
    describe: `this host's WireGuard private key, made on first start (default: $WIREGUARD_KEY_FILE as for flanneld, else ${DEFAULT_WIREGUARD_KEY_FILE})`,
  },
  'wireguard-socket-dir': {
    type: 'string',
    default: WIREGUARD_SOCKET_DIR,
    describe: "where wireguard-go's UAPI sockets are (another directory runs wireguard-go in a private mount namespace)",
  },
  'probe-interval': {
    type: 'number',
    default: 10,
    describe:
      'seconds between two probes of each peer over the overlay, spread over the interval (0 = no probing; see /peers and weftctl status)',
  },
  'probe-rate': {
    type: 'number',
    default: 500,
    describe: 'at most this many probe packets per second, all peers together: with many peers a round takes longer than --probe-interval',
  },
  'probe-metrics-per-peer': {
    type: 'boolean',
    default: false,
    describe: 'label the probe RTT histogram and a probe state gauge by peer (a series per peer)',
  },
} as const;

function positive(flag: string, value: number, { integer = false, min = 0 } = {}): number {
  if (!Number.isFinite(value) || value < min || (integer && !Number.isInteger(value))) {
    throw new UsageError(flag, `${String(value)} is not ${integer ? 'an integer' : 'a number'} ≥ ${min}`);
  }
  return value;
}

function address(flag: string, text: string | undefined, family: 4 | 6): IpAddress | undefined {
  if (text === undefined || text === '') return undefined;
  let parsed: IpAddress;
  try {
    parsed = IpAddress.parse(text);
  } catch {
    throw new UsageError(flag, `"${text}" is not an IP address`);
  }
  if (parsed.family !== family) throw new UsageError(flag, `"${text}" is not an IPv${family} address`);
  return parsed;
}

function splitList(values: readonly string[]): string[] {
  return values
    .flatMap((value) => value.split(','))
    .map((value) => value.trim())
    .filter((value) => value !== '');
}

/**
 * Parses weftd's flags and the WEFTD_* / FLANNELD_* environment as flanneld reads its own (see env.ts);
 * throws UsageError naming the flag. Resolves undefined when --help or --version was asked for (and printed).
 */
export async function parseWeftdOptions(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<WeftdOptions | undefined> {
  const kinds = flagKinds(WEFTD_OPTIONS);
  const command = normalizeArgv(argv, kinds, FLANNELD_ONLY_FLAGS);
  const ignored = [...command.ignored, ...ignoredEnvironment(kinds, env)];
  const parse = () =>
    yargs([...flagsFromEnvironment(kinds, command.argv, env), ...command.argv])
      .scriptName('weftd')
      .version(buildInfo().version)
      .usage('$0 [flags]\n\nThe weft agent: leases this host a subnet from etcd and routes the overlay to every other host.')
      .options(WEFTD_OPTIONS)
      .strict()
      .example('$0 --etcd-endpoints=http://192.0.2.2:2379 --iface=eth1 --ip-masq', 'join the network seeded at /coreos.com/network')
      .epilogue(
        'Every flag can also be set as WEFTD_<FLAG> or, as for flanneld, FLANNELD_<FLAG> (e.g. FLANNELD_IFACE=eth1). ' +
          'As in flanneld, -flag works as --flag, booleans are 1, t, T, TRUE, true, True or 0, f, F, FALSE, false, False, and an empty variable is unset.',
      )
      .exitProcess(false)
      .fail((message, err) => {
        if (err !== undefined) throw err;
        const unknown = /^Unknown arguments?: (.+)$/.exec(message);
        if (unknown !== undefined && unknown !== null) throw new UsageError(unknown[1].split(', ')[0], 'unknown flag');
        // A value outside a flag's choices: "Invalid values:\n  Argument: vxlan-userspace, Given: …, Choices: …".
        const invalid = /Argument: ([\w-]+), (Given: .*)$/m.exec(message);
        if (invalid !== null) throw new UsageError(invalid[1], invalid[2]);
        throw new UsageError(/--?([\w-]+)/.exec(message)?.[1] ?? 'flags', message);
      })
      .parseAsync();
  const args = await parse();
  if (args.help === true || args.version === true) return undefined;

  const endpoints = splitList([args['etcd-endpoints']]);
  if (endpoints.length === 0) throw new UsageError('etcd-endpoints', 'no endpoint given');
  for (const endpoint of endpoints) {
    if (!/^https?:\/\/[^/]+\/?$/.test(endpoint)) throw new UsageError('etcd-endpoints', `"${endpoint}" is not an http(s)://host:port URL`);
  }
  const logLevel = args['log-level'];
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new UsageError('log-level', `"${logLevel}" is not one of ${LOG_LEVELS.join(', ')}`);
  }
  const ifaceRegex = splitList(args['iface-regex']).map((source) => {
    try {
      return new RegExp(source);
    } catch (err) {
      throw new UsageError('iface-regex', `"${source}" is not a regular expression: ${(err as Error).message}`);
    }
  });
  const ttlMinutes = positive('subnet-lease-ttl', args['subnet-lease-ttl'], { min: 1 / 60 });
  const marginMinutes = positive('subnet-lease-renew-margin', args['subnet-lease-renew-margin']);
  if (marginMinutes >= ttlMinutes) {
    throw new UsageError(
      'subnet-lease-renew-margin',
      `${marginMinutes} minutes is not shorter than --subnet-lease-ttl ${ttlMinutes} minutes`,
    );
  }
  const healthzPort = positive('healthz-port', args['healthz-port'], { integer: true });
  if (healthzPort > 65535) throw new UsageError('healthz-port', `${healthzPort} is not a port number`);
  const probeInterval = positive('probe-interval', args['probe-interval']);
  if (probeInterval > 0 && probeInterval < 0.5)
    throw new UsageError('probe-interval', `${probeInterval} is below 0.5 seconds (0 turns probing off)`);
  const healthzIP = args['healthz-ip'];
  address('healthz-ip', healthzIP, healthzIP.includes(':') ? 6 : 4);

  return {
    etcd: {
      endpoints,
      prefix: args['etcd-prefix'],
      ...etcdTlsFiles(args),
      username: args['etcd-username'],
      password: args['etcd-password'],
    },
    iface: splitList(args.iface),
    ifaceRegex,
    publicIP: address('public-ip', args['public-ip'], 4),
    publicIPv6: address('public-ipv6', args['public-ipv6'], 6),
    subnetFile: args['subnet-file'],
    ipMasq: args['ip-masq'],
    ipMasqRandomFullyDisable: args['ip-masq-fully-random-disable'],
    iptablesForwardRules: args['iptables-forward-rules'],
    iptablesResyncSeconds: positive('iptables-resync', args['iptables-resync'], { min: 1 }),
    leaseTtlSeconds: Math.round(ttlMinutes * 60),
    leaseRenewMarginSeconds: Math.round(marginMinutes * 60),
    healthzIP,
    healthzPort,
    resyncIntervalSeconds: positive('resync-interval', args['resync-interval'], { min: 0.1 }),
    logLevel: logLevel as WeftdOptions['logLevel'],
    releaseOnExit: args['release-on-exit'],
    nexthopObjects: args['nexthop-objects'],
    nodeIdFile: args['node-id-file'],
    ingressAllowList: args['ingress-allow-list'],
    vxlanUserspace: args['vxlan-userspace'],
    probeIntervalSeconds: probeInterval,
    probeRate: positive('probe-rate', args['probe-rate'], { min: 1 }),
    probeMetricsPerPeer: args['probe-metrics-per-peer'],
    ignored,
    wireguard: {
      implementation: args['wireguard-implementation'],
      // flanneld's variable, below weft's own flag and WEFTD_WIREGUARD_KEY_FILE
      keyFile: args['wireguard-key-file'] ?? env.WIREGUARD_KEY_FILE ?? DEFAULT_WIREGUARD_KEY_FILE,
      socketDir: args['wireguard-socket-dir'],
    },
  };
}
