import assert from 'node:assert/strict';
import { Prefix } from '../../common/cidr.js';
import { waitFor } from '../../test/wait.js';
import { httpGet, listSubnetLeases, NetnsLab, type LabHost } from '../lab/index.js';
import { agentArgs, HEALTHZ_PORT, startCluster } from './cluster.js';
import { netnsFactory, useLabs } from './suite.js';
import { weftctlScenarios } from './weftctl.scenarios.js';

weftctlScenarios(netnsFactory);

function quote(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

describe('e2e: weftctl doctor, status and leases ls on a dual-stack cluster in the namespace lab', function () {
  this.timeout(180_000);
  const track = useLabs(netnsFactory);

  it('checks the IPv6 plane: a hand-deleted IPv6 route is found with its fix, and the fix clears it', async function () {
    const lab = await track(NetnsLab.create({ hosts: 2, ipv6: true }));
    const cluster = lab;
    await startCluster(cluster, {
      config: { Network: '198.18.0.0/16', EnableIPv6: true, IPv6Network: '2001:db8:100::/48', Backend: { Type: 'vxlan' } },
    });
    const h1: LabHost = cluster.hosts[0];
    const h2: LabHost = cluster.hosts[1];
    const weftctl = (args: readonly string[]) => cluster.exec(h1, cluster.weftctlCommand(args), { timeoutMs: 60_000 });
    const doctor = (...extra: string[]) => weftctl(['doctor', `--subnet-file=${cluster.subnetFile(h1)}`, ...extra]);
    const health = `--healthz-port=${HEALTHZ_PORT}`;

    // leases ls and status show both families of a dual-stack lease
    const leases = await listSubnetLeases(cluster);
    assert.equal(leases.length, 2);
    const listed = JSON.parse((await weftctl(['leases', 'ls', '-o', 'json'])).stdout) as {
      subnet: string;
      publicIP: string;
      publicIPv6: string;
      vtepMac: string;
    }[];
    for (const host of [h1, h2]) {
      const row = listed.find((entry) => entry.publicIP === host.publicIp);
      assert.match(row?.subnet ?? '', /^198\.18\.\d+\.0\/24,2001:db8:100:[0-9a-f]+::\/64$/, JSON.stringify(listed));
      assert.equal(row?.publicIPv6, host.publicIpv6);
      assert.match(row?.vtepMac ?? '', /^[0-9a-f:]{17},[0-9a-f:]{17}$/, 'the IPv4 and the IPv6 VtepMAC');
    }
    const table = (await weftctl(['leases', 'ls'])).stdout;
    assert.match(
      table,
      new RegExp(`^198\\.18\\.\\d+\\.0/24,2001:db8:100:[0-9a-f]+::/64\\s+${quote(h2.publicIp)},${quote(h2.publicIpv6!)}\\s+vxlan\\s`, 'm'),
      table,
    );
    let status = await weftctl(['status', health, '-o', 'json']);
    for (let attempt = 0; attempt < 10 && status.code !== 0; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      status = await weftctl(['status', health, '-o', 'json']);
    }
    assert.equal(status.code, 0, status.stdout + status.stderr);
    for (const row of JSON.parse(status.stdout) as {
      expectedPeers: number;
      agent?: { peers?: number; ready?: boolean };
      problems: string[];
    }[]) {
      assert.deepEqual(row.problems, []);
      assert.equal(row.expectedPeers, 1);
      assert.equal(row.agent?.peers, 1);
    }

    // a healthy dual-stack node: both planes checked
    let healthy = await doctor(health);
    for (let attempt = 0; attempt < 10 && healthy.code !== 0; attempt++) {
      process.stderr.write(`      (doctor not clean yet:\n${healthy.stdout})\n`);
      await new Promise((resolve) => setTimeout(resolve, 500));
      healthy = await doctor(health);
    }
    assert.equal(healthy.code, 0, healthy.stdout + healthy.stderr);
    const out = healthy.stdout;
    assert.match(out, /^ok\s+config\s+198\.18\.0\.0\/16, SubnetLen 24; 2001:db8:100::\/48, IPv6SubnetLen 64, backend vxlan$/m, out);
    assert.match(out, new RegExp(`^ok\\s+interface\\s+\\S+ ${quote(h1.publicIp)}; ${quote(h1.publicIpv6!)}, MTU`, 'm'), out);
    assert.match(out, /^ok\s+ip_forward\s+net\.ipv4\.ip_forward = 1$/m, out);
    assert.match(out, /^ok\s+ip_forward\s+net\.ipv6\.conf\.all\.forwarding = 1$/m, out);
    assert.match(out, /^ok\s+device\s+weft\.1: VNI 1, port 8472, /m, out);
    assert.match(out, new RegExp(`^ok\\s+device\\s+weft-v6\\.1: VNI 1, port 8472, local ${quote(h1.publicIpv6!)} on `, 'm'), out);
    assert.match(
      out,
      /^ok\s+subnet\.env\s+\S+: FLANNEL_SUBNET=198\.18\.\d+\.1\/24 FLANNEL_IPV6_SUBNET=2001:db8:100:[0-9a-f]+::1\/64 FLANNEL_MTU=\d+/m,
      out,
    );
    assert.match(out, /^ok\s+mtu\s+\S+ \d+, weft\.1 \d+, weft-v6\.1 \d+, containers \d+$/m, out);
    assert.match(out, /^ok\s+dataplane\s+IPv4: 1 routes, 1 FDB entries and 1 neighbours match/m, out);
    assert.match(out, /^ok\s+dataplane\s+IPv6: 1 routes, 1 FDB entries and 1 neighbours match/m, out);
    assert.match(out, /^ok\s+iptables\s/m, out);
    assert.match(out, /^ok\s+ip6tables\s+WEFT-FORWARD as weftd writes it$/m, out);
    assert.match(out, /^no problems found/m, out);

    // with weftd stopped, an IPv6 route deleted by hand stays deleted: doctor names it and the command that puts it back
    await cluster.stopAgent(h1);
    const peer6 = Prefix.parse((await cluster.readSubnetEnv(h2))!.ipv6Subnet!, { allowHostBits: true });
    const deleted = await cluster.exec(h1, `ip -6 route del ${peer6}`);
    assert.equal(deleted.code, 0, deleted.stderr);
    const broken = await doctor();
    assert.equal(broken.code, 1, broken.stdout);
    const want = `${peer6} via ${peer6.network} dev weft-v6.1 onlink`;
    assert.match(
      broken.stdout,
      new RegExp(`^FAIL\\s+route\\s+${quote(peer6.toString())} is missing: the lease wants ${quote(want)} nhid \\d+$`, 'm'),
      broken.stdout,
    );
    assert.match(broken.stdout, /^ok\s+dataplane\s+IPv4: 1 routes/m, 'the IPv4 plane is untouched');
    assert.match(broken.stdout, /^1 problem found/m, broken.stdout);
    const findings = JSON.parse((await doctor('-o', 'json')).stdout) as { check: string; severity: string; fix?: string }[];
    const failed = findings.filter((finding) => finding.severity === 'fail');
    assert.deepEqual(
      failed.map((finding) => finding.check),
      ['route'],
    );
    // weftd would add the route through the nexthop object it keeps for the peer's gateway
    const byHand = /by hand: (ip route add .*)$/.exec(failed[0].fix ?? '')?.[1];
    assert.match(byHand ?? '', new RegExp(`^ip route add ${quote(peer6.toString())} nhid \\d+ proto 157$`));

    // the fix as printed repairs it
    const fixed = await cluster.exec(h1, byHand!);
    assert.equal(fixed.code, 0, fixed.stderr);
    const clean = await doctor();
    assert.equal(clean.code, 0, clean.stdout);

    await cluster.startAgent(h1, agentArgs());
    await waitFor(
      async () => (await httpGet(cluster, h1, `http://127.0.0.1:${HEALTHZ_PORT}/readyz`)).status === 200,
      'the restarted agent to be ready',
      20_000,
      100,
    );
    const again = await doctor(health);
    assert.equal(again.code, 0, again.stdout);
  });

  it('checks an IPv6-only node: its lease found by PublicIPv6, the IPv6 plane only', async function () {
    const lab = await track(NetnsLab.create({ hosts: 2, ipv6: true }));
    const cluster = lab;
    await startCluster(cluster, {
      config: { EnableIPv4: false, EnableIPv6: true, IPv6Network: '2001:db8:100::/48', Backend: { Type: 'vxlan' } },
    });
    const h1: LabHost = cluster.hosts[0];
    const doctor = () =>
      cluster.exec(h1, cluster.weftctlCommand(['doctor', `--subnet-file=${cluster.subnetFile(h1)}`, `--healthz-port=${HEALTHZ_PORT}`]), {
        timeoutMs: 60_000,
      });
    let healthy = await doctor();
    for (let attempt = 0; attempt < 10 && healthy.code !== 0; attempt++) {
      process.stderr.write(`      (doctor not clean yet:\n${healthy.stdout})\n`);
      await new Promise((resolve) => setTimeout(resolve, 500));
      healthy = await doctor();
    }
    const out = healthy.stdout;
    assert.equal(healthy.code, 0, out + healthy.stderr);
    assert.match(out, /^ok\s+lease\s+2001:db8:100:[0-9a-f]+::\/64, backend vxlan$/m, out);
    assert.match(out, /^ok\s+ip_forward\s+net\.ipv6\.conf\.all\.forwarding = 1$/m, out);
    assert.match(out, /^ok\s+device\s+weft-v6\.1: /m, out);
    assert.match(out, /^ok\s+subnet\.env\s+\S+: FLANNEL_IPV6_SUBNET=2001:db8:100:[0-9a-f]+::1\/64 FLANNEL_MTU=/m, out);
    assert.match(out, /^ok\s+dataplane\s+IPv6: 1 routes, 1 FDB entries and 1 neighbours match/m, out);
    assert.match(out, /^ok\s+ip6tables\s/m, out);
    assert.doesNotMatch(out, /weft\.1:|net\.ipv4\.ip_forward|^\S+\s+iptables\s/m, 'no IPv4 plane is checked');
  });
});
