import assert from 'node:assert/strict';
import { sleep, waitFor } from '../../test/wait.js';
import { TlsEtcdCluster } from '../lab/etcd-cluster.js';
import { NetnsLab, startPing, waitForSubnetEnv, type LabContainer } from '../lab/index.js';
import { netnsFactory, useLabs } from './suite.js';
import { agentArgs, kernelState, meshFailures, metrics, metricValue } from './cluster.js';

describe('e2e: a 3-member etcd cluster with TLS, and its failures', function () {
  this.timeout(240_000);
  const track = useLabs(netnsFactory);

  it('carries on when the member it talks to dies, rides out a 30 s outage of all members, and recovers by itself', async function () {
    const lab = await track(NetnsLab.create({ hosts: 3 }));
    const etcd = await TlsEtcdCluster.start(lab);
    const seeded = await etcd.etcdctl(
      `put /coreos.com/network/config '${JSON.stringify({ Network: '198.18.0.0/16', Backend: { Type: 'vxlan' } })}'`,
    );
    assert.equal(seeded.code, 0, seeded.stderr);
    const args = agentArgs({ agentArgs: etcd.agentFlags });
    const [h1, h2, h3] = [lab.hosts[0], lab.hosts[1], lab.hosts[2]];
    for (const host of [h1, h2]) await lab.startAgent(host, args);
    for (const host of [h1, h2]) await waitForSubnetEnv(lab, host);
    const containers: LabContainer[] = [...(await lab.addContainers(h1, 1)), ...(await lab.addContainers(h2, 1))];
    assert.deepEqual(await meshFailures(lab, containers), [], 'a working cluster over TLS');

    // The first endpoint is the one every agent starts with; kill it, then a new host must still join.
    await etcd.stopMember(0);
    await lab.startAgent(h3, args);
    await waitForSubnetEnv(lab, h3, { timeoutMs: 30_000 });
    containers.push(...(await lab.addContainers(h3, 1)));
    await waitFor(async () => (await meshFailures(lab, containers)).length === 0, 'a full mesh with the new host', 20_000, 250);
    await etcd.restartMember(0);
    await etcd.waitHealthy([0, 1, 2]);

    // Every member down for 30 s: the data plane does not depend on etcd.
    const pinger = startPing(lab, containers[0], containers[2].ip, { interval: 0.05 });
    await Promise.all([0, 1, 2].map((index) => etcd.stopMember(index)));
    await sleep(30_000);
    const unreachable = metricValue(await metrics(lab, h1), 'weft_etcd_reachable');
    await Promise.all([0, 1, 2].map((index) => etcd.restartMember(index)));
    await etcd.waitHealthy([0, 1, 2]);
    const outage = await pinger.stop();
    assert.ok(outage.transmitted > 300, `the ping ran through the outage (sent ${outage.transmitted})`);
    assert.equal(outage.transmitted - outage.received, 0, 'no ping lost while etcd was down');
    assert.equal(unreachable, 0, 'the agents noticed the outage');

    // Recovered by themselves: they see etcd again and follow a change made after the outage.
    await waitFor(async () => metricValue(await metrics(lab, h1), 'weft_etcd_reachable') === 1, 'h1 to reach etcd again', 30_000, 250);
    const fake = JSON.stringify({ PublicIP: '198.19.7.7', BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: '0a:00:00:07:07:07' } });
    const put = await etcd.etcdctl(`put /coreos.com/network/subnets/198.18.251.0-24 '${fake}'`);
    assert.equal(put.code, 0, put.stderr);
    for (const host of [h1, h2, h3]) {
      await waitFor(
        async () => (await kernelState(lab, host)).routes.includes('198.18.251.0/24'),
        `${host.name} to program a peer added after the outage`,
        30_000,
        250,
      );
    }
  });
});
