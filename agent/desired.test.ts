import assert from 'node:assert/strict';
import fc from 'fast-check';
import { IpAddress, Prefix } from '../common/cidr.js';
import { parseNetworkConfig, type NetworkConfig } from '../common/config.js';
import {
  DesiredState,
  peerPlan,
  stableVtepMac,
  vxlanOverhead,
  type FdbSpec,
  type NeighbourSpec,
  type PeerContext,
  type PeerObjects,
  type RouteSpec,
  type SkippedLease,
  type WireguardPeerSpec,
} from '../common/dataplane.js';
import { decodeLease, type Lease } from '../common/lease.js';
import { hostGwPeerObjects } from './hostgw/desired.js';
import { udpPeerObjects } from './udp/desired.js';
import { vxlanPeerObjects } from './vxlan/desired.js';
import { wireguardPeerObjects } from './wireguard/desired.js';

/** The objects each backend wants per peer, as its Backend.peerObjects gives them. */
function peerObjectsFor(config: NetworkConfig): PeerObjects {
  return { vxlan: vxlanPeerObjects, 'host-gw': hostGwPeerObjects, udp: udpPeerObjects, wireguard: wireguardPeerObjects }[
    config.backend.type
  ];
}

type DesiredInput = PeerContext & { peers: Iterable<Lease> };

interface FamilyState {
  neighbours: Map<string, NeighbourSpec>;
  fdb: Map<string, FdbSpec>;
  routes: Map<string, RouteSpec>;
  wireguardPeers: Map<string, WireguardPeerSpec>;
}

/**
 * The specification DesiredState is tested against: every peer's plan in the peers' order, a VtepMAC or
 * public key staying with its first claimant (the later ones skipped whole), a later neighbour or route
 * winning over an earlier one.
 */
function specifiedState(input: DesiredInput): { state: FamilyState; skipped: SkippedLease[] } {
  const state: FamilyState = { neighbours: new Map(), fdb: new Map(), routes: new Map(), wireguardPeers: new Map() };
  const skipped: SkippedLease[] = [];
  for (const peer of input.peers) {
    const plan = peerPlan(input, peer, peerObjectsFor(input.config));
    if (plan.kind === 'skip') {
      if (!plan.quiet) skipped.push({ lease: peer, reason: plan.reason });
      continue;
    }
    const clash = plan.fdb === undefined ? undefined : state.fdb.get(plan.fdb.mac);
    if (clash !== undefined) {
      skipped.push({ lease: peer, reason: `VtepMAC ${plan.fdb!.mac} is already used by the peer at ${clash.dst}` });
      continue;
    }
    const keyHolder = plan.wireguardPeer === undefined ? undefined : state.wireguardPeers.get(plan.wireguardPeer.publicKey);
    if (keyHolder !== undefined) {
      skipped.push({
        lease: peer,
        reason: `WireGuard public key ${plan.wireguardPeer!.publicKey} is already used by the peer at ${keyHolder.endpoint}`,
      });
      continue;
    }
    if (plan.neighbour !== undefined) state.neighbours.set(plan.neighbour.ip, plan.neighbour);
    if (plan.fdb !== undefined) state.fdb.set(plan.fdb.mac, plan.fdb);
    if (plan.route !== undefined) state.routes.set(plan.route.dst, plan.route);
    if (plan.wireguardPeer !== undefined) state.wireguardPeers.set(plan.wireguardPeer.publicKey, plan.wireguardPeer);
  }
  return { state, skipped };
}

/** DesiredState built in one pass, as plain maps. */
function built(input: DesiredInput): { state: FamilyState; skipped: SkippedLease[] } {
  const { peers, ...context } = input;
  const desired = new DesiredState(context, peerObjectsFor(context.config), peers);
  const { neighbours, fdb, routes, wireguardPeers } = desired.state;
  return {
    state: { neighbours: new Map(neighbours), fdb: new Map(fdb), routes: new Map(routes), wireguardPeers: new Map(wireguardPeers) },
    skipped: desired.skipped(),
  };
}

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
const WIREGUARD = parseNetworkConfig('{"Network":"198.18.0.0/16","Backend":{"Type":"wireguard"}}');
const KEY_A = 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=';
const KEY_B = 'HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=';
const KEY_C = 'TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=';
const OWN_KEY = 'gN65BkIKy1eCE9pP1wdc8ROUtkHLF2PfAqYdyYBz6EA=';

