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
  /**
   * The underlay MTU to assume instead of the public interface's (flanneld's Backend.MTU since v0.21.3): the
   * device gets it minus the encapsulation overhead. Undefined: the public interface's MTU.
   */
  mtu: number | undefined;
  userspace: UserspaceMode;
}

export interface HostGwBackendConfig {
  type: 'host-gw';
}

export interface UdpBackendConfig {
  type: 'udp';
  port: number;
  /** As VxlanBackendConfig's (flanneld's udp backend has no such option and always uses the public interface's). */
  mtu: number | undefined;
}

/**
 * flanneld's WireGuard Mode: `separate` runs one device per address family, each peer reached over that
 * family; the others run one device for both families, the peer's endpoint being its IPv4 address (`ipv4`),
 * its IPv6 address (`ipv6`) or, for `auto`, IPv4 unless only IPv6 is public on both sides.
 */
export type WireguardMode = 'separate' | 'auto' | 'ipv4' | 'ipv6';
export const WIREGUARD_MODES: readonly WireguardMode[] = ['separate', 'auto', 'ipv4', 'ipv6'];

export interface WireguardBackendConfig {
  type: 'wireguard';
  /** UDP port of the IPv4 device (separate) or of the one device (the other modes). */
  listenPort: number;
  /** UDP port of the IPv6 device (separate mode). */
  listenPortV6: number;
  /** Base64 pre-shared key every peer gets, or undefined. A secret: never logged or shown. */
  psk: string | undefined;
  /** Seconds between keepalives to each peer; 0 = off. */
  persistentKeepaliveInterval: number;
  mode: WireguardMode;
  /** As VxlanBackendConfig's: the underlay MTU the 80 bytes of WireGuard overhead are taken from. */
  mtu: number | undefined;
}

export type BackendConfig = VxlanBackendConfig | HostGwBackendConfig | UdpBackendConfig | WireguardBackendConfig;
export type BackendType = BackendConfig['type'];

export const SUPPORTED_BACKENDS: readonly BackendType[] = ['vxlan', 'host-gw', 'udp', 'wireguard'];
/** Backends flannel knows that weft does not implement: named as unsupported rather than unknown. */
const FLANNEL_ONLY_BACKENDS = ['ipip', 'ipsec', 'alloc', 'extension', 'gce', 'aws-vpc', 'ali-vpc', 'tencent-vpc'];

export const DEFAULT_VXLAN_PORT = 8472;
export const DEFAULT_UDP_PORT = 8285;
export const DEFAULT_VNI = 1;
export const DEFAULT_WIREGUARD_PORT = 51820;
export const DEFAULT_WIREGUARD_PORT_V6 = 51821;
/** WireGuard's overhead as flanneld counts it: outer IPv6 header (the larger), UDP, WireGuard header and tag. */
export const WIREGUARD_OVERHEAD = 80;
/** flanneld before v0.24 reads a peer's VNI as a 16-bit number and skips a peer whose VNI does not fit. */
export const MAX_FLANNEL_VNI = 0xffff;
/** Backend.MTU is the underlay's: the largest encapsulation (VXLAN over IPv6, 70 bytes) must leave IPv4's minimum, 68. */
const MIN_UNDERLAY_MTU = 138;
/** Linux interface names hold at most 15 characters (IFNAMSIZ, 16 with the terminating NUL). */
export const MAX_DEVICE_NAME_LENGTH = 15;

/** weft's VXLAN device for `family` (the userspace path's overlay veth has the same name). */
export function vxlanDeviceName(family: Family, vni: number): string {
  return family === 4 ? `weft.${vni}` : `weft-v6.${vni}`;
}

/** The capture end of the userspace path's veth pair whose overlay end is `deviceName`. */
export function captureDeviceName(deviceName: string): string {
  return `${deviceName}.c`;
}

/**
 * Ports below 1024 belong to well-known services (DNS 53, DHCP 67/68, NTP 123, …). A tunnel on one shares
 * it with that service; weftd then leaves the port without its ingress allow-list, which would drop the
 * service's datagrams from everyone but the peers.
 */
