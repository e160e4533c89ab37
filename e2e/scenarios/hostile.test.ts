/**
 * Hostile or broken etcd content: every host writes to etcd, so one buggy or compromised writer reaches every
 * agent. These scenarios write what such a writer would, through a real etcd in the namespace lab, and check
 * that the cluster stays up: agents alive, /healthz answering, the data plane as it was, new hosts joining.
 */
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { IpAddress } from '../../common/cidr.js';
import { stableVtepMac } from '../../common/dataplane.js';
import { excerpt } from '../../common/json.js';
import { sleep, waitFor } from '../../test/wait.js';
import {
  httpGet,
  leaseOf,
  NetnsLab,
  ping,
  seedNetworkConfig,
  waitForSubnetEnv,
  type BackgroundCommand,
  type LabContainer,
  type LabHost,
} from '../lab/index.js';
import { agentArgs, HEALTHZ_PORT, kernelState, meshFailures, metrics, metricValue } from './cluster.js';
import { netnsFactory, useLabs } from './suite.js';

const WRITER = fileURLToPath(new URL('./fixtures/etcd-writer.js', import.meta.url));
const PREFIX = '/coreos.com/network';

/** A key and what to put there: bytes, or `size` bytes of "x". */
interface RawPut {
  key: string | Uint8Array;
  value?: string | Uint8Array;
  size?: number;
}

/** Puts the keys as they are (binary, megabytes) from inside `from`, one by one, in order. */
async function writeRaw(lab: NetnsLab, from: LabHost, puts: readonly RawPut[]): Promise<void> {
  const encode = (data: string | Uint8Array) => Buffer.from(data).toString('base64');
  const input = JSON.stringify({
    endpoint: lab.etcdEndpoint,
    puts: puts.map((put) => ({
      key: encode(put.key),
      ...(put.size === undefined ? { value: encode(put.value ?? '') } : { size: put.size }),
    })),
  });
  await lab.exec(from, `node ${WRITER}`, { input, check: true, timeoutMs: 60_000 });
}

/** Asks the host's own /healthz every 200 ms from inside it, printing "." for a 200 and "x" for anything else. */
function pollHealthz(lab: NetnsLab, host: LabHost): BackgroundCommand {
  const script =
    `setInterval(() => fetch('http://127.0.0.1:${HEALTHZ_PORT}/healthz', { signal: AbortSignal.timeout(2000) })` +
    `.then((r) => process.stdout.write(r.status === 200 ? '.' : 'x'), () => process.stdout.write('x')), 200)`;
  return lab.background(host, `exec node -e "${script}"`);
}

function leaseValue(publicIP: string, mac: string): string {
  return JSON.stringify({ PublicIP: publicIP, PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: mac } });
}

/** The subnet's key part ("198.18.5.0-24") and its first three octets. */
function subnetParts(subnet: string): { key: string; octets: string } {
  return { key: subnet.replace('/', '-'), octets: subnet.split('.').slice(0, 3).join('.') };
}

async function startHosts(lab: NetnsLab, hosts: readonly LabHost[]): Promise<LabContainer[]> {
  const containers: LabContainer[] = [];
  for (const host of hosts) await lab.startAgent(host, agentArgs());
  for (const host of hosts) {
    await waitForSubnetEnv(lab, host);
    containers.push(...(await lab.addContainers(host, 1)));
  }
  return containers;
}

