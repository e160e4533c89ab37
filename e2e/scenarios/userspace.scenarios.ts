/**
 * The userspace data path (issue 4), for any ClusterDriver (see suite.ts): VXLAN forwarded by weft's own
 * worker process interoperating with kernel-VXLAN hosts, clusters of userspace hosts only, flannel's udp backend,
 * and what the receive path does with datagrams it must refuse while real traffic flows.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { parseMac } from '../../common/packet.js';
import { encodeVxlan } from '../../test/wire.js';
import { sleep, waitFor } from '../../test/wait.js';
import {
  etcdPut,
  httpGet,
  leaseOf,
  ping,
  seedNetworkConfig,
  shellQuote,
  waitForSubnetEnv,
  type ClusterDriver,
  type LabContainer,
  type LabHost,
} from '../lab/index.js';
import { agentArgs, HEALTHZ_PORT, kernelState, meshFailures, metrics, metricValue } from './cluster.js';
import { requireHosts, useLabs, type DriverFactory } from './suite.js';

export interface IperfResult {
  /** Client to server, Mbit/s as the receiver counted it. */
  forward: number;
  /** Server to client (--bidir). */
  reverse: number;
  retransmits: number;
}

interface IperfJson {
  error?: string;
  end?: {
    sum_received?: { bits_per_second: number };
    sum_received_bidir_reverse?: { bits_per_second: number };
    sum_sent?: { retransmits?: number };
    sum_sent_bidir_reverse?: { retransmits?: number };
  };
}

/** An iperf3 TCP test in both directions at once (--bidir) between two containers. */
export async function iperfBidir(
  driver: ClusterDriver,
  client: LabContainer,
  server: LabContainer,
  options: { seconds?: number; port?: number } = {},
): Promise<IperfResult> {
  const port = options.port ?? 5201;
  const seconds = options.seconds ?? 3;
  const daemon = driver.background(server, `iperf3 -s -1 -p ${port}`);
  try {
    await waitFor(
      async () => (await driver.exec(server, `ss -ltnH 'sport = :${port}'`)).stdout.includes(`:${port}`),
      `iperf3 server in ${server.name}`,
      10_000,
      50,
    );
    const run = await driver.exec(client, `iperf3 -c ${server.ip} -p ${port} -t ${seconds} --bidir -J --connect-timeout 5000`, {
      timeoutMs: (seconds + 30) * 1000,
    });
    let json: IperfJson;
    try {
      json = JSON.parse(run.stdout) as IperfJson;
    } catch {
      throw new Error(`iperf3 ${client.name} -> ${server.name}: exit ${run.code}: ${run.stdout.slice(0, 400)}${run.stderr}`);
    }
    if (json.error !== undefined || json.end?.sum_received === undefined)
      throw new Error(`iperf3 ${client.name} -> ${server.name}: ${json.error ?? 'no result'}`);
    return {
      forward: (json.end.sum_received.bits_per_second ?? 0) / 1e6,
      reverse: (json.end.sum_received_bidir_reverse?.bits_per_second ?? 0) / 1e6,
      retransmits: (json.end.sum_sent?.retransmits ?? 0) + (json.end.sum_sent_bidir_reverse?.retransmits ?? 0),
    };
  } finally {
    await daemon.stop('SIGTERM');
  }
}

/** Every drop counter of the userspace path, by "direction/reason". */
async function dropCounters(driver: ClusterDriver, host: LabHost): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const match of (await metrics(driver, host)).matchAll(
    /^weft_userspace_dropped_packets_total\{direction="(\w+)",reason="(\w+)"\} (\d+)$/gm,
  )) {
    out.set(`${match[1]}/${match[2]}`, Number(match[3]));
  }
  return out;
}