function wgLease(name: string, publicIP: string | undefined, publicKey: string, extra: Record<string, unknown> = {}): Lease {
  return decodeLease(
    name,
    JSON.stringify({ PublicIP: publicIP, BackendType: 'wireguard', BackendData: { PublicKey: publicKey, Port: 51820 }, ...extra }),
    false,
  );
}

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
    const { state, skipped } = built(input({ peers: [lease('198.18.2.0-24', '192.0.2.12', 'vxlan', '0a:00:00:00:00:02')] }));
    assert.deepEqual(skipped, []);
    assert.deepEqual([...state.neighbours.values()], [{ ip: '198.18.2.0', mac: '0a:00:00:00:00:02' }]);
    assert.deepEqual([...state.fdb.values()], [{ mac: '0a:00:00:00:00:02', dst: '192.0.2.12' }]);
    assert.deepEqual([...state.routes.values()], [{ dst: '198.18.2.0/24', gateway: '198.18.2.0', device: 'overlay', onlink: true }]);
  });

  it('with DirectRouting routes a directly connected peer via its PublicIP and tunnels the others', function () {
    const peers = [
      lease('198.18.2.0-24', '192.0.2.12', 'vxlan', '0a:00:00:00:00:02'),
      lease('198.18.3.0-24', '203.0.113.5', 'vxlan', '0a:00:00:00:00:03'),
    ];
    const { state } = built(input({ config: DIRECT, peers }));
    assert.deepEqual(state.routes.get('198.18.2.0/24'), { dst: '198.18.2.0/24', gateway: '192.0.2.12', device: 'public', onlink: false });
    assert.equal(state.routes.get('198.18.3.0/24')?.device, 'overlay');
    assert.deepEqual([...state.fdb.keys()], ['0a:00:00:00:00:03']);
  });

  it("udp programs flanneld's udp leases (no BackendType) like its own; vxlan skips them, saying why", function () {
    const flanneldUdp = decodeLease('198.18.2.0-24', '{"PublicIP":"192.0.2.12","PublicIPv6":null}', false);
    const own = decodeLease('198.18.1.0-24', '{"PublicIP":"192.0.2.11","PublicIPv6":null}', false);
    const udp = built(input({ config: UDP, own, peers: [flanneldUdp, lease('198.18.3.0-24', '192.0.2.13', 'udp')] }));
    assert.deepEqual(udp.skipped, []);
    assert.deepEqual([...udp.state.routes.keys()], ['198.18.2.0/24', '198.18.3.0/24']);
    const vxlan = built(input({ peers: [flanneldUdp] }));
    assert.deepEqual(
      vxlan.skipped.map(({ reason }) => reason),
      ['names no BackendType (a flanneld udp lease), not vxlan'],
    );
  });

  it('host-gw routes via the PublicIP and refuses a peer that is not directly connected, saying why', function () {
    const own = lease('198.18.1.0-24', '192.0.2.11', 'host-gw');
    const peers = [lease('198.18.2.0-24', '192.0.2.12', 'host-gw'), lease('198.18.3.0-24', '203.0.113.5', 'host-gw')];
    const { state, skipped } = built(input({ config: HOSTGW, own, peers }));
    assert.deepEqual([...state.routes.keys()], ['198.18.2.0/24']);
    assert.equal(state.routes.get('198.18.2.0/24')?.gateway, '192.0.2.12');
    assert.equal(skipped.length, 1);
    assert.match(skipped[0].reason, /203\.0\.113\.5 is not on a directly connected subnet/);
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
    const { state, skipped } = built(input({ peers }));
    assert.deepEqual([...state.routes.keys()], ['198.18.9.0/24']);
    const reasons = skipped.map((s) => `${s.lease.name}: ${s.reason}`);
    assert.equal(reasons.length, 6, reasons.join('\n'));
    assert.match(reasons[0], /198\.18\.4\.0-24: claims our own public IP/);
    assert.match(reasons[1], /overlaps our subnet/);
    assert.match(reasons[2], /outside the network/);
    assert.match(reasons[3], /uses backend host-gw/);
    assert.match(reasons[4], /BackendData is missing/);
    assert.match(reasons[5], /VtepMAC 0a:00:00:00:00:09 is already used/);
  });

  it('wireguard (Mode separate): one peer per lease, endpoint PublicIP:Port, AllowedIPs its subnet, no kernel objects', function () {
    const own = wgLease('198.18.1.0-24', '192.0.2.11', OWN_KEY);
    const peers = [
      wgLease('198.18.2.0-24', '192.0.2.12', KEY_A),
      // flanneld before the Port field writes only the key: the network's ListenPort
      decodeLease(
        '198.18.3.0-24',
        JSON.stringify({ PublicIP: '203.0.113.5', BackendType: 'wireguard', BackendData: { PublicKey: KEY_B } }),
        false,
      ),
      decodeLease(
        '198.18.4.0-24',
        JSON.stringify({ PublicIP: '192.0.2.14', BackendType: 'wireguard', BackendData: { PublicKey: KEY_C, Port: 4000 } }),
        false,
      ),
    ];
    const { state, skipped } = built(input({ config: WIREGUARD, own, peers }));
    assert.deepEqual(skipped, []);
    assert.deepEqual(
      [...state.wireguardPeers.values()],
      [
        { publicKey: KEY_A, endpoint: '192.0.2.12:51820', allowedIPs: ['198.18.2.0/24'] },
        { publicKey: KEY_B, endpoint: '203.0.113.5:51820', allowedIPs: ['198.18.3.0/24'] },
        { publicKey: KEY_C, endpoint: '192.0.2.14:4000', allowedIPs: ['198.18.4.0/24'] },
      ],
    );
    assert.equal(state.routes.size + state.neighbours.size + state.fdb.size, 0);
    const custom = parseNetworkConfig('{"Network":"198.18.0.0/16","Backend":{"Type":"wireguard","ListenPort":4444}}');
    assert.equal(built(input({ config: custom, own, peers: [peers[1]] })).state.wireguardPeers.get(KEY_B)!.endpoint, '203.0.113.5:4444');
  });

  it('wireguard: skips a lease without a valid key or port, one with our key, and the later of two with one key, saying why', function () {
    const own = wgLease('198.18.1.0-24', '192.0.2.11', OWN_KEY);
    const bad = (n: number, data: unknown) =>
      decodeLease(`198.18.${n}.0-24`, JSON.stringify({ PublicIP: `192.0.2.${n}`, BackendType: 'wireguard', BackendData: data }), false);
    const peers = [
      bad(90, undefined),
      bad(91, { PublicKey: 'short' }),
      bad(92, { PublicKey: KEY_A, Port: 70000 }),
      bad(93, { PublicKey: KEY_A, Port: '51820' }),
      wgLease('198.18.2.0-24', '192.0.2.12', OWN_KEY),
      wgLease('198.18.3.0-24', '192.0.2.13', KEY_B),
      wgLease('198.18.4.0-24', '192.0.2.14', KEY_B),
      lease('198.18.5.0-24', '192.0.2.15', 'vxlan', '0a:00:00:00:00:05'),
    ];
    const { state, skipped } = built(input({ config: WIREGUARD, own, peers }));
    assert.deepEqual([...state.wireguardPeers.keys()], [KEY_B]);
    assert.equal(state.wireguardPeers.get(KEY_B)!.endpoint, '192.0.2.13:51820');
    assert.deepEqual(
      skipped.map(({ reason }) => reason),
      [
        '198.18.90.0-24: BackendData is missing',
        '198.18.91.0-24: BackendData.PublicKey "short" is not a WireGuard public key',
        '198.18.92.0-24: BackendData.Port 70000 is not a UDP port',
        '198.18.93.0-24: BackendData.Port "51820" is not a UDP port',
        `uses our own public key ${OWN_KEY}`,
        `WireGuard public key ${KEY_B} is already used by the peer at 192.0.2.13:51820`,
        'uses backend vxlan, not wireguard',
      ],
    );
  });

  it('wireguard dual stack: Mode separate gives each family its peers and port; the other modes one device for both', function () {
    const dual = (mode: string) =>
      parseNetworkConfig(
        JSON.stringify({
          Network: '198.18.0.0/16',
          EnableIPv6: true,
          IPv6Network: '2001:db8:100::/48',
          Backend: { Type: 'wireguard', Mode: mode },
        }),
      );
    const value = (ip: string, ipv6: string, key: string, port6 = 51821) =>
      JSON.stringify({
        PublicIP: ip,
        PublicIPv6: ipv6,
        BackendType: 'wireguard',
        BackendData: { PublicKey: key, Port: 51820 },
        BackendV6Data: { PublicKey: key, Port: port6 },
      });
    const own = decodeLease('198.18.1.0-24&2001:db8:100:1::-64', value('192.0.2.11', '2001:db8:0:1::11', OWN_KEY), false);
    const peer = decodeLease('198.18.2.0-24&2001:db8:100:2::-64', value('192.0.2.12', '2001:db8:0:1::12', KEY_A), false);
    const plan = (mode: string, family: 4 | 6) =>
      built({
        family,
        config: dual(mode),
        own,
        peers: [peer],
        localPrefixes: family === 4 ? LOCAL : [Prefix.parse('2001:db8:0:1::/64')],
      }).state.wireguardPeers.get(KEY_A);
    assert.deepEqual(plan('separate', 4), { publicKey: KEY_A, endpoint: '192.0.2.12:51820', allowedIPs: ['198.18.2.0/24'] });
    assert.deepEqual(plan('separate', 6), { publicKey: KEY_A, endpoint: '[2001:db8:0:1::12]:51821', allowedIPs: ['2001:db8:100:2::/64'] });
    // one device: the IPv4 plane holds the peer with both subnets; the IPv6 plane programs nothing itself
    const both = ['198.18.2.0/24', '2001:db8:100:2::/64'];
    assert.deepEqual(plan('ipv4', 4), { publicKey: KEY_A, endpoint: '192.0.2.12:51820', allowedIPs: both });
    assert.deepEqual(plan('ipv6', 4), { publicKey: KEY_A, endpoint: '[2001:db8:0:1::12]:51821', allowedIPs: both });
    // auto: IPv4 unless the peer's IPv4 address is private (RFC 1918) and its IPv6 one is not
    assert.deepEqual(plan('auto', 4), { publicKey: KEY_A, endpoint: '192.0.2.12:51820', allowedIPs: both });
    for (const mode of ['ipv4', 'ipv6', 'auto']) assert.equal(plan(mode, 6), undefined);
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
    const reference = specifiedState({ ...context, peers: peers.values() });
    assert.deepEqual(sorted(incremental.state.neighbours), sorted(reference.state.neighbours));
    assert.deepEqual(sorted(incremental.state.fdb), sorted(reference.state.fdb));
    assert.deepEqual(sorted(incremental.state.routes), sorted(reference.state.routes));
    assert.deepEqual(sorted(incremental.state.wireguardPeers), sorted(reference.state.wireguardPeers));
    for (const kind of ['neighbours', 'fdb', 'routes', 'wireguardPeers'] as const) {
      assert.equal(incremental.state[kind].size, reference.state[kind].size, `${kind}.size`);
      for (const [key, value] of reference.state[kind]) assert.deepEqual(incremental.state[kind].get(key), value);
    }
    const skips = (list: { lease: Lease; reason: string }[]) => list.map(({ lease: l, reason }) => `${l.name}: ${reason}`).sort();
    assert.deepEqual(skips(incremental.skipped()), skips(reference.skipped));
  }

  it('equals specifiedState over the lease map after every add, change and removal, clashes included', function () {
    // A small pool of subnets, public IPs and MACs, so that random leases clash on VtepMAC, neighbour and route.
    const subnets = [
      '198.18.2.0-24',
      '198.18.3.0-24',
      '198.18.2.0-25',
      '198.18.4.0-24',
      '198.18.1.0-25',
      '198.51.100.0-24',
      '198.18.5.0-24',
    ];
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
    fc.assert(
      fc.property(fc.constantFrom(VXLAN, DIRECT, HOSTGW), fc.array(op, { maxLength: 40 }), (config, ops) => {
        const context = { family: 4 as const, config, own: input({}).own, localPrefixes: LOCAL };
        const peers = new Map<string, Lease>();
        const incremental = new DesiredState(context, peerObjectsFor(context.config));
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
        assertSame(new DesiredState(context, peerObjectsFor(context.config), peers.values()), peers, context);
      }),
      { numRuns: 300 },
    );
  });

  it('wireguard: equals specifiedState after every change, a public key staying with its first claimant', function () {
    const keys = [KEY_A, KEY_B, KEY_C, OWN_KEY, 'not-a-key'];
    const op = fc.record({
      remove: fc.boolean(),
      subnet: fc.constantFrom('198.18.2.0-24', '198.18.3.0-24', '198.18.4.0-24', '198.18.1.0-24', '198.18.5.0-24'),
      ip: fc.constantFrom('192.0.2.12', '192.0.2.13', '203.0.113.5', '192.0.2.11'),
      key: fc.constantFrom(...keys),
    });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
        const context = {
          family: 4 as const,
          config: WIREGUARD,
          own: wgLease('198.18.1.0-24', '192.0.2.11', OWN_KEY),
          localPrefixes: LOCAL,
        };
        const peers = new Map<string, Lease>();
        const incremental = new DesiredState(context, peerObjectsFor(context.config));
        for (const step of ops) {
          if (step.remove) {
            peers.delete(step.subnet);
            incremental.delete(step.subnet);
          } else {
            const next = wgLease(step.subnet, step.ip, step.key);
            peers.set(step.subnet, next);
            incremental.set(next);
          }
          assertSame(incremental, peers, context);
          const dirty = incremental.takeDirty();
          for (const key of dirty.wireguardPeers) assert.ok(keys.includes(key));
        }
        assertSame(new DesiredState(context, peerObjectsFor(context.config), peers.values()), peers, context);
      }),
      { numRuns: 300 },
    );
  });

  it('reports the keys a change may touch, and only those', function () {
    const context = { family: 4 as const, config: VXLAN, own: input({}).own, localPrefixes: LOCAL };
    const incremental = new DesiredState(context, peerObjectsFor(context.config), [
      lease('198.18.2.0-24', '192.0.2.12', 'vxlan', '0a:00:00:00:00:02'),
    ]);
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
