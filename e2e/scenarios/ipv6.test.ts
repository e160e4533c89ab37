import assert from 'node:assert/strict';
import { listSubnetLeases, NetnsLab } from '../lab/index.js';
import { netnsFactory, useLabs } from './suite.js';
import { kernelState, meshFailures, startCluster } from './cluster.js';

const DUAL_STACK = (backend: string) => ({
  Network: '198.18.0.0/16',
  EnableIPv6: true,
  IPv6Network: '2001:db8:100::/48',
  Backend: { Type: backend },
});

describe('e2e: IPv6, dual stack and IPv6-only', function () {
  this.timeout(180_000);
  const track = useLabs(netnsFactory);

  for (const backend of ['vxlan', 'host-gw'] as const) {
    it(`dual stack with ${backend}: containers reach each other over IPv4 and IPv6`, async function () {
      const lab = await track(NetnsLab.create({ hosts: 3, ipv6: true }));
      const containers = await startCluster(lab, { config: DUAL_STACK(backend) });
      for (const container of containers)
        assert.match(container.ipv6 ?? '', /^2001:db8:100:/, `${container.name} has an overlay IPv6 address`);
      assert.deepEqual(await meshFailures(lab, containers, { family: 4 }), []);
      assert.deepEqual(await meshFailures(lab, containers, { family: 6 }), []);
      const leases = await listSubnetLeases(lab);
      assert.equal(leases.length, 3);
      for (const lease of leases) {
        assert.match(lease.key, /\/198\.18\.\d+\.0-24&2001:db8:100:[0-9a-f]+::-64$/);
        assert.match(String(lease.attrs?.PublicIPv6), /^2001:db8:0:1::/);
        if (backend === 'vxlan')
          assert.match(String((lease.attrs?.BackendV6Data as { VtepMAC?: string } | undefined)?.VtepMAC), /^[0-9a-f:]{17}$/);
      }
      const forwarding = await lab.exec(lab.hosts[0], 'cat /proc/sys/net/ipv6/conf/all/forwarding');
      assert.equal(forwarding.stdout.trim(), '1');
      const rules = await lab.exec(lab.hosts[0], 'ip6tables -S WEFT-FORWARD');
      assert.match(rules.stdout, /2001:db8:100::\/48/);
      if (backend === 'vxlan') assert.match((await kernelState(lab, lab.hosts[0], 'weft-v6.1')).neighbours, /2001:db8:100:/);
    });
  }

  it('IPv6-only: containers reach each other over IPv6', async function () {
    const lab = await track(NetnsLab.create({ hosts: 3, ipv6: true }));
    const containers = await startCluster(lab, {
      config: { EnableIPv4: false, EnableIPv6: true, IPv6Network: '2001:db8:100::/48', Backend: { Type: 'vxlan' } },
    });
    assert.deepEqual(await meshFailures(lab, containers, { family: 6 }), []);
    const leases = await listSubnetLeases(lab);
    for (const lease of leases) assert.match(lease.key, /\/0\.0\.0\.0-0&2001:db8:100:[0-9a-f]+::-64$/);
  });
});
