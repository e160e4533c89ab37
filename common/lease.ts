import { IpAddress, Prefix } from './cidr.js';
import { InvalidCidrError, InvalidLeaseError } from './errors.js';
import { excerpt, jsonDepth } from './json.js';

/** The subnets a lease key names: IPv4, IPv6, or both (flannel's dual-stack "v4&v6" form). */
export interface LeaseSubnets {
  ipv4: Prefix | undefined;
  ipv6: Prefix | undefined;
}

/** A lease value as flanneld writes it, plus every field weft does not know, kept for rewrites. */
export interface LeaseAttrs {
  publicIP: IpAddress | undefined;
  publicIPv6: IpAddress | undefined;
  /** "" when the value has none: flanneld's udp backend writes no BackendType (Go's omitempty). */
  backendType: string;
  backendData: Record<string, unknown> | undefined;
  backendV6Data: Record<string, unknown> | undefined;
  /** Fields of the JSON object that weft does not interpret, in their original order. */
  extra: Record<string, unknown>;
}

export interface VxlanBackendData {
  vni: number;
  vtepMac: string;
}

export interface WireguardBackendData {
  /** base64, as `wg` writes it */
  publicKey: string;
  /** undefined when the lease names none (flanneld before v0.26.6 writes none) or 0: the network's ListenPort then */
  port: number | undefined;
}

const IPV4_KEY_PART = /^(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})-(\d{1,2})$/;
const IPV6_KEY_PART = /^([0-9a-fA-F:.]+)-(\d{1,3})$/;
/** flannel writes an IPv6-only lease with this IPv4 placeholder before the "&". */
const NO_IPV4 = '0.0.0.0-0';
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/**
 * The largest lease value weft reads, in bytes. flanneld's are about 150 bytes; anything far bigger was not
 * written by an agent, and every host would otherwise hold and decode it.
 */
const MAX_LEASE_VALUE_BYTES = 4096;
/** The deepest nesting of a lease value weft reads (flanneld's nest 2 levels). */
const MAX_LEASE_DEPTH = 16;

function keyPart(family: 4 | 6, text: string, key: string): Prefix {
  const match = (family === 4 ? IPV4_KEY_PART : IPV6_KEY_PART).exec(text);
  if (!match) throw new InvalidLeaseError(key, `"${excerpt(text)}" is not an IPv${family} subnet in "<address>-<length>" form`);
  try {
    const prefix = Prefix.parse(`${match[1]}/${match[2]}`);
    if (prefix.family !== family) throw new InvalidCidrError(`"${text}" is not IPv${family}`);
    return prefix;
  } catch (err) {
    throw new InvalidLeaseError(key, err instanceof Error ? err.message : String(err));
  }
}

/** Parses the last path element of a lease key: "10.5.52.0-24", "10.5.52.0-24&2001:db8:100::-64", "0.0.0.0-0&…". */
export function parseLeaseKey(name: string): LeaseSubnets {
  const parts = name.split('&');
  if (parts.length > 2 || parts[0] === undefined) throw new InvalidLeaseError(name, 'is not a lease key');
  const ipv4 = parts.length === 2 && parts[0] === NO_IPV4 ? undefined : keyPart(4, parts[0], name);
  const ipv6 = parts[1] === undefined ? undefined : keyPart(6, parts[1], name);
  return { ipv4, ipv6 };
}

function keyPartText(prefix: Prefix): string {
  return `${prefix.network}-${prefix.length}`;
}

export function formatLeaseKey(subnets: LeaseSubnets): string {
  if (subnets.ipv6 === undefined) {
    if (subnets.ipv4 === undefined) throw new InvalidCidrError('a lease names at least one subnet');
    return keyPartText(subnets.ipv4);
  }
  return `${subnets.ipv4 === undefined ? NO_IPV4 : keyPartText(subnets.ipv4)}&${keyPartText(subnets.ipv6)}`;
}

const KNOWN_FIELDS = new Set(['PublicIP', 'PublicIPv6', 'BackendType', 'BackendData', 'BackendV6Data']);
/** The `extra` of every lease without unknown fields (nearly all of them): one object, not one per lease. */
const NO_EXTRA: Record<string, unknown> = Object.freeze({});

