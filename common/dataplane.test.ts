import assert from 'node:assert/strict';
import fc from 'fast-check';
import { IpAddress, Prefix } from './cidr.js';
import { parseNetworkConfig } from './config.js';
import {
  DesiredState,
  countOps,
  desiredFamilyState,
  diffFamilyState,
  emptyFamilyState,
  stableVtepMac,
  vxlanOverhead,
  type DesiredInput,
} from './dataplane.js';
import { decodeLease, type Lease } from './lease.js';

function lease(name: string, publicIP: string, backend = 'vxlan', mac?: string): Lease {
  const value: Record<string, unknown> = { PublicIP: publicIP, ...(backend === '' ? {} : { BackendType: backend }) };
  if (mac !== undefined) value.BackendData = { VNI: 1, VtepMAC: mac };
  return decodeLease(name, JSON.stringify(value), false);
}

const VXLAN = parseNetworkConfig('{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"}}');
const DIRECT = parseNetworkConfig('{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan","DirectRouting":true}}');
const HOSTGW = parseNetworkConfig('{"Network":"198.18.0.0/16","Backend":{"Type":"host-gw"}}');
const UDP = parseNetworkConfig('{"Network":"198.18.0.0/16","Backend":{"Type":"udp"}}');
const LOCAL = [Prefix.parse('192.0.2.0/24')];

function input(overrides: Partial<DesiredInput>): DesiredInput {
  return {
    family: 4,
    config: VXLAN,
    own: lease('198.18.1.0-24', '192.0.2.11', 'vxlan', '0a:00:00:00:00:01'),
    peers: [],
    localPrefixes: LOCAL,
    ...overrides,
  };
}