export function isWellKnownPort(port: number): boolean {
  return port < 1024;
}

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
  family: 4,
  network: 'Network',
  subnetLen: 'SubnetLen',
  subnetMin: 'SubnetMin',
  subnetMax: 'SubnetMax',
  longestSubnet: 30,
  defaultSubnetLen: 24,
};
/** Address ranges with a meaning of their own, which an overlay network must not overlap. */
const SPECIAL_RANGES: Record<Family, readonly { prefix: Prefix; what: string }[]> = {
  4: [
    { prefix: Prefix.parse('0.0.0.0/8'), what: '"this network"' },
    { prefix: Prefix.parse('127.0.0.0/8'), what: 'loopback' },
    { prefix: Prefix.parse('169.254.0.0/16'), what: 'link-local' },
    { prefix: Prefix.parse('224.0.0.0/4'), what: 'multicast' },
  ],
  6: [
    { prefix: Prefix.parse('::/128'), what: 'unspecified-address' },
    { prefix: Prefix.parse('::1/128'), what: 'loopback' },
    { prefix: Prefix.parse('fe80::/10'), what: 'link-local' },
    { prefix: Prefix.parse('ff00::/8'), what: 'multicast' },
  ],
};

/** Refuses a network that covers every address or overlaps loopback, link-local, multicast or "this network". */
function checkSpecialRanges(network: Prefix, name: string): void {
  if (network.length === 0) {
    throw new InvalidConfigError(name, `${name} ${network} covers every address: the overlay would take over all of the host's traffic`);
  }
  for (const { prefix, what } of SPECIAL_RANGES[network.family]) {
    if (network.overlaps(prefix)) {
      throw new InvalidConfigError(
        name,
        `${name} ${network} overlaps the ${what} range ${prefix}: those addresses cannot be routed through an overlay`,
      );
    }
  }
}

const IPV6_KEYS: FamilyKeys = {
  family: 6,
  network: 'IPv6Network',
  subnetLen: 'IPv6SubnetLen',
  subnetMin: 'IPv6SubnetMin',
  subnetMax: 'IPv6SubnetMax',
  longestSubnet: 126,
  defaultSubnetLen: 64,
};

function parseFamily(obj: JsonObject, keys: FamilyKeys, warnings: string[]): FamilyConfig {
  const bits = keys.family === 4 ? 32 : 128;
  const networkText = readString(obj, keys.network, keys.network);
  if (networkText === undefined || networkText === '') {
    throw new InvalidConfigError(keys.network, `${keys.network} is missing: give the overlay's IPv${keys.family} CIDR`);
  }
  let network: Prefix;
  try {
    // flanneld masks host bits off (Go's net.ParseCIDR): "10.5.1.0/16" is 10.5.0.0/16 there, and so here.
    network = Prefix.parse(networkText, { allowHostBits: true });
  } catch (err) {
    const reason = err instanceof InvalidCidrError ? err.message : String(err);
    throw new InvalidConfigError(keys.network, `${keys.network} ${show(networkText)} is invalid: ${reason}`);
  }
  if (IpAddress.parse(networkText.slice(0, networkText.indexOf('/'))).value !== network.base) {
    warnings.push(`${keys.network} ${networkText} has host bits set: using ${network} (as flanneld does); write ${network} in the config`);
  }
  if (network.family !== keys.family) {
    throw new InvalidConfigError(keys.network, `${keys.network} ${networkText} is not an IPv${keys.family} prefix`);
  }
  checkSpecialRanges(network, keys.network);
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
  const subnetMax = readBound(obj, keys.subnetMax, keys.network, network, subnetLen) ?? network.nthSubnet(subnetLen, count - 1n);
  if (subnetMin.base > subnetMax.base) {
    throw new InvalidConfigError(keys.subnetMin, `${keys.subnetMin} ${subnetMin.network} is above ${keys.subnetMax} ${subnetMax.network}`);
  }
  return { family: keys.family, network, subnetLen, subnetMin, subnetMax };
}

