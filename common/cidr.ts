import { isIPv6 } from 'node:net';
import ipaddr from 'ipaddr.js';
import { InvalidCidrError } from './errors.js';

export type Family = 4 | 6;

const BITS: Record<Family, number> = { 4: 32, 6: 128 };

function bytesToBigInt(bytes: number[]): bigint {
  let value = 0n;
  for (const byte of bytes) value = (value << 8n) | BigInt(byte);
  return value;
}

function bigIntToBytes(value: bigint, length: number): number[] {
  const bytes = new Array<number>(length);
  for (let i = length - 1; i >= 0; i--) {
    bytes[i] = Number(value & 0xffn);
    value >>= 8n;
  }
  return bytes;
}

/**
 * A strict dotted quad ("198.18.2.0": four decimal parts 0–255 without leading zeros, exactly what
 * ipaddr.js's isValidFourPartDecimal accepts) as a number, or -1. A hand loop, because leases, the
 * desired state and the kernel shim parse and print addresses by the ten thousand.
 */
export function ipv4Value(text: string): number {
  let value = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || dots === 3) return -1;
      value = value * 256 + part;
      part = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57) {
      if (digits === 1 && part === 0) return -1;
      part = part * 10 + (c - 48);
      if (part > 255) return -1;
      digits++;
    } else {
      return -1;
    }
  }
  return dots === 3 && digits > 0 ? value * 256 + part : -1;
}

/** An IPv4 or IPv6 address held as an integer, so that prefix math is plain arithmetic. */
export class IpAddress {
  /** toString's result, made once (a private field: not a property, so equal addresses stay deep-equal) */
  #text: string | undefined;

  private constructor(
    readonly family: Family,
    readonly value: bigint,
  ) {}

  /** Parses dotted-quad IPv4 (no shorthand such as "10" or hex parts) or any RFC 4291 IPv6 text. */
  static parse(text: string): IpAddress {
    if (typeof text !== 'string') throw new InvalidCidrError(`address ${JSON.stringify(text)} is not a string`);
    const v4 = ipv4Value(text);
    if (v4 >= 0) {
      const address = new IpAddress(4, BigInt(v4));
      address.#text = text;
      return address;
    }
    if (ipaddr.IPv4.isValidFourPartDecimal(text)) {
      return new IpAddress(4, bytesToBigInt(ipaddr.IPv4.parse(text).toByteArray()));
    }
    // node:net checks the RFC 4291 grammar (ipaddr.js alone also takes "1::2:3:4:5:6:7:8" or "00001::").
    if (isIPv6(text)) {
      if (text.includes('%')) throw new InvalidCidrError(`address "${text}" has a zone`);
      // ipaddr.js reads the deprecated "::a.b.c.d" as "::ffff:a.b.c.d"; RFC 4291 (and Go) read ::a.b.c.d.
      const parsed = ipaddr.IPv6.parse(/^::\d+\.\d+\.\d+\.\d+$/.test(text) ? `::0:${text.slice(2)}` : text);
      return new IpAddress(6, bytesToBigInt(parsed.toByteArray()));
    }
    throw new InvalidCidrError(`"${text}" is not an IPv4 or IPv6 address`);
  }

  /** The address in 4 or 16 network-order bytes (as netlink carries it). */
  static fromBytes(bytes: Uint8Array): IpAddress {
    if (bytes.length !== 4 && bytes.length !== 16) throw new InvalidCidrError(`an address has 4 or 16 bytes, not ${bytes.length}`);
    return new IpAddress(bytes.length === 4 ? 4 : 6, bytesToBigInt([...bytes]));
  }

  static fromValue(family: Family, value: bigint): IpAddress {
    if (value < 0n || value >= 1n << BigInt(BITS[family])) {
      throw new InvalidCidrError(`value ${value} is out of range for IPv${family}`);
    }
    return new IpAddress(family, value);
  }

  get bits(): number {
    return BITS[this.family];
  }

  equals(other: IpAddress): boolean {
    return this.family === other.family && this.value === other.value;
  }

  toBytes(): Buffer {
    return Buffer.from(bigIntToBytes(this.value, this.bits / 8));
  }