/** Sends each payload once as a UDP datagram from `from` to `to`:`port`, a millisecond apart; resolves with the count sent. */
async function sendDatagrams(driver: ClusterDriver, from: LabHost, to: string, port: number, payloads: readonly Buffer[]): Promise<number> {
  const script =
    "const s=require('dgram').createSocket('udp4');const all=process.argv[1].split(',').map((h)=>Buffer.from(h,'hex'));" +
    `let i=0;const next=()=>{if(i===all.length){console.log(i);return s.close()}s.send(all[i++],${port},'${to}',()=>setTimeout(next,1))};next();`;
  const hex = payloads.map((payload) => payload.toString('hex') || '').join(',');
  const result = await driver.exec(from, `node -e ${shellQuote(script)} ${shellQuote(hex)}`, { timeoutMs: 30_000 });
  assert.equal(result.code, 0, result.stderr);
  return Number(result.stdout.trim());
}

/**
 * Sends each payload once as a UDP datagram to `to`:`port` from `from`, with the outer IPv4 source `source`
 * (another host's address: a raw IPv4 socket, header included, which the kernel routes as it is).
 */
async function sendSpoofed(
  driver: ClusterDriver,
  from: LabHost,
  source: string,
  to: string,
  port: number,
  payloads: readonly Buffer[],
): Promise<number> {
  const script = [
    'import socket, struct, sys',
    'source, to, port = sys.argv[1], sys.argv[2], int(sys.argv[3])',
    's = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)',
    'n = 0',
    "for payload in (bytes.fromhex(h) for h in sys.argv[4].split(',')):",
    "    udp = struct.pack('!HHHH', 40000, port, 8 + len(payload), 0) + payload",
    "    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), n, 0, 64, 17, 0, socket.inet_aton(source), socket.inet_aton(to))",
    '    s.sendto(ip + udp, (to, 0))',
    '    n += 1',
    'print(n)',
  ].join('\n');
  const result = await driver.exec(
    from,
    `python3 -c ${shellQuote(script)} ${source} ${to} ${port} ${payloads.map((payload) => payload.toString('hex')).join(',')}`,
    { timeoutMs: 30_000 },
  );
  assert.equal(result.code, 0, result.stderr);
  return Number(result.stdout.trim());
}

/** ICMP echo requests the container's kernel received (its namespace's own SNMP counter). */
async function echoRequestsReceived(driver: ClusterDriver, container: LabContainer): Promise<number> {
  const lines = (await driver.exec(container, 'cat /proc/net/snmp')).stdout.split('\n').filter((line) => line.startsWith('Icmp: '));
  const [names, values] = lines.map((line) => line.split(/\s+/).slice(1));
  return Number(values[names.indexOf('InEchos')]);
}

/** An IPv4 ICMP echo request with valid checksums. */
function echoPacket(src: string, dst: string, sequence: number): Buffer {
  const icmp = Buffer.from([8, 0, 0, 0, 0x77, 0x66, 0, 0, ...Buffer.from('weft spoof test')]);
  icmp.writeUInt16BE(sequence, 6);
  icmp.writeUInt16BE(internetChecksum(icmp), 2);
  const ip = Buffer.from([0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 1, 0, 0, ...ipv4(src), ...ipv4(dst)]);
  ip.writeUInt16BE(20 + icmp.length, 2);
  ip.writeUInt16BE(internetChecksum(ip), 10);
  return Buffer.concat([ip, icmp]);
}

function internetChecksum(bytes: Buffer): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i += 2) sum += (bytes[i] << 8) | (bytes[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** Packets counted by the first rule of each `table/chain` (a rule without a target, inserted to count). */
async function firstRuleCounts(driver: ClusterDriver, host: LabHost, chains: readonly string[]): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const entry of chains) {
    const [table, chain] = entry.split('/') as [string, string];
    const listing = await driver.exec(host, `iptables -t ${table} -L ${chain} 1 -v -n -x`);
    assert.equal(listing.code, 0, listing.stderr);
    out[entry] = Number(listing.stdout.trim().split(/\s+/)[0]);
  }
  return out;
}

function ipv4(text: string): number[] {
  return text.split('.').map(Number);
}

