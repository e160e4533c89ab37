import { IpAddress, Prefix, type Family } from './cidr.js';
import { InvalidCidrError, InvalidConfigError } from './errors.js';
import { excerpt, jsonDepth } from './json.js';

/** The address plan for one family, with every default of flannel filled in. */
export interface FamilyConfig {
  family: Family;
  network: Prefix;
  subnetLen: number;
  /** First and last subnet that may be handed out (flannel never hands out the first subnet by default). */
  subnetMin: Prefix;
  subnetMax: Prefix;
}

export type UserspaceMode = 'auto' | 'always' | 'never';

export interface VxlanBackendConfig {
  type: 'vxlan';
  vni: number;
  port: number;
  gbp: boolean;
  learning: boolean;
  directRouting: boolean;
  /** Device MTU; undefined means the public interface's MTU minus the encapsulation overhead. */
  mtu: number | undefined;
  userspace: UserspaceMode;
}

export interface HostGwBackendConfig {
  type: 'host-gw';
}

export interface UdpBackendConfig {
  type: 'udp';
  port: number;
  mtu: number | undefined;
}

export type BackendConfig = VxlanBackendConfig | HostGwBackendConfig | UdpBackendConfig;
export type BackendType = BackendConfig['type'];

export const SUPPORTED_BACKENDS: readonly BackendType[] = ['vxlan', 'host-gw', 'udp'];
/** Backends flannel knows that weft does not implement: named as unsupported rather than unknown. */
const FLANNEL_ONLY_BACKENDS = ['ipip', 'wireguard', 'ipsec', 'alloc', 'extension', 'gce', 'aws-vpc', 'ali-vpc', 'tencent-vpc'];

export const DEFAULT_VXLAN_PORT = 8472;
export const DEFAULT_UDP_PORT = 8285;
export const DEFAULT_VNI = 1;

export interface NetworkConfig {
  ipv4: FamilyConfig | undefined;
  ipv6: FamilyConfig | undefined;
  backend: BackendConfig;
  /** Non-fatal observations an operator should see (e.g. a missing Backend taken as udp). */
  warnings: string[];
  /** The JSON object as read, so that a rewrite keeps fields weft does not know. */
  raw: Record<string, unknown>;
}

type JsonObject = Record<string, unknown>;

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Reads a field the way Go's encoding/json does (flannel's parser): every key that matches the name
 * case-insensitively sets the field in document order, so the last one wins (`{"Network":…,"network":…}`
 * reads the second), and a config that flanneld accepts reads the same here.
 */
function field(obj: JsonObject, name: string): unknown {
  const lower = name.toLowerCase();
  let value: unknown;
  for (const key of Object.keys(obj)) if (key.toLowerCase() === lower) value = obj[key];
  return value;
}

function show(value: unknown): string {
  return excerpt(typeof value === 'string' ? `"${value}"` : JSON.stringify(value));
}

function readBool(obj: JsonObject, name: string, path: string, fallback: boolean): boolean {
  const value = field(obj, name);
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'boolean') throw new InvalidConfigError(path, `${path} ${show(value)} is not true or false`);
  return value;
}

function readInt(obj: JsonObject, name: string, path: string, min: number, max: number): number | undefined {
  const value = field(obj, name);
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new InvalidConfigError(path, `${path} ${show(value)} is not an integer`);
  }
  if (value < min || value > max) throw new InvalidConfigError(path, `${path} ${value} is outside ${min}-${max}`);
  return value;
}

function readString(obj: JsonObject, name: string, path: string): string | undefined {
  const value = field(obj, name);
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw new InvalidConfigError(path, `${path} ${show(value)} is not a string`);
  return value;
}

interface FamilyKeys {
  family: Family;
  network: string;
  subnetLen: string;
  subnetMin: string;
  subnetMax: string;
  /** Longest SubnetLen that leaves each host room for a bridge and a tunnel address. */
  longestSubnet: number;
  /** SubnetLen chosen when Network is at least this big (shorter or equal prefix length). */
  defaultSubnetLen: number;
}

const IPV4_KEYS: FamilyKeys = {
  family: 4, network: 'Network', subnetLen: 'SubnetLen', subnetMin: 'SubnetMin', subnetMax: 'SubnetMax',
  longestSubnet: 30, defaultSubnetLen: 24,
};
const IPV6_KEYS: FamilyKeys = {
  family: 6, network: 'IPv6Network', subnetLen: 'IPv6SubnetLen', subnetMin: 'IPv6SubnetMin', subnetMax: 'IPv6SubnetMax',
  longestSubnet: 126, defaultSubnetLen: 64,
};

