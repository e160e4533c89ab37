import assert from 'node:assert/strict';
import fc from 'fast-check';
import { IpAddress } from './cidr.js';
import { parseNetworkConfig } from './config.js';
import { stableVtepMac } from './dataplane.js';
import { arbitrate, LeaseArbiter, type LeaseChange, type LeaseVersion } from './lease-arbiter.js';
import { decodeLease } from './lease.js';

const CONFIG = parseNetworkConfig('{"Network":"198.18.0.0/16","SubnetMax":"198.18.200.0","Backend":{"Type":"vxlan"}}');
const DUAL = parseNetworkConfig(
  '{"Network":"198.18.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8:100::/48","Backend":{"Type":"vxlan"}}',
);
const WIREGUARD = parseNetworkConfig('{"Network":"198.18.0.0/16","Backend":{"Type":"wireguard"}}');

function version(name: string, createRevision: number, publicIP: string, mac: string, extra: Record<string, unknown> = {}): LeaseVersion {
  const value = { PublicIP: publicIP, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: mac }, ...extra };
  return { lease: decodeLease(name, JSON.stringify(value), false), createRevision: BigInt(createRevision) };
}

describe('lease arbiter: which leases every host uses', () => {
  it('takes only subnets the config hands out', () => {
    const problem = (name: string, config = CONFIG) => {
      const [ignored] = arbitrate(config, [version(name, 1, '198.19.0.1', '0a:00:00:00:00:01')]).ignored;
      if (ignored !== undefined) assert.equal(ignored.reason, 'invalid-subnet');
      return ignored?.detail;
    };
    assert.equal(problem('198.18.5.0-24'), undefined);
    assert.equal(problem('198.18.5.0-24&2001:db8:100:5::-64'), undefined, 'a family the config does not enable is not judged');
    assert.equal(problem('198.18.5.128-25'), "198.18.5.128/25 is not a /24 (the config's SubnetLen)");
    assert.equal(problem('198.18.0.0-16'), "198.18.0.0/16 is not a /24 (the config's SubnetLen)");
    assert.equal(problem('198.51.100.0-24'), '198.51.100.0/24 is outside the network 198.18.0.0/16');
    assert.equal(problem('198.18.0.0-24'), '198.18.0.0/24 is outside the range 198.18.1.0/24..198.18.200.0/24 the config hands out');
    assert.equal(problem('198.18.201.0-24'), '198.18.201.0/24 is outside the range 198.18.1.0/24..198.18.200.0/24 the config hands out');
    assert.equal(problem('198.18.5.0-24', DUAL), undefined, 'a lease of one family in a dual-stack network');
    assert.equal(problem('198.18.5.0-24&2001:db8:100:10::-60', DUAL), "2001:db8:100:10::/60 is not a /64 (the config's IPv6SubnetLen)");
    const v6only = decodeLease(
      '0.0.0.0-0&2001:db8:100:5::-64',
      JSON.stringify({ PublicIPv6: '2001:db8:0:1::5', BackendType: 'vxlan' }),
      false,
    );
    assert.equal(
      arbitrate(CONFIG, [{ lease: v6only, createRevision: 1n }]).ignored[0]?.detail,
      "names no subnet of the network's address families",
    );
  });

  it('gives a subnet to the older key, whatever order the keys arrive in, and to the other one once it is gone', () => {
    const victim = version('198.18.5.0-24', 10, '198.19.0.5', '0a:00:00:00:00:05');
    const hijack = version('198.18.5.0-24&2001:db8:100:5::-64', 20, '198.19.0.66', '0a:00:00:00:00:66');
    for (const order of [
      [victim, hijack],
      [hijack, victim],
    ]) {
      const { accepted, ignored } = arbitrate(CONFIG, order);
      assert.deepEqual(
        accepted.map((lease) => lease.name),
        ['198.18.5.0-24'],
      );
      assert.deepEqual(
        ignored.map(({ lease, reason, detail }) => [lease.name, reason, detail]),
        [['198.18.5.0-24&2001:db8:100:5::-64', 'subnet-conflict', '198.18.5.0/24 is held by 198.18.5.0-24, whose key is older']],
      );
    }
    const arbiter = new LeaseArbiter(CONFIG);
    const kinds = (changes: LeaseChange[]) => changes.map((change) => `${change.kind} ${change.lease.name}`);
    assert.deepEqual(kinds(arbiter.set(hijack)), ['added 198.18.5.0-24&2001:db8:100:5::-64']);
    assert.deepEqual(kinds(arbiter.set(victim)), ['removed 198.18.5.0-24&2001:db8:100:5::-64', 'added 198.18.5.0-24']);
    assert.deepEqual(kinds(arbiter.delete('198.18.5.0-24')), ['removed 198.18.5.0-24', 'added 198.18.5.0-24&2001:db8:100:5::-64']);
    // keys written in one transaction share a revision: the lower name wins
    const twin = version('198.18.5.0-24', 20, '198.19.0.5', '0a:00:00:00:00:05');
    assert.deepEqual(
      arbitrate(CONFIG, [hijack, twin]).accepted.map((lease) => lease.name),
      ['198.18.5.0-24'],
    );
  });

  it('gives a VtepMAC to the lease whose public IP derives it, else to the older key; a lease that loses it is ignored whole', () => {
    const derived = stableVtepMac(IpAddress.parse('198.19.0.7'), 1);
    const squatter = version('198.18.6.0-24', 1, '198.19.0.6', derived);
    const owner = version('198.18.7.0-24', 9, '198.19.0.7', derived);
    const first = version('198.18.8.0-24', 3, '198.19.0.8', '0a:00:00:00:00:08');
    const copy = version('198.18.9.0-24', 4, '198.19.0.9', '0a:00:00:00:00:08');
    const { accepted, ignored } = arbitrate(CONFIG, [squatter, owner, copy, first]);
    assert.deepEqual(
      accepted.map((lease) => lease.name),
      ['198.18.7.0-24', '198.18.8.0-24'],
    );
    assert.deepEqual(
      ignored.map(({ lease, reason }) => [lease.name, reason]),
      [
        ['198.18.6.0-24', 'vtep-mac-conflict'],
        ['198.18.9.0-24', 'vtep-mac-conflict'],
      ],
    );
    // MACs of different families, and of backends without a VtepMAC, never clash
    const v6 = decodeLease(
      '198.18.10.0-24&2001:db8:100:a::-64',
      JSON.stringify({
        PublicIP: '198.19.0.10',
        PublicIPv6: '2001:db8:0:1::10',
        BackendType: 'vxlan',
        BackendData: { VNI: 1, VtepMAC: '0a:00:00:00:00:10' },
        BackendV6Data: { VNI: 1, VtepMAC: '0a:00:00:00:00:08' },
      }),
      false,
    );
    assert.equal(arbitrate(DUAL, [first, { lease: v6, createRevision: 5n }]).ignored.length, 0);
  });

  it('gives a WireGuard public key to the older key: a copied key is ignored on every host, whatever order it came in', () => {
    const wireguard = (name: string, revision: number, ip: string, key: string): LeaseVersion => ({
      lease: decodeLease(
        name,
        JSON.stringify({ PublicIP: ip, BackendType: 'wireguard', BackendData: { PublicKey: key, Port: 51820 } }),
        false,
      ),
      createRevision: BigInt(revision),
    });
    const key = 'yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=';
    const owner = wireguard('198.18.11.0-24', 3, '198.19.0.11', key);
    const copy = wireguard('198.18.12.0-24', 8, '198.19.0.12', key);
    const other = wireguard('198.18.13.0-24', 9, '198.19.0.13', 'aAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=');
    for (const order of [
      [owner, copy, other],
      [copy, other, owner],
    ]) {
      const { accepted, ignored } = arbitrate(WIREGUARD, order);
      assert.deepEqual(accepted.map((lease) => lease.name).sort(), ['198.18.11.0-24', '198.18.13.0-24']);
      assert.deepEqual(
        ignored.map(({ lease, reason, detail }) => [lease.name, reason, detail]),
        [['198.18.12.0-24', 'public-key-conflict', `public key ${key} belongs to 198.18.11.0-24: its key is older`]],
      );
    }
  });

  it('ends with the same leases used and ignored as a fresh listing, after any sequence of writes and deletes', () => {
    const names = [
      '198.18.1.0-24',
      '198.18.1.0-24&2001:db8:100:1::-64',
      '198.18.2.0-24',
      '198.18.2.0-24&2001:db8:100:1::-64',
      '0.0.0.0-0&2001:db8:100:2::-64',
      '198.18.3.0-24',
      '198.18.1.128-25',
      '198.18.0.0-16',
      '198.18.3.0-24&2001:db8:100:2::-64',
    ];
    const ips = ['198.19.0.1', '198.19.0.2', '198.19.0.3'];
    const macs = [...ips.map((ip) => stableVtepMac(IpAddress.parse(ip), 1)), '0a:00:00:00:00:01', '0a:00:00:00:00:02'];
    const write = fc.record({
      name: fc.constantFrom(...names),
      revision: fc.integer({ min: 1, max: 12 }),
      ip: fc.constantFrom(...ips),
      mac: fc.constantFrom(...macs),
      mac6: fc.constantFrom(...macs),
      deleted: fc.boolean(),
    });
    fc.assert(
      fc.property(fc.array(write, { maxLength: 30 }), (writes) => {
        const arbiter = new LeaseArbiter(DUAL);
        const used = new Map<string, string>();
        const final = new Map<string, LeaseVersion>();
        for (const { name, revision, ip, mac, mac6, deleted } of writes) {
          let changes: LeaseChange[];
          if (deleted) {
            changes = arbiter.delete(name);
            final.delete(name);
          } else {
            const lease = decodeLease(
              name,
              JSON.stringify({
                PublicIP: name.startsWith('0.0.0.0') ? null : ip,
                PublicIPv6: `2001:db8:0:1::${ip.split('.')[3]}`,
                BackendType: 'vxlan',
                BackendData: { VNI: 1, VtepMAC: mac },
                BackendV6Data: { VNI: 1, VtepMAC: mac6 },
              }),
              false,
            );
            const next = { lease, createRevision: BigInt(revision) };
            changes = arbiter.set(next);
            final.set(name, next);
          }
          for (const change of changes) {
            if (change.kind === 'removed') assert.ok(used.delete(change.lease.name));
            else used.set(change.lease.name, change.kind);
          }
        }
        const fresh = arbitrate(DUAL, [...final.values()].reverse());
        assert.deepEqual([...arbiter.accepted.keys()].sort(), fresh.accepted.map((lease) => lease.name).sort());
        assert.deepEqual([...arbiter.ignored.keys()].sort(), fresh.ignored.map(({ lease }) => lease.name).sort());
        assert.deepEqual([...used.keys()].sort(), [...arbiter.accepted.keys()].sort(), 'the changes reported add up to the leases used');
        // no two leases in use share a subnet or a family's VtepMAC
        const claimed = new Set<string>();
        for (const lease of arbiter.accepted.values()) {
          const claims = [
            lease.subnets.ipv4?.toString(),
            lease.subnets.ipv6?.toString(),
            lease.subnets.ipv4 === undefined ? undefined : `4 ${String(lease.attrs.backendData?.VtepMAC)}`,
            lease.subnets.ipv6 === undefined ? undefined : `6 ${String(lease.attrs.backendV6Data?.VtepMAC)}`,
          ];
          for (const claim of claims) {
            if (claim === undefined) continue;
            assert.ok(!claimed.has(claim), `${claim} is used twice`);
            claimed.add(claim);
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});
