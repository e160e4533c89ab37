/**
 * The little address arithmetic the lab needs, on ipaddr.js rather than common/cidr.ts so that the lab
 * does not depend on the code it tests.
 */
import ipaddr from 'ipaddr.js';

export interface Ipv4Prefix {
  /** Network address as an unsigned 32-bit number. */
  network: number;
  length: number;
}

function toBigInt(bytes: number[]): bigint {
  return bytes.reduce((value, byte) => (value << 8n) | BigInt(byte), 0n);
}

function fromBigInt(value: bigint, length: number): number[] {
  return Array.from({ length }, (_, index) => Number((value >> BigInt(8 * (length - 1 - index))) & 0xffn));
}

/** `198.18.5.1/24` → network 198.18.5.0, length 24. */
export function parseIpv4Prefix(cidr: string): Ipv4Prefix {
  const [address, length] = ipaddr.IPv4.parseCIDR(cidr);
  const size = 2 ** (32 - length);
  const value = Number(toBigInt(address.toByteArray()));
  return { network: value - (value % size), length };
}

/** The `offset`-th address of the prefix (offset 1 = .1 in a /24); throws past the last usable one. */
export function ipv4Host(prefix: Ipv4Prefix, offset: number): string {
  const size = 2 ** (32 - prefix.length);
  const network = ipaddr.fromByteArray(fromBigInt(BigInt(prefix.network), 4)).toString();
  if (offset < 1 || offset > size - 2) throw new Error(`host offset ${offset} does not fit in ${network}/${prefix.length}`);
  return ipaddr.fromByteArray(fromBigInt(BigInt(prefix.network + offset), 4)).toString();
}

/** The `offset`-th address of an IPv6 prefix given as `addr/len` (any host bits are cleared first). */
export function ipv6Host(cidr: string, offset: number): string {
  const [address, length] = ipaddr.IPv6.parseCIDR(cidr);
  if (length > 126) throw new Error(`not an IPv6 prefix with room for hosts: ${cidr}`);
  const hostBits = BigInt(128 - length);
  if (BigInt(offset) >= 1n << hostBits) throw new Error(`host offset ${offset} does not fit in ${cidr}`);
  const network = (toBigInt(address.toByteArray()) >> hostBits) << hostBits;
  return ipaddr.fromByteArray(fromBigInt(network + BigInt(offset), 16)).toString();
}