function parseFamily(obj: JsonObject, keys: FamilyKeys): FamilyConfig {
  const bits = keys.family === 4 ? 32 : 128;
  const networkText = readString(obj, keys.network, keys.network);
  if (networkText === undefined || networkText === '') {
    throw new InvalidConfigError(keys.network, `${keys.network} is missing: give the overlay's IPv${keys.family} CIDR`);
  }
  let network: Prefix;
  try {
    network = Prefix.parse(networkText);
  } catch (err) {
    const reason = err instanceof InvalidCidrError ? err.message : String(err);
    throw new InvalidConfigError(keys.network, `${keys.network} ${show(networkText)} is invalid: ${reason}`);
  }
  if (network.family !== keys.family) {
    throw new InvalidConfigError(keys.network, `${keys.network} ${networkText} is not an IPv${keys.family} prefix`);
  }
  // The smallest useful network holds four subnets of four addresses each.
  const smallest = bits - 4;
  if (network.length > smallest) {
    throw new InvalidConfigError(keys.network, `${keys.network} ${networkText} is smaller than /${smallest}`);
  }

  let subnetLen = readInt(obj, keys.subnetLen, keys.subnetLen, 0, Number.MAX_SAFE_INTEGER) ?? 0;
  if (subnetLen === 0) {
    subnetLen = network.length <= keys.defaultSubnetLen - 2 ? keys.defaultSubnetLen : network.length + 2;
  } else if (subnetLen > bits) {
    throw new InvalidConfigError(keys.subnetLen, `${keys.subnetLen} ${subnetLen} is longer than ${bits}`);
  } else if (subnetLen > keys.longestSubnet) {
    throw new InvalidConfigError(
      keys.subnetLen,
      `${keys.subnetLen} ${subnetLen} is longer than ${keys.longestSubnet}: each host needs room for a bridge and a tunnel address`,
    );
  } else if (subnetLen < network.length + 2) {
    throw new InvalidConfigError(
      keys.subnetLen,
      `${keys.subnetLen} ${subnetLen} leaves ${keys.network} ${networkText} fewer than four subnets (use /${network.length + 2} or longer)`,
    );
  }

  const count = network.subnetCount(subnetLen);
  const subnetMin = readBound(obj, keys.subnetMin, keys.network, network, subnetLen) ?? network.nthSubnet(subnetLen, 1);
  const subnetMax =
    readBound(obj, keys.subnetMax, keys.network, network, subnetLen) ?? network.nthSubnet(subnetLen, count - 1n);
  if (subnetMin.base > subnetMax.base) {
    throw new InvalidConfigError(
      keys.subnetMin,
      `${keys.subnetMin} ${subnetMin.network} is above ${keys.subnetMax} ${subnetMax.network}`,
    );
  }
  return { family: keys.family, network, subnetLen, subnetMin, subnetMax };
}

function readBound(
  obj: JsonObject,
  name: string,
  networkName: string,
  network: Prefix,
  subnetLen: number,
): Prefix | undefined {
  const text = readString(obj, name, name);
  if (text === undefined || text === '') return undefined;
  let address: IpAddress;
  try {
    address = IpAddress.parse(text);
  } catch {
    throw new InvalidConfigError(name, `${name} ${show(text)} is not an IP address`);
  }
  // flannel takes the zero address ("0.0.0.0", "::") as unset: what Go writes for a Config it never filled in.
  if (address.family === network.family && address.value === 0n) return undefined;
  if (!network.contains(address)) {
    throw new InvalidConfigError(name, `${name} ${text} is outside ${networkName} ${network}`);
  }
  const subnet = Prefix.of(address, subnetLen);
  if (subnet.base !== address.value) {
    throw new InvalidConfigError(name, `${name} ${text} is not on a /${subnetLen} boundary`);
  }
  return subnet;
}

function parseUserspace(value: string | undefined): UserspaceMode {
  if (value === undefined) return 'auto';
  if (value === 'auto' || value === 'always' || value === 'never') return value;
  throw new InvalidConfigError('Backend.Userspace', `Backend.Userspace "${value}" is not one of auto, always, never`);
}

function parseBackend(obj: JsonObject, warnings: string[]): BackendConfig {
  const rawBackend = field(obj, 'Backend');
  if (rawBackend === undefined || rawBackend === null) {
    // flannel's code (not its docs) treats a missing Backend as udp; a mixed cluster must agree.
    warnings.push('Backend is missing: using "udp" as flanneld does; set Backend.Type explicitly (weftctl config set does)');
    return { type: 'udp', port: DEFAULT_UDP_PORT, mtu: undefined };
  }
  if (!isObject(rawBackend)) throw new InvalidConfigError('Backend', `Backend ${show(rawBackend)} is not an object`);
  const type = readString(rawBackend, 'Type', 'Backend.Type');
  if (type === undefined || type === '') throw new InvalidConfigError('Backend.Type', 'Backend.Type is missing');
  switch (type) {
    case 'vxlan':
      return {
        type,
        vni: readInt(rawBackend, 'VNI', 'Backend.VNI', 0, 0xffffff) ?? DEFAULT_VNI,
        port: readInt(rawBackend, 'Port', 'Backend.Port', 0, 65535) || DEFAULT_VXLAN_PORT,
        gbp: readBool(rawBackend, 'GBP', 'Backend.GBP', false),
        learning: readBool(rawBackend, 'Learning', 'Backend.Learning', false),
        directRouting: readBool(rawBackend, 'DirectRouting', 'Backend.DirectRouting', false),
        mtu: readInt(rawBackend, 'MTU', 'Backend.MTU', 68, 65535),
        userspace: parseUserspace(readString(rawBackend, 'Userspace', 'Backend.Userspace')),
      };
    case 'host-gw':
      return { type };
    case 'udp':
      return {
        type,
        port: readInt(rawBackend, 'Port', 'Backend.Port', 0, 65535) || DEFAULT_UDP_PORT,
        mtu: readInt(rawBackend, 'MTU', 'Backend.MTU', 68, 65535),
      };
    default:
      if (FLANNEL_ONLY_BACKENDS.includes(type)) {
        throw new InvalidConfigError(
          'Backend.Type',
          `Backend.Type "${type}" is not supported by weft (supported: ${SUPPORTED_BACKENDS.join(', ')})`,
        );
      }
      throw new InvalidConfigError('Backend.Type', `Backend.Type "${type}" is unknown`);
  }
}

