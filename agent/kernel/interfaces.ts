/**
 * The host's interfaces and default routes as `ip -j` reports them, read through an injectable command
 * runner so that tests can point it at a network namespace.
 */
import { IpAddress, Prefix, type Family } from '../../common/cidr.js';
import { createCommandRunner, runChecked, type CommandRunner } from '../host/command.js';
import { InterfaceError } from '../host/errors.js';

export interface LinkAddress {
  address: IpAddress;
  /** The on-link prefix (address masked to its prefix length). */
  prefix: Prefix;
  /** "global", "link", "host", … */
  scope: string;
  /** True for IPv6 addresses that failed duplicate address detection. */
  dadFailed: boolean;
}

export interface InterfaceInfo {
  name: string;
  index: number;
  mtu: number;
  /** The hardware address for Ethernet-like links, undefined otherwise. */
  mac: string | undefined;
  /** Administratively up. */
  up: boolean;
  loopback: boolean;
  addresses: LinkAddress[];
}

interface IpAddrJson {
  ifindex?: number;
  ifname?: string;
  flags?: string[];
  mtu?: number;
  link_type?: string;
  address?: string;
  addr_info?: { family?: string; local?: string; prefixlen?: number; scope?: string; dadfailed?: boolean }[];
}

interface IpRouteJson {
  dst?: string;
  dev?: string;
  prefsrc?: string;
  metric?: number;
  nexthops?: { dev?: string }[];
}

function parseJson<T>(text: string, what: string): T[] {
  const trimmed = text.trim();
  if (trimmed === '') return [];
  const value: unknown = JSON.parse(trimmed);
  if (!Array.isArray(value)) throw new InterfaceError(`${what}: expected a JSON array`);
  return value as T[];
}

/** Parses `ip -j addr show`. */
export function parseIpAddr(text: string): InterfaceInfo[] {
  return parseJson<IpAddrJson>(text, 'ip -j addr show').flatMap((link): InterfaceInfo[] => {
    if (typeof link.ifname !== 'string' || typeof link.ifindex !== 'number') return [];
    const addresses: LinkAddress[] = [];
    for (const info of link.addr_info ?? []) {
      if ((info.family !== 'inet' && info.family !== 'inet6') || typeof info.local !== 'string' || typeof info.prefixlen !== 'number')
        continue;
      let address: IpAddress;
      try {
        address = IpAddress.parse(info.local);
      } catch {
        continue;
      }
      addresses.push({
        address,
        prefix: Prefix.of(address, info.prefixlen),
        scope: info.scope ?? 'global',
        dadFailed: info.dadfailed === true,
      });
    }
    const mac =
      typeof link.address === 'string' && /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(link.address) && link.link_type !== 'loopback'
        ? link.address.toLowerCase()
        : undefined;
    return [
      {
        name: link.ifname,
        index: link.ifindex,
        mtu: link.mtu ?? 0,
        mac,
        up: (link.flags ?? []).includes('UP'),
        loopback: link.link_type === 'loopback' || (link.flags ?? []).includes('LOOPBACK'),
        addresses,
      },
    ];
  });
}

/** Every link with its addresses, in ifindex order. */
export async function listInterfaces(runner: CommandRunner = createCommandRunner()): Promise<InterfaceInfo[]> {
  return parseIpAddr(await runChecked(runner, ['ip', '-j', 'addr', 'show'])).sort((a, b) => a.index - b.index);
}

/** The device of the main table's default route with the lowest metric (first nexthop for multipath). */
export async function defaultRouteInterface(
  family: Family,
  runner: CommandRunner = createCommandRunner(),
): Promise<{ dev: string; prefsrc: IpAddress | undefined } | undefined> {
  const routes = parseJson<IpRouteJson>(
    await runChecked(runner, ['ip', '-j', `-${family}`, 'route', 'show', 'default']),
    'ip -j route show default',
  );
  let best: { dev: string; prefsrc: IpAddress | undefined; metric: number } | undefined;
  for (const route of routes) {
    const dev = route.dev ?? route.nexthops?.find((hop) => hop.dev !== undefined)?.dev;
    if (dev === undefined) continue;
    const metric = route.metric ?? 0;
    if (best !== undefined && best.metric <= metric) continue;
    let prefsrc: IpAddress | undefined;
    try {
      prefsrc = route.prefsrc === undefined ? undefined : IpAddress.parse(route.prefsrc);
    } catch {
      prefsrc = undefined;
    }
    best = { dev, prefsrc, metric };
  }
  return best && { dev: best.dev, prefsrc: best.prefsrc };
}
