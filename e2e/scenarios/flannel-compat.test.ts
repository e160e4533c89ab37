/**
 * flanneld and weftd hosts in one network. The flanneld hosts run e2e/lab/fixtures/flanneld_like.py, an
 * independent reference (python, no weft code) that writes and reads leases as flanneld does and programs
 * its host's data plane as flanneld does: flannel.<VNI> with neighbour, FDB entry and route per peer, or a
 * TUN device and UDP port 8285 carrying bare IP packets.
 */
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { waitFor } from '../../test/wait.js';
import {
  httpGet,
  leaseOf,
  listSubnetLeases,
  NetnsLab,
  seedNetworkConfig,
  waitForSubnetEnv,
  type BackgroundCommand,
  type LabContainer,
  type LabHost,
} from '../lab/index.js';
import { agentArgs, HEALTHZ_PORT, kernelState, meshFailures } from './cluster.js';
import { netnsFactory, useLabs } from './suite.js';

const FIXTURE = fileURLToPath(new URL('../../../e2e/lab/fixtures/flanneld_like.py', import.meta.url));

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

describe('e2e: flanneld and weftd hosts in one network', function () {
  this.timeout(240_000);
  const track = useLabs(netnsFactory);
  const fixtures: BackgroundCommand[] = [];

  afterEach(async function () {
    await Promise.all(fixtures.splice(0).map((fixture) => fixture.stop('SIGTERM', 2_000)));
  });

  function startFlanneldLike(lab: NetnsLab, host: LabHost): BackgroundCommand {
    const fixture = lab.background(
      host,
      `exec python3 ${FIXTURE} --etcd-endpoint=${lab.etcdEndpoint} --iface=${host.iface} --subnet-file=${lab.subnetFile(host)}`,
    );
    fixtures.push(fixture);
    return fixture;
  }

  async function ready(lab: NetnsLab, host: LabHost): Promise<void> {
    await waitFor(
      async () => (await httpGet(lab, host, `http://127.0.0.1:${HEALTHZ_PORT}/readyz`)).status === 200,
      `weftd on ${host.name} to be ready`,
      30_000,
    );
  }

  /** Full mesh between the containers, with the fixtures' and agents' output when it is not. */
  async function assertMesh(lab: NetnsLab, containers: readonly LabContainer[]): Promise<void> {
    const failures = await meshFailures(lab, containers, { count: 3 });
    if (failures.length === 0) return;
    const fixtureLogs = fixtures.map((fixture) => `${fixture.output().stdout}${fixture.output().stderr}`.slice(-1500)).join('\n---\n');
    const agentLogs = lab.hosts.map((host) => lab.agent(host)?.log().slice(-1500) ?? '').join('\n---\n');
    assert.deepEqual(failures, [], `fixtures:\n${fixtureLogs}\nagents:\n${agentLogs}`);
  }

  /** h1 and h2 run weftd, h3 and h4 the flanneld-like fixture; one container each; a full mesh. */
  async function mixedCluster(lab: NetnsLab, config: object): Promise<LabContainer[]> {
    const [h1, h2, h3, h4] = lab.hosts;
    await seedNetworkConfig(lab, config);
    startFlanneldLike(lab, h3);
    startFlanneldLike(lab, h4);
    await lab.startAgent(h1, agentArgs());
    await lab.startAgent(h2, agentArgs());
    const containers: LabContainer[] = [];
    for (const host of [h1, h2, h3, h4]) {
      await waitForSubnetEnv(lab, host);
      containers.push(...(await lab.addContainers(host, 1)));
    }
    await assertMesh(lab, containers);
    return containers;
  }

  /** h4 moves from the fixture to weftd and keeps its subnet; the mesh holds with its old containers. */
  async function moveToWeftd(lab: NetnsLab, containers: readonly LabContainer[], device: string | undefined): Promise<void> {
    const h4 = lab.hosts[3];
    const before = await leaseOf(lab, h4.publicIp);
    assert.ok(before !== undefined && !('WeftNodeID' in (before.attrs ?? {})), 'h4 starts with a lease written by flanneld');
    await fixtures.at(-1)!.stop('SIGTERM');
    if (device !== undefined) await lab.exec(h4, `ip link del ${device}`, { check: true });
    await lab.startAgent(h4, agentArgs());
    await ready(lab, h4);
    const after = await leaseOf(lab, h4.publicIp);
    assert.equal(after?.key, before.key, 'weftd reuses the subnet flanneld held for this host');
    assert.match(after?.value ?? '', /"WeftNodeID":/);
    assert.equal(
      (await lab.readSubnetEnv(h4))?.subnet,
      `${before.subnet.split('/')[0].replace(/\.0$/, '.1')}/${before.subnet.split('/')[1]}`,
    );
    await assertMesh(lab, containers);
  }

  it("udp: flanneld-udp and weftd-udp hosts reach each other; flanneld's lease bytes; a host moves over keeping its subnet; Network host bits masked by both", async function () {
    const lab = await track(NetnsLab.create({ hosts: 4 }));
    const [h1, , h3] = lab.hosts;
    // 198.18.1.0/16 has host bits set: flanneld masks them (Go's ParseCIDR), and so must weftd
    const containers = await mixedCluster(lab, { Network: '198.18.1.0/16', Backend: { Type: 'udp' } });

    assert.equal(
      (await leaseOf(lab, h3.publicIp))?.value,
      `{"PublicIP":"${h3.publicIp}","PublicIPv6":null}`,
      "the fixture writes flanneld's udp lease",
    );
    // weftd writes the same bytes, then its node ID (flanneld's decoder ignores unknown fields)
    assert.match(
      (await leaseOf(lab, h1.publicIp))?.value ?? '',
      new RegExp(`^\\{"PublicIP":"${escape(h1.publicIp)}","PublicIPv6":null,"WeftNodeID":"[0-9a-f-]+"\\}$`),
    );
    for (const host of lab.hosts) {
      const env = await lab.readSubnetEnv(host);
      assert.equal(env?.network, '198.18.0.0/16', host.name);
      assert.equal(env?.mtu, 1472, `${host.name}: FLANNEL_MTU is the public MTU − 28 on both kinds of host`);
    }
    for (const lease of await listSubnetLeases(lab)) assert.match(lease.subnet, /^198\.18\.\d+\.0\/24$/);
    assert.match(lab.agent(h1)!.log(), /Network 198\.18\.1\.0\/16 has host bits set: using 198\.18\.0\.0\/16/);

    await moveToWeftd(lab, containers, undefined);
  });

  it("vxlan: flanneld-vxlan and weftd-vxlan hosts reach each other; each programs the other's VtepMAC; a host moves over keeping its subnet", async function () {
    const lab = await track(NetnsLab.create({ hosts: 4 }));
    const [h1, , h3] = lab.hosts;
    const containers = await mixedCluster(lab, { Network: '198.18.0.0/16', Backend: { Type: 'vxlan' } });

    const flanneldLease = await leaseOf(lab, h3.publicIp);
    const mac =
      /^\{"PublicIP":"[\d.]+","PublicIPv6":null,"BackendType":"vxlan","BackendData":\{"VNI":1,"VtepMAC":"([0-9a-f:]{17})"\}\}$/.exec(
        flanneldLease?.value ?? '',
      )?.[1];
    assert.ok(mac !== undefined, `flanneld's vxlan lease: ${flanneldLease?.value}`);
    assert.match((await kernelState(lab, h1)).fdb, new RegExp(`^${mac} dst ${escape(h3.publicIp)} self permanent`, 'm'));
    const weftMac = (await lab.exec(h1, 'cat /sys/class/net/weft.1/address', { check: true })).stdout.trim();
    assert.match((await lab.exec(h3, 'ip neigh show dev flannel.1', { check: true })).stdout, new RegExp(`lladdr ${weftMac} PERMANENT`));
    for (const host of lab.hosts) assert.equal((await lab.readSubnetEnv(host))?.mtu, 1450, host.name);

    await moveToWeftd(lab, containers, 'flannel.1');
  });

  it('IPv6-only: weftd says in its log, /readyz, weftctl status and doctor that flanneld took its lease over, and moves to a free subnet', async function () {
    const lab = await track(NetnsLab.create({ hosts: 2, ipv6: true }));
    const [h1, h2] = lab.hosts;
    await seedNetworkConfig(lab, { EnableIPv4: false, EnableIPv6: true, IPv6Network: '2001:db8:100::/48', Backend: { Type: 'vxlan' } });
    // status asks each agent at its lease's public IP: IPv6 here
    await lab.startAgent(h1, agentArgs({ agentArgs: ['--healthz-ip=::'] }));
    const first = (await waitForSubnetEnv(lab, h1)).ipv6Subnet!;
    await ready(lab, h1);
    // flanneld finds "its" lease by PublicIP 0.0.0.0: the first IPv6-only lease there is, h1's
    const fixture = startFlanneldLike(lab, h2);
    const taken = await waitForSubnetEnv(lab, h2).catch((err: Error) => {
      throw new Error(`${err.message}\n${fixture.output().stdout}${fixture.output().stderr}`);
    });
    assert.equal(taken.ipv6Subnet, first, 'the flanneld host took the subnet weftd held');
    const moved = (await waitForSubnetEnv(lab, h1, { not: first })).ipv6Subnet;
    assert.notEqual(moved, first);

    const said =
      /our lease 0\.0\.0\.0-0&2001:db8:100:[0-9a-f]+::-64 was taken over by the host at 2001:db8:0:1::12, which wrote no WeftNodeID: a flanneld host/;
    assert.match(lab.agent(h1)!.log(), said);
    const readyz = JSON.parse((await httpGet(lab, h1, `http://127.0.0.1:${HEALTHZ_PORT}/readyz`)).body) as {
      info: Record<string, unknown>;
    };
    assert.match(String(readyz.info.leaseTakenOver), said);

    const status = await lab.exec(h1, lab.weftctlCommand(['status', `--healthz-port=${HEALTHZ_PORT}`, '-o', 'json']));
    assert.equal(status.code, 1, status.stdout + status.stderr);
    const row = (JSON.parse(status.stdout) as { publicIP: string; problems: string[] }[]).find((entry) => entry.publicIP === h1.publicIpv6);
    assert.match(row?.problems.join('\n') ?? '', said, status.stdout);
    const doctor = await lab.exec(
      h1,
      lab.weftctlCommand(['doctor', `--subnet-file=${lab.subnetFile(h1)}`, `--healthz-port=${HEALTHZ_PORT}`]),
    );
    assert.equal(doctor.code, 1, doctor.stdout);
    assert.match(doctor.stdout, new RegExp(`FAIL\\s+lease\\s+weftd reports: .*${said.source}`));
    assert.match(doctor.stdout, /WARN\s+lease\s+2001:db8:0:1::12 wrote leases without WeftNodeID \(flanneld\)/);
  });
});
