/**
 * The kernel shim against the real kernel: every test gets its own network namespace (removed afterwards,
 * pass or fail), runs a scenario from kernel.scenarios.ts inside it and checks the outcome, often against
 * what `ip -j` / `bridge -j` report. Needs root; skipped otherwise.
 */
import assert from 'node:assert/strict';
import { requireNativeAddon } from '../../test/native.js';
import { scenarioRunner, useNetns, type Netns } from '../../test/netns.js';
import type * as Scenarios from './kernel.scenarios.js';
import { NUD_PERMANENT, RTNH_F_ONLINK, RTPROT_BOOT, RT_TABLE_MAIN } from './types.js';

const run = scenarioRunner<typeof Scenarios>(new URL('./kernel.scenarios.js', import.meta.url));

/** weft's route protocol number in these tests (any value the kernel does not interpret). */
const PROTO = 220;
const DEV = 'weft.1';
const VTEP_MAC = '0e:00:00:00:00:01';

interface IpLink {
  ifindex: number;
  ifname: string;
  flags: string[];
  mtu: number;
  address: string;
  linkinfo?: { info_kind: string; info_data?: Record<string, unknown> };
}
interface IpRoute {
  dst: string;
  gateway?: string;
  dev: string;
  flags: string[];
}
interface IpNeigh {
  dst: string;
  lladdr?: string;
  state: string[];
}
interface BridgeFdb {
  mac: string;
  dst?: string;
  flags: string[];
  state: string;
}

/** The underlay: a veth pair, ve0 = 192.0.2.1/24 (the host's public interface), both ends up. */
function underlay(ns: Netns): void {
  ns.ip('link', 'add', 've0', 'type', 'veth', 'peer', 'name', 've1');
  ns.ip('addr', 'add', '192.0.2.1/24', 'dev', 've0');
  ns.ip('link', 'set', 've0', 'up');
  ns.ip('link', 'set', 've1', 'up');
}

/** flannel's device as `ip` would make it: vxlan id 1 on ve0, nolearning, lease .0 as /32, up. */
function flannelDevice(ns: Netns): void {
  ns.ip(
    'link',
    'add',
    DEV,
    'address',
    VTEP_MAC,
    'mtu',
    '1450',
    'type',
    'vxlan',
    'id',
    '1',
    'dstport',
    '8472',
    'local',
    '192.0.2.1',
    'dev',
    've0',
    'nolearning',
  );
  ns.ip('addr', 'add', '198.18.5.0/32', 'dev', DEV);
  ns.ip('link', 'set', DEV, 'up');
}

