/** weftctl status and doctor on a running cluster, for any ClusterDriver (see suite.ts). */
import assert from 'node:assert/strict';
import { waitFor } from '../../test/wait.js';
import { httpGet, type ClusterDriver, type ExecResult, type LabHost } from '../lab/index.js';
import { agentArgs, HEALTHZ_PORT, startCluster } from './cluster.js';
import { requireHosts, useLabs, type DriverFactory } from './suite.js';

interface StatusRow {
  subnet: string;
  publicIP: string;
  expectedPeers: number;
  agent?: { reachable: boolean; ready?: boolean; peers?: number; etcdReachable?: boolean };
  problems: string[];
}

interface Finding {
  check: string;
  severity: string;
  message: string;
  fix?: string;
}

export function weftctlScenarios(factory: DriverFactory): void {
  describe(`e2e: weftctl status and doctor in the ${factory.name}`, function () {
    this.timeout(180_000);

    const track = useLabs(factory);

    async function create(context: Mocha.Context, hosts: number): Promise<ClusterDriver> {
      requireHosts(context, factory, hosts);
      return track(factory.create({ hosts }));
    }

    function weftctl(cluster: ClusterDriver, host: LabHost, args: readonly string[]): Promise<ExecResult> {
      return cluster.exec(host, cluster.weftctlCommand(args), { timeoutMs: 60_000 });
    }

    function doctor(cluster: ClusterDriver, host: LabHost, ...extra: string[]): Promise<ExecResult> {
      return weftctl(cluster, host, ['doctor', `--subnet-file=${cluster.subnetFile(host)}`, ...extra]);
    }

    it("status joins every lease with its agent's /readyz and /metrics, and names a host whose agent is down", async function () {
      const cluster = await create(this, 3);
      await startCluster(cluster);
      const [h1, , h3] = cluster.hosts as [LabHost, LabHost, LabHost];

      const json = await weftctl(cluster, h1, ['status', `--healthz-port=${HEALTHZ_PORT}`, '-o', 'json']);
      assert.equal(json.code, 0, json.stderr + json.stdout);
      const rows = JSON.parse(json.stdout) as StatusRow[];
      assert.deepEqual(rows.map((row) => row.publicIP).sort(), cluster.hosts.map((host) => host.publicIp).sort());
      for (const row of rows) {
        assert.deepEqual(row.problems, [], row.subnet);
        assert.equal(row.agent?.ready, true, row.subnet);
        assert.equal(row.agent?.peers, 2, row.subnet);
        assert.equal(row.expectedPeers, 2);
        assert.equal(row.agent?.etcdReachable, true);
      }

      const table = await weftctl(cluster, h1, ['status', `--healthz-port=${HEALTHZ_PORT}`]);
      assert.equal(table.code, 0, table.stderr);
      // the hosts' table, then the reachability over the overlay
      const [hostTable, reachability] = table.stdout.trim().split('\n\n');
      const lines = hostTable.split('\n');
      assert.match(lines[0], /^SUBNET\s+PUBLIC IP\s+BACKEND\s+EXPIRES\s+AGENT\s+PEERS\s+PROBLEMS$/);
      assert.match(reachability ?? '', /^REACHABILITY over the overlay/);
      assert.equal(lines.length, 4);
      for (const line of lines.slice(1)) assert.match(line, /^198\.18\.\d+\.0\/24\s+\S+\s+vxlan\s+\S+\s+ready\s+2\/2\s+-$/);

      // h3's agent stops (its lease stays, as after a crash): status says so and exits 1
      await cluster.stopAgent(h3);
      const down = await weftctl(cluster, h1, ['status', `--healthz-port=${HEALTHZ_PORT}`, '-o', 'json']);
      assert.equal(down.code, 1, down.stdout);
      const h3Row = (JSON.parse(down.stdout) as StatusRow[]).find((row) => row.publicIP === h3.publicIp);
      assert.equal(h3Row?.agent?.reachable, false);
      assert.match(
        h3Row?.problems.join() ?? '',
        new RegExp(`agent unreachable at http://${h3.publicIp.replace(/\./g, '\\.')}:${HEALTHZ_PORT}`),
      );
      assert.match(
        down.stderr,
        new RegExp(`1 of 3 hosts have problems: ${h3Row.subnet.replace(/\./g, '\\.')} \\(${h3.publicIp.replace(/\./g, '\\.')}\\)`),
      );
    });

    it('doctor passes on a healthy node, finds a route deleted by hand with its fix, and passes once weftd put it back', async function () {
      const cluster = await create(this, 2);
      await startCluster(cluster);
      const [h1, h2] = cluster.hosts as [LabHost, LabHost];
      const health = `--healthz-port=${HEALTHZ_PORT}`;

      // the agents learn of each other's leases within moments of startCluster's return
      let healthy = await doctor(cluster, h1, health);
      for (let attempt = 0; attempt < 10 && healthy.code !== 0; attempt++) {
        process.stderr.write(`      (doctor not clean yet:\n${healthy.stdout})\n`);
        await new Promise((resolve) => setTimeout(resolve, 500));
        healthy = await doctor(cluster, h1, health);
      }
      assert.equal(healthy.code, 0, healthy.stdout + healthy.stderr);
      for (const check of [
        'etcd',
        'config',
        'interface',
        'lease',
        'ip_forward',
        'device',
        'subnet.env',
        'mtu',
        'dataplane',
        'iptables',
        'ingress',
        'weftd',
      ]) {
        assert.match(healthy.stdout, new RegExp(`^ok\\s+${check.replace('.', '\\.')}\\s`, 'm'), `${check} is ok:\n${healthy.stdout}`);
      }
      assert.match(healthy.stdout, /^ok\s+device\s+weft\.1: VNI 1, port 8472, /m);
      assert.match(healthy.stdout, /^ok\s+dataplane\s+1 routes, 1 FDB entries and 1 neighbours match/m);
      assert.match(healthy.stdout, /^no problems found/m);

      // with weftd stopped (its data plane stays), a route deleted by hand stays deleted, and so does a peer
      // taken out of the ingress allow-list
      await cluster.stopAgent(h1);
      const peerSubnet = (await cluster.readSubnetEnv(h2))!.subnet!.replace(/\.1\//, '.0/');
      const peerGateway = peerSubnet.replace(/\/\d+$/, '');
      const deleted = await cluster.exec(h1, `ip route del ${peerSubnet} && nft delete element inet weft peers4 '{ ${h2.publicIp} }'`);
      assert.equal(deleted.code, 0, deleted.stderr);

      const broken = await doctor(cluster, h1, health);
      assert.equal(broken.code, 1, broken.stdout);
      const quoted = peerSubnet.replace(/[./]/g, '\\$&');
      assert.match(
        broken.stdout,
        new RegExp(
          `^FAIL\\s+route\\s+${quoted} is missing: the lease wants ${quoted} via ${peerGateway.replace(/\./g, '\\.')} dev weft\\.1 onlink nhid \\d+$`,
          'm',
        ),
      );
      assert.match(broken.stdout, new RegExp(`fix: .*ip route add ${quoted} nhid \\d+ proto 157`));
      assert.match(
        broken.stdout,
        new RegExp(
          `^FAIL\\s+ingress\\s+peer ${h2.publicIp.replace(/\./g, '\\.')} is not in the ingress allow-list: its VXLAN datagrams are dropped$`,
          'm',
        ),
      );
      assert.match(broken.stdout, /^FAIL\s+weftd\s+weftd does not answer at http:\/\/127\.0\.0\.1:9910/m);
      assert.match(broken.stdout, /^ok\s+iptables\s/m, 'only what is broken is reported');
      assert.match(broken.stdout, /^3 problems found/m);
      assert.match(broken.stderr, /3 problems: route, ingress, weftd/);
      const findings = JSON.parse((await doctor(cluster, h1, '-o', 'json')).stdout) as Finding[];
      assert.deepEqual(
        findings.filter((finding) => finding.severity === 'fail').map((finding) => finding.check),
        ['route', 'ingress'],
      );

      await cluster.startAgent(h1, agentArgs());
      await waitFor(
        async () => (await httpGet(cluster, h1, `http://127.0.0.1:${HEALTHZ_PORT}/readyz`)).status === 200,
        'the restarted agent to be ready',
        20_000,
        100,
      );
      const again = await doctor(cluster, h1, health);
      assert.equal(again.code, 0, again.stdout);

      // doctor and weftd agree: a route through another nexthop of weft's for the same gateway (the packet
      // path is the same) is one weftd rewrites, so doctor reports it; once weftd has run, doctor says ok
      await cluster.stopAgent(h1);
      const rogue = 1_570_009_999;
      const moved = await cluster.exec(
        h1,
        `ip nexthop add id ${rogue} via ${peerGateway} dev weft.1 onlink proto 157 && ip route replace ${peerSubnet} nhid ${rogue} proto 157`,
      );
      assert.equal(moved.code, 0, moved.stderr);
      const rewritten = await doctor(cluster, h1);
      assert.equal(rewritten.code, 1, rewritten.stdout);
      assert.match(
        rewritten.stdout,
        new RegExp(
          `^FAIL\\s+route\\s+${quoted} is ${quoted} via ${peerGateway.replace(/\./g, '\\.')} dev weft\\.1 onlink nhid ${rogue} but weftd wants .* nhid (?!${rogue})\\d+$`,
          'm',
        ),
      );
      assert.match(rewritten.stdout, new RegExp(`^FAIL\\s+nexthop\\s+nexthop ${rogue} is left over`, 'm'));
      await cluster.startAgent(h1, agentArgs());
      await waitFor(
        async () => (await httpGet(cluster, h1, `http://127.0.0.1:${HEALTHZ_PORT}/readyz`)).status === 200,
        'the restarted agent to be ready',
        20_000,
        100,
      );
      const agreed = await doctor(cluster, h1, health);
      assert.equal(agreed.code, 0, agreed.stdout);
      const route = await cluster.exec(h1, `ip route show ${peerSubnet}`);
      assert.doesNotMatch(route.stdout, new RegExp(`nhid ${rogue}\\b`), 'weftd moved the route off the other nexthop');

      // etcd down: doctor says so and still checks what it can from subnet.env
      await cluster.stopEtcd();
      const offline = await doctor(cluster, h1);
      assert.equal(offline.code, 1, offline.stdout);
      assert.match(
        offline.stdout,
        new RegExp(`^FAIL\\s+etcd\\s+cannot reach etcd at ${cluster.etcdEndpoint.replace(/[./]/g, '\\$&')}`, 'm'),
      );
      assert.match(offline.stdout, /^ok\s+ip_forward\s/m);
      assert.match(offline.stdout, /^ok\s+iptables\s/m);
    });
  });
}
