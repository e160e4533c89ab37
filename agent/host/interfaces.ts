/**
 * Choosing the public interface and address the way flanneld does:
 *
 *   1. each --iface (an interface name or one of its IPs), first that matches wins;
 *   2. else each --iface-regex, matched first against every interface's addresses, then against names;
 *   3. with neither: the interface holding --public-ip if it is local, else the interface of the default
 *      route (IPv4, or IPv6 when IPv4 is off).
 *
 * The interface must carry an address of every enabled family (a global one, unless the address was named).
 * --public-ip / --public-ipv6 override the address announced in the lease (publicAddress), for hosts behind
 * NAT; `address` stays the interface's own (the VXLAN local address).
 *
 * The interfaces are read by agent/kernel/interfaces.ts (`ip -j` through the injectable runner, so that it
 * works for a process inside a network namespace and for tests that point the runner at one).
 */
import { IpAddress, Prefix, type Family } from '../../common/cidr.js';
import { defaultRouteInterface, listInterfaces, type InterfaceInfo } from '../kernel/interfaces.js';
import { createCommandRunner, type CommandRunner } from './command.js';
import { InterfaceError } from './errors.js';

export interface InterfaceAddress {
  /** The address on the interface. */
  address: IpAddress;
  prefix: Prefix;
  /** What to announce in the lease: --public-ip(v6) when given, else `address`. */
  publicAddress: IpAddress;
}

export interface PublicInterface {
  name: string;
  index: number;
  mtu: number;
  mac: string | undefined;
  /** The primary family's address: IPv4 unless only IPv6 is enabled. */
  address: IpAddress;
  /** The interface's on-link prefix for `address` (host-gw's "is the peer directly connected"). */
  prefix: Prefix;
  publicAddress: IpAddress;
  ipv4: InterfaceAddress | undefined;
  ipv6: InterfaceAddress | undefined;
}

export interface InterfaceSelection {
  /** --iface, repeatable: interface names or IP addresses. */
  iface?: readonly string[];
  /** --iface-regex, repeatable (JavaScript syntax, unanchored like Go's MatchString). */
  ifaceRegex?: readonly string[];
  /** --public-ip */
  publicIp?: string | undefined;
  /** --public-ipv6 */
  publicIpv6?: string | undefined;
  /** Default true. */
  ipv4?: boolean;
  /** Default false. */
  ipv6?: boolean;
  runner?: CommandRunner;
}

function parseAddress(flag: string, text: string, family?: Family): IpAddress {
  let address: IpAddress;
  try {
    address = IpAddress.parse(text);
  } catch {
    throw new InterfaceError(`${flag} ${text}: not an IP address`);
  }
  if (family !== undefined && address.family !== family) throw new InterfaceError(`${flag} ${text}: not an IPv${family} address`);
  return address;
}

function tryParse(text: string): IpAddress | undefined {
  try {
    return IpAddress.parse(text);
  } catch {
    return undefined;
  }
}

type Pinned = Partial<Record<Family, IpAddress>>;