/** The largest config weft reads, in bytes (flannel's are a few hundred). */
export const MAX_CONFIG_BYTES = 64 * 1024;
/** The deepest nesting of a config field weft keeps (flannel's nest 2 levels). */
const MAX_CONFIG_DEPTH = 32;
const CONFIG_FIELDS = new Set([IPV4_KEYS, IPV6_KEYS].flatMap((keys) => [keys.network, keys.subnetLen, keys.subnetMin, keys.subnetMax])
  .concat('EnableIPv4', 'EnableIPv6', 'Backend').map((name) => name.toLowerCase()));

/**
 * The config without the fields weft does not know that nest deeper than MAX_CONFIG_DEPTH (each dropped with
 * a warning: flanneld ignores them too, and kept they would overflow the stack of whoever writes the config
 * out again); a field weft reads that nests that deep makes the config invalid.
 */
function boundedFields(obj: JsonObject, warnings: string[]): JsonObject {
  let kept: [string, unknown][] | undefined;
  const entries = Object.entries(obj);
  entries.forEach(([name, value], i) => {
    if (jsonDepth(value, MAX_CONFIG_DEPTH) <= MAX_CONFIG_DEPTH) {
      kept?.push([name, value]);
      return;
    }
    if (CONFIG_FIELDS.has(name.toLowerCase())) throw new InvalidConfigError(name, `${name} nests deeper than ${MAX_CONFIG_DEPTH} levels`);
    warnings.push(`ignoring the config field "${excerpt(name)}": it nests deeper than ${MAX_CONFIG_DEPTH} levels`);
    kept ??= entries.slice(0, i);
  });
  // fromEntries defines own properties, so even a field named "__proto__" is kept as a field
  return kept === undefined ? obj : Object.fromEntries(kept);
}

/** Parses and validates flannel's network config JSON (`<prefix>/config`), filling in flannel's defaults. */
export function parseNetworkConfig(text: string): NetworkConfig {
  const bytes = Buffer.byteLength(text);
  if (bytes > MAX_CONFIG_BYTES) throw new InvalidConfigError('config', `config is ${bytes} bytes, more than the ${MAX_CONFIG_BYTES} weft reads`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new InvalidConfigError('config', `config is not valid JSON: ${(err as Error).message}`);
  }
  if (!isObject(parsed)) {
    const what = jsonDepth(parsed, MAX_CONFIG_DEPTH) > MAX_CONFIG_DEPTH ? `nested deeper than ${MAX_CONFIG_DEPTH} levels` : show(parsed);
    throw new InvalidConfigError('config', `config ${what} is not a JSON object`);
  }
  const warnings: string[] = [];
  const raw = boundedFields(parsed, warnings);
  const enableIPv4 = readBool(raw, 'EnableIPv4', 'EnableIPv4', true);
  const enableIPv6 = readBool(raw, 'EnableIPv6', 'EnableIPv6', false);
  if (!enableIPv4 && !enableIPv6) {
    throw new InvalidConfigError('EnableIPv4', 'EnableIPv4 and EnableIPv6 are both false: nothing to route');
  }
  return {
    ipv4: enableIPv4 ? parseFamily(raw, IPV4_KEYS) : undefined,
    ipv6: enableIPv6 ? parseFamily(raw, IPV6_KEYS) : undefined,
    backend: parseBackend(raw, warnings),
    warnings,
    raw,
  };
}

/** Every candidate subnet between SubnetMin and SubnetMax, in address order. */
export function* candidateSubnets(plan: FamilyConfig): Generator<Prefix> {
  yield* plan.network.subnetsBetween(plan.subnetLen, plan.subnetMin.network, plan.subnetMax.network);
}

/** Whether `subnet` may be leased under `plan`: the right length, inside the network and the min/max range. */
export function isSubnetAllowed(plan: FamilyConfig, subnet: Prefix): boolean {
  return (
    subnet.family === plan.family &&
    subnet.length === plan.subnetLen &&
    plan.network.contains(subnet) &&
    subnet.base >= plan.subnetMin.base &&
    subnet.base <= plan.subnetMax.base
  );
}

/** How many subnets the range SubnetMin..SubnetMax holds. */
export function subnetRangeSize(plan: FamilyConfig): bigint {
  return plan.network.indexOf(plan.subnetMax) - plan.network.indexOf(plan.subnetMin) + 1n;
}
