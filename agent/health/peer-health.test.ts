import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Registry } from 'prom-client';
import type { LeaseChange } from '../../common/lease-arbiter.js';
import { decodeLease, type Lease } from '../../common/lease.js';
import { createLogger } from '../log.js';
import { ProbeMetrics } from './metrics.js';
import { PeerProbing } from './peer-health.js';

function lease(name: string, attrs: { publicIP?: string; publicIPv6?: string; weft: boolean }): Lease {
  const value = {
    ...(attrs.publicIP === undefined ? {} : { PublicIP: attrs.publicIP }),
    ...(attrs.publicIPv6 === undefined ? {} : { PublicIPv6: attrs.publicIPv6 }),
    BackendType: 'vxlan',
    ...(attrs.weft ? { WeftNodeID: `node-${name}` } : {}),
  };
  return decodeLease(name, JSON.stringify(value), false);
}

describe('PeerProbing: the peers to probe, one lease event at a time', function () {
  it('after any series of lease events probes the peers a rebuild from every lease finds', function () {
    // IPv4 leases (a public IP each, some the own host's), one IPv6-only lease (no IPv4 subnet: never probed)
    const names = ['198.18.1.0-24', '198.18.2.0-24', '198.18.3.0-24', '0.0.0.0-0&2001:db8:0:4::-64'];
    const own = lease('198.18.0.0-24', { publicIP: '192.0.2.1', weft: true });
    const step = fc.oneof(
      fc.record({
        kind: fc.constant('put' as const),
        name: fc.constantFrom(...names),
        publicIP: fc.constantFrom('192.0.2.1', '192.0.2.2', '192.0.2.3'),
        weft: fc.boolean(),
      }),
      fc.record({ kind: fc.constant('delete' as const), name: fc.constantFrom(...names) }),
    );
    fc.assert(
      fc.property(fc.boolean(), fc.array(step, { maxLength: 30 }), (flannelPeersAnswerProbes, steps) => {
        const leases = new Map<string, Lease>([[own.name, own]]);
        const probing = new PeerProbing({
          intervalSeconds: 3600, // no probe goes out while the test runs
          maxProbesPerSecond: 100,
          flannelPeersAnswerProbes,
          mtu: 1450,
          leases,
          log: createLogger('silent'),
          metrics: new ProbeMetrics(new Registry()),
        });
        const probed = () =>
          probing
            .report({})
            .peers.map((peer) => `${peer.lease} ${peer.address}`)
            .sort();
        try {
          probing.setOwn(own);
          for (const next of steps) {
            const previous = leases.get(next.name);
            let event: LeaseChange;
            if (next.kind === 'delete') {
              if (previous === undefined) continue;
              leases.delete(next.name);
              event = { kind: 'removed', lease: previous };
            } else {
              const put = next.name.includes('&')
                ? lease(next.name, { publicIPv6: '2001:db8::9', weft: next.weft })
                : lease(next.name, { publicIP: next.publicIP, weft: next.weft });
              leases.set(next.name, put);
              event = previous === undefined ? { kind: 'added', lease: put } : { kind: 'changed', lease: put, previous };
            }
            probing.leaseChanged(event);
            const incremental = probed();
            probing.refresh();
            assert.deepEqual(incremental, probed());
          }
        } finally {
          probing.stop();
        }
      }),
      { numRuns: 100 },
    );
  });
});