describe('e2e: hostile or broken etcd content never crashes, hijacks or starves a cluster (namespace lab)', function () {
  this.timeout(240_000);
  const track = useLabs(netnsFactory);

  it('a hostile writer leaves the agents alive and the mesh intact, and a new host leases and meshes within 10 s', async function () {
    const lab = await track(NetnsLab.create({ hosts: 4 }));
    const [h1, h2, h3, h4] = [lab.hosts[0], lab.hosts[1], lab.hosts[2], lab.hosts[3]];
    await seedNetworkConfig(lab);
    const containers = await startHosts(lab, [h1, h2, h3]);
    assert.deepEqual(await meshFailures(lab, containers), [], 'the mesh before');
    const pollers = [h1, h2, h3].map((host) => pollHealthz(lab, host));
    await waitFor(() => pollers.every((poller) => poller.output().stdout.includes('.')), 'the /healthz pollers to get going', 30_000, 50);
    const polledBefore = pollers.map((poller) => poller.output().stdout.length);
    const lease1 = (await leaseOf(lab, h1.publicIp))!;
    const lease2 = (await leaseOf(lab, h2.publicIp))!;
    const one = subnetParts(lease1.subnet);
    const two = subnetParts(lease2.subnet);
    const deep = '['.repeat(5000) + ']'.repeat(5000);
    const config = `{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"},"Junk":${deep}}`;
    // a free subnet someone else's route already covers on h3, and a lease for it
    const routed = ['198.18.251.0/24', 'via', '192.0.2.1', 'dev', h3.iface, 'proto', 'static'];
    await lab.exec(h3, `ip route add ${routed.join(' ')}`, { check: true });
    const hostile: RawPut[] = [
      // nested thousands of levels deep, each twice
      { key: `${PREFIX}/subnets/198.18.250.0-24`, value: `{"PublicIP":"198.19.0.65","BackendType":"vxlan","X":${deep}}` },
      { key: `${PREFIX}/subnets/198.18.250.0-24`, value: `{"PublicIP":"198.19.0.65","BackendType":"vxlan","X":${deep}}` },
      { key: `${PREFIX}/config`, value: config },
      { key: `${PREFIX}/config`, value: config },
      // h1's subnet again, in the dual-stack form, with another host's public IP and VtepMAC
      {
        key: `${PREFIX}/subnets/${one.key}&2001:db8:100:1::-64`,
        value: JSON.stringify({
          PublicIP: '198.19.0.66',
          PublicIPv6: '2001:db8:0:1::66',
          BackendType: 'vxlan',
          BackendData: { VNI: 1, VtepMAC: '0a:00:00:00:00:66' },
          BackendV6Data: { VNI: 1, VtepMAC: '0a:00:00:00:00:67' },
        }),
      },
      // a longer prefix inside h2's subnet, which would win by longest prefix
      { key: `${PREFIX}/subnets/${two.octets}.128-25`, value: leaseValue('198.19.0.67', '0a:00:00:00:00:68') },
      // a key over the whole network, which used to block every candidate subnet
      { key: `${PREFIX}/subnets/198.18.0.0-16`, value: leaseValue('198.19.0.68', '0a:00:00:00:00:69') },
      // the VtepMAC the next host will derive from its public IP, claimed before it exists
      { key: `${PREFIX}/subnets/198.18.252.0-24`, value: leaseValue('198.19.0.69', stableVtepMac(IpAddress.parse(h4.publicIp), 1)) },
      // a lease for the prefix h3's own route covers
      { key: `${PREFIX}/subnets/198.18.251.0-24`, value: leaseValue('198.19.0.70', '0a:00:00:00:00:70') },
      // more than a gRPC message of junk (three values of 1.4 MiB)
      { key: `${PREFIX}/subnets/junk-1`, size: 1.4 * 1024 * 1024 },
      { key: `${PREFIX}/subnets/junk-2`, size: 1.4 * 1024 * 1024 },
      { key: `${PREFIX}/subnets/junk-3`, size: 1.4 * 1024 * 1024 },
    ];
    await writeRaw(lab, h4, hostile);

    // every agent takes it in and stays up
    await waitFor(
      async () => {
        const text = await metrics(lab, h2);
        return (
          metricValue(text, 'weft_leases_ignored{reason="malformed"}') === 4 &&
          metricValue(text, 'weft_leases_ignored{reason="subnet-conflict"}') === 1 &&
          metricValue(text, 'weft_leases_ignored{reason="invalid-subnet"}') === 2
        );
      },
      'h2 to count what it ignores',
      10_000,
      200,
    );
    await waitFor(
      async () => metricValue(await metrics(lab, h3), 'weft_routes_blocked{family="4"}') === 1,
      'h3 to leave the routed prefix alone',
      10_000,
      200,
    );
    for (const host of [h1, h2, h3])
      assert.equal(lab.agent(host)!.exit, undefined, `${host.name} is alive:\n${lab.agent(host)!.log().slice(-2000)}`);
    assert.deepEqual(await meshFailures(lab, containers), [], 'the mesh after the hostile writes');
    for (const host of [h2, h3]) {
      const { routes, fdb } = await kernelState(lab, host);
      assert.match(
        routes,
        new RegExp(`^${one.octets.replace(/\./g, '\\.')}\\.0/24 .*dev weft\\.1`, 'm'),
        `${host.name} routes h1's subnet to h1`,
      );
      assert.ok(!routes.includes('/25') && !routes.includes('198.18.0.0/16'), routes);
      assert.ok(!fdb.includes('0a:00:00:00:00:66') && !fdb.includes('0a:00:00:00:00:68'), fdb);
    }
    assert.match(
      (await lab.exec(h3, 'ip route show 198.18.251.0/24')).stdout,
      /via 192\.0\.2\.1 dev \S+ proto static/,
      "h3's own route is untouched",
    );

    // a new host, with all of that in etcd
    const started = Date.now();
    const deadline = () => Math.max(0, started + 10_000 - Date.now());
    await lab.startAgent(h4, agentArgs());
    const env = await waitForSubnetEnv(lab, h4, { timeoutMs: 10_000 });
    assert.match(env.subnet ?? '', /^198\.18\.\d+\.1\/24$/, 'a /24 of the network: the /16 key blocks nothing');
    const [c4] = await lab.addContainers(h4, 1);
    await waitFor(
      async () => {
        const results = await Promise.all(
          containers.flatMap((other) => [
            ping(lab, c4, other.ip, { count: 1, deadline: 1 }),
            ping(lab, other, c4.ip, { count: 1, deadline: 1 }),
          ]),
        );
        return results.every((result) => result.received === 1);
      },
      'the new host to be meshed with every other within 10 s of its start',
      deadline(),
      100,
    );
    assert.deepEqual(await meshFailures(lab, [...containers, c4]), []);

    // operators see what is ignored, and why
    const doctor = await lab.exec(h1, lab.weftctlCommand(['doctor', `--subnet-file=${lab.subnetFile(h1)}`, '-o', 'json']), {
      timeoutMs: 60_000,
    });
    const findings = JSON.parse(doctor.stdout) as { check: string; severity: string; message: string }[];
    const ignored = findings
      .filter((finding) => finding.check === 'lease' && finding.severity === 'warn')
      .map((finding) => finding.message);
    assert.ok(
      ignored.some((message) =>
        message.includes(`${one.key}&2001:db8:100:1::-64: 198.18.${one.octets.split('.')[2]}.0/24 is held by ${one.key}`),
      ),
      ignored.join('\n'),
    );
    assert.ok(
      ignored.some((message) => message.includes('198.18.252.0-24: VtepMAC') && message.includes('its public IP derives it')),
      ignored.join('\n'),
    );
    assert.deepEqual(
      findings.filter((finding) => ['route', 'dataplane', 'fdb', 'neighbour'].includes(finding.check) && finding.severity === 'fail'),
      [],
    );
    const listed = JSON.parse((await lab.exec(h1, lab.weftctlCommand(['leases', 'ls', '-o', 'json']))).stdout) as {
      subnet: string;
      ignored: { reason: string } | null;
    }[];
    assert.deepEqual(
      listed
        .filter((row) => row.ignored !== null)
        .map((row) => `${row.subnet} ${row.ignored!.reason}`)
        .sort(),
      [
        '198.18.0.0/16 invalid-subnet',
        `198.18.${one.octets.split('.')[2]}.0/24,2001:db8:100:1::/64 subnet-conflict`,
        '198.18.252.0/24 vtep-mac-conflict',
        `${two.octets}.128/25 invalid-subnet`,
      ].sort(),
    );

    for (const [i, poller] of pollers.entries()) {
      const { stdout } = await poller.stop('SIGKILL');
      assert.ok(stdout.length > polledBefore[i] && !stdout.includes('x'), `/healthz answered throughout: ${stdout}`);
    }
    for (const host of [h1, h2, h3, h4]) assert.equal(lab.agent(host)!.exit, undefined, `${host.name} is alive`);
  });

  it('survives a fast-check fuzz of keys and values: every agent stays up and its data plane unchanged', async function () {
    const lab = await track(NetnsLab.create({ hosts: 3 }));
    const [h1, h2, writer] = [lab.hosts[0], lab.hosts[1], lab.hosts[2]];
    await seedNetworkConfig(lab);
    const containers = await startHosts(lab, [h1, h2]);
    const before = { h1: await kernelState(lab, h1), h2: await kernelState(lab, h2) };
    const live = [(await leaseOf(lab, h1.publicIp))!, (await leaseOf(lab, h2.publicIp))!];
    const liveMacs = live.map((entry) => (entry.attrs!.BackendData as { VtepMAC: string }).VtepMAC);
    const liveSubnets = live.map((entry) => entry.subnet);

    const nested = fc
      .integer({ min: 17, max: 6000 })
      .chain((depth) =>
        fc.constantFrom(
          '['.repeat(depth) + ']'.repeat(depth),
          `{"PublicIP":"198.19.0.9","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:00:00:00:09:09"},"X":${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}}`,
          `{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"},"X":${'['.repeat(depth)}${']'.repeat(depth)}}`,
        ),
      );
    const wrongTypes = fc
      .record({
        PublicIP: fc.jsonValue({ maxDepth: 2 }),
        BackendType: fc.jsonValue({ maxDepth: 2 }),
        BackendData: fc.jsonValue({ maxDepth: 3 }),
      })
      .map((value) => JSON.stringify(value));
    const junkValue: fc.Arbitrary<Pick<RawPut, 'value' | 'size'>> = fc.oneof(
      nested.map((value) => ({ value })),
      fc.integer({ min: 4097, max: 1_400_000 }).map((size) => ({ size })),
      fc.uint8Array({ maxLength: 256 }).map((value) => ({ value })),
      wrongTypes.map((value) => ({ value })),
      fc.string({ unit: 'grapheme', maxLength: 64 }).map((value) => ({ value })),
      fc.json({ maxDepth: 4 }).map((value) => ({ value })),
    );
    const junkName = fc.oneof(
      fc.string({ unit: 'grapheme', maxLength: 40 }),
      fc.uint8Array({ minLength: 1, maxLength: 40 }).map((bytes) => Buffer.from(bytes).toString('latin1')),
      fc.constantFrom('198.18.0.0-16', '198.18.7.128-25', '0.0.0.0-0', '198.18.7.0-24&', '&', '198.18.7.0-24/extra', ''),
    );
    const junk = fc
      .record({ where: fc.constantFrom('subnets/', 'config', 'config-', 'subnets', ''), name: junkName, value: junkValue })
      .map(({ where, name, value }): RawPut => ({ key: where === 'config' ? `${PREFIX}/config` : `${PREFIX}/${where}${name}`, ...value }));
    // valid lease values under keys that must never take effect: another form of a live subnet, a subnet of
    // another length or outside the network, or a free subnet with a live host's VtepMAC
    const hostileName = fc.oneof(
      fc
        .tuple(fc.constantFrom(...liveSubnets), fc.integer({ min: 0, max: 0xffff }))
        .map(([subnet, n]) => `${subnet.replace('/', '-')}&2001:db8:100:${n.toString(16)}::-64`),
      fc
        .tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }), fc.constantFrom(16, 20, 25, 28, 32))
        .map(([c, d, length]) => `198.18.${c}.${length >= 25 ? d - (d % (1 << (32 - length))) : 0}-${length}`),
      fc.integer({ min: 0, max: 255 }).map((c) => `198.19.${c}.0-24`),
    );
    const hostile = fc.oneof(
      fc
        .tuple(hostileName, fc.integer({ min: 1, max: 250 }), fc.uint8Array({ minLength: 6, maxLength: 6 }))
        .map(([name, n, mac]): RawPut => ({
          key: `${PREFIX}/subnets/${name}`,
          value: leaseValue(
            `198.19.1.${n}`,
            [...mac].map((byte, i) => (i === 0 ? (byte & 0xfe) | 2 : byte).toString(16).padStart(2, '0')).join(':'),
          ),
        })),
      fc
        .tuple(
          fc.integer({ min: 1, max: 254 }).filter((c) => !liveSubnets.includes(`198.18.${c}.0/24`)),
          fc.constantFrom(...liveMacs),
          fc.integer({ min: 1, max: 250 }),
        )
        .map(([c, mac, n]): RawPut => ({ key: `${PREFIX}/subnets/198.18.${c}.0-24`, value: leaseValue(`198.19.2.${n}`, mac) })),
    );
    // a failing run is reported by what it wrote, in short: some values are megabytes
    const shown = fc.oneof(junk, hostile).map((put) =>
      Object.assign(put, {
        [fc.toStringMethod]: () =>
          `${JSON.stringify(excerpt(Buffer.from(put.key).toString()))} = ${put.size !== undefined ? `${put.size} × "x"` : JSON.stringify(excerpt(Buffer.from(put.value ?? '').toString(), 300))}`,
      }),
    );
    const runs = { count: 0 };
    await fc.assert(
      fc.asyncProperty(fc.array(shown, { minLength: 1, maxLength: 6 }), async (puts) => {
        runs.count++;
        await writeRaw(lab, writer, puts);
        await sleep(300);
        for (const [name, host] of [
          ['h1', h1],
          ['h2', h2],
        ] as const) {
          assert.equal(lab.agent(host)!.exit, undefined, `${name} is alive:\n${lab.agent(host)!.log().slice(-3000)}`);
          assert.deepEqual(await kernelState(lab, host), before[name], `${name}'s data plane is unchanged`);
        }
      }),
      { numRuns: 25, endOnFailure: true },
    );
    assert.ok(runs.count >= 25);
    assert.deepEqual(await meshFailures(lab, containers), []);
    for (const host of [h1, h2])
      assert.equal((await httpGet(lab, host, `http://127.0.0.1:${HEALTHZ_PORT}/healthz`)).status, 200, `${host.name} /healthz`);
  });
});