describe('agent/kernel: rtnetlink shim (real kernel, in a network namespace)', function () {
  const ns = useNetns();
  beforeEach(function () {
    underlay(ns());
  });

  describe('links', function () {
    it('creates a VXLAN device with every attribute and reads them back', async function () {
      const spec = {
        name: DEV,
        vni: 42,
        port: 4789,
        local: '192.0.2.1',
        parent: 've0',
        learning: false,
        gbp: true,
        mtu: 1400,
        mac: '0e:77:00:00:00:2a',
        up: true,
      };
      const r = await run(ns(), 'createVxlan', spec);
      assert.deepEqual(r.created, r.byName);
      assert.deepEqual(r.created, r.byIndex);
      assert.deepEqual(r.created, r.listed);
      assert.equal(r.missing, null);
      assert.equal(r.duplicate?.code, 'WEFT_NETLINK');
      assert.equal(r.duplicate?.errnoName, 'EEXIST');
      assert.match(
        r.duplicate?.message ?? '',
        /^create vxlan weft\.1 id 42 dstport 4789 local 192\.0\.2\.1 dev ve0 nolearning gbp .*: EEXIST$/,
      );

      const l = r.created;
      assert.equal(l.name, DEV);
      assert.equal(l.kind, 'vxlan');
      assert.equal(l.mtu, 1400);
      assert.equal(l.mac, '0e:77:00:00:00:2a');
      assert.equal(l.up, true);
      assert.deepEqual(l.vxlan, { vni: 42, port: 4789, local: '192.0.2.1', parentIndex: r.parentIndex, learning: false, gbp: true });

      const [ip] = ns().ipJson<IpLink[]>('-d', 'link', 'show', DEV);
      assert.ok(ip);
      assert.equal(ip.ifindex, l.index);
      assert.equal(ip.mtu, 1400);
      assert.equal(ip.address, '0e:77:00:00:00:2a');
      assert.ok(ip.flags.includes('UP'));
      assert.equal(ip.linkinfo?.info_kind, 'vxlan');
      const d = ip.linkinfo?.info_data ?? {};
      assert.equal(d['id'], 42);
      assert.equal(d['port'], 4789);
      assert.equal(d['local'], '192.0.2.1');
      assert.equal(d['link'], 've0');
      assert.equal(d['learning'], false);
      assert.equal(d['gbp'], true);
    });

    it('creates an IPv6-underlay VXLAN device with kernel defaults for what is left unset', async function () {
      ns().ip('addr', 'add', '2001:db8:0:1::1/64', 'dev', 've0', 'nodad');
      const r = await run(ns(), 'createVxlan', { name: 'weft.v6', vni: 7, local: '2001:db8:0:1::1', learning: true });
      assert.deepEqual(r.created.vxlan, { vni: 7, port: 8472, local: '2001:db8:0:1::1', parentIndex: null, learning: true, gbp: false });
      assert.equal(r.created.up, false);
      const [ip] = ns().ipJson<IpLink[]>('-d', 'link', 'show', 'weft.v6');
      assert.equal(ip?.linkinfo?.info_data?.['local6'] ?? ip?.linkinfo?.info_data?.['local'], '2001:db8:0:1::1');
      assert.equal(ip?.linkinfo?.info_data?.['learning'], true);
    });

    it('adopts a device made by `ip` when its attributes match, and names those that differ', async function () {
      flannelDevice(ns());
      const same = { name: DEV, vni: 1, port: 8472, local: '192.0.2.1', parent: 've0', learning: false, mtu: 1450, mac: VTEP_MAC };
      const r = await run(ns(), 'inspectVxlan', {
        name: DEV,
        specs: [
          same,
          { name: DEV, vni: 1 }, // unset optional fields are not compared
          {
            ...same,
            vni: 2,
            port: 4789,
            local: '192.0.2.9',
            parent: 've1',
            learning: true,
            gbp: true,
            mtu: 1400,
            mac: '0e:00:00:00:00:09',
          },
        ],
      });
      assert.deepEqual(r.mismatches, [[], [], ['vni', 'port', 'local', 'parentIndex', 'learning', 'gbp', 'mtu', 'mac']]);
      assert.equal(r.link.up, true);
    });

    it('sets MTU, MAC and up state, deletes the link, and reports ENODEV for missing links', async function () {
      flannelDevice(ns());
      const r = await run(ns(), 'changeAndDeleteLink', { name: DEV, changes: { mtu: 1400, mac: '0e:00:00:00:00:99', up: false } });
      assert.equal(r.before.up, true);
      assert.equal(r.after.up, false);
      assert.equal(r.after.mtu, 1400);
      assert.equal(r.after.mac, '0e:00:00:00:00:99');
      assert.equal(r.afterDelete, null);
      assert.equal(r.deleteAgain?.errnoName, 'ENODEV');
      assert.equal(r.setMissing?.errnoName, 'ENODEV');
      assert.equal(r.setMissing?.message, 'set link ifindex 99999 up: ENODEV');
      assert.deepEqual(ns().ipJson<IpLink[]>('link', 'show', 'type', 'vxlan'), []);
    });
  });

  describe('addresses, neighbours, FDB', function () {
    beforeEach(function () {
      flannelDevice(ns());
    });

    it('adds, lists and deletes addresses', async function () {
      const r = await run(ns(), 'addresses', { name: DEV, cidrs: ['198.18.6.0/32', '2001:db8:100:6::/128'] });
      const cidrs = (xs: { cidr: string }[]): string[] =>
        xs
          .map((a) => a.cidr)
          .filter((c) => !c.startsWith('fe80:'))
          .sort();
      assert.deepEqual(cidrs(r.afterAdd), ['198.18.5.0/32', '198.18.6.0/32', '2001:db8:100:6::/128']);
      assert.equal(r.duplicate?.errnoName, 'EEXIST');
      assert.equal(r.invalid?.code, 'WEFT_INVALID_CIDR');
      assert.deepEqual(cidrs(r.afterDelete), ['198.18.5.0/32', '2001:db8:100:6::/128']);
      assert.equal(r.deleteAgain?.errnoName, 'EADDRNOTAVAIL');
      assert.ok(r.allV4.some((a) => a.cidr === '192.0.2.1/24'));
      assert.ok(r.allV4.every((a) => a.family === 4));
    });

    it('replaces, lists and deletes permanent IPv4 and IPv6 neighbours', async function () {
      const entries = [
        { ip: '198.18.2.0', mac: '0e:00:00:00:00:02' },
        { ip: '198.18.3.0', mac: '0e:00:00:00:00:03' },
        { ip: '2001:db8:100:2::', mac: '0e:00:00:00:00:02' },
      ];
      const r = await run(ns(), 'neighbours', { name: DEV, entries, replaceMac: '0e:00:00:00:00:22' });
      const pairs = (xs: { ip: string; mac: string | null; permanent: boolean }[]): string[] =>
        xs
          .filter((n) => n.permanent)
          .map((n) => `${n.ip} ${n.mac}`)
          .sort();
      assert.deepEqual(pairs(r.afterAdd), entries.map((e) => `${e.ip} ${e.mac}`).sort());
      assert.ok(
        r.afterAdd.filter((n) => n.permanent).every((n) => n.state === NUD_PERMANENT),
        JSON.stringify(r.afterAdd),
      );
      assert.ok(pairs(r.afterReplace).includes('198.18.2.0 0e:00:00:00:00:22'));
      assert.deepEqual(pairs(r.afterDelete), ['198.18.3.0 0e:00:00:00:00:03', '2001:db8:100:2:: 0e:00:00:00:00:02']);
      assert.deepEqual(pairs(r.v6Only), ['2001:db8:100:2:: 0e:00:00:00:00:02']);
      assert.equal(r.deleteAgain?.errnoName, 'ENOENT');

      const ip = ns().ipJson<IpNeigh[]>('neigh', 'show', 'dev', DEV, 'nud', 'permanent');
      assert.deepEqual(ip.map((n) => `${n.dst} ${n.lladdr}`).sort(), pairs(r.afterDelete));
    });

    it('replaces, lists and deletes FDB entries (self, permanent, dst)', async function () {
      const entries = [
        { mac: '0e:00:00:00:00:02', dst: '198.19.0.2' },
        { mac: '0e:00:00:00:00:03', dst: '198.19.0.3' },
      ];
      const r = await run(ns(), 'fdb', { name: DEV, entries, replaceDst: '198.19.0.22' });
      const pairs = (xs: { mac: string; dst: string | null }[]): string[] => xs.map((e) => `${e.mac} ${e.dst}`).sort();
      assert.deepEqual(pairs(r.afterAdd), ['0e:00:00:00:00:02 198.19.0.2', '0e:00:00:00:00:03 198.19.0.3']);
      assert.ok(r.afterAdd.every((e) => e.self && e.permanent && e.vni === null));
      assert.deepEqual(pairs(r.afterReplace), ['0e:00:00:00:00:02 198.19.0.22', '0e:00:00:00:00:03 198.19.0.3']);
      assert.deepEqual(pairs(r.afterDelete), ['0e:00:00:00:00:03 198.19.0.3']);
      assert.equal(r.deleteAgain?.errnoName, 'ENOENT');

      const ip = ns().bridgeJson<BridgeFdb[]>('fdb', 'show', 'dev', DEV);
      assert.deepEqual(
        ip.map((e) => `${e.mac} ${e.dst}`),
        ['0e:00:00:00:00:03 198.19.0.3'],
      );
      assert.equal(ip[0]?.state, 'permanent');
      assert.ok(ip[0]?.flags.includes('self'));
    });
  });

  describe('routes', function () {
    beforeEach(function () {
      flannelDevice(ns());
    });

    it('installs onlink routes via a /32-addressed VXLAN device, tagged with its protocol number', async function () {
      const r = await run(ns(), 'routes', { name: DEV, proto: PROTO });
      const v4 = r.afterAdd.find((x) => x.dst === '198.18.2.0/24');
      assert.ok(v4);
      assert.equal(v4.gateway, '198.18.2.0');
      assert.equal(v4.onlink, true);
      assert.equal(v4.flags & RTNH_F_ONLINK, RTNH_F_ONLINK);
      assert.equal(v4.protocol, PROTO);
      assert.equal(v4.table, RT_TABLE_MAIN);
      assert.equal(v4.scope, 0);
      const v6 = r.afterAdd.find((x) => x.dst === '2001:db8:100:2::/64');
      assert.ok(v6);
      assert.equal(v6.gateway, '2001:db8:100:2::');
      assert.equal(v6.protocol, PROTO);
      assert.equal(v6.onlink, true);
      assert.deepEqual(r.afterAdd.map((x) => x.dst).sort(), ['198.18.2.0/24', '198.18.3.0/24', '2001:db8:100:2::/64']);

      assert.deepEqual(r.afterReplace.map((x) => `${x.dst} via ${x.gateway}`).sort(), [
        '198.18.2.0/24 via 198.18.2.0',
        '198.18.3.0/24 via 198.18.3.1',
      ]);
      assert.equal(r.notOurs?.errnoName, 'ESRCH');
      const left = r.afterDelete
        .filter((x) => x.family === 4)
        .map((x) => `${x.dst} proto ${x.protocol}`)
        .sort();
      assert.deepEqual(left, ['198.18.3.0/24 proto 220', `198.18.4.0/24 proto ${RTPROT_BOOT}`]);
      assert.ok(r.localTable.some((x) => x.dst === '198.18.5.0/32' && x.table === 255));

      const ip = ns().ipJson<IpRoute[]>('route', 'show', 'proto', String(PROTO));
      assert.deepEqual(
        ip.map((x) => `${x.dst} via ${x.gateway} dev ${x.dev} ${x.flags.join(',')}`),
        ['198.18.3.0/24 via 198.18.3.1 dev weft.1 onlink'],
      );
    });

    it('rejects what the kernel refuses with a typed NetlinkError naming the errno and the operation', async function () {
      const r = await run(ns(), 'routeErrors', { name: DEV });
      assert.equal(r.noSuchDevice?.name, 'NetlinkError');
      assert.equal(r.noSuchDevice?.code, 'WEFT_NETLINK');
      assert.equal(r.noSuchDevice?.errnoName, 'ENODEV');
      assert.equal(r.noSuchDevice?.message, 'add route 198.18.9.0/24 via 198.18.9.0 dev ifindex 99999 onlink: ENODEV');
      assert.equal(r.notOnlink?.errnoName, 'ENETUNREACH');
      assert.equal(r.notOnlink?.message, 'add route 198.18.3.0/24 via 198.18.3.0 dev weft.1: ENETUNREACH');
      assert.equal(r.exists?.errnoName, 'EEXIST');
      assert.equal(r.deleteMissing?.errnoName, 'ESRCH');
      assert.equal(r.badPrefix?.code, 'WEFT_INVALID_CIDR');
      assert.equal(r.mixedFamily?.code, 'WEFT_INVALID_CIDR');
      assert.equal(r.fdbMissing?.errnoName, 'ENOENT');
    });
  });

  describe('monitor', function () {
    beforeEach(function () {
      flannelDevice(ns());
    });

    it('in this process (addon): survives an overrun during a flood of changes, reports it, keeps reporting', async function () {
      requireNativeAddon(this);
      const r = await run(ns(), 'monitorFlood', { name: DEV, count: 1000, proto: PROTO, child: false }, { timeoutMs: 60_000 });
      assert.equal(r.inProcess, true);
      assert.deepEqual(r.failures, []);
      assert.ok(r.overruns > 0, JSON.stringify(r));
      console.log(`      monitor: ${r.overruns} overrun(s), ${r.changesBefore} changes delivered before the delete`);
      assert.equal(r.sawDeleteAfterOverrun, true, JSON.stringify(r));
    });

    it('in a child process (no addon): survives an overrun during a flood of changes, reports it, restarts, keeps reporting', async function () {
      const r = await run(ns(), 'monitorFlood', { name: DEV, count: 1000, proto: PROTO, child: true }, { timeoutMs: 60_000 });
      assert.equal(r.inProcess, false);
      assert.deepEqual(r.failures, []);
      assert.ok(r.overruns > 0, JSON.stringify(r));
      console.log(
        `      monitor: ${r.overruns} overrun(s), ${r.restarts} restart(s), ${r.changesBefore} changes delivered before the delete`,
      );
      assert.equal(r.sawDeleteAfterOverrun, true, JSON.stringify(r));
    });

    it("in this process (addon): the kernel drops the echoes of the shim's requests before they reach the socket", async function () {
      requireNativeAddon(this);
      const r = await run(ns(), 'addonDropsEchoesInKernel', { name: DEV });
      assert.ok(r.ports.length > 0, JSON.stringify(r));
      assert.ok(!r.ports.includes(r.shim), `a notification of port ${r.shim} got through: ${JSON.stringify(r)}`);
    });

    for (const child of [false, true]) {
      it(`${child ? 'in a child process' : 'in this process'}: leaves out the echoes of the shim's own requests, not others' changes`, async function () {
        if (!child) requireNativeAddon(this);
        const r = await run(ns(), 'monitorIgnoresOwnRequests', { name: DEV, proto: PROTO, child });
        assert.equal(r.inProcess, !child);
        const seen = r.seen.map((s) => `${s.kind} ${s.action} ${s.key}`);
        assert.deepEqual(seen, [`route new 198.18.4.0/24 proto ${PROTO}`, `route del 198.18.3.0/24 proto ${PROTO}`]);
      });

      it(`${child ? 'in a child process' : 'in this process'}: keeps notifications back until the last resume, then delivers every one in order`, async function () {
        if (!child) requireNativeAddon(this);
        const r = await run(ns(), 'monitorPause', { name: DEV, count: 2000, child }, { timeoutMs: 60_000 });
        assert.equal(r.beforeResume, 0);
        assert.deepEqual(r.ips, r.expected);
      });
    }

    it('reports the route, neighbour and FDB entry someone deletes by hand', async function () {
      const r = await run(ns(), 'monitorDeletes', { name: DEV, proto: PROTO });
      const dels = r.seen.filter((s) => s.action === 'del').map((s) => `${s.kind} ${s.key}`);
      assert.ok(dels.includes(`route 198.18.2.0/24 proto ${PROTO}`), JSON.stringify(r.seen));
      assert.ok(dels.includes('neighbour 198.18.2.0'), JSON.stringify(r.seen));
      assert.ok(dels.includes('fdb 0e:00:00:00:00:02 198.19.0.2'), JSON.stringify(r.seen));
      // the program's own changes are seen too
      const news = r.seen.filter((s) => s.action === 'new').map((s) => `${s.kind} ${s.key}`);
      assert.ok(news.includes(`route 198.18.2.0/24 proto ${PROTO}`), JSON.stringify(r.seen));
      assert.equal(r.route?.gateway, '198.18.2.0');
      assert.equal(r.route?.onlink, true);
    });
  });

  describe('throughput and pipelining', function () {
    beforeEach(function () {
      flannelDevice(ns());
    });

    it('programs 2000 peers (neighbour + FDB + route each) with requests in flight together', async function () {
      const count = 2000;
      const r = await run(ns(), 'bulk', { name: DEV, count, proto: PROTO }, { timeoutMs: 60_000 });
      console.log(
        `      ${count} peers (${3 * count} requests) programmed in ${r.elapsedMs.toFixed(0)} ms; ` +
          `${r.stats.batches} sendmsg batches, up to ${r.stats.maxPending} messages in flight`,
      );
      assert.deepEqual(r.failures, []);
      assert.deepEqual(r.counts, { neighbours: count, fdb: count, routes: count });
      // the dump queued after the first half saw exactly the first half
      assert.equal(r.midDumpRoutes, count / 2);
      assert.ok(r.stats.maxPending > 100, `max in flight ${r.stats.maxPending}`);
      assert.ok(r.stats.batches < r.stats.messages / 10, `${r.stats.batches} batches for ${r.stats.messages} messages`);
      assert.deepEqual(r.sample, {
        neighbour: {
          index: (r.sample.neighbour as { index: number }).index,
          family: 4,
          ip: '198.18.126.0',
          mac: '0e:01:00:00:07:d0',
          state: NUD_PERMANENT,
          flags: 0,
          permanent: true,
        },
        fdb: {
          index: (r.sample.fdb as { index: number }).index,
          mac: '0e:01:00:00:07:d0',
          dst: '198.19.7.208',
          vni: null,
          port: null,
          state: NUD_PERMANENT,
          flags: 2,
          permanent: true,
          self: true,
          masterIndex: null,
        },
        route: {
          family: 4,
          dst: '198.18.126.0/28',
          gateway: '198.18.126.0',
          ifindex: (r.sample.route as { ifindex: number }).ifindex,
          onlink: true,
          flags: RTNH_F_ONLINK,
          protocol: PROTO,
          scope: 0,
          table: RT_TABLE_MAIN,
          type: 1,
          metric: null,
          prefsrc: null,
          multipath: false,
          nexthopId: null,
        },
      });

      assert.equal(ns().ipJson<IpNeigh[]>('neigh', 'show', 'dev', DEV, 'nud', 'permanent').length, count);
      assert.equal(ns().bridgeJson<BridgeFdb[]>('fdb', 'show', 'dev', DEV).length, count);
      assert.equal(ns().ipJson<IpRoute[]>('route', 'show', 'proto', String(PROTO)).length, count);
    });

    it('keeps call order and its in-flight bound with a tiny window', async function () {
      const r = await run(ns(), 'ordering', { name: DEV, proto: PROTO });
      assert.equal(r.routes.length, 50);
      assert.ok(
        r.routes.every((x) => x.gateway?.endsWith('.2')),
        'the last request of each round won',
      );
      assert.ok(r.stats.maxPending <= 4, `max in flight ${r.stats.maxPending}`);
      assert.equal(r.stats.messages, 150 + 3); // + getLink and the IPv4 and IPv6 route dumps
    });

    it('programs many peers through a small window without losing any', async function () {
      const r = await run(ns(), 'bulk', { name: DEV, count: 300, proto: PROTO, options: { maxInFlight: 16, maxBatchMessages: 5 } });
      assert.deepEqual(r.failures, []);
      assert.deepEqual(r.counts, { neighbours: 300, fdb: 300, routes: 300 });
      assert.ok(r.stats.maxPending <= 16);
    });

    it('never overruns its receive buffer: the in-flight window shrinks to what the buffer holds', async function () {
      const count = 3000;
      const r = await run(ns(), 'smallBuffer', { name: DEV, count });
      assert.deepEqual(r.errors, []);
      assert.equal(r.listed, count);
      assert.ok(r.stats.window < 1024 && r.stats.maxPending <= r.stats.window, JSON.stringify(r.stats));
    });

    it('close() drains outstanding requests; destroy() fails them with WEFT_NETLINK_CLOSED; the process exits', async function () {
      const r = await run(ns(), 'closeSemantics', { name: DEV });
      assert.equal(r.drainedOk, 100);
      assert.equal(r.afterClose?.code, 'WEFT_NETLINK_CLOSED');
      assert.deepEqual(r.abortedCodes, ['WEFT_NETLINK_CLOSED']);
    });
  });
});