describe('desired data-plane state', function () {
  it('programs a vxlan peer as neighbour .0 → VtepMAC, FDB VtepMAC → PublicIP and an onlink route via .0', function () {
    const { state, skipped } = desiredFamilyState(input({ peers: [lease('198.18.2.0-24', '192.0.2.12', 'vxlan', '0a:00:00:00:00:02')] }));
    assert.deepEqual(skipped, []);
    assert.deepEqual([...state.neighbours.values()], [{ ip: '198.18.2.0', mac: '0a:00:00:00:00:02' }]);
    assert.deepEqual([...state.fdb.values()], [{ mac: '0a:00:00:00:00:02', dst: '192.0.2.12' }]);
    assert.deepEqual([...state.routes.values()], [{ dst: '198.18.2.0/24', gateway: '198.18.2.0', device: 'overlay', onlink: true }]);
  });

  it('with DirectRouting routes a directly connected peer via its PublicIP and tunnels the others', function () {
    const peers = [lease('198.18.2.0-24', '192.0.2.12', 'vxlan', '0a:00:00:00:00:02'), lease('198.18.3.0-24', '203.0.113.5', 'vxlan', '0a:00:00:00:00:03')];
    const { state } = desiredFamilyState(input({ config: DIRECT, peers }));
    assert.deepEqual(state.routes.get('198.18.2.0/24'), { dst: '198.18.2.0/24', gateway: '192.0.2.12', device: 'public', onlink: false });
    assert.equal(state.routes.get('198.18.3.0/24')?.device, 'overlay');
    assert.deepEqual([...state.fdb.keys()], ['0a:00:00:00:00:03']);
  });

  it("udp programs flanneld's udp leases (no BackendType) like its own; vxlan skips them, saying why", function () {
    const flanneldUdp = decodeLease('198.18.2.0-24', '{"PublicIP":"192.0.2.12","PublicIPv6":null}', false);
    const own = decodeLease('198.18.1.0-24', '{"PublicIP":"192.0.2.11","PublicIPv6":null}', false);
    const udp = desiredFamilyState(input({ config: UDP, own, peers: [flanneldUdp, lease('198.18.3.0-24', '192.0.2.13', 'udp')] }));
    assert.deepEqual(udp.skipped, []);
    assert.deepEqual([...udp.state.routes.keys()], ['198.18.2.0/24', '198.18.3.0/24']);
    const vxlan = desiredFamilyState(input({ peers: [flanneldUdp] }));
    assert.deepEqual(vxlan.skipped.map(({ reason }) => reason), ['names no BackendType (a flanneld udp lease), not vxlan']);
  });

  it('host-gw routes via the PublicIP and refuses a peer that is not directly connected, saying why', function () {
    const own = lease('198.18.1.0-24', '192.0.2.11', 'host-gw');
    const peers = [lease('198.18.2.0-24', '192.0.2.12', 'host-gw'), lease('198.18.3.0-24', '203.0.113.5', 'host-gw')];
    const { state, skipped } = desiredFamilyState(input({ config: HOSTGW, own, peers }));
    assert.deepEqual([...state.routes.keys()], ['198.18.2.0/24']);
    assert.equal(state.routes.get('198.18.2.0/24')?.gateway, '192.0.2.12');
    assert.equal(skipped.length, 1);
    assert.match(skipped[0]!.reason, /203\.0\.113\.5 is not on a directly connected subnet/);
  });

  it('never programs our own lease, a peer claiming our public IP, an overlapping or foreign subnet, or another backend', function () {
    const own = input({}).own;
    const peers = [
      own,
      lease('198.18.4.0-24', '192.0.2.11', 'vxlan', '0a:00:00:00:00:04'),
      lease('198.18.1.0-25', '192.0.2.13', 'vxlan', '0a:00:00:00:00:05'),
      lease('198.51.100.0-24', '192.0.2.14', 'vxlan', '0a:00:00:00:00:06'),
      lease('198.18.7.0-24', '192.0.2.15', 'host-gw'),
      lease('198.18.8.0-24', '192.0.2.16', 'vxlan'),
      lease('198.18.9.0-24', '192.0.2.17', 'vxlan', '0a:00:00:00:00:09'),
      lease('198.18.10.0-24', '192.0.2.18', 'vxlan', '0a:00:00:00:00:09'),
    ];
    const { state, skipped } = desiredFamilyState(input({ peers }));
    assert.deepEqual([...state.routes.keys()], ['198.18.9.0/24']);
    const reasons = skipped.map((s) => `${s.lease.name}: ${s.reason}`);
    assert.equal(reasons.length, 6, reasons.join('\n'));
    assert.match(reasons[0]!, /198\.18\.4\.0-24: claims our own public IP/);
    assert.match(reasons[1]!, /overlaps our subnet/);
    assert.match(reasons[2]!, /outside the network/);
    assert.match(reasons[3]!, /uses backend host-gw/);
    assert.match(reasons[4]!, /BackendData is missing/);
    assert.match(reasons[5]!, /VtepMAC 0a:00:00:00:00:09 is already used/);
  });

  it('diffs actual against desired into the minimal add, replace and remove operations', function () {
    const desired = desiredFamilyState(input({
      peers: [lease('198.18.2.0-24', '192.0.2.12', 'vxlan', '0a:00:00:00:00:02'), lease('198.18.3.0-24', '192.0.2.13', 'vxlan', '0a:00:00:00:00:03')],
    })).state;
    assert.equal(countOps(diffFamilyState(desired, desired)), 0);

    const actual = emptyFamilyState();
    actual.neighbours.set('198.18.2.0', { ip: '198.18.2.0', mac: '0a:00:00:00:00:ff' });
    actual.fdb.set('0a:00:00:00:00:02', { mac: '0a:00:00:00:00:02', dst: '192.0.2.12' });
    actual.routes.set('198.18.9.0/24', { dst: '198.18.9.0/24', gateway: '198.18.9.0', device: 'overlay', onlink: true });
    const ops = diffFamilyState(actual, desired);
    assert.deepEqual(ops.neighbours.replace, [{ ip: '198.18.2.0', mac: '0a:00:00:00:00:02' }]);
    assert.deepEqual(ops.neighbours.add, [{ ip: '198.18.3.0', mac: '0a:00:00:00:00:03' }]);
    assert.deepEqual(ops.fdb.add, [{ mac: '0a:00:00:00:00:03', dst: '192.0.2.13' }]);
    assert.deepEqual(ops.fdb.replace, []);
    assert.deepEqual(ops.routes.add.map((r) => r.dst), ['198.18.2.0/24', '198.18.3.0/24']);
    assert.deepEqual(ops.routes.remove.map((r) => r.dst), ['198.18.9.0/24']);
    assert.equal(countOps(ops), 6);
  });

  it('derives a stable, locally administered unicast VtepMAC per public IP and VNI', function () {
    const a = stableVtepMac(IpAddress.parse('192.0.2.11'), 1);
    assert.equal(a, stableVtepMac(IpAddress.parse('192.0.2.11'), 1));
    assert.notEqual(a, stableVtepMac(IpAddress.parse('192.0.2.12'), 1));
    assert.notEqual(a, stableVtepMac(IpAddress.parse('192.0.2.11'), 2));
    assert.match(a, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    const first = parseInt(a.slice(0, 2), 16);
    assert.equal(first & 0x03, 0x02);
    assert.equal(vxlanOverhead(4), 50);
    assert.equal(vxlanOverhead(6), 70);
  });
});

describe('desired state kept one lease at a time (DesiredState)', function () {
  function sorted<T>(map: ReadonlyMap<string, T>): [string, T][] {
    return [...map.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }

  function assertSame(incremental: DesiredState, peers: ReadonlyMap<string, Lease>, context: Omit<DesiredInput, 'peers'>): void {
    const reference = desiredFamilyState({ ...context, peers: peers.values() });
    assert.deepEqual(sorted(incremental.state.neighbours), sorted(reference.state.neighbours));
    assert.deepEqual(sorted(incremental.state.fdb), sorted(reference.state.fdb));
    assert.deepEqual(sorted(incremental.state.routes), sorted(reference.state.routes));
    for (const kind of ['neighbours', 'fdb', 'routes'] as const) {
      assert.equal(incremental.state[kind].size, reference.state[kind].size, `${kind}.size`);
      for (const [key, value] of reference.state[kind]) assert.deepEqual(incremental.state[kind].get(key), value);
    }
    const skips = (list: { lease: Lease; reason: string }[]) => list.map(({ lease: l, reason }) => `${l.name}: ${reason}`).sort();
    assert.deepEqual(skips(incremental.skipped()), skips(reference.skipped));
  }

  it('equals desiredFamilyState over the lease map after every add, change and removal, clashes included', function () {
    // A small pool of subnets, public IPs and MACs, so that random leases clash on VtepMAC, neighbour and route.
    const subnets = ['198.18.2.0-24', '198.18.3.0-24', '198.18.2.0-25', '198.18.4.0-24', '198.18.1.0-25', '198.51.100.0-24', '198.18.5.0-24'];
    const ips = ['192.0.2.12', '192.0.2.13', '203.0.113.5', '192.0.2.11'];
    const macs = ['0a:00:00:00:00:02', '0a:00:00:00:00:03', '0a:00:00:00:00:04', undefined];
    const backends = ['vxlan', 'vxlan', 'vxlan', 'host-gw'];
    const op = fc.record({
      remove: fc.boolean(),
      subnet: fc.constantFrom(...subnets),
      ip: fc.constantFrom(...ips),
      mac: fc.constantFrom(...macs),
      backend: fc.constantFrom(...backends),
    });
    fc.assert(fc.property(fc.constantFrom(VXLAN, DIRECT, HOSTGW), fc.array(op, { maxLength: 40 }), (config, ops) => {
      const context = { family: 4 as const, config, own: input({}).own, localPrefixes: LOCAL };
      const peers = new Map<string, Lease>();
      const incremental = new DesiredState(context);
      for (const step of ops) {
        // the lease watcher's map: a change keeps its place, a removal and a new add goes last
        if (step.remove) {
          peers.delete(step.subnet);
          incremental.delete(step.subnet);
        } else {
          const next = lease(step.subnet, step.ip, step.backend, step.mac);
          peers.set(step.subnet, next);
          incremental.set(next);
        }
        assertSame(incremental, peers, context);
      }
      // and built in one go from the same map
      assertSame(new DesiredState(context, peers.values()), peers, context);
    }), { numRuns: 300 });
  });

  it('reports the keys a change may touch, and only those', function () {
    const context = { family: 4 as const, config: VXLAN, own: input({}).own, localPrefixes: LOCAL };
    const incremental = new DesiredState(context, [lease('198.18.2.0-24', '192.0.2.12', 'vxlan', '0a:00:00:00:00:02')]);
    incremental.takeDirty();
    incremental.set(lease('198.18.3.0-24', '192.0.2.13', 'vxlan', '0a:00:00:00:00:03'));
    const dirty = incremental.takeDirty();
    assert.deepEqual([...dirty.neighbours], ['198.18.3.0']);
    assert.deepEqual([...dirty.fdb], ['0a:00:00:00:00:03']);
    assert.deepEqual([...dirty.routes], ['198.18.3.0/24']);
    incremental.delete('198.18.2.0-24');
    assert.deepEqual([...incremental.takeDirty().routes], ['198.18.2.0/24']);
    assert.equal(incremental.state.routes.size, 1);
  });
});