function optionalAddress(obj: Record<string, unknown>, name: string, family: 4 | 6, key: string): IpAddress | undefined {
  const value = obj[name];
  // flanneld writes an absent IPv4 address as "0.0.0.0".
  if (value === undefined || value === null || value === '' || value === '0.0.0.0') return undefined;
  if (typeof value !== 'string') throw new InvalidLeaseError(key, `${name} ${JSON.stringify(value)} is not a string`);
  let address: IpAddress;
  try {
    address = IpAddress.parse(value);
  } catch {
    throw new InvalidLeaseError(key, `${name} "${value}" is not an IP address`);
  }
  if (address.family !== family) throw new InvalidLeaseError(key, `${name} "${value}" is not an IPv${family} address`);
  return address;
}

function optionalObject(obj: Record<string, unknown>, name: string, key: string): Record<string, unknown> | undefined {
  const value = obj[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new InvalidLeaseError(key, `${name} ${JSON.stringify(value)} is not an object`);
  }
  return value as Record<string, unknown>;
}

/** Decodes a lease value; `key` (the etcd key) is used only to name the lease in errors. */
function tooLarge(bytes: number): string {
  return `value is ${bytes} bytes, more than the ${MAX_LEASE_VALUE_BYTES} a lease may have`;
}

export function parseLeaseAttrs(text: string, key: string): LeaseAttrs {
  const bytes = Buffer.byteLength(text);
  if (bytes > MAX_LEASE_VALUE_BYTES) throw new InvalidLeaseError(key, tooLarge(bytes));
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new InvalidLeaseError(key, 'value is not valid JSON');
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new InvalidLeaseError(key, 'value is not a JSON object');
  }
  if (jsonDepth(raw, MAX_LEASE_DEPTH) > MAX_LEASE_DEPTH)
    throw new InvalidLeaseError(key, `value nests deeper than ${MAX_LEASE_DEPTH} levels`);
  const obj = raw as Record<string, unknown>;
  // flanneld reads an absent or null BackendType as "" (its udp backend writes none).
  const backendType = obj.BackendType ?? '';
  if (typeof backendType !== 'string') {
    throw new InvalidLeaseError(key, `BackendType ${JSON.stringify(backendType)} is not a backend name`);
  }
  // fromEntries defines own properties, so even a field named "__proto__" is kept rather than eaten by a setter.
  let unknown: [string, unknown][] | undefined;
  for (const name of Object.keys(obj)) if (!KNOWN_FIELDS.has(name)) (unknown ??= []).push([name, obj[name]]);
  const extra = unknown === undefined ? NO_EXTRA : Object.fromEntries(unknown);
  return {
    publicIP: optionalAddress(obj, 'PublicIP', 4, key),
    publicIPv6: optionalAddress(obj, 'PublicIPv6', 6, key),
    backendType,
    backendData: optionalObject(obj, 'BackendData', key),
    backendV6Data: optionalObject(obj, 'BackendV6Data', key),
    extra,
  };
}

/**
 * Encodes a lease value as flanneld does: its field order, BackendType left out when empty (Go's omitempty);
 * fields weft does not know follow unchanged.
 */
export function formatLeaseAttrs(attrs: LeaseAttrs): string {
  const entries: [string, unknown][] = [
    ['PublicIP', attrs.publicIP?.toString() ?? '0.0.0.0'],
    ['PublicIPv6', attrs.publicIPv6?.toString() ?? null],
  ];
  if (attrs.backendType !== '') entries.push(['BackendType', attrs.backendType]);
  if (attrs.backendData !== undefined) entries.push(['BackendData', attrs.backendData]);
  if (attrs.backendV6Data !== undefined) entries.push(['BackendV6Data', attrs.backendV6Data]);
  entries.push(...Object.entries(attrs.extra));
  return JSON.stringify(Object.fromEntries(entries));
}

/** The BackendType a host running `backend` writes into its lease: flanneld's udp backend writes none. */
export function leaseBackendTypeFor(backend: string): string {
  return backend === 'udp' ? '' : backend;
}