  /** Canonical text: dotted quad, or RFC 5952 compressed IPv6 (what Go's net.IP prints, so lease keys match). */
  toString(): string {
    return (this.#text ??= this.format());
  }

  /**
   * Built with join(), which makes one flat string: a template literal of 13 characters or more makes a tree
   * of string pieces (V8's cons strings) that takes nearly twice the memory, and these texts are kept by the
   * ten thousand (leases, desired and kernel state).
   */
  private format(): string {
    if (this.family === 4) {
      const v = Number(this.value);
      return [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join('.');
    }
    const groups = Array.from({ length: 8 }, (_, i) => Number((this.value >> BigInt(112 - 16 * i)) & 0xffffn));
    // RFC 5952 §4.2: "::" replaces the first longest run of two or more zero groups (ipaddr.js may pick a later
    // run of the same length, e.g. "0:0:1::1:2:3" for ::1:0:0:1:2:3).
    let runStart = -1;
    let runLength = 1;
    for (let i = 0; i < 8;) {
      let j = i;
      while (j < 8 && groups[j] === 0) j++;
      if (j - i > runLength) [runStart, runLength] = [i, j - i];
      i = Math.max(j, i + 1);
    }
    const hex = groups.map((group) => group.toString(16));
    if (runStart < 0) return hex.join(':');
    return [hex.slice(0, runStart).join(':'), hex.slice(runStart + runLength).join(':')].join('::');
  }
}

/** A network prefix (CIDR) whose host bits are all zero. */
export class Prefix {
  #text: string | undefined;

  private constructor(
    readonly family: Family,
    readonly base: bigint,
    readonly length: number,
  ) {}

  /**
   * Parses "a.b.c.d/n" or "x::/n". Host bits must be zero unless `allowHostBits`, in which case they are
   * masked off (for interface addresses such as "192.0.2.7/24").
   */
  static parse(text: string, options: { allowHostBits?: boolean } = {}): Prefix {
    if (typeof text !== 'string') throw new InvalidCidrError(`prefix ${JSON.stringify(text)} is not a string`);
    const slash = text.indexOf('/');
    if (slash < 0) throw new InvalidCidrError(`"${text}" is not a prefix (no "/length")`);
    const address = IpAddress.parse(text.slice(0, slash));
    const lengthText = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(lengthText)) throw new InvalidCidrError(`"${text}" has an invalid prefix length`);
    const length = Number(lengthText);
    if (length > address.bits) {
      throw new InvalidCidrError(`"${text}": prefix length ${length} is longer than ${address.bits}`);
    }
    const prefix = Prefix.of(address, length);
    if (prefix.base !== address.value && !options.allowHostBits) {
      throw new InvalidCidrError(`"${text}" has host bits set (the network is ${prefix.toString()})`);
    }
    return prefix;
  }

  /** The prefix of the given length that contains `address`. */
  static of(address: IpAddress, length: number): Prefix {
    if (!Number.isInteger(length) || length < 0 || length > address.bits) {
      throw new InvalidCidrError(`prefix length ${length} is invalid for IPv${address.family}`);
    }
    const hostBits = BigInt(address.bits - length);
    return new Prefix(address.family, (address.value >> hostBits) << hostBits, length);
  }

  get bits(): number {
    return BITS[this.family];
  }

  /** The number of addresses in the prefix. */
  get size(): bigint {
    return 1n << BigInt(this.bits - this.length);
  }

  /** Computed each time, not kept: prefixes are kept by the ten thousand (one per lease), and this is needed only while a lease is judged. */
  get last(): bigint {
    return this.base + this.size - 1n;
  }

  get network(): IpAddress {
    return IpAddress.fromValue(this.family, this.base);
  }

  /** The address at offset `n` inside the prefix (n = 1 gives flannel's ".1" gateway address). */
  host(n: bigint | number): IpAddress {
    const offset = BigInt(n);
    if (offset < 0n || offset >= this.size) throw new InvalidCidrError(`offset ${offset} is outside ${this}`);
    return IpAddress.fromValue(this.family, this.base + offset);
  }

  contains(other: IpAddress | Prefix): boolean {
    if (other.family !== this.family) return false;
    if (other instanceof IpAddress) return other.value >= this.base && other.value <= this.last;
    return other.length >= this.length && other.base >= this.base && other.last <= this.last;
  }

  overlaps(other: Prefix): boolean {
    return other.family === this.family && other.base <= this.last && this.base <= other.last;
  }

  equals(other: Prefix): boolean {
    return this.family === other.family && this.base === other.base && this.length === other.length;
  }

  /** How many subnets of `length` this prefix holds. */
  subnetCount(length: number): bigint {
    this.checkSubnetLength(length);
    return 1n << BigInt(length - this.length);
  }

  /** The n-th (0-based) subnet of `length` inside this prefix. */
  nthSubnet(length: number, n: bigint | number): Prefix {
    const count = this.subnetCount(length);
    const index = BigInt(n);
    if (index < 0n || index >= count) {
      throw new InvalidCidrError(`${this} has ${count} subnets of /${length}; index ${index} is out of range`);
    }
    return new Prefix(this.family, this.base + index * (1n << BigInt(this.bits - length)), length);
  }

  /** The index of `subnet` among this prefix's subnets of the same length. */
  indexOf(subnet: Prefix): bigint {
    if (!this.contains(subnet)) throw new InvalidCidrError(`${subnet} is not inside ${this}`);
    return (subnet.base - this.base) >> BigInt(this.bits - subnet.length);
  }

  /** Subnets of `length` from `min` to `max` inclusive (both given as subnet network addresses). */
  *subnetsBetween(length: number, min: IpAddress, max: IpAddress): Generator<Prefix> {
    this.checkSubnetLength(length);
    const step = 1n << BigInt(this.bits - length);
    const first = Prefix.of(min, length);
    const last = Prefix.of(max, length);
    for (let base = first.base; base <= last.base; base += step) {
      yield new Prefix(this.family, base, length);
    }
  }

  /** Built with join() for the reason given at IpAddress.format. */
  toString(): string {
    return (this.#text ??= [this.network.toString(), this.length].join('/'));
  }

  private checkSubnetLength(length: number): void {
    if (!Number.isInteger(length) || length < this.length || length > this.bits) {
      throw new InvalidCidrError(`subnet length /${length} does not fit in ${this}`);
    }
  }
}
