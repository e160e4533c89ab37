/** The data-plane scenarios, for any ClusterDriver (see suite.ts). */
import assert from 'node:assert/strict';
import { sleep, waitFor } from '../../test/wait.js';
import {
  etcdGet,
  httpGet,
  leaseOf,
  seedNetworkConfig,
  startPing,
  waitForSubnetEnv,
  type ClusterDriver,
  type LabContainer,
  type LabHost,
} from '../lab/index.js';
import { agentArgs, HEALTHZ_PORT, kernelState, meshFailures, metrics, metricValue, peersProgrammed, startCluster } from './cluster.js';
import { requireHosts, useLabs, type DriverFactory } from './suite.js';

/** Restoring or removing kernel state must come from events, not the periodic resync (5 s in scenarios). */
const HEAL_DEADLINE_MS = 2000;

function subnetOfEnv(subnet: string): string {
  return subnet.replace(/\.1\//, '.0/');
}

export function dataplaneScenarios(factory: DriverFactory): void {
  describe(`e2e: kernel data plane in the ${factory.name}`, function () {
    this.timeout(180_000);

    const track = useLabs(factory);

    async function create(context: Mocha.Context, hosts: number): Promise<ClusterDriver> {
      requireHosts(context, factory, hosts);
      return track(factory.create({ hosts }));
    }

    for (const backend of ['vxlan', 'host-gw'] as const) {
      it(`full-mesh container ping on 3 hosts with ${backend}`, async function () {
        const lab = await create(this, 3);
        const containers = await startCluster(lab, { backend, containers: 2 });
        assert.deepEqual(await meshFailures(lab, containers), []);
        for (const host of lab.hosts) assert.equal(await peersProgrammed(lab, host, backend), 2, `${host.name} programs both peers`);
        const ready = await httpGet(lab, lab.hosts[0], `http://127.0.0.1:${HEALTHZ_PORT}/readyz`);
        assert.equal(ready.status, 200, ready.body);
        const forwarding = await lab.exec(lab.hosts[0], 'cat /proc/sys/net/ipv4/ip_forward');
        assert.equal(forwarding.stdout.trim(), '1');
        const rules = await lab.exec(lab.hosts[0], 'iptables -S WEFT-FORWARD');
        assert.match(rules.stdout, /-A WEFT-FORWARD -s 198\.18\.0\.0\/16 .*-j ACCEPT/);
        const text = await metrics(lab, lab.hosts[0]);
        for (const name of [
          'weft_peers',
          'weft_reconcile_runs_total',
          'weft_reconcile_duration_seconds_count',
          'weft_netlink_operations_total',
          'weft_watch_resyncs_total',
          'weft_lease_expiry_timestamp_seconds',
          'weft_etcd_reachable',
        ]) {
          assert.match(text, new RegExp(`^${name}(\\{| )`, 'm'), `/metrics has ${name}`);
        }
        assert.equal(metricValue(text, 'weft_etcd_reachable'), 1);
        assert.ok((metricValue(text, 'weft_lease_expiry_timestamp_seconds') ?? 0) > Date.now() / 1000 + 23 * 3600);
      });
    }

    it('converges to a full mesh when 6 agents start at the same instant, 5 times over', async function () {
      this.timeout(600_000);
      for (let round = 1; round <= 5; round++) {
        const lab = await create(this, 6);
        const containers = await startCluster(lab, { simultaneous: true });
        const subnets = new Set((await Promise.all(lab.hosts.map((host) => lab.readSubnetEnv(host)))).map((env) => env?.subnet));
        assert.equal(subnets.size, 6, `round ${round}: six distinct subnets`);
        await waitFor(
          async () => {
            const counts = await Promise.all(lab.hosts.map((host) => peersProgrammed(lab, host, 'vxlan')));
            return counts.every((count) => count === 5);
          },
          `round ${round}: every host programs its 5 peers`,
          10_000,
          100,
        );
        assert.deepEqual(await meshFailures(lab, containers), [], `round ${round}`);
        await lab.destroy();
      }
    });

    it('keeps a 10 ms ping flowing while an agent is killed with SIGKILL and restarted, and keeps its subnet', async function () {
      const lab = await create(this, 2);
      const [a, b] = (await startCluster(lab)) as [LabContainer, LabContainer];
      const h1 = lab.hosts[0];
      const before = await lab.readSubnetEnv(h1);
      const macBefore = (await leaseOf(lab, h1.publicIp))?.attrs?.BackendData;
      assert.deepEqual(await meshFailures(lab, [a, b]), [], 'the containers reach each other before the kill');
      const pinger = startPing(lab, a, b.ip, { interval: 0.01 });
      await sleep(500);
      lab.agent(h1)!.kill('SIGKILL');
      await lab.agent(h1)!.exited;
      await sleep(1000);
      await lab.startAgent(h1, agentArgs());
      await waitFor(
        async () => (await httpGet(lab, h1, `http://127.0.0.1:${HEALTHZ_PORT}/readyz`)).status === 200,
        'the restarted agent to be ready',
      );
      await sleep(500);
      const result = await pinger.stop();
      assert.ok(result.transmitted > 150, `sent ${result.transmitted}`);
      assert.equal(result.transmitted - result.received, 0, `lost ${result.transmitted - result.received} of ${result.transmitted}`);
      assert.equal((await lab.readSubnetEnv(h1))?.subnet, before?.subnet, 'the same subnet after the restart');
      assert.deepEqual((await leaseOf(lab, h1.publicIp))?.attrs?.BackendData, macBefore, 'the same VtepMAC after the restart');
    });

    it("removes a revoked peer's neighbour, FDB entry and route on every host within 2 s, and the other hosts still reach each other", async function () {
      const lab = await create(this, 3);
      const containers = await startCluster(lab);
      const [h1, h2, h3] = [lab.hosts[0], lab.hosts[1], lab.hosts[2]];
      const gone = await leaseOf(lab, h3.publicIp);
      assert.ok(gone?.leaseId);
      const subnet = gone.subnet;
      const gateway = subnet.replace(/\/\d+$/, '');
      const mac = (gone.attrs?.BackendData as { VtepMAC?: string } | undefined)?.VtepMAC;
      assert.ok(mac, JSON.stringify(gone.attrs));
      const escape = (text: string) => text.replace(/\./g, '\\.');
      const route = new RegExp(`^${escape(subnet)} (nhid \\d+ )?via ${escape(gateway)} `, 'm');
      const neighbour = new RegExp(`^${escape(gateway)} lladdr ${mac} PERMANENT`, 'm');
      const fdb = new RegExp(`^${mac} dst ${escape(h3.publicIp)} `, 'm');
      for (const host of [h1, h2]) {
        const state = await kernelState(lab, host);
        assert.match(state.routes, route, `${host.name} routes h3's subnet`);
        assert.match(state.neighbours, neighbour, `${host.name} has h3's neighbour`);
        assert.match(state.fdb, fdb, `${host.name} has h3's FDB entry`);
      }
      const survivors = containers.filter((container) => container.host !== h3);
      assert.equal(survivors.length, 2);
      // The host is gone for good (not restarting), then its lease is revoked, as expiry would.
      lab.agent(h3)!.kill('SIGKILL');
      await lab.agent(h3)!.exited;
      const revoked = await lab.etcdctl(['lease', 'revoke', gone.leaseId]);
      assert.equal(revoked.code, 0, revoked.stderr);
      for (const host of [h1, h2]) {
        await waitFor(
          async () => {
            const state = await kernelState(lab, host);
            return !route.test(state.routes) && !neighbour.test(state.neighbours) && !fdb.test(state.fdb);
          },
          `${host.name} to drop ${subnet}`,
          HEAL_DEADLINE_MS,
          50,
        );
      }
      // only h3's entries went: h1 and h2 still program each other, and their containers reach each other
      for (const [host, peer] of [
        [h1, h2],
        [h2, h1],
      ] as const) {
        const peerSubnet = subnetOfEnv((await lab.readSubnetEnv(peer))!.subnet!);
        const state = await kernelState(lab, host);
        assert.ok(state.routes.includes(peerSubnet), `${host.name} still routes ${peer.name}'s ${peerSubnet}:\n${state.routes}`);
        assert.ok(state.fdb.includes(`dst ${peer.publicIp} `), `${host.name} still has ${peer.name}'s FDB entry:\n${state.fdb}`);
      }
      assert.deepEqual(await meshFailures(lab, survivors), []);
    });

    it('restores a route, an FDB entry and a neighbour deleted by hand within 2 s each', async function () {
      const lab = await create(this, 2);
      const [a, b] = (await startCluster(lab)) as [LabContainer, LabContainer];
      const [h1, h2] = [lab.hosts[0], lab.hosts[1]];
      const peerSubnet = subnetOfEnv((await lab.readSubnetEnv(h2))!.subnet!);
      const peerGateway = peerSubnet.replace(/\/\d+$/, '');
      const fdbLine = (await kernelState(lab, h1)).fdb.split('\n').find((line) => line.includes(`dst ${h2.publicIp}`));
      assert.ok(fdbLine, 'h1 has an FDB entry for h2');
      const mac = fdbLine.split(' ')[0];
      const breakages: [string, (state: Awaited<ReturnType<typeof kernelState>>) => boolean][] = [
        [`ip route del ${peerSubnet}`, (state) => state.routes.includes(peerSubnet)],
        [`bridge fdb del ${mac} dev weft.1 dst ${h2.publicIp}`, (state) => state.fdb.includes(`${mac} dst ${h2.publicIp}`)],
        [`ip neigh del ${peerGateway} dev weft.1`, (state) => state.neighbours.includes(`${peerGateway} lladdr ${mac} PERMANENT`)],
      ];
      for (const [command, restored] of breakages) {
        const result = await lab.exec(h1, command);
        assert.equal(result.code, 0, `${command}: ${result.stderr}`);
        await waitFor(async () => restored(await kernelState(lab, h1)), `"${command}" to be undone`, HEAL_DEADLINE_MS, 50);
      }
      assert.deepEqual(await meshFailures(lab, [a, b]), []);
    });

    it('waits for the network config, answering /readyz 503 until the data plane and subnet.env are ready', async function () {
      const lab = await create(this, 2);
      const h1 = lab.hosts[0];
      await lab.startAgent(h1, agentArgs());
      const notReady = await waitFor(async () => {
        const response = await httpGet(lab, h1, `http://127.0.0.1:${HEALTHZ_PORT}/readyz`);
        return response.status === 0 ? undefined : response;
      }, 'the health endpoint');
      assert.equal(notReady.status, 503);
      assert.deepEqual((JSON.parse(notReady.body) as { notReady: string[] }).notReady.sort(), ['dataplane', 'lease', 'subnetEnv']);
      assert.equal((await httpGet(lab, h1, `http://127.0.0.1:${HEALTHZ_PORT}/healthz`)).status, 200);
      await sleep(1500);
      assert.equal(await lab.readSubnetEnv(h1), undefined, 'no subnet.env without a config');
      assert.equal(lab.agent(h1)!.exit, undefined, 'still running, not exiting in a loop');
      assert.equal(
        lab
          .agent(h1)!
          .log()
          .split('\n')
          .filter((line) => line.includes('network config is missing')).length,
        1,
        'one line, not one per retry',
      );
      const containers = await startCluster(lab, { hostsWithAgents: [h1] });
      assert.equal((await httpGet(lab, h1, `http://127.0.0.1:${HEALTHZ_PORT}/readyz`)).status, 200);
      assert.deepEqual(await meshFailures(lab, containers), []);
    });

    it('keeps pings flowing through a 20 s etcd outage and picks up a host that joined meanwhile', async function () {
      const lab = await create(this, 3);
      await seedAndStart(lab, lab.hosts.slice(0, 2));
      const [a, b] = [...(await lab.addContainers(lab.hosts[0], 1)), ...(await lab.addContainers(lab.hosts[1], 1))] as [
        LabContainer,
        LabContainer,
      ];
      const pinger = startPing(lab, a, b.ip, { interval: 0.05 });
      await lab.stopEtcd();
      const h3 = lab.hosts[2];
      await lab.startAgent(h3, agentArgs());
      await sleep(20_000);
      await lab.startEtcd();
      const result = await pinger.stop();
      assert.ok(result.transmitted > 300, `sent ${result.transmitted}`);
      assert.equal(result.transmitted - result.received, 0, 'no ping lost during the outage');
      await waitForSubnetEnv(lab, h3, { timeoutMs: 30_000 });
      const [c] = await lab.addContainers(h3, 1);
      await waitFor(async () => (await meshFailures(lab, [a, b, c])).length === 0, 'a full mesh including the new host', 15_000, 200);
      const leases = await etcdGet(lab, '/coreos.com/network/subnets/', { prefix: true });
      assert.equal(leases.length, 3);
    });
  });
}

async function seedAndStart(lab: ClusterDriver, hosts: readonly LabHost[]): Promise<void> {
  await seedNetworkConfig(lab, { Network: '198.18.0.0/16', Backend: { Type: 'vxlan' } });
  for (const host of hosts) await lab.startAgent(host, agentArgs());
  for (const host of hosts) await waitForSubnetEnv(lab, host);
}