/**
 * The backend a lease announces, read against the network's backend: a lease without BackendType is a
 * flanneld udp host's when the network's backend is udp (flanneld's alloc and tencent-vpc backends write none
 * either); otherwise it names no backend (""), and no host of the network programs it.
 */
export function leaseBackend(attrs: LeaseAttrs, networkBackend: string | undefined): string {
  if (attrs.backendType !== '') return attrs.backendType;
  return networkBackend === 'udp' ? 'udp' : '';
}

/** Validates a VXLAN lease's BackendData (or BackendV6Data): `{"VNI": n, "VtepMAC": "aa:bb:…"}`. */
export function parseVxlanBackendData(data: Record<string, unknown> | undefined, key: string, field = 'BackendData'): VxlanBackendData {
  if (data === undefined) throw new InvalidLeaseError(key, `${field} is missing`);
  const vni = data.VNI ?? 1;
  if (typeof vni !== 'number' || !Number.isInteger(vni) || vni < 0 || vni > 0xffffff) {
    throw new InvalidLeaseError(key, `${field}.VNI ${JSON.stringify(vni)} is not a VNI`);
  }
  const mac = data.VtepMAC;
  if (typeof mac !== 'string' || !MAC.test(mac.toLowerCase())) {
    throw new InvalidLeaseError(key, `${field}.VtepMAC ${JSON.stringify(mac)} is not a MAC address`);
  }
  return { vni, vtepMac: mac.toLowerCase() };
}

/**
 * Validates a WireGuard lease's BackendData (or BackendV6Data): `{"PublicKey": "<base64>", "Port": 51820}`.
 * flanneld reads Port as a 16-bit number and a missing or zero Port as its own listen port.
 */
export function parseWireguardBackendData(
  data: Record<string, unknown> | undefined,
  key: string,
  field = 'BackendData',
): WireguardBackendData {
  if (data === undefined) throw new InvalidLeaseError(key, `${field} is missing`);
  const publicKey = data.PublicKey;
  if (typeof publicKey !== 'string' || !/^[A-Za-z0-9+/]{43}=$/.test(publicKey)) {
    throw new InvalidLeaseError(key, `${field}.PublicKey ${JSON.stringify(publicKey)?.slice(0, 64)} is not a WireGuard public key`);
  }
  const port = data.Port ?? 0;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 0xffff) {
    throw new InvalidLeaseError(key, `${field}.Port ${JSON.stringify(port)?.slice(0, 64)} is not a UDP port`);
  }
  return { publicKey, port: port === 0 ? undefined : port };
}

/** Two lease values carry the same information (field order and unknown fields included). */
export function sameLeaseAttrs(a: LeaseAttrs, b: LeaseAttrs): boolean {
  return formatLeaseAttrs(a) === formatLeaseAttrs(b);
}

/** A subnet lease as stored under `<prefix>/subnets/`: the key's subnets and the decoded value. */
export interface Lease {
  /** The key's last path element, e.g. "10.5.52.0-24". */
  name: string;
  subnets: LeaseSubnets;
  attrs: LeaseAttrs;
  /** A key with no etcd lease attached never expires: an operator's reservation. */
  reservation: boolean;
}

/** Decodes a lease key name and value together; throws InvalidLeaseError naming the key. */
export function decodeLease(name: string, value: string, reservation: boolean): Lease {
  const subnets = parseLeaseKey(name);
  const attrs = parseLeaseAttrs(value, name);
  if (subnets.ipv4 !== undefined && attrs.publicIP === undefined) {
    throw new InvalidLeaseError(name, 'PublicIP is missing for an IPv4 lease');
  }
  if (subnets.ipv6 !== undefined && subnets.ipv4 === undefined && attrs.publicIPv6 === undefined) {
    throw new InvalidLeaseError(name, 'PublicIPv6 is missing for an IPv6-only lease');
  }
  return { name, subnets, attrs, reservation };
}

/** decodeLease of a value as etcd returns it: one over MAX_LEASE_VALUE_BYTES is refused before it is made text. */
export function decodeLeaseValue(name: string, value: Buffer, reservation: boolean): Lease {
  if (value.length > MAX_LEASE_VALUE_BYTES) throw new InvalidLeaseError(name, tooLarge(value.length));
  return decodeLease(name, value.toString(), reservation);
}