/** An IPv4 UDP datagram (to the discard port) with a valid header checksum. */
function udpPacket(src: string, dst: string, payload = Buffer.from('weft userspace test')): Buffer {
  const udp = Buffer.alloc(8 + payload.length);
  udp.writeUInt16BE(40000, 0);
  udp.writeUInt16BE(9, 2);
  udp.writeUInt16BE(udp.length, 4);
  payload.copy(udp, 8);
  const ip = Buffer.from([0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0, ...ipv4(src), ...ipv4(dst)]);
  ip.writeUInt16BE(20 + udp.length, 2);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += ip.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  ip.writeUInt16BE(~sum & 0xffff, 10);
  return Buffer.concat([ip, udp]);
}

/** The nonzero userspace counters of every host, for assertion messages. */
async function diagnostics(driver: ClusterDriver): Promise<string> {
  const lines: string[] = [];
  for (const host of driver.hosts) {
    const text = await metrics(driver, host).catch((err: Error) => `unreachable: ${err.message}`);
    const counters = text
      .split('\n')
      .filter((line) => /^weft_userspace_\w+(\{[^}]*\})? [1-9]/.test(line) || line.startsWith('unreachable'));
    lines.push(`${host.name}: ${counters.join(', ') || '(no userspace counters)'}`);
  }
  return lines.join('\n');
}

/** Every pair of containers can ping each other (with the counters of every host when not). */
async function assertMesh(driver: ClusterDriver, containers: readonly LabContainer[]): Promise<void> {
  const failures = await meshFailures(driver, containers);
  if (failures.length > 0) assert.fail(`no ping across ${failures.join(', ')}\n${await diagnostics(driver)}`);
}

async function vtepMac(driver: ClusterDriver, host: LabHost): Promise<string> {
  const lease = await leaseOf(driver, host.publicIp);
  const data = lease?.attrs?.BackendData as { VtepMAC?: string } | undefined;
  assert.ok(data?.VtepMAC, `${host.name} publishes a VtepMAC`);
  return data.VtepMAC;
}

async function readyInfo(driver: ClusterDriver, host: LabHost): Promise<Record<string, unknown>> {
  const response = await httpGet(driver, host, `http://127.0.0.1:${HEALTHZ_PORT}/readyz`);
  return (JSON.parse(response.body) as { info: Record<string, unknown> }).info;
}

/** Starts weftd on every host with its own extra flags, waits for subnet.env and adds one container each. */
async function startHosts(driver: ClusterDriver, config: object, flags: readonly (readonly string[])[]): Promise<LabContainer[]> {
  await seedNetworkConfig(driver, config);
  for (const [i, host] of driver.hosts.entries()) {
    if (flags[i] !== undefined) await driver.startAgent(host, agentArgs({ agentArgs: flags[i] }));
  }
  const containers: LabContainer[] = [];
  for (const [i, host] of driver.hosts.entries()) {
    if (flags[i] === undefined) continue;
    await waitForSubnetEnv(driver, host);
    containers.push(...(await driver.addContainers(host, 1)));
  }
  return containers;
}

/** iperf3 TCP in both directions between every pair of containers; every direction must carry traffic. */
async function iperfEveryPair(driver: ClusterDriver, containers: readonly LabContainer[]): Promise<string[]> {
  const lines: string[] = [];
  for (let i = 0; i < containers.length; i++) {
    for (let j = i + 1; j < containers.length; j++) {
      const [a, b] = [containers[i], containers[j]];
      const result = await iperfBidir(driver, a, b, { seconds: 2, port: 5201 + i * 10 + j });
      lines.push(
        `${a.host.name}->${b.host.name} ${result.forward.toFixed(0)} Mbit/s, ${b.host.name}->${a.host.name} ${result.reverse.toFixed(0)} Mbit/s`,
      );
      if (!(result.forward > 1 && result.reverse > 1))
        assert.fail(`TCP flows both ways between ${a.name} and ${b.name}: ${lines.at(-1)}\n${await diagnostics(driver)}`);
    }
  }
  return lines;
}

const VXLAN_CONFIG = { Network: '198.18.0.0/16', Backend: { Type: 'vxlan' } };

