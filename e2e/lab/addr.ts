/** The little address arithmetic the lab needs (kept here so the lab does not depend on the code it tests). */

export interface Ipv4Prefix {
  /** Network address as an unsigned 32-bit number. */
  network: number;
  length: number;
}

export function parseIpv4(address: string): number {
  const parts = address.split('.');
  if (parts.length !== 4 || parts.some((part) => !/^\d{1,3}$/.test(part) || Number(part) > 255)) {
    throw new Error(`not an IPv4 address: ${address}`);
  }
  return parts.reduce((value, part) => value * 256 + Number(part), 0);
}

export function formatIpv4(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join('.');
}

/** `198.18.5.1/24` → network 198.18.5.0, length 24. */
export function parseIpv4Prefix(cidr: string): Ipv4Prefix {
  const [address, lengthText] = cidr.split('/');
  const length = Number(lengthText);
  if (address === undefined || !Number.isInteger(length) || length < 0 || length > 32) throw new Error(`not an IPv4 prefix: ${cidr}`);
  const size = 2 ** (32 - length);
  const value = parseIpv4(address);
  return { network: value - (value % size), length };
}

/** The `offset`-th address of the prefix (offset 1 = .1 in a /24); throws past the last usable one. */
export function ipv4Host(prefix: Ipv4Prefix, offset: number): string {
  const size = 2 ** (32 - prefix.length);
  if (offset < 1 || offset > size - 2) throw new Error(`host offset ${offset} does not fit in ${formatIpv4(prefix.network)}/${prefix.length}`);
  return formatIpv4(prefix.network + offset);
}

function parseIpv6(address: string): bigint {
  const [head = '', tail] = address.split('::');
  const groups = (text: string): string[] => (text === '' ? [] : text.split(':'));
  const left = groups(head);
  const right = tail === undefined ? [] : groups(tail);
  const missing = 8 - left.length - right.length;
  if ((tail === undefined && missing !== 0) || missing < 0) throw new Error(`not an IPv6 address: ${address}`);
  const all = [...left, ...Array<string>(missing).fill('0'), ...right];
  return all.reduce((value, group) => {
    if (!/^[0-9a-fA-F]{1,4}$/.test(group)) throw new Error(`not an IPv6 address: ${address}`);
    return (value << 16n) | BigInt(parseInt(group, 16));
  }, 0n);
}

function formatIpv6(value: bigint): string {
  const groups = Array.from({ length: 8 }, (_, index) => Number((value >> BigInt(16 * (7 - index))) & 0xffffn).toString(16));
  // Compress the longest run of zero groups (RFC 5952).
  let bestStart = -1;
  let bestLength = 1;
  for (let start = 0; start < 8; ) {
    if (groups[start] !== '0') {
      start++;
      continue;
    }
    let end = start;
    while (end < 8 && groups[end] === '0') end++;
    if (end - start > bestLength) [bestStart, bestLength] = [start, end - start];
    start = end;
  }
  if (bestStart < 0) return groups.join(':');
  return `${groups.slice(0, bestStart).join(':')}::${groups.slice(bestStart + bestLength).join(':')}`;
}

/** The `offset`-th address of an IPv6 prefix given as `addr/len` (any host bits are cleared first). */
export function ipv6Host(cidr: string, offset: number): string {
  const [address, lengthText] = cidr.split('/');
  const length = Number(lengthText);
  if (address === undefined || !Number.isInteger(length) || length < 0 || length > 126) throw new Error(`not an IPv6 prefix: ${cidr}`);
  const hostBits = BigInt(128 - length);
  const network = (parseIpv6(address) >> hostBits) << hostBits;
  if (BigInt(offset) >= 1n << hostBits) throw new Error(`host offset ${offset} does not fit in ${cidr}`);
  return formatIpv6(network + BigInt(offset));
}
