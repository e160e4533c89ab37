/**
 * The line format between the monitor child and KernelMonitor. Routes, neighbours, FDB entries and
 * nexthops, the notifications that come by the ten thousand when weft programs many peers, travel as
 * tab-separated fields (about a third of their JSON size, and split instead of parsed); links and
 * addresses, which are rare, as JSON. Every line decodes back to exactly the KernelChange it came from.
 *
 *   r|n|f|h <TAB> n|d <TAB> fields…        a route, neighbour, FDB entry or nexthop; new or del
 *   {"t":"change","c":…}                   any other change
 *   {"t":"ready"}  {"t":"overrun"}
 */
import type { KernelChange, IpFamily } from './types.js';

const NONE = '-';

const text = (value: string | null): string => value ?? NONE;
const num = (value: number | null): string => (value === null ? NONE : String(value));
const bool = (value: boolean): string => (value ? '1' : '0');

const optText = (field: string): string | null => (field === NONE ? null : field);
const optNum = (field: string): number | null => (field === NONE ? null : Number(field));

/** One line (without the newline) for a change. */
export function encodeChangeLine(c: KernelChange): string {
  const action = c.action === 'new' ? 'n' : 'd';
  switch (c.kind) {
    case 'route': {
      const r = c.route;
      return [
        'r',
        action,
        r.family,
        r.dst,
        text(r.gateway),
        num(r.ifindex),
        bool(r.onlink),
        r.flags,
        r.protocol,
        r.scope,
        r.table,
        r.type,
        num(r.metric),
        text(r.prefsrc),
        bool(r.multipath),
        num(r.nexthopId),
      ].join('\t');
    }
    case 'neighbour': {
      const n = c.neighbour;
      return ['n', action, n.index, n.family, n.ip, text(n.mac), n.state, n.flags, bool(n.permanent)].join('\t');
    }
    case 'fdb': {
      const f = c.fdb;
      return [
        'f',
        action,
        f.index,
        f.mac,
        text(f.dst),
        num(f.vni),
        num(f.port),
        f.state,
        f.flags,
        bool(f.permanent),
        bool(f.self),
        num(f.masterIndex),
      ].join('\t');
    }
    case 'nexthop': {
      const h = c.nexthop;
      return [
        'h',
        action,
        h.id,
        num(h.family),
        text(h.gateway),
        num(h.ifindex),
        bool(h.onlink),
        h.protocol,
        bool(h.blackhole),
        bool(h.group),
        bool(h.fdb),
      ].join('\t');
    }
    default:
      return JSON.stringify({ t: 'change', c });
  }
}

export type MonitorLine = { t: 'ready' } | { t: 'overrun' } | { t: 'change'; c: KernelChange };

/** The message a line carries, or undefined for a line that is not one. */
export function decodeLine(line: string): MonitorLine | undefined {
  if (line.startsWith('{')) {
    try {
      return JSON.parse(line) as MonitorLine;
    } catch {
      return undefined;
    }
  }
  const f = line.split('\t');
  const action = f[1] === 'n' ? 'new' : 'del';
  switch (f[0]) {
    case 'r':
      if (f.length !== 16) return undefined;
      return {
        t: 'change',
        c: {
          kind: 'route',
          action,
          route: {
            family: Number(f[2]) as IpFamily,
            dst: f[3],
            gateway: optText(f[4]),
            ifindex: optNum(f[5]),
            onlink: f[6] === '1',
            flags: Number(f[7]),
            protocol: Number(f[8]),
            scope: Number(f[9]),
            table: Number(f[10]),
            type: Number(f[11]),
            metric: optNum(f[12]),
            prefsrc: optText(f[13]),
            multipath: f[14] === '1',
            nexthopId: optNum(f[15]),
          },
        },
      };
    case 'n':
      if (f.length !== 9) return undefined;
      return {
        t: 'change',
        c: {
          kind: 'neighbour',
          action,
          neighbour: {
            index: Number(f[2]),
            family: Number(f[3]) as IpFamily,
            ip: f[4],
            mac: optText(f[5]),
            state: Number(f[6]),
            flags: Number(f[7]),
            permanent: f[8] === '1',
          },
        },
      };
    case 'f':
      if (f.length !== 12) return undefined;
      return {
        t: 'change',
        c: {
          kind: 'fdb',
          action,
          fdb: {
            index: Number(f[2]),
            mac: f[3],
            dst: optText(f[4]),
            vni: optNum(f[5]),
            port: optNum(f[6]),
            state: Number(f[7]),
            flags: Number(f[8]),
            permanent: f[9] === '1',
            self: f[10] === '1',
            masterIndex: optNum(f[11]),
          },
        },
      };
    case 'h':
      if (f.length !== 11) return undefined;
      return {
        t: 'change',
        c: {
          kind: 'nexthop',
          action,
          nexthop: {
            id: Number(f[2]),
            family: optNum(f[3]) as IpFamily | null,
            gateway: optText(f[4]),
            ifindex: optNum(f[5]),
            onlink: f[6] === '1',
            protocol: Number(f[7]),
            blackhole: f[8] === '1',
            group: f[9] === '1',
            fdb: f[10] === '1',
          },
        },
      };
    default:
      return undefined;
  }
}
