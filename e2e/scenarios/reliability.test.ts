import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { sleep, waitFor } from '../../test/wait.js';
import { etcdGet, etcdPut, httpGet, leaseOf, NetnsLab, seedNetworkConfig, startPing, waitForSubnetEnv, type LabContainer, type LabHost } from '../lab/index.js';
import { netnsFactory, useLabs } from './suite.js';
import { agentArgs, HEALTHZ_PORT, kernelState, meshFailures, startCluster } from './cluster.js';

const WEFTCTL = fileURLToPath(new URL('../../agent/cli/weftctl.js', import.meta.url));

function ipBytes(ip: string): number[] {
  return ip.split('.').map(Number);
}

function checksum(buffer: Buffer): number {
  let sum = 0;
  for (let i = 0; i < buffer.length; i += 2) sum += (buffer[i]! << 8) | (buffer[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** A VXLAN datagram (VNI 1) carrying an ICMP echo request from `src` to `dst`, addressed to the VTEP `dstMac`. */
function craftedVxlanEcho(dstMac: string, src: string, dst: string): Buffer {
  const icmp = Buffer.from([8, 0, 0, 0, 0x12, 0x34, 0, 1, ...Buffer.from('weft-ingress-test')]);
  icmp.writeUInt16BE(checksum(icmp), 2);
  const ip = Buffer.from([0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 1, 0, 0, ...ipBytes(src), ...ipBytes(dst)]);
  ip.writeUInt16BE(20 + icmp.length, 2);
  ip.writeUInt16BE(checksum(ip), 10);
  const ethernet = Buffer.from([...dstMac.split(':').map((byte) => parseInt(byte, 16)), 0x02, 0xee, 0, 0, 0, 1, 0x08, 0x00]);
  const vxlan = Buffer.from([0x08, 0, 0, 0, 0, 0, 1, 0]);
  return Buffer.concat([vxlan, ethernet, ip, icmp]);
}

describe('e2e: reliability and security in a namespace lab', function () {
  this.timeout(180_000);
  const track = useLabs(netnsFactory);

  /** ICMP echo requests the container's kernel received (its namespace's own SNMP counter). */
  async function echoRequestsReceived(lab: NetnsLab, container: LabContainer): Promise<number> {
    const lines = (await lab.exec(container, 'cat /proc/net/snmp')).stdout.split('\n').filter((line) => line.startsWith('Icmp: '));
    const [names, values] = lines.map((line) => line.split(/\s+/).slice(1));
    return Number(values![names!.indexOf('InEchos')]);
  }

  async function sendFrom(lab: NetnsLab, from: LabHost, to: string, payload: Buffer, count: number): Promise<void> {
    const script = `const s=require('dgram').createSocket('udp4');const p=Buffer.from('${payload.toString('hex')}','hex');let n=0;`
      + `const next=()=>{if(n++===${count})return s.close();s.send(p,8472,'${to}',next)};next();`;
    const result = await lab.exec(from, `node -e "${script}"`);
    assert.equal(result.code, 0, result.stderr);
  }

  it('lets VXLAN frames in only from peers: a non-peer on the underlay reaches no container', async function () {
    const lab = await track(NetnsLab.create({ hosts: 3 }));
    const [h1, h2, outsider] = [lab.hosts[0]!, lab.hosts[1]!, lab.hosts[2]!];
    await seedNetworkConfig(lab);
    await lab.startAgent(h1, agentArgs());
    await lab.startAgent(h2, agentArgs({ agentArgs: ['--no-ingress-allow-list'] }));
    for (const host of [h1, h2]) await waitForSubnetEnv(lab, host);
    const [c1] = await lab.addContainers(h1, 1);
    const [c2] = await lab.addContainers(h2, 1);
    assert.deepEqual(await meshFailures(lab, [c1!, c2!]), [], 'peers still reach each other');

    const macOf = async (host: LabHost) => (await leaseOf(lab, host.publicIp))!.attrs!.BackendData as { VtepMAC: string };
    // Spoofed as coming from the other host's container, as an attacker would.
    const toH1 = craftedVxlanEcho((await macOf(h1)).VtepMAC, c2!.ip, c1!.ip);
    const toH2 = craftedVxlanEcho((await macOf(h2)).VtepMAC, c1!.ip, c2!.ip);
    const before = { c1: await echoRequestsReceived(lab, c1!), c2: await echoRequestsReceived(lab, c2!) };
    await sendFrom(lab, outsider, h1.publicIp, toH1, 20);
    await sendFrom(lab, outsider, h2.publicIp, toH2, 20);
    await sleep(300);
    assert.equal(await echoRequestsReceived(lab, c1!), before.c1, `nothing reached h1's container; h1 ruleset:\n${(await lab.exec(h1, 'nft list ruleset')).stdout}`);
    assert.ok((await echoRequestsReceived(lab, c2!)) >= before.c2 + 20, 'without the allow-list (h2) the same frames do reach the container');
    const counters = await lab.exec(h1, 'nft -j list chain inet weft input');
    const dropped = (JSON.parse(counters.stdout) as { nftables: { rule?: { expr: { counter?: { packets: number } }[] } }[] }).nftables
      .flatMap((entry) => entry.rule?.expr ?? []).flatMap((expr) => (expr.counter === undefined ? [] : [expr.counter.packets]));
    assert.equal(dropped[0], 20, 'the kernel counted the 20 refused datagrams');
  });

  it('starts a second host with the same public IP on a free subnet, saying so, and never touches the first one\'s lease', async function () {
    const lab = await track(NetnsLab.create({ hosts: 2 }));
    const [h1, h2] = [lab.hosts[0]!, lab.hosts[1]!];
    await seedNetworkConfig(lab);
    await lab.startAgent(h1, agentArgs());
    await waitForSubnetEnv(lab, h1);
    const held = (await leaseOf(lab, h1.publicIp))!;
    await lab.startAgent(h2, agentArgs({ agentArgs: [`--public-ip=${h1.publicIp}`] }));
    const env = await waitForSubnetEnv(lab, h2);
    assert.notEqual(env.subnet, held.subnet.replace(/0\/(\d+)$/, '1/$1'), 'another subnet');
    assert.match(lab.agent(h2)!.log(), new RegExp(`"lease":"${held.subnet.replace('/', '-').replace(/\./g, '\\.')}".*belongs to another node`));
    const [after] = await etcdGet(lab, held.key);
    assert.equal(after?.value, held.value, "h1's lease is untouched");
    assert.equal(after?.leaseId, held.leaseId);
    assert.equal(lab.agent(h2)!.exit, undefined);
  });

  it('re-acquires after `weftctl lease revoke` of a live host, and its peers follow', async function () {
    const lab = await track(NetnsLab.create({ hosts: 2 }));
    const containers = await startCluster(lab);
    const [h1, h2] = [lab.hosts[0]!, lab.hosts[1]!];
    const held = await leaseOf(lab, h1.publicIp);
    const revoke = await lab.exec(h2, `node ${WEFTCTL} --etcd-endpoints=${lab.etcdEndpoint} lease revoke ${held!.subnet}`);
    assert.equal(revoke.code, 0, revoke.stderr);
    await waitFor(async () => (await leaseOf(lab, h1.publicIp))?.leaseId !== undefined, 'h1 to hold a lease again');
    const again = await leaseOf(lab, h1.publicIp);
    assert.equal(again?.subnet, held?.subnet, 'the same subnet, as it was free');
    assert.notEqual(again?.leaseId, held?.leaseId);
    await waitFor(async () => (await kernelState(lab, h2)).routes.includes(held!.subnet), "h2 routes h1's subnet again");
    assert.deepEqual(await meshFailures(lab, containers), []);
  });

  it('keeps the last valid config when it turns invalid, and never programs a lease that claims our IP or overlaps our subnet', async function () {
    const lab = await track(NetnsLab.create({ hosts: 2 }));
    const containers = await startCluster(lab);
    const [h1] = [lab.hosts[0]!];
    await etcdPut(lab, '/coreos.com/network/config', '{"Network":"198.18.0.0/16","SubnetLen":40}');
    const own = (await leaseOf(lab, h1.publicIp))!;
    const [a, b, c] = own.subnet.split('.');
    const overlapping = `${a}.${b}.${c}.128-25`;
    await etcdPut(lab, '/coreos.com/network/subnets/198.18.250.0-24', JSON.stringify({ PublicIP: h1.publicIp, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: '0a:00:00:00:fa:01' } }));
    await etcdPut(lab, `/coreos.com/network/subnets/${overlapping}`, JSON.stringify({ PublicIP: '192.0.2.99', BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: '0a:00:00:00:fa:02' } }));
    await waitFor(() => {
      const log = lab.agent(h1)!.log();
      return log.includes('keeping the last valid config') && log.includes('claims our own public IP')
        && log.includes(`"key":"/coreos.com/network/subnets/${overlapping}","reason":"invalid-subnet"`);
    }, 'h1 to say what it refused', 10_000, 100);
    const state = await kernelState(lab, h1);
    assert.ok(!state.routes.includes('198.18.250.0/24'));
    assert.ok(!state.routes.includes(overlapping.replace('-', '/')));
    assert.equal(lab.agent(h1)!.exit, undefined);
    assert.deepEqual(await meshFailures(lab, containers), [], 'traffic flows on with the last valid config');
  });

  it('keeps the data plane and the lease on SIGTERM; --release-on-exit removes the lease, device and rules', async function () {
    const lab = await track(NetnsLab.create({ hosts: 3 }));
    const containers = await startCluster(lab, { agentArgs: [] });
    const [h1, h2, h3] = [lab.hosts[0]!, lab.hosts[1]!, lab.hosts[2]!];
    const pinger = startPing(lab, containers[0]!, containers[1]!.ip, { interval: 0.02 });
    const exit = await lab.stopAgent(h1, 'SIGTERM');
    assert.equal(exit?.code, 0, `exit ${JSON.stringify(exit)}; log:\n${lab.agent(h1)!.log().slice(-3000)}`);
    await sleep(1000);
    const result = await pinger.stop();
    assert.equal(result.transmitted - result.received, 0, 'traffic flows while weftd is stopped');
    assert.ok(await leaseOf(lab, h1.publicIp), 'the lease stays');
    assert.match((await kernelState(lab, h1)).routes, /weft\.1/);

    const h2Lease = (await leaseOf(lab, h2.publicIp))!;
    await lab.stopAgent(h2, 'SIGTERM');
    await lab.startAgent(h2, agentArgs({ agentArgs: ['--release-on-exit'] }));
    await waitFor(async () => (await httpGet(lab, h2, `http://127.0.0.1:${HEALTHZ_PORT}/readyz`)).status === 200, 'h2 to be ready again');
    const released = await lab.stopAgent(h2, 'SIGTERM');
    assert.equal(released?.code, 0, `exit ${JSON.stringify(released)}; log:\n${lab.agent(h2)!.log().slice(-3000)}`);
    assert.equal(await leaseOf(lab, h2.publicIp), undefined, 'the lease is gone');
    assert.notEqual((await lab.exec(h2, 'ip link show weft.1')).code, 0, 'the device is gone');
    assert.notEqual((await lab.exec(h2, 'iptables -S WEFT-FORWARD')).code, 0, 'the iptables chain is gone');
    assert.notEqual((await lab.exec(h2, 'nft list table inet weft')).code, 0, 'the allow-list is gone');
    await waitFor(async () => !(await kernelState(lab, h3)).routes.includes(h2Lease.subnet), "peers drop the released host's route");
  });
});
