import assert from 'node:assert/strict';
import { sleep, waitFor } from '../../test/wait.js';
import {
  etcdGet,
  etcdPut,
  httpGet,
  leaseOf,
  NetnsLab,
  seedNetworkConfig,
  shippedProgram,
  startPing,
  waitForSubnetEnv,
  type LabContainer,
  type LabHost,
} from '../lab/index.js';
import { netnsFactory, useLabs } from './suite.js';
import { agentArgs, HEALTHZ_PORT, kernelState, meshFailures, startCluster } from './cluster.js';

const WEFTCTL = shippedProgram('weftctl');

function ipBytes(ip: string): number[] {
  return ip.split('.').map(Number);
}

function checksum(buffer: Buffer): number {
  let sum = 0;
  for (let i = 0; i < buffer.length; i += 2) sum += (buffer[i] << 8) | (buffer[i + 1] ?? 0);
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
    return Number(values[names.indexOf('InEchos')]);
  }

  async function sendFrom(lab: NetnsLab, from: LabHost, to: string, payload: Buffer, count: number): Promise<void> {
    const script =
      `const s=require('dgram').createSocket('udp4');const p=Buffer.from('${payload.toString('hex')}','hex');let n=0;` +
      `const next=()=>{if(n++===${count})return s.close();s.send(p,8472,'${to}',next)};next();`;
    const result = await lab.exec(from, `node -e "${script}"`);
    assert.equal(result.code, 0, result.stderr);
  }

  it('lets VXLAN frames in only from peers: a non-peer on the underlay reaches no container', async function () {
    const lab = await track(NetnsLab.create({ hosts: 3 }));
    const [h1, h2, outsider] = [lab.hosts[0], lab.hosts[1], lab.hosts[2]];
    await seedNetworkConfig(lab);
    await lab.startAgent(h1, agentArgs());
    await lab.startAgent(h2, agentArgs({ agentArgs: ['--no-ingress-allow-list'] }));
    for (const host of [h1, h2]) await waitForSubnetEnv(lab, host);
    const [c1] = await lab.addContainers(h1, 1);
    const [c2] = await lab.addContainers(h2, 1);
    assert.deepEqual(await meshFailures(lab, [c1, c2]), [], 'peers still reach each other');

    const macOf = async (host: LabHost) => (await leaseOf(lab, host.publicIp))!.attrs!.BackendData as { VtepMAC: string };
    // Spoofed as coming from the other host's container, as an attacker would.
    const toH1 = craftedVxlanEcho((await macOf(h1)).VtepMAC, c2.ip, c1.ip);
    const toH2 = craftedVxlanEcho((await macOf(h2)).VtepMAC, c1.ip, c2.ip);
    // Counted since the table was made: h2's own first datagrams may have come before h1 let it in.
    const dropped = async (): Promise<number> => {
      const counters = await lab.exec(h1, 'nft -j list chain inet weft input');
      return (JSON.parse(counters.stdout) as { nftables: { rule?: { expr: { counter?: { packets: number } }[] } }[] }).nftables
        .flatMap((entry) => entry.rule?.expr ?? [])
        .flatMap((expr) => (expr.counter === undefined ? [] : [expr.counter.packets]))[0];
    };
    const droppedBefore = await dropped();
    const before = { c1: await echoRequestsReceived(lab, c1), c2: await echoRequestsReceived(lab, c2) };
    await sendFrom(lab, outsider, h1.publicIp, toH1, 20);
    await sendFrom(lab, outsider, h2.publicIp, toH2, 20);
    await sleep(300);
    assert.equal(
      await echoRequestsReceived(lab, c1),
      before.c1,
      `nothing reached h1's container; h1 ruleset:\n${(await lab.exec(h1, 'nft list ruleset')).stdout}`,
    );
    assert.ok(
      (await echoRequestsReceived(lab, c2)) >= before.c2 + 20,
      'without the allow-list (h2) the same frames do reach the container',
    );
    assert.equal((await dropped()) - droppedBefore, 20, 'the kernel counted the 20 refused datagrams');
  });

  it("starts a second host with the same public IP on a free subnet, saying so, and never touches the first one's lease", async function () {
    const lab = await track(NetnsLab.create({ hosts: 2 }));
    const [h1, h2] = [lab.hosts[0], lab.hosts[1]];
    await seedNetworkConfig(lab);
    await lab.startAgent(h1, agentArgs());
    await waitForSubnetEnv(lab, h1);
    const held = (await leaseOf(lab, h1.publicIp))!;
    await lab.startAgent(h2, agentArgs({ agentArgs: [`--public-ip=${h1.publicIp}`] }));
    const env = await waitForSubnetEnv(lab, h2);
    assert.notEqual(env.subnet, held.subnet.replace(/0\/(\d+)$/, '1/$1'), 'another subnet');
    assert.match(
      lab.agent(h2)!.log(),
      new RegExp(`"lease":"${held.subnet.replace('/', '-').replace(/\./g, '\\.')}".*belongs to another node`),
    );
    const [after] = await etcdGet(lab, held.key);
    assert.equal(after?.value, held.value, "h1's lease is untouched");
    assert.equal(after?.leaseId, held.leaseId);
    assert.equal(lab.agent(h2)!.exit, undefined);
  });

  it('re-acquires after `weftctl lease revoke` of a live host, and its peers follow', async function () {
    const lab = await track(NetnsLab.create({ hosts: 2 }));
    const containers = await startCluster(lab);
    const [h1, h2] = [lab.hosts[0], lab.hosts[1]];
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
    const [h1] = [lab.hosts[0]];
    await etcdPut(lab, '/coreos.com/network/config', '{"Network":"198.18.0.0/16","SubnetLen":40}');
    const own = (await leaseOf(lab, h1.publicIp))!;
    const [a, b, c] = own.subnet.split('.');
    const overlapping = `${a}.${b}.${c}.128-25`;
    await etcdPut(
      lab,
      '/coreos.com/network/subnets/198.18.250.0-24',
      JSON.stringify({ PublicIP: h1.publicIp, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: '0a:00:00:00:fa:01' } }),
    );
    await etcdPut(
      lab,
      `/coreos.com/network/subnets/${overlapping}`,
      JSON.stringify({ PublicIP: '192.0.2.99', BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: '0a:00:00:00:fa:02' } }),
    );
    await waitFor(
      () => {
        const log = lab.agent(h1)!.log();
        return (
          log.includes('keeping the last valid config') &&
          log.includes('claims our own public IP') &&
          log.includes(`"key":"/coreos.com/network/subnets/${overlapping}","reason":"invalid-subnet"`)
        );
      },
      'h1 to say what it refused',
      10_000,
      100,
    );
    const state = await kernelState(lab, h1);
    assert.ok(!state.routes.includes('198.18.250.0/24'));
    assert.ok(!state.routes.includes(overlapping.replace('-', '/')));
    assert.equal(lab.agent(h1)!.exit, undefined);
    assert.deepEqual(await meshFailures(lab, containers), [], 'traffic flows on with the last valid config');
  });

  it('waits, saying why on /readyz, while the Network holds its public IP; weftctl on the host refuses that config and a port below 1024 unless --force; such a port gets no allow-list', async function () {
    const lab = await track(NetnsLab.create({ hosts: 1 }));
    const h1 = lab.hosts[0];
    const weftctl = (args: string) => lab.exec(h1, `node ${WEFTCTL} --etcd-endpoints=${lab.etcdEndpoint} --environment-file= ${args}`);
    // The underlay's own range as the overlay: h1's public IP lies in it.
    await etcdPut(
      lab,
      '/coreos.com/network/config',
      JSON.stringify({ Network: '192.0.2.0/24', SubnetLen: 26, Backend: { Type: 'vxlan' } }),
    );
    await lab.startAgent(h1, agentArgs());
    const why = new RegExp(
      `^waiting for a usable network config: Network 192\\.0\\.2\\.0/24 contains ${h1.publicIp.replace(/\./g, '\\.')}, an underlay address of this host`,
    );
    const report = await waitFor(
      async () => {
        const response = await httpGet(lab, h1, `http://127.0.0.1:${HEALTHZ_PORT}/readyz`);
        if (response.status !== 503) return undefined;
        const body = JSON.parse(response.body) as { checks: { lease: { reason?: string } } };
        return why.test(body.checks.lease.reason ?? '') ? body : undefined;
      },
      '/readyz to say why weftd waits',
      15_000,
      100,
    ).catch(async (err: Error) => {
      throw new Error(
        `${err.message}\n/readyz: ${(await httpGet(lab, h1, `http://127.0.0.1:${HEALTHZ_PORT}/readyz`)).body}\n${lab.agent(h1)!.log()}`,
      );
    });
    assert.ok(report);
    await sleep(1500);
    assert.equal(await lab.readSubnetEnv(h1), undefined, 'nothing programmed, no subnet.env');
    assert.equal(await leaseOf(lab, h1.publicIp), undefined, 'no lease taken in that network');
    assert.doesNotMatch((await lab.exec(h1, 'ip -o link show', { check: true })).stdout, /^\d+: weft\.1:/m, 'no VXLAN device');
    assert.equal(lab.agent(h1)!.exit, undefined, 'still running, waiting');
    assert.equal(
      lab
        .agent(h1)!
        .log()
        .split('\n')
        .filter((line) => line.includes("leaves this host's underlay addresses outside the overlay")).length,
      1,
      'logged once',
    );

    const refused = await weftctl('config set --network 192.0.2.0/24 --subnet-len 26');
    assert.equal(refused.code, 1, refused.stdout);
    assert.match(
      refused.stderr,
      new RegExp(
        `contains ${h1.publicIp.replace(/\./g, '\\.')}, an underlay address of this host.*weftd on this host would refuse the config.*--force`,
      ),
    );
    const port = await weftctl('config set --network 198.18.0.0/16 --port 123');
    assert.equal(port.code, 1, port.stdout);
    assert.match(port.stderr, /Backend\.Port 123 is below 1024/);
    const forced = await weftctl('config set --network 198.18.0.0/16 --port 123 --force');
    assert.equal(forced.code, 0, forced.stderr);

    await waitForSubnetEnv(lab, h1);
    const ready = await httpGet(lab, h1, `http://127.0.0.1:${HEALTHZ_PORT}/readyz`);
    assert.equal(ready.status, 200, ready.body);
    assert.equal(
      (JSON.parse(ready.body) as { info: Record<string, unknown> }).info.ingressAllowList,
      'off: Backend.Port 123 is below 1024',
    );
    assert.match((await lab.exec(h1, 'ip -d link show weft.1')).stdout, /dstport 123 /);
    assert.doesNotMatch(
      (await lab.exec(h1, 'nft list tables', { check: true })).stdout,
      /inet weft/,
      'no allow-list on a well-known port (NTP here)',
    );
    assert.match(lab.agent(h1)!.log(), /no ingress allow-list: Backend\.Port is below 1024/);
  });

  it('keeps etcd settings out of the processes it starts: the data-path worker and the kernel monitor', async function () {
    const lab = await track(NetnsLab.create({ hosts: 1 }));
    const h1 = lab.hosts[0];
    await seedNetworkConfig(lab);
    // Settings weftd ignores or that are harmless here (the default prefix), as stand-ins for a password and key paths.
    const etcd = {
      ETCDCTL_PASSWORD: 'weft-test-secret',
      ETCD_PEER_KEY_FILE: '/nonexistent/peer-key.pem',
      WEFTD_ETCD_PREFIX: '/coreos.com/network',
    };
    await lab.startAgent(h1, agentArgs({ agentArgs: ['--vxlan-userspace=always'] }), {
      ...etcd,
      WEFT_KERNEL_MONITOR: 'child',
      WEFT_TEST_MARKER: 'kept',
    });
    await waitForSubnetEnv(lab, h1);
    const pid = lab.agent(h1)!.pid;
    const environ = async (process: number): Promise<Map<string, string>> => {
      const text = (await lab.exec(h1, `tr '\\0' '\\n' < /proc/${process}/environ`)).stdout;
      return new Map(
        text
          .split('\n')
          .filter(Boolean)
          .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
      );
    };
    const children = (await lab.exec(h1, `pgrep -P ${pid}`)).stdout.trim().split('\n').filter(Boolean).map(Number);
    const commands = await Promise.all(children.map(async (child) => (await lab.exec(h1, `tr '\\0' ' ' < /proc/${child}/cmdline`)).stdout));
    assert.ok(
      commands.some((command) => command.includes('monitor-child')),
      commands.join('\n'),
    );
    assert.ok(
      commands.some((command) => command.startsWith('weftd-dataplane')),
      commands.join('\n'),
    );
    assert.equal((await environ(pid)).get('ETCDCTL_PASSWORD'), 'weft-test-secret', 'weftd itself was given them');
    for (const [i, child] of children.entries()) {
      const env = await environ(child);
      assert.equal(env.get('WEFT_TEST_MARKER'), 'kept', commands[i]);
      for (const name of Object.keys(etcd)) assert.equal(env.has(name), false, `${name} reached ${commands[i]}`);
    }
  });

  it('keeps the data plane and the lease on SIGTERM; --release-on-exit removes the lease, device and rules', async function () {
    const lab = await track(NetnsLab.create({ hosts: 3 }));
    const containers = await startCluster(lab, { agentArgs: [] });
    const [h1, h2, h3] = [lab.hosts[0], lab.hosts[1], lab.hosts[2]];
    // the agents come up one after the other: the pair must reach each other before the stop is the test's cause
    assert.deepEqual(await meshFailures(lab, containers.slice(0, 2)), [], 'the containers reach each other before the stop');
    const pinger = startPing(lab, containers[0], containers[1].ip, { interval: 0.02 });
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
    // weft's objects on h2, read from listings that succeed whether or not they hold them
    const owned = async () => ({
      device: /^\d+: weft\.1:/m.test((await lab.exec(h2, 'ip -o link show', { check: true })).stdout),
      chain: /^-N WEFT-FORWARD$/m.test((await lab.exec(h2, 'iptables -S', { check: true })).stdout),
      allowList: /^table inet weft$/m.test((await lab.exec(h2, 'nft list tables', { check: true })).stdout),
    });
    assert.deepEqual(await owned(), { device: true, chain: true, allowList: true }, 'h2 has them while weftd runs');
    const released = await lab.stopAgent(h2, 'SIGTERM');
    assert.equal(released?.code, 0, `exit ${JSON.stringify(released)}; log:\n${lab.agent(h2)!.log().slice(-3000)}`);
    assert.equal(await leaseOf(lab, h2.publicIp), undefined, 'the lease is gone');
    assert.deepEqual(
      await owned(),
      { device: false, chain: false, allowList: false },
      'the device, the iptables chain and the allow-list are gone',
    );
    await waitFor(async () => !(await kernelState(lab, h3)).routes.includes(h2Lease.subnet), "peers drop the released host's route");
  });
});
