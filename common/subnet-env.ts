/**
 * flannel's subnet.env (read by the flannel CNI plugin and by docker setups), formatted and parsed.
 * Pure: the file I/O lives in agent/host/subnet-env.ts.
 *
 *   FLANNEL_NETWORK=10.5.0.0/16
 *   FLANNEL_SUBNET=10.5.52.1/24          (the lease subnet with host part .1)
 *   FLANNEL_IPV6_NETWORK=2001:db8:100::/48
 *   FLANNEL_IPV6_SUBNET=2001:db8:100:34::1/64
 *   FLANNEL_MTU=1450
 *   FLANNEL_IPMASQ=true
 */
import { Prefix, type Family } from './cidr.js';
import { WeftError } from './errors.js';

/** A subnet.env that cannot be written or read; `line` (1-based) names the offending line when parsing. */
export class InvalidSubnetEnvError extends WeftError {
  readonly line: number | undefined;
  constructor(message: string, line?: number) {
    super('WEFT_INVALID_SUBNET_ENV', message);
    this.line = line;
  }
}

/** What weft writes. Each family is written only when both its network and its lease subnet are given. */
export interface SubnetEnvContent {
  network?: Prefix | undefined;
  /** The lease subnet (host bits zero); written with host part .1. */
  subnet?: Prefix | undefined;
  ipv6Network?: Prefix | undefined;
  ipv6Subnet?: Prefix | undefined;
  mtu: number;
  ipMasq: boolean;
}

/** What a subnet.env says; every field is optional because a file written by someone else may lack any. */
export interface SubnetEnv {
  network: Prefix | undefined;
  /** The lease subnet as a network (".0/24" from "FLANNEL_SUBNET=….1/24"). */
  subnet: Prefix | undefined;
  ipv6Network: Prefix | undefined;
  ipv6Subnet: Prefix | undefined;
  mtu: number | undefined;
  ipMasq: boolean | undefined;
}

function checkFamily(name: string, network: Prefix | undefined, subnet: Prefix | undefined, family: Family): void {
  if ((network === undefined) !== (subnet === undefined)) {
    throw new InvalidSubnetEnvError(`${name}: network and subnet must be given together`);
  }
  if (network === undefined || subnet === undefined) return;
  if (network.family !== family || subnet.family !== family) {
    throw new InvalidSubnetEnvError(`${name}: ${network} and ${subnet} must both be IPv${family}`);
  }
  if (!network.contains(subnet)) throw new InvalidSubnetEnvError(`${name}: subnet ${subnet} is not inside ${network}`);
  if (subnet.size < 2n) throw new InvalidSubnetEnvError(`${name}: subnet ${subnet} has no room for a .1 address`);
}

/** The lease subnet with host part 1, as flannel writes it ("10.5.52.1/24"). */
export function gatewayCidr(subnet: Prefix): string {
  return `${subnet.host(1)}/${subnet.length}`;
}

/** The file text, in flannel's order, ending with a newline. */
export function formatSubnetEnv(content: SubnetEnvContent): string {
  checkFamily('IPv4', content.network, content.subnet, 4);
  checkFamily('IPv6', content.ipv6Network, content.ipv6Subnet, 6);
  if (content.subnet === undefined && content.ipv6Subnet === undefined) {
    throw new InvalidSubnetEnvError('neither an IPv4 nor an IPv6 subnet to write');
  }
  if (!Number.isInteger(content.mtu) || content.mtu < 68 || content.mtu > 65535) {
    throw new InvalidSubnetEnvError(`MTU ${content.mtu} is not an integer between 68 and 65535`);
  }
  const lines: string[] = [];
  if (content.network && content.subnet) {
    lines.push(`FLANNEL_NETWORK=${content.network}`, `FLANNEL_SUBNET=${gatewayCidr(content.subnet)}`);
  }
  if (content.ipv6Network && content.ipv6Subnet) {
    lines.push(`FLANNEL_IPV6_NETWORK=${content.ipv6Network}`, `FLANNEL_IPV6_SUBNET=${gatewayCidr(content.ipv6Subnet)}`);
  }
  lines.push(`FLANNEL_MTU=${content.mtu}`, `FLANNEL_IPMASQ=${content.ipMasq ? 'true' : 'false'}`);
  return `${lines.join('\n')}\n`;
}

/** Go's strconv.ParseBool, which is what reads FLANNEL_IPMASQ on the flannel side. */
const BOOLEANS = new Map<string, boolean>([
  ...['1', 't', 'T', 'TRUE', 'true', 'True'].map((text) => [text, true] as const),
  ...['0', 'f', 'F', 'FALSE', 'false', 'False'].map((text) => [text, false] as const),
]);

function unquote(value: string): string {
  if (value.length >= 2 && (value[0] === '"' || value[0] === "'") && value.at(-1) === value[0]) return value.slice(1, -1);
  return value;
}

/**
 * Reads subnet.env text. Tolerant the way a shell `source` is: blank lines, `#` comments, an `export `
 * prefix, quoted values and variables it does not know are accepted (the last assignment wins). A line
 * that is not an assignment, or a known variable with a bad value, throws InvalidSubnetEnvError naming the
 * line; `source` (e.g. the path) prefixes the message.
 */
export function parseSubnetEnv(text: string, source = 'subnet.env'): SubnetEnv {
  const env: SubnetEnv = {
    network: undefined,
    subnet: undefined,
    ipv6Network: undefined,
    ipv6Subnet: undefined,
    mtu: undefined,
    ipMasq: undefined,
  };
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, index) => {
    const lineNo = index + 1;
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const fail = (why: string): never => {
      throw new InvalidSubnetEnvError(`${source} line ${lineNo}: ${JSON.stringify(raw)}: ${why}`, lineNo);
    };
    const match = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!match) return fail('not a NAME=value assignment');
    const name = match[1];
    const value = unquote(match[2].trim());
    const prefix = (family: Family, hostBits: boolean): Prefix => {
      let parsed: Prefix;
      try {
        parsed = Prefix.parse(value, { allowHostBits: hostBits });
      } catch (err) {
        return fail((err as Error).message);
      }
      if (parsed.family !== family) return fail(`not an IPv${family} prefix`);
      return parsed;
    };
    switch (name) {
      case 'FLANNEL_NETWORK':
        env.network = prefix(4, false);
        break;
      case 'FLANNEL_SUBNET':
        env.subnet = prefix(4, true);
        break;
      case 'FLANNEL_IPV6_NETWORK':
        env.ipv6Network = prefix(6, false);
        break;
      case 'FLANNEL_IPV6_SUBNET':
        env.ipv6Subnet = prefix(6, true);
        break;
      case 'FLANNEL_MTU': {
        const mtu = /^\d{1,5}$/.test(value) ? Number(value) : NaN;
        if (!(mtu >= 68 && mtu <= 65535)) fail('MTU must be an integer between 68 and 65535');
        env.mtu = mtu;
        break;
      }
      case 'FLANNEL_IPMASQ': {
        const flag = BOOLEANS.get(value);
        if (flag === undefined) fail('expected true or false');
        env.ipMasq = flag;
        break;
      }
      default:
        break;
    }
  });
  return env;
}
