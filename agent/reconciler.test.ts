import assert from 'node:assert/strict';
import { scenarioRunner, useNetns, type Netns } from '../test/netns.js';
import type * as Scenarios from './reconciler.scenarios.js';

const run = scenarioRunner<typeof Scenarios>(new URL('./reconciler.scenarios.js', import.meta.url));

function lease(subnet: string, publicIP: string, mac: string, backend = 'vxlan'): { name: string; value: string } {
  return {
    name: subnet.replace('/', '-'),
    value: JSON.stringify({ PublicIP: publicIP, BackendType: backend, BackendData: { VNI: 1, VtepMAC: mac } }),
  };
}

interface Route {
  dst: string;
  gateway?: string;
  dev: string;
  protocol?: string | number;
  flags?: string[];
}

function routes(ns: Netns): Route[] {
  return ns.ipJson<Route[]>('route', 'show');
}

describe('reconcile loop with the VXLAN backend against the kernel', function () {
  this.timeout(60_000);
  const ns = useNetns();

  beforeEach(function () {
    ns().ip('link', 'add', 'pub0', 'type', 'veth', 'peer', 'name', 'pub1');
    ns().ip('addr', 'add', '192.0.2.11/24', 'dev', 'pub0');
    ns().ip('link', 'set', 'pub0', 'up');
    ns().ip('link', 'set', 'pub1', 'up');
  });

  const own = lease('198.18.1.0/24', '192.0.2.11', '02:00:00:00:00:01');
  const peerA = lease('198.18.2.0/24', '192.0.2.12', '0a:00:00:00:00:02');
  const peerB = lease('198.18.3.0/24', '203.0.113.5', '0a:00:00:00:00:03');

  it('replaces a device that differs from the config, programs every peer, and then has nothing left to do', async function () {
    // A device left with the wrong port and MTU, e.g. by an earlier config.
    ns().ip('link', 'add', 'weft.1', 'type', 'vxlan', 'id', '1', 'dstport', '4789', 'dev', 'pub0', 'local', '192.0.2.11');
    const result = await run(ns(), 'reconcileTwice', {
      config: '{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"}}',
      iface: 'pub0',
      own,
      peers: [own, peerA, peerB],
    });
    assert.equal(result.first.failures, 0);
    // per peer: neighbour, FDB entry, nexthop object, route
    assert.equal(result.first.operations, 8);
    assert.equal(result.second.operations, 0, 'the second run finds the kernel as desired');

    const [device] = ns().ipJson<
      { mtu: number; address: string; operstate: string; linkinfo: { info_data: { port: number; id: number; learning: boolean } } }[]
    >('-d', 'link', 'show', 'weft.1');
    assert.equal(device.linkinfo.info_data.port, 8472);
    assert.equal(device.linkinfo.info_data.learning, false);
    assert.equal(device.mtu, 1450);
    assert.equal(device.address, result.mac);
    const addresses = ns().ipJson<{ addr_info: { local: string; prefixlen: number; family: string }[] }[]>('addr', 'show', 'weft.1');
    assert.deepEqual(
      addresses[0].addr_info.filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`),
      ['198.18.1.0/32'],
    );

    const neighbours = ns().ipJson<{ dst: string; lladdr: string; state: string[] }[]>('neigh', 'show', 'dev', 'weft.1');
    assert.deepEqual(neighbours.map((n) => `${n.dst} ${n.lladdr} ${n.state.join(',')}`).sort(), [
      '198.18.2.0 0a:00:00:00:00:02 PERMANENT',
      '198.18.3.0 0a:00:00:00:00:03 PERMANENT',
    ]);
    const fdb = ns().bridgeJson<{ mac: string; dst: string }[]>('fdb', 'show', 'dev', 'weft.1');
    assert.deepEqual(fdb.map((f) => `${f.mac} ${f.dst}`).sort(), ['0a:00:00:00:00:02 192.0.2.12', '0a:00:00:00:00:03 203.0.113.5']);
    const overlay = routes(ns()).filter((r) => r.dev === 'weft.1');
    assert.deepEqual(overlay.map((r) => `${r.dst} via ${r.gateway} ${(r.flags ?? []).join(',')}`).sort(), [
      '198.18.2.0/24 via 198.18.2.0 onlink',
      '198.18.3.0/24 via 198.18.3.0 onlink',
    ]);
  });

  it('is alive for the watchdog while runs end, also in an error (reported as aborted), and not once a run hangs', async function () {
    const result = await run(ns(), 'liveness', {
      config: '{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"}}',
      iface: 'pub0',
      own,
      peers: [own, peerA],
    });
    assert.deepEqual(result, {
      afterRun: true,
      aborted: ['timer: the device cannot be made'],
      afterAbortedRun: true,
      hangingAtOnce: true,
      hangingLater: false,
    });
  });

  it('applies the VNI, Port, MTU, GBP and Learning options, and keeps the VtepMAC when the device is recreated', async function () {
    const config = '{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan","VNI":7,"Port":4790,"MTU":1400,"GBP":true,"Learning":true}}';
    const first = await run(ns(), 'reconcileTwice', { config, iface: 'pub0', own, peers: [peerA] });
    const [device] = ns().ipJson<
      { mtu: number; address: string; linkinfo: { info_data: { port: number; id: number; learning: boolean; gbp?: boolean } } }[]
    >('-d', 'link', 'show', 'weft.7');
    assert.equal(device.linkinfo.info_data.id, 7);
    assert.equal(device.linkinfo.info_data.port, 4790);
    assert.equal(device.linkinfo.info_data.learning, true);
    assert.equal(device.linkinfo.info_data.gbp, true);
    assert.equal(device.mtu, 1350, 'Backend.MTU is the underlay MTU, as in flanneld: the device gets it − 50');
    // As after a reboot: the device is gone; it comes back with the same MAC, so peers' entries stay right.
    ns().ip('link', 'del', 'weft.7');
    const second = await run(ns(), 'reconcileTwice', { config, iface: 'pub0', own, peers: [peerA] });
    assert.equal(second.mac, first.mac);
    assert.equal(ns().ipJson<{ address: string }[]>('link', 'show', 'weft.7')[0].address, first.mac);
    assert.equal(second.first.operations, 4, 'the peer is programmed again on the new device (neighbour, FDB, nexthop, route)');
  });

  it("removes an earlier run's leftovers and never touches what it does not own", async function () {
    const config = '{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan","DirectRouting":true}}';
    await run(ns(), 'reconcileTwice', {
      config,
      iface: 'pub0',
      own,
      peers: [peerA, peerB, lease('198.18.9.0/24', '203.0.113.9', '0a:00:00:00:00:09')],
    });
    // Someone else's route on the public interface, and one tagged with weft's protocol that no lease wants.
    ns().ip('route', 'add', '198.51.100.0/24', 'via', '192.0.2.1', 'dev', 'pub0', 'proto', 'static');
    ns().ip('route', 'add', '198.18.77.0/24', 'via', '192.0.2.77', 'dev', 'pub0', 'proto', '157');
    const result = await run(ns(), 'reconcileTwice', { config, iface: 'pub0', own, peers: [peerA, peerB] });
    assert.equal(result.first.failures, 0);
    assert.equal(result.second.operations, 0);

    const all = routes(ns());
    assert.ok(
      all.some((r) => r.dst === '198.51.100.0/24'),
      'a foreign route stays',
    );
    assert.ok(!all.some((r) => r.dst === '198.18.77.0/24'), 'an unwanted weft route goes');
    assert.ok(!all.some((r) => r.dst === '198.18.9.0/24'), "the departed peer's route goes");
    const direct = all.find((r) => r.dst === '198.18.2.0/24');
    assert.equal(direct?.dev, 'pub0', 'DirectRouting: a directly connected peer is routed via its public IP');
    assert.equal(direct?.gateway, '192.0.2.12');
    assert.equal(all.find((r) => r.dst === '198.18.3.0/24')?.dev, 'weft.1', 'a peer on another subnet is tunnelled');
    const fdb = ns()
      .bridgeJson<{ mac: string }[]>('fdb', 'show', 'dev', 'weft.1')
      .map((f) => f.mac);
    assert.deepEqual(fdb, ['0a:00:00:00:00:03']);
    const neighbours = ns()
      .ipJson<{ dst: string }[]>('neigh', 'show', 'dev', 'weft.1')
      .map((n) => n.dst);
    assert.deepEqual(neighbours, ['198.18.3.0']);
  });
});

describe('reconcile loop: event path, drift repair and route forms (real kernel, in a namespace)', function () {
  this.timeout(60_000);
  const ns = useNetns();

  beforeEach(function () {
    ns().ip('link', 'add', 'pub0', 'type', 'veth', 'peer', 'name', 'pub1');
    ns().ip('addr', 'add', '192.0.2.11/24', 'dev', 'pub0');
    ns().ip('link', 'set', 'pub0', 'up');
    ns().ip('link', 'set', 'pub1', 'up');
  });

  const own = lease('198.18.1.0/24', '192.0.2.11', '02:00:00:00:00:01');
  const peerA = lease('198.18.2.0/24', '192.0.2.12', '0a:00:00:00:00:02');
  const peerB = lease('198.18.3.0/24', '203.0.113.5', '0a:00:00:00:00:03');
  const peerB2 = lease('198.18.3.0/24', '203.0.113.6', '0a:00:00:00:00:33');

  it('applies lease events one peer at a time and repairs what notifications report, without a full run', async function () {
    const { steps, final } = await run(ns(), 'eventPath', { iface: 'pub0', own, peers: [peerA, peerB, peerB2] });
    const step = (name: string) => steps.find((s) => s.step === name)!;
    assert.deepEqual(step('start').kernel.routes, ['198.18.2.0/24 via 198.18.2.0 onlink nhid']);
    // a new peer: neighbour, FDB entry, nexthop and route, and nothing else
    assert.equal(step('add').scope, 'incremental');
    assert.equal(step('add').operations, 4);
    assert.deepEqual(step('add').kernel.routes, ['198.18.2.0/24 via 198.18.2.0 onlink nhid', '198.18.3.0/24 via 198.18.3.0 onlink nhid']);
    // the same lease now names another host: neighbour and FDB entry move, the route stays
    assert.equal(step('change').scope, 'incremental');
    assert.deepEqual(step('change').kernel.neighbours, ['198.18.2.0 0a:00:00:00:00:02', '198.18.3.0 0a:00:00:00:00:33']);
    assert.deepEqual(step('change').kernel.fdb, ['0a:00:00:00:00:02 192.0.2.12', '0a:00:00:00:00:33 203.0.113.6']);
    // a peer leaves: its four objects go
    assert.equal(step('remove').scope, 'incremental');
    assert.equal(step('remove').operations, 4);
    const alone = {
      neighbours: ['198.18.3.0 0a:00:00:00:00:33'],
      fdb: ['0a:00:00:00:00:33 203.0.113.6'],
      routes: ['198.18.3.0/24 via 198.18.3.0 onlink nhid'],
      nexthops: ['198.18.3.0 onlink proto 157'],
    };
    assert.deepEqual(step('remove').kernel, alone);
    // damage reported only by the kernel's notifications is repaired by the event path
    for (const damage of ['route deleted by hand', 'neighbour changed by hand', 'nexthops flushed by hand']) {
      assert.equal(
        step(damage)
          .scope?.split(',')
          .every((scope) => scope === 'incremental'),
        true,
        `${damage}: ${step(damage).scope}`,
      );
      assert.deepEqual(step(damage).kernel, alone, damage);
    }
    assert.equal(final.scope, 'full');
    assert.equal(final.operations, 0, 'a full run afterwards finds the kernel as desired');
  });

  it("installs flannel's inline routes or nexthop objects, converts between them, and leaves no unused nexthop", async function () {
    const { forms } = await run(ns(), 'routeForms', {
      config: '{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"}}',
      iface: 'pub0',
      own,
      peers: [own, peerA, peerB],
    });
    assert.deepEqual(
      forms.map((f) => f.form),
      ['inline', 'nexthop', 'inline'],
    );
    assert.deepEqual(forms[0].kernel.routes, ['198.18.2.0/24 via 198.18.2.0 onlink inline', '198.18.3.0/24 via 198.18.3.0 onlink inline']);
    assert.deepEqual(forms[0].kernel.nexthops, []);
    assert.deepEqual(forms[1].kernel.routes, ['198.18.2.0/24 via 198.18.2.0 onlink nhid', '198.18.3.0/24 via 198.18.3.0 onlink nhid']);
    assert.deepEqual(forms[1].kernel.nexthops, ['198.18.2.0 onlink proto 157', '198.18.3.0 onlink proto 157']);
    assert.equal(forms[1].operations, 4, 'two nexthops added, two routes replaced in place');
    assert.deepEqual(forms[2].kernel.routes, forms[0].kernel.routes);
    assert.deepEqual(forms[2].kernel.nexthops, []);
    assert.equal(forms[2].operations, 4, 'two routes replaced, two nexthops deleted');
    for (const form of forms) assert.equal(form.kernel.neighbours.length, 2);
  });

  it("never replaces a route it does not own: a peer's prefix held by another protocol's route is left alone until that route goes", async function () {
    const result = await run(ns(), 'foreignRoute', {
      iface: 'pub0',
      own,
      peers: [peerA, peerB],
      foreign: ['198.18.2.0/24', 'via', '192.0.2.1', 'dev', 'pub0', 'proto', 'static'],
    });
    assert.equal(result.whileBlocked, '198.18.2.0/24 via 192.0.2.1 dev pub0 proto static', 'the other route is untouched');
    assert.equal(result.first.failures, 0);
    assert.equal(result.first.blockedRoutes, 1);
    assert.equal(result.afterDelete.blockedRoutes, 0);
    assert.deepEqual(
      result.kernel.routes,
      ['198.18.2.0/24 via 198.18.2.0 onlink nhid', '198.18.3.0/24 via 198.18.3.0 onlink nhid'],
      'weft routes the prefix once it is free',
    );
  });
});