function readBound(obj: JsonObject, name: string, networkName: string, network: Prefix, subnetLen: number): Prefix | undefined {
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

/** A WireGuard key as `wg` writes it: 32 bytes in standard base64 (44 characters). */
export function isWireguardKey(text: string): boolean {
  return /^[A-Za-z0-9+/]{43}=$/.test(text);
}

function parseWireguard(backend: JsonObject): WireguardBackendConfig {
  const mode = readString(backend, 'Mode', 'Backend.Mode') ?? 'separate';
  if (!(WIREGUARD_MODES as readonly string[]).includes(mode)) {
    throw new InvalidConfigError('Backend.Mode', `Backend.Mode ${show(mode)} is not one of ${WIREGUARD_MODES.join(', ')}`);
  }
  const psk = readString(backend, 'PSK', 'Backend.PSK');
  // The value is a secret: the message names the key, never the value.
  if (psk !== undefined && psk !== '' && !isWireguardKey(psk)) {
    throw new InvalidConfigError('Backend.PSK', 'Backend.PSK is not a WireGuard key (32 bytes in base64, as `wg genpsk` writes)');
  }
  return {
    type: 'wireguard',
    listenPort: readInt(backend, 'ListenPort', 'Backend.ListenPort', 0, 65535) || DEFAULT_WIREGUARD_PORT,
    listenPortV6: readInt(backend, 'ListenPortV6', 'Backend.ListenPortV6', 0, 65535) || DEFAULT_WIREGUARD_PORT_V6,
    psk: psk === '' ? undefined : psk,
    persistentKeepaliveInterval: readInt(backend, 'PersistentKeepaliveInterval', 'Backend.PersistentKeepaliveInterval', 0, 65535) ?? 0,
    mode: mode as WireguardMode,
    mtu: readInt(backend, 'MTU', 'Backend.MTU', WIREGUARD_OVERHEAD + 68, 65535),
  };
}

function parseBackend(obj: JsonObject, warnings: string[]): BackendConfig {
  const rawBackend = field(obj, 'Backend');
  if (rawBackend === undefined) {
    // flannel's code (not its docs) treats a missing Backend as udp; a mixed cluster must agree.
    warnings.push('Backend is missing: using "udp" as flanneld does; set Backend.Type explicitly (weftctl config set does)');
    return { type: 'udp', port: DEFAULT_UDP_PORT, mtu: undefined };
  }
  if (rawBackend === null) {
    // flanneld keeps the literal null (a json.RawMessage), finds no Type in it and exits: "unknown backend type".
    throw new InvalidConfigError(
      'Backend',
      'Backend is null: flanneld refuses it (unknown backend type ""); give Backend.Type, or leave Backend out for udp',
    );
  }
  if (!isObject(rawBackend)) throw new InvalidConfigError('Backend', `Backend ${show(rawBackend)} is not an object`);
  const type = readString(rawBackend, 'Type', 'Backend.Type');
  if (type === undefined || type === '') throw new InvalidConfigError('Backend.Type', 'Backend.Type is missing');
  switch (type) {
    case 'vxlan': {
      const vni = readInt(rawBackend, 'VNI', 'Backend.VNI', 0, 0xffffff) ?? DEFAULT_VNI;
      if (vni > MAX_FLANNEL_VNI) {
        warnings.push(
          `Backend.VNI ${vni} is above ${MAX_FLANNEL_VNI}: flanneld before v0.24 reads a peer's VNI as a 16-bit number and skips this network's hosts`,
        );
      }
      return {
        type,
        vni,
        port: readInt(rawBackend, 'Port', 'Backend.Port', 0, 65535) || DEFAULT_VXLAN_PORT,
        gbp: readBool(rawBackend, 'GBP', 'Backend.GBP', false),
        learning: readBool(rawBackend, 'Learning', 'Backend.Learning', false),
        directRouting: readBool(rawBackend, 'DirectRouting', 'Backend.DirectRouting', false),
        mtu: readInt(rawBackend, 'MTU', 'Backend.MTU', MIN_UNDERLAY_MTU, 65535),
        userspace: parseUserspace(readString(rawBackend, 'Userspace', 'Backend.Userspace')),
      };
    }
    case 'host-gw':
      return { type };
    case 'udp':
      return {
        type,
        port: readInt(rawBackend, 'Port', 'Backend.Port', 0, 65535) || DEFAULT_UDP_PORT,
        mtu: readInt(rawBackend, 'MTU', 'Backend.MTU', MIN_UNDERLAY_MTU, 65535),
      };
    case 'wireguard':
      return parseWireguard(rawBackend);
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
const CONFIG_FIELDS = new Set(
  [IPV4_KEYS, IPV6_KEYS]
    .flatMap((keys) => [keys.network, keys.subnetLen, keys.subnetMin, keys.subnetMax])
    .concat('EnableIPv4', 'EnableIPv6', 'Backend')
    .map((name) => name.toLowerCase()),
);

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
  if (bytes > MAX_CONFIG_BYTES)
    throw new InvalidConfigError('config', `config is ${bytes} bytes, more than the ${MAX_CONFIG_BYTES} weft reads`);
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
  const ipv4 = enableIPv4 ? parseFamily(raw, IPV4_KEYS, warnings) : undefined;
  const ipv6 = enableIPv6 ? parseFamily(raw, IPV6_KEYS, warnings) : undefined;
  const backend = parseBackend(raw, warnings);
  checkDeviceNames(backend, ipv4 !== undefined, ipv6 !== undefined);
  for (const { field, port } of tunnelPorts({ ipv4, ipv6, backend })) {
    if (!isWellKnownPort(port)) continue;
    warnings.push(
      `${field} ${port} is below 1024, where well-known services listen (DNS 53, DHCP 67/68, NTP 123, …): ` +
        'the tunnel shares the port with such a service, and weftd leaves the port without its ingress allow-list',
    );
  }
  return { ipv4, ipv6, backend, warnings, raw };
}

/** The UDP ports the overlay's datagrams arrive on (none for host-gw), with the config field that sets each. */
export function tunnelPorts(config: Pick<NetworkConfig, 'ipv4' | 'ipv6' | 'backend'>): { field: string; port: number }[] {
  const backend = config.backend;
  switch (backend.type) {
    case 'host-gw':
      return [];
    case 'wireguard': {
      const v4 = { field: 'Backend.ListenPort', port: backend.listenPort };
      const v6 = { field: 'Backend.ListenPortV6', port: backend.listenPortV6 };
      if (backend.mode !== 'separate') return [v4];
      return [...(config.ipv4 === undefined ? [] : [v4]), ...(config.ipv6 === undefined ? [] : [v6])];
    }
    default:
      return [{ field: 'Backend.Port', port: backend.port }];
  }
}

/** Refuses a VNI whose device names (weft.<VNI>, its capture end weft.<VNI>.c, weft-v6.<VNI>) Linux cannot hold. */
function checkDeviceNames(backend: BackendConfig, ipv4: boolean, ipv6: boolean): void {
  if (backend.type !== 'vxlan') return;
  const ipv4Name = vxlanDeviceName(4, backend.vni);
  // the userspace path, which adds the capture end, carries IPv4 only
  const names = [...(ipv4 ? [captureDeviceName(ipv4Name)] : []), ...(ipv6 ? [vxlanDeviceName(6, backend.vni)] : [])];
  for (const name of names) {
    if (name.length > MAX_DEVICE_NAME_LENGTH) {
      const digits = MAX_DEVICE_NAME_LENGTH - (name.length - String(backend.vni).length);
      throw new InvalidConfigError(
        'Backend.VNI',
        `Backend.VNI ${backend.vni} makes the device name "${name}" ${name.length} characters long; Linux allows ${MAX_DEVICE_NAME_LENGTH} ` +
          `(use a VNI below ${10 ** digits})`,
      );
    }
  }
}

/**
 * Why a host whose underlay addresses (its public interface's address and the public address it announces,
 * per family) are `addresses` cannot use `config`, or undefined when it can: a Network (IPv6Network) that
 * contains one of them would route the host's own underlay traffic, the tunnel's included, into the overlay.
 */
export function underlayAddressClash(config: NetworkConfig, addresses: readonly IpAddress[]): string | undefined {
  for (const plan of [config.ipv4, config.ipv6]) {
    if (plan === undefined) continue;
    const inside = addresses.find((address) => plan.network.contains(address));
    if (inside !== undefined) {
      const name = plan.family === 4 ? 'Network' : 'IPv6Network';
      return `${name} ${plan.network} contains ${inside}, an underlay address of this host: its routes would pull the host's own (and the tunnel's) traffic into the overlay`;
    }
  }
  return undefined;
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

export type WireguardImplementation = 'auto' | 'kernel' | 'userspace';
export const WIREGUARD_IMPLEMENTATIONS: readonly WireguardImplementation[] = ['auto', 'kernel', 'userspace'];

/** This host's WireGuard settings (weftd's --wireguard-* flags), beside the network's Backend options. */
export interface WireguardHostOptions {
  implementation: WireguardImplementation;
  keyFile: string;
  /** where wireguard-go's UAPI sockets are */
  socketDir: string;
}