export function userspaceScenarios(factory: DriverFactory): void {
  describe(`e2e: userspace data path in the ${factory.name}`, function () {
    this.timeout(240_000);

    const track = useLabs(factory);

    async function create(context: Mocha.Context, hosts: number): Promise<ClusterDriver> {
      requireHosts(context, factory, hosts);
      return track(factory.create({ hosts }));
    }

    it('mixed cluster: a userspace host and two kernel-VXLAN hosts ping and carry TCP both ways between every pair', async function () {
      const lab = await create(this, 3);
      const [h1, h2, h3] = [lab.hosts[0], lab.hosts[1], lab.hosts[2]];
      const containers = await startHosts(lab, VXLAN_CONFIG, [['--vxlan-userspace=always'], [], ['--vxlan-userspace=never']]);
      await assertMesh(lab, containers);
      const text = await metrics(lab, h1);
      assert.equal(metricValue(text, 'weft_data_path{backend="vxlan",path="userspace"}'), 1);
      assert.equal(
        metricValue(await metrics(lab, h2), 'weft_data_path{backend="vxlan",path="kernel"}'),
        1,
        'auto picks the kernel where it works',
      );
      assert.equal(metricValue(await metrics(lab, h3), 'weft_data_path{backend="vxlan",path="kernel"}'), 1);
      assert.deepEqual(await readyInfo(lab, h1), { backend: 'vxlan', dataPath: 'userspace', dataPathReason: '--vxlan-userspace "always"' });
      assert.equal((await readyInfo(lab, h2)).dataPath, 'kernel');
      // h1's lease is an ordinary vxlan lease, and its peers program it as usual.
      const lease = await leaseOf(lab, h1.publicIp);
      assert.equal(lease?.attrs?.BackendType, 'vxlan');
      const mac = await vtepMac(lab, h1);
      const peerState = await kernelState(lab, h2);
      assert.match(peerState.fdb, new RegExp(`^${mac} dst ${h1.publicIp.replace(/\./g, '\\.')} self permanent`, 'm'));
      assert.match(peerState.neighbours, new RegExp(`lladdr ${mac} PERMANENT`));
      // On h1: routes onto the veth, and no neighbour or FDB entry of weft's there.
      const ownState = (await lab.exec(h1, 'ip -d link show weft.1; ip route show proto 157 dev weft.1')).stdout;
      assert.match(ownState, /weft\.1@weft\.1\.c: <BROADCAST,MULTICAST,NOARP,UP,LOWER_UP>/);
      assert.equal(ownState.match(/ via 198\.18\.\d+\.0 onlink/g)?.length, 2, ownState);
      const lines = await iperfEveryPair(lab, containers);
      const after = await metrics(lab, h1);
      assert.ok((metricValue(after, 'weft_userspace_packets_total{direction="tx"}') ?? 0) > 1000, lines.join('; '));
      assert.ok((metricValue(after, 'weft_userspace_packets_total{direction="rx"}') ?? 0) > 1000);
      assert.equal(metricValue(after, 'weft_userspace_worker_restarts_total'), 0);
    });

    it('all-userspace cluster: every pair pings and carries TCP both ways', async function () {
      const lab = await create(this, 3);
      const always = ['--vxlan-userspace=always'];
      const containers = await startHosts(lab, { Network: '198.18.0.0/16', Backend: { Type: 'vxlan', Userspace: 'always' } }, [
        [],
        always,
        [],
      ]);
      for (const host of lab.hosts)
        assert.equal(metricValue(await metrics(lab, host), 'weft_data_path{backend="vxlan",path="userspace"}'), 1, host.name);
      assert.equal((await readyInfo(lab, lab.hosts[0])).dataPathReason, 'Backend.Userspace "always"');
      await assertMesh(lab, containers);
      await iperfEveryPair(lab, containers);
    });

    it("udp backend: flannel's udp format on port 8285, leases as flanneld's udp backend writes them (no BackendType, no BackendData), MTU 1472", async function () {
      const lab = await create(this, 3);
      const containers = await startHosts(lab, { Network: '198.18.0.0/16', Backend: { Type: 'udp' } }, [[], [], []]);
      const h1 = lab.hosts[0];
      const lease = await leaseOf(lab, h1.publicIp);
      assert.equal(lease?.attrs?.BackendType, undefined);
      assert.equal(lease?.attrs?.BackendData, undefined);
      assert.equal((await lab.readSubnetEnv(h1))?.mtu, 1472);
      assert.equal(metricValue(await metrics(lab, h1), 'weft_data_path{backend="udp",path="userspace"}'), 1);
      assert.match((await lab.exec(h1, 'ss -uln')).stdout, new RegExp(`${h1.publicIp.replace(/\./g, '\\.')}:8285`));
      await assertMesh(lab, containers);
      // The wire carries bare IP packets: capture one on the underlay.
      const capture = lab.background(h1, `timeout 5 tcpdump -c 1 -nn -x -i ${h1.iface} udp dst port 8285`);
      await sleep(300);
      await meshFailures(lab, containers.slice(1, 2).concat(containers.slice(0, 1)), { count: 3 });
      const dumped = (await capture.exited).stdout;
      // Outer IPv4 header (20 bytes) and UDP header (8), then the payload: at offset 0x1c, an inner IPv4 header.
      assert.match(dumped, /0x0010: {2}(\S{4} ){6}45/, `the UDP payload starts with an IPv4 header:\n${dumped}`);
      await iperfEveryPair(lab, containers);
    });

    it('drops and counts bad datagrams during a live iperf3 flow, which goes on, and the agent stays up', async function () {
      const lab = await create(this, 3);
      const [h1, h2, outsider] = [lab.hosts[0], lab.hosts[1], lab.hosts[2]];
      // No ingress allow-list on h1: what the userspace path itself refuses is under test (nftables would drop the outsider's frames first).
      const [c1, c2] = (await startHosts(lab, VXLAN_CONFIG, [
        ['--vxlan-userspace=always', '--no-ingress-allow-list'],
        ['--vxlan-userspace=never'],
      ])) as [LabContainer, LabContainer];
      await assertMesh(lab, [c1, c2]);
      const mac = parseMac(await vtepMac(lab, h1));
      const h2Mac = parseMac(await vtepMac(lab, h2));
      const h1Subnet = (await lab.readSubnetEnv(h1))!.subnet!;
      const h2Subnet = (await lab.readSubnetEnv(h2))!.subnet!;
      const [a, b, c] = ipv4(h1Subnet.split('/')[0]);
      const [, , c2third] = ipv4(h2Subnet.split('/')[0]);
      const foreign = `198.18.${(c2third + 1) % 256 === c ? (c2third + 2) % 256 : (c2third + 1) % 256}.7`;
      const frame = (packet: Buffer, dstMac = mac): Buffer => encodeVxlan({ vni: 1, dstMac, srcMac: h2Mac, packet });
      const valid = frame(udpPacket(c2.ip, c1.ip));
      const expected = new Map<string, number>();
      const batches: { from: LabHost; payloads: Buffer[] }[] = [];
      const add = (from: LabHost, reason: string, payloads: Buffer[]) => {
        batches.push({ from, payloads });
        expected.set(`rx/${reason}`, (expected.get(`rx/${reason}`) ?? 0) + payloads.length);
      };
      // Random bytes (VNI flag cleared, so that no random datagram can pass for VXLAN) and truncated headers, from a peer.
      add(
        h2,
        'vni_flag',
        Array.from({ length: 40 }, (_, i) => {
          const bytes = randomBytes(22 + i * 7);
          bytes[0] = bytes[0] & ~0x08;
          return bytes;
        }),
      );
      add(h2, 'short', Array.from({ length: 22 }, (_, length) => valid.subarray(0, length)).concat([valid.subarray(0, 22 + 19)]));
      add(h2, 'vni', [encodeVxlan({ vni: 2, dstMac: mac, srcMac: h2Mac, packet: udpPacket(c2.ip, c1.ip) })]);
      add(h2, 'ethertype', [Buffer.concat([valid.subarray(0, 20), Buffer.from([0x08, 0x06]), valid.subarray(22)])]);
      add(h2, 'inner_mac', [frame(udpPacket(c2.ip, c1.ip), h2Mac)]);
      // A well-formed frame from a namespace that is not a peer.
      add(
        outsider,
        'unknown_peer',
        Array.from({ length: 25 }, () => valid),
      );
      // From a peer, but with an inner source outside that peer's subnet, or an inner destination outside ours.
      add(
        h2,
        'inner_src',
        Array.from({ length: 25 }, () => frame(udpPacket(foreign, c1.ip))),
      );
      add(
        h2,
        'inner_dst',
        Array.from({ length: 10 }, () => frame(udpPacket(c2.ip, `${a}.${b}.${(c + 128) % 256}.9`))),
      );

      const before = await dropCounters(lab, h1);
      const agentPid = lab.agent(h1)!.pid;
      const flow = iperfBidir(lab, c2, c1, { seconds: 8 });
      await sleep(2000);
      for (const batch of batches) {
        assert.equal(await sendDatagrams(lab, batch.from, h1.publicIp, 8472, batch.payloads), batch.payloads.length);
      }
      const result = await flow;
      if (!(result.forward > 1 && result.reverse > 1))
        assert.fail(`the flow went on: ${JSON.stringify(result)}\n${await diagnostics(lab)}`);
      assert.equal(lab.agent(h1)!.exit, undefined, 'weftd is still running');
      assert.equal(lab.agent(h1)!.pid, agentPid);
      const after = await dropCounters(lab, h1);
      // A full capture ring or send buffer drops frames of the iperf3 flow itself when the worker falls behind
      // (congestion, as a full router queue; it depends on the machine's load): counted, but not under test here.
      const congestion = new Set(['tx/capture_full', 'tx/queue_full']);
      const deltas = Object.fromEntries(
        [...after]
          .map(([key, value]): [string, number] => [key, value - (before.get(key) ?? 0)])
          .filter(([key, delta]) => delta !== 0 && !congestion.has(key)),
      );
      assert.deepEqual(
        deltas,
        Object.fromEntries(expected),
        'every refused datagram is counted under its reason, and nothing else was dropped',
      );
      assert.equal(metricValue(await metrics(lab, h1), 'weft_userspace_worker_restarts_total'), 0);
      await assertMesh(lab, [c1, c2]);
    });

    it("refuses a forged datagram with a real peer's PublicIP as its source and another peer's inner source, even past an oversized lease of that peer", async function () {
      const lab = await create(this, 4);
      const [h1, h2, h3, forger] = [lab.hosts[0], lab.hosts[1], lab.hosts[2], lab.hosts[3]];
      // Each host's subnet is reserved beforehand, so that a /23 can cover h2's and h3's and leave h1's out.
      await seedNetworkConfig(lab, VXLAN_CONFIG);
      for (const [host, third] of [
        [h1, 1],
        [h2, 2],
        [h3, 3],
      ] as const) {
        await etcdPut(
          lab,
          `/coreos.com/network/subnets/198.18.${third}.0-24`,
          JSON.stringify({ PublicIP: host.publicIp, BackendType: 'vxlan' }),
        );
      }
      const [c1, c2] = (await startHosts(lab, VXLAN_CONFIG, [['--vxlan-userspace=always'], [], []])) as [
        LabContainer,
        LabContainer,
        LabContainer,
      ];
      assert.equal((await lab.readSubnetEnv(h1))?.subnet, '198.18.1.1/24');
      await assertMesh(lab, [c1, c2]);
      const [mac1, mac2, mac3] = [await vtepMac(lab, h1), await vtepMac(lab, h2), await vtepMac(lab, h3)];
      // A second lease naming h2's PublicIP and VtepMAC that covers h3's subnet too. h1 may program it (its
      // /24s stay more specific) or refuse it for the overlap; either way h2 must not pass for h3.
      await etcdPut(
        lab,
        '/coreos.com/network/subnets/198.18.2.0-23',
        JSON.stringify({ PublicIP: h2.publicIp, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: mac2 } }),
      );
      await waitFor(
        async () =>
          (await lab.exec(h1, 'ip route show proto 157 dev weft.1')).stdout.includes('198.18.2.0/23') ||
          lab.agent(h1)!.log().includes('198.18.2.0-23'),
        'h1 to take up or refuse the oversized lease',
        10_000,
        100,
      );

      const frame = (src: string, srcMac: string, count: number): Buffer[] =>
        Array.from({ length: count }, (_, i) =>
          encodeVxlan({ vni: 1, dstMac: parseMac(mac1), srcMac: parseMac(srcMac), packet: echoPacket(src, c1.ip, i) }),
        );
      const before = await dropCounters(lab, h1);
      const echoes = await echoRequestsReceived(lab, c1);
      // From the forger with h2's PublicIP (which the ingress allow-list lets in): h3's inner source; h2's inner source from h3's VtepMAC.
      assert.equal(await sendSpoofed(lab, forger, h2.publicIp, h1.publicIp, 8472, frame('198.18.3.7', mac2, 10)), 10);
      assert.equal(await sendSpoofed(lab, forger, h2.publicIp, h1.publicIp, 8472, frame('198.18.2.7', mac3, 10)), 10);
      await waitFor(
        async () => ((await dropCounters(lab, h1)).get('rx/inner_src_mac') ?? 0) >= (before.get('rx/inner_src_mac') ?? 0) + 10,
        'the counters to move',
        10_000,
        100,
      ).catch(async (err: Error) => assert.fail(`${err.message}\n${await diagnostics(lab)}`));
      const after = await dropCounters(lab, h1);
      const deltas = Object.fromEntries(
        [...after].map(([key, value]): [string, number] => [key, value - (before.get(key) ?? 0)]).filter(([, delta]) => delta !== 0),
      );
      assert.deepEqual(deltas, { 'rx/inner_src': 10, 'rx/inner_src_mac': 10 }, 'dropped and counted, nothing else');
      assert.equal(await echoRequestsReceived(lab, c1), echoes, 'none reached the container');
      // What a forger can still do, as with any unauthenticated tunnel: speak for h2 with h2's own subnet and
      // VtepMAC (which shows the forged datagrams do reach the check).
      assert.equal(await sendSpoofed(lab, forger, h2.publicIp, h1.publicIp, 8472, frame('198.18.2.7', mac2, 10)), 10);
      await waitFor(async () => (await echoRequestsReceived(lab, c1)) === echoes + 10, "h2's own subnet to get through", 10_000, 100);
      assert.equal(lab.agent(h1)!.exit, undefined);
      assert.equal(metricValue(await metrics(lab, h1), 'weft_userspace_worker_restarts_total'), 0);
    });

    it('delivers into the overlay device, so received packets pass PREROUTING and FORWARD (not OUTPUT) as with kernel VXLAN, and obey the FORWARD chain', async function () {
      const lab = await create(this, 2);
      const [h1, h2] = [lab.hosts[0], lab.hosts[1]];
      const [c1, c2] = (await startHosts(lab, VXLAN_CONFIG, [['--vxlan-userspace=always'], ['--vxlan-userspace=never']])) as [
        LabContainer,
        LabContainer,
      ];
      await assertMesh(lab, [c1, c2]);
      const chains = [
        'raw/PREROUTING',
        'mangle/PREROUTING',
        'mangle/INPUT',
        'filter/INPUT',
        'mangle/FORWARD',
        'filter/FORWARD',
        'raw/OUTPUT',
        'mangle/OUTPUT',
        'filter/OUTPUT',
        'mangle/POSTROUTING',
      ];
      /** Counts, on `host`, the echo requests from `from` to `to` in each chain (rules inserted first, without a target). */
      const measure = async (host: LabHost, from: LabContainer, to: LabContainer): Promise<Record<string, number>> => {
        for (const entry of chains) {
          const [table, chain] = entry.split('/') as [string, string];
          const added = await lab.exec(
            host,
            `iptables -t ${table} -I ${chain} 1 -s ${from.ip} -d ${to.ip} -p icmp --icmp-type echo-request`,
          );
          assert.equal(added.code, 0, added.stderr);
        }
        const result = await ping(lab, from, to.ip, { count: 5, interval: 0.05 });
        assert.equal(result.received, 5, `${from.name} -> ${to.name}`);
        return firstRuleCounts(lab, host, chains);
      };
      const expected = {
        'raw/PREROUTING': 5,
        'mangle/PREROUTING': 5,
        'mangle/INPUT': 0,
        'filter/INPUT': 0,
        'mangle/FORWARD': 5,
        'filter/FORWARD': 5,
        'raw/OUTPUT': 0,
        'mangle/OUTPUT': 0,
        'filter/OUTPUT': 0,
        'mangle/POSTROUTING': 5,
      };
      assert.deepEqual(await measure(h2, c1, c2), expected, 'kernel VXLAN (h2) receiving from h1');
      assert.deepEqual(await measure(h1, c2, c1), expected, 'the userspace path (h1) receiving from h2: the same chains');
      // The FORWARD chain decides: weft's WEFT-FORWARD accepts overlay traffic under a DROP policy; a rule of
      // the operator's ahead of it drops what it names, for the userspace path as for kernel VXLAN.
      assert.equal((await lab.exec(h1, 'iptables -P FORWARD DROP')).code, 0);
      assert.equal((await ping(lab, c2, c1.ip, { count: 3, interval: 0.05 })).received, 3, 'accepted by WEFT-FORWARD');
      const echoes = await echoRequestsReceived(lab, c1);
      assert.equal((await lab.exec(h1, `iptables -I FORWARD 1 -i weft.1 -s ${c2.ip} -d ${c1.ip} -j DROP`)).code, 0);
      assert.equal((await ping(lab, c2, c1.ip, { count: 5, interval: 0.05 })).received, 0);
      assert.equal(await echoRequestsReceived(lab, c1), echoes, 'the dropped requests never reached the container');
      assert.ok((await firstRuleCounts(lab, h1, ['filter/FORWARD']))['filter/FORWARD'] >= 5, 'counted by the dropping rule');
    });

    it('recreates the overlay veth deleted by hand and restarts the data-path worker; a killed worker comes back too', async function () {
      const lab = await create(this, 2);
      const h1 = lab.hosts[0];
      const containers = await startHosts(lab, VXLAN_CONFIG, [['--vxlan-userspace=always'], []]);
      await assertMesh(lab, containers);
      const deleted = await lab.exec(h1, 'ip link del weft.1');
      assert.equal(deleted.code, 0, deleted.stderr);
      await waitFor(
        async () => (await meshFailures(lab, containers, { count: 1 })).length === 0,
        'traffic to flow again after the veth was deleted',
        20_000,
        250,
      );
      // Workers are named weftd-dataplane; this host's shares its network namespace.
      const killed = await lab.exec(
        h1,
        'for p in $(pgrep -x weftd-dataplane); do [ "$(readlink /proc/$p/ns/net)" = "$(readlink /proc/self/ns/net)" ] && kill -9 $p && echo $p; done | grep .',
      );
      assert.equal(killed.code, 0, killed.stderr);
      await waitFor(
        async () => (await meshFailures(lab, containers, { count: 1 })).length === 0,
        'traffic to flow again after the worker was killed',
        20_000,
        250,
      );
      assert.equal(lab.agent(h1)!.exit, undefined, 'weftd is still running');
      assert.ok((metricValue(await metrics(lab, h1), 'weft_userspace_worker_restarts_total') ?? 0) >= 2);
      assert.match(lab.agent(h1)!.log(), /data-path worker died; restarting it/);
    });
  });
}