/** Selects the public interface; throws InterfaceError saying why nothing fits. */
export async function selectPublicInterface(selection: InterfaceSelection = {}): Promise<PublicInterface> {
  const runner = selection.runner ?? createCommandRunner();
  const families: Family[] = [...((selection.ipv4 ?? true) ? [4 as const] : []), ...(selection.ipv6 ? [6 as const] : [])];
  if (families.length === 0) throw new InterfaceError('neither IPv4 nor IPv6 is enabled');
  const publicIps: Pinned = {};
  if (selection.publicIp !== undefined && selection.publicIp !== '') publicIps[4] = parseAddress('--public-ip', selection.publicIp, 4);
  if (selection.publicIpv6 !== undefined && selection.publicIpv6 !== '')
    publicIps[6] = parseAddress('--public-ipv6', selection.publicIpv6, 6);
  const regexes = (selection.ifaceRegex ?? []).map((source) => {
    try {
      return { source, regex: new RegExp(source) };
    } catch (err) {
      throw new InterfaceError(`--iface-regex ${JSON.stringify(source)}: invalid regular expression: ${(err as Error).message}`);
    }
  });
  const links = await listInterfaces(runner);
  const byName = new Map(links.map((link) => [link.name, link]));
  const holding = (address: IpAddress): InterfaceInfo | undefined =>
    links.find((link) => link.addresses.some((a) => a.address.equals(address)));

  /** The interface with one address per enabled family, or why it does not qualify. */
  const build = (link: InterfaceInfo, pinned: Pinned): PublicInterface | string => {
    const perFamily: Partial<Record<Family, InterfaceAddress>> = {};
    for (const family of families) {
      const want = pinned[family];
      const entry = want
        ? link.addresses.find((a) => a.address.equals(want))
        : link.addresses.find((a) => a.address.family === family && a.scope === 'global' && !a.dadFailed);
      if (!entry) return want ? `interface has no address ${want}` : `interface has no global IPv${family} address`;
      perFamily[family] = { address: entry.address, prefix: entry.prefix, publicAddress: publicIps[family] ?? entry.address };
    }
    if (!(link.mtu > 0)) return 'interface reports no MTU';
    const primary = perFamily[families[0]]!;
    return {
      name: link.name,
      index: link.index,
      mtu: link.mtu,
      mac: link.mac,
      address: primary.address,
      prefix: primary.prefix,
      publicAddress: primary.publicAddress,
      ipv4: perFamily[4],
      ipv6: perFamily[6],
    };
  };

  const ifaces = selection.iface ?? [];
  if (ifaces.length > 0 || regexes.length > 0) {
    const reasons: string[] = [];
    for (const spec of ifaces) {
      const ip = tryParse(spec);
      const link = ip ? holding(ip) : byName.get(spec);
      if (!link) {
        reasons.push(`--iface ${spec}: ${ip ? 'no interface has this address' : 'no such interface'}`);
        continue;
      }
      const result = build(link, ip ? { [ip.family]: ip } : {});
      if (typeof result !== 'string') return result;
      reasons.push(`--iface ${spec}: ${link.name}: ${result}`);
    }
    for (const { source, regex } of regexes) {
      // flannel matches addresses first, then names
      const candidates: [InterfaceInfo, Pinned][] = [];
      for (const link of links) {
        for (const a of link.addresses)
          if (families.includes(a.address.family) && regex.test(a.address.toString()))
            candidates.push([link, { [a.address.family]: a.address }]);
      }
      for (const link of links) if (regex.test(link.name)) candidates.push([link, {}]);
      if (candidates.length === 0) reasons.push(`no interface matches --iface-regex ${JSON.stringify(source)}`);
      for (const [link, pinned] of candidates) {
        const result = build(link, pinned);
        if (typeof result !== 'string') return result;
        reasons.push(`--iface-regex ${JSON.stringify(source)} matched ${link.name}: ${result}`);
      }
    }
    throw new InterfaceError(reasons.join('; '));
  }

  // --public-ip on a local interface picks that interface
  for (const family of families) {
    const publicIp = publicIps[family];
    const link = publicIp && holding(publicIp);
    if (link) {
      const result = build(link, { [family]: publicIp });
      if (typeof result !== 'string') return result;
    }
  }
  const family = families[0];
  const route = await defaultRouteInterface(family, runner);
  if (!route) throw new InterfaceError(family === 4 ? 'no default route: give --iface' : 'no default IPv6 route: give --iface');
  const link = byName.get(route.dev);
  if (!link) throw new InterfaceError(`default route device ${route.dev} not found`);
  const pinned: Pinned = route.prefsrc && link.addresses.some((a) => a.address.equals(route.prefsrc!)) ? { [family]: route.prefsrc } : {};
  const result = build(link, pinned);
  if (typeof result === 'string') throw new InterfaceError(`default route interface ${link.name}: ${result}`);
  return result;
}

/** The underlay addresses the host uses on `selected`: per family the interface's address and the public address it announces. */
export function underlayAddresses(selected: PublicInterface): IpAddress[] {
  const all = [selected.ipv4?.address, selected.ipv4?.publicAddress, selected.ipv6?.address, selected.ipv6?.publicAddress];
  return all.filter(
    (address, i): address is IpAddress => address !== undefined && all.findIndex((other) => other?.equals(address) === true) === i,
  );
}

/** The interface as one address family sees it: that family's address, on-link prefix and public address. */
export function familyView(selected: PublicInterface, family: Family): PublicInterface {
  const chosen = family === 4 ? selected.ipv4 : selected.ipv6;
  if (chosen === undefined) throw new InterfaceError(`${selected.name} has no IPv${family} address`);
  return { ...selected, address: chosen.address, prefix: chosen.prefix, publicAddress: chosen.publicAddress };
}
