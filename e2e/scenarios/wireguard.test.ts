/**
 * The wireguard backend in the namespace lab, on wireguard-go (this machine class has no WireGuard module):
 * the mesh over IPv4 and dual stack, nothing in clear on the underlay, forged datagrams going nowhere, a peer
 * removed by hand coming back, key rotation, and the private key kept out of logs and weftctl.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { keyToHex } from '../../agent/wireguard/keys.js';
import { inSocketDir } from '../../agent/wireguard/wireguard-go.js';
import {
  httpGet,
  listSubnetLeases,
  NetnsLab,
  seedNetworkConfig,
  shellQuote,
  waitForSubnetEnv,
  type LabContainer,
  type LabHost,
} from '../lab/index.js';
import { agentArgs, HEALTHZ_PORT, meshFailures, metrics, metricValue } from './cluster.js';
import { netnsFactory, useLabs } from './suite.js';
import { waitFor as waitUntil } from '../../test/wait.js';

const RESYNC_SECONDS = 5;
const MARKER = 'weft-wireguard-cleartext-marker';
const HTTP_PORT = 8080;

function hostDir(lab: NetnsLab, host: LabHost): string {
  return dirname(lab.subnetFile(host));
}

/** weftd's flags for one lab host: its own key file and wireguard-go socket directory. */
function wireguardArgs(lab: NetnsLab, host: LabHost): string[] {
  return [`--wireguard-key-file=${join(hostDir(lab, host), 'wgkey')}`, `--wireguard-socket-dir=${join(hostDir(lab, host), 'wireguard')}`];
}

/** `wg` on a lab host, seeing that host's wireguard-go sockets. */
async function wg(lab: NetnsLab, host: LabHost, args: string): Promise<string> {
  const argv = inSocketDir(join(hostDir(lab, host), 'wireguard'), ['sh', '-c', `wg ${args}`]);
  return (await lab.exec(host, argv.map(shellQuote).join(' '), { check: true })).stdout;
}

async function startWireguardCluster(
  lab: NetnsLab,
  config: object,
  extra: (host: LabHost) => string[] = () => [],
): Promise<LabContainer[]> {
  await seedNetworkConfig(lab, config);
  for (const host of lab.hosts) await lab.startAgent(host, [...agentArgs(), ...wireguardArgs(lab, host), ...extra(host)]);
  const containers: LabContainer[] = [];
  for (const host of lab.hosts) {
    await waitForSubnetEnv(lab, host);
    containers.push(...(await lab.addContainers(host, 1)));
  }
  // A handshake sent before the peer's device listened (or while its IPv6 address was still tentative) is
  // retried by WireGuard 5 s later: the first ping may miss it.
  await waitFor(async () => (await meshFailures(lab, containers, { count: 1 })).length === 0, 'the first handshakes', 30_000);
  return containers;
}

/** test/wait's waitFor, with this suite's patience: handshakes and wireguard-go restarts take a while. */
function waitFor<T>(check: () => T | Promise<T>, what: string, timeoutMs = 20_000): Promise<Exclude<T, false | undefined>> {
  return waitUntil(check, what, timeoutMs, 200);
}

/** Every container serves MARKER over HTTP; every other container fetches it. Returns the failures. */
async function tcpFailures(lab: NetnsLab, containers: readonly LabContainer[], family: 4 | 6 = 4): Promise<string[]> {
  const servers = containers.map((container) =>
    lab.background(
      container,
      `exec node -e ${shellQuote(`require('http').createServer((q, r) => r.end('${MARKER}')).listen(${HTTP_PORT}, '::')`)}`,
    ),
  );
  try {
    await new Promise((done) => setTimeout(done, 1000));
    const failures: string[] = [];
    for (const from of containers) {
      for (const to of containers) {
        if (to.host === from.host) continue;
        const address = family === 6 ? `[${to.ipv6}]` : to.ip;
        const response = await httpGet(lab, from, `http://${address}:${HTTP_PORT}/`, { timeoutMs: 5000 });
        if (response.status !== 200 || response.body !== MARKER)
          failures.push(`${from.name} -> ${to.name}: ${response.status} ${response.body}`);
      }
    }
    return failures;
  } finally {
    await Promise.all(servers.map((server) => server.stop('SIGTERM')));
  }
}

describe('e2e: the wireguard backend (wireguard-go)', function () {
  this.timeout(240_000);
  const track = useLabs(netnsFactory);

  it('3 hosts: full mesh over ping and TCP, nothing in clear on the underlay, forged datagrams reach no container', async function () {
    const lab = await track(NetnsLab.create({ hosts: 3 }));
    // the allow-list off on every host: WireGuard itself must turn the forged datagrams away
    const containers = await startWireguardCluster(lab, { Network: '198.18.0.0/16', Backend: { Type: 'wireguard' } }, () => [
      '--ingress-allow-list=false',
    ]);

    const leases = await listSubnetLeases(lab);
    assert.equal(leases.length, 3);
    for (const lease of leases) {
      assert.equal(lease.attrs?.BackendType, 'wireguard');
      const data = lease.attrs?.BackendData as { PublicKey?: string; Port?: number };
      assert.match(String(data.PublicKey), /^[A-Za-z0-9+/]{43}=$/);
      assert.equal(data.Port, 51820);
    }
    const h0 = lab.hosts[0];
    assert.match((await lab.exec(h0, 'ip -d link show weft-wg', { check: true })).stdout, /tun/);
    assert.match((await lab.exec(h0, 'ip route show dev weft-wg', { check: true })).stdout, /198\.18\.0\.0\/16 .*scope link/);
    assert.match((await lab.exec(h0, 'ip link show weft-wg', { check: true })).stdout, /mtu 1420/);

    // capture everything on every host's underlay interface while containers talk, then look for clear text;
    // the kernel's own IPv6 neighbour discovery and multicast listener reports (from a link-local or the
    // unspecified address, before DAD completes) are not container traffic
    const pcaps = lab.hosts.map((host) => join(hostDir(lab, host), 'underlay.pcap'));
    const captures = lab.hosts.map((host, i) =>
      lab.background(
        host,
        `exec tcpdump -i ${host.iface} -U -s 0 -w ${pcaps[i]} 'not (tcp port 2379 or arp or ip6 src net fe80::/10 or ip6 src host ::)'`,
      ),
    );
    await new Promise((done) => setTimeout(done, 1000));
    assert.deepEqual(await meshFailures(lab, containers), []);
    assert.deepEqual(await tcpFailures(lab, containers), []);

    // an outsider on the underlay (the etcd host) sends datagrams to h1's WireGuard port: a bare IP packet
    // for h1's container (udp-backend style) and a WireGuard transport message with a made-up counter
    const h1Container = containers.find((container) => container.host === lab.hosts[1])!;
    const sniff = lab.background(h1Container, `exec tcpdump -i eth0 -n -c 1 'icmp and src 198.18.200.9'`);
    await new Promise((done) => setTimeout(done, 1000));
    const forge = [
      "const dgram = require('dgram'); const s = dgram.createSocket('udp4');",
      "const ip = Buffer.from('4500001c00004000400100000000000000000000080000000000000000', 'hex').subarray(0, 28);",
      `Buffer.from([198, 18, 200, 9]).copy(ip, 12); Buffer.from(${JSON.stringify(h1Container.ip.split('.').map(Number))}).copy(ip, 16);`,
      'const transport = Buffer.concat([Buffer.from([4, 0, 0, 0]), Buffer.alloc(12), ip, Buffer.alloc(16)]);',
      'let n = 0; const send = () => { for (const p of [ip, transport]) s.send(p, 51820, process.argv[1]); if (++n < 20) setTimeout(send, 50); else s.close(); }; send();',
    ].join('\n');
    await lab.execIn(lab.etcdHost.netns, `node -e ${shellQuote(forge)} ${lab.hosts[1].publicIp}`, { check: true });
    await new Promise((done) => setTimeout(done, 1500));
    const sniffed = await sniff.stop('SIGTERM');
    assert.doesNotMatch(sniffed.stdout, /198\.18\.200\.9/, 'a forged packet reached the container');

    await Promise.all(captures.map((capture) => capture.stop('SIGINT')));
    const dump = await lab.exec(h0, pcaps.map((pcap) => `tcpdump -r ${pcap} -nn 2>/dev/null`).join('; '), { check: true });
    const lines = dump.stdout.split('\n').filter((line) => line.trim() !== '');
    assert.ok(lines.length > 50, `the capture holds the containers' traffic (${lines.length} packets)`);
    // between hosts: WireGuard port to WireGuard port; from the outsider (etcd, 192.0.2.2): its forged datagrams
    const wireguard = /^\S+ IP (192\.0\.2\.1\d\.51820 > 192\.0\.2\.1\d\.51820|192\.0\.2\.2\.\d+ > 192\.0\.2\.1\d\.51820): /;
    assert.deepEqual(
      lines.filter((line) => !wireguard.test(line)),
      [],
      'every packet between the hosts is a WireGuard datagram',
    );
    assert.deepEqual(
      lines.filter((line) => /198\.18\./.test(line) && !line.includes('198.18.200.9')),
      [],
      'no overlay address on the underlay',
    );
    const raw = await lab.exec(h0, `for f in ${pcaps.join(' ')}; do tcpdump -nn -r $f -A 2>/dev/null; done | grep -c ${MARKER} || true`);
    assert.equal(raw.stdout.trim(), '0', 'the TCP payload never crosses the underlay in clear');

    // /readyz and /metrics say which implementation runs
    const ready = JSON.parse((await httpGet(lab, h0, `http://127.0.0.1:${HEALTHZ_PORT}/readyz`)).body) as {
      info?: Record<string, unknown>;
    };
    assert.equal(ready.info?.dataPath, 'userspace');
    assert.match(String(ready.info?.dataPathReason), /wireguard-go/);
    assert.equal(metricValue(await metrics(lab, h0), 'weft_data_path{backend="wireguard",path="userspace"}'), 1);
    assert.equal(metricValue(await metrics(lab, h0), 'weft_peers{backend="wireguard"}'), 2);

    // weftctl: the public key in leases ls, doctor finds nothing wrong; the private key is nowhere
    const ls = await lab.exec(h0, lab.weftctlCommand(['leases', 'ls']), { check: true });
    const doctor = await lab.exec(
      h0,
      lab.weftctlCommand([
        'doctor',
        `--subnet-file=${lab.subnetFile(h0)}`,
        `--healthz-port=${HEALTHZ_PORT}`,
        '--ingress-allow-list=false',
        ...wireguardArgs(lab, h0),
      ]),
    );
    assert.equal(doctor.code, 0, doctor.stdout + doctor.stderr);
    assert.match(doctor.stdout, /weft-wg: wireguard-go \(TUN\), UDP 51820/);
    assert.match(doctor.stdout, /weft-wg: 2 peers as the leases say/);
    for (const host of lab.hosts) {
      const secret = readFileSync(join(hostDir(lab, host), 'wgkey'), 'utf8').trim();
      const publicKey = String(
        (leases.find((lease) => lease.attrs?.PublicIP === host.publicIp)!.attrs!.BackendData as { PublicKey: string }).PublicKey,
      );
      assert.ok(ls.stdout.includes(publicKey), `leases ls shows ${host.name}'s public key`);
      const seen = [readFileSync(lab.agentLogFile(host), 'utf8'), ls.stdout, doctor.stdout, doctor.stderr, await metrics(lab, host)].join(
        '\n',
      );
      for (const form of [secret, keyToHex(secret)])
        assert.ok(!seen.includes(form), `${host.name}'s private key appears in a log or weftctl output`);
    }
  });

  it('a peer removed or changed with wg comes back within the resync period; the route, a dead wireguard-go and a killed weftd heal; a rotated key reaches every peer without restarting it', async function () {
    const lab = await track(NetnsLab.create({ hosts: 3 }));
    const containers = await startWireguardCluster(lab, {
      Network: '198.18.0.0/16',
      Backend: { Type: 'wireguard', PersistentKeepaliveInterval: 25 },
    });
    assert.deepEqual(await meshFailures(lab, containers), []);
    const h0 = lab.hosts[0];
    const h1 = lab.hosts[1];
    const keyOf = (host: LabHost): string => readFileSync(join(hostDir(lab, host), 'wgkey'), 'utf8').trim();
    const peersOf = async (host: LabHost): Promise<string> => wg(lab, host, 'show weft-wg dump');
    const h1Public = (await wg(lab, h1, 'show weft-wg public-key')).trim();
    assert.match(
      await peersOf(h0),
      new RegExp(`${h1Public.replace(/[+/]/g, '\\$&')}\t\\(none\\)\t${h1.publicIp}:51820\t198\\.18\\.\\d+\\.0/24\t\\d+\t\\d+\t\\d+\t25`),
    );

    await wg(lab, h0, `set weft-wg peer ${h1Public} remove`);
    assert.doesNotMatch(await peersOf(h0), new RegExp(h1Public.replace(/[+/]/g, '\\$&')));
    const removedAt = Date.now();
    await waitFor(async () => (await peersOf(h0)).includes(h1Public), 'the removed peer to come back', (RESYNC_SECONDS + 5) * 1000);
    assert.ok(Date.now() - removedAt <= (RESYNC_SECONDS + 2) * 1000, 'restored within the resync period');
    await wg(lab, h0, `set weft-wg peer ${h1Public} endpoint 192.0.2.99:51820 allowed-ips 198.19.0.0/24`);
    await waitFor(
      async () => (await peersOf(h0)).includes(`${h1.publicIp}:51820`),
      'the changed peer to be repaired',
      (RESYNC_SECONDS + 5) * 1000,
    );
    assert.deepEqual(await meshFailures(lab, containers), []);

    // the network route deleted by hand is back on the kernel's notification
    await lab.exec(h0, 'ip route del 198.18.0.0/16 dev weft-wg', { check: true });
    await waitFor(
      async () => (await lab.exec(h0, 'ip route show dev weft-wg')).stdout.includes('198.18.0.0/16'),
      'the network route to come back',
    );

    // the wireguard-go of a host's network namespace (pgrep alone sees every lab's)
    const ownWireguardGo = async (host: LabHost): Promise<string> =>
      (
        await lab.exec(
          host,
          'for p in $(pgrep -x wireguard-go); do [ "$(readlink /proc/$p/ns/net)" = "$(readlink /proc/self/ns/net)" ] && echo $p; done; true',
        )
      ).stdout.trim();

    // wireguard-go dies: weftd starts another (the TUN device went with it) and configures it again
    const died = await ownWireguardGo(h0);
    assert.match(died, /^\d+$/);
    await lab.exec(h0, `kill -9 ${died}`, { check: true });
    await waitFor(
      async () => {
        const now = await ownWireguardGo(h0);
        return /^\d+$/.test(now) && now !== died && (await meshFailures(lab, containers, { count: 1 })).length === 0;
      },
      'a new wireguard-go on h0 to carry the mesh',
      30_000,
    );

    // weftd killed: its wireguard-go is orphaned; the next weftd dismisses it and starts its own
    const h2 = lab.hosts[2];
    const orphan = await ownWireguardGo(h2);
    assert.match(orphan, /^\d+$/);
    await lab.stopAgent(h2, 'SIGKILL');
    await lab.startAgent(h2, [...agentArgs(), ...wireguardArgs(lab, h2)]);
    await waitFor(
      async () => {
        const now = await ownWireguardGo(h2);
        return /^\d+$/.test(now) && now !== orphan && (await meshFailures(lab, containers)).length === 0;
      },
      "the restarted weftd's own wireguard-go to carry the mesh",
      30_000,
    );

    // rotate h1's key: delete the file and restart h1's weftd only
    const before = keyOf(h1);
    await lab.stopAgent(h1);
    await lab.exec(h1, `rm ${join(hostDir(lab, h1), 'wgkey')}`, { check: true });
    await lab.startAgent(h1, [...agentArgs(), ...wireguardArgs(lab, h1)]);
    await waitForSubnetEnv(lab, h1);
    await waitFor(async () => existsSync(join(hostDir(lab, h1), 'wgkey')) && keyOf(h1) !== before, 'a new key on h1');
    // subnet.env is the old one: the new weftd's device may not answer yet
    const rotated = await waitFor(async () => {
      const key = (await wg(lab, h1, 'show weft-wg public-key').catch(() => '')).trim();
      return key === '' || key === h1Public ? undefined : key;
    }, "h1's device to carry a new key");
    await waitFor(async () => (await peersOf(h0)).includes(rotated) && !(await peersOf(h0)).includes(h1Public), "h0 to take h1's new key");
    assert.deepEqual(await meshFailures(lab, containers), []);
  });

  it('dual stack (Mode separate): weft-wg and weft-wg-v6, the mesh over IPv4 and IPv6, ping and TCP', async function () {
    const lab = await track(NetnsLab.create({ hosts: 3, ipv6: true }));
    const containers = await startWireguardCluster(lab, {
      Network: '198.18.0.0/16',
      EnableIPv6: true,
      IPv6Network: '2001:db8:100::/48',
      Backend: { Type: 'wireguard' },
    });
    assert.deepEqual(await meshFailures(lab, containers, { family: 4 }), []);
    assert.deepEqual(await meshFailures(lab, containers, { family: 6 }), []);
    assert.deepEqual(await tcpFailures(lab, containers, 6), []);
    for (const lease of await listSubnetLeases(lab)) {
      const v4 = lease.attrs?.BackendData as { PublicKey?: string; Port?: number };
      const v6 = lease.attrs?.BackendV6Data as { PublicKey?: string; Port?: number };
      assert.equal(v4.Port, 51820);
      assert.equal(v6.Port, 51821);
      assert.equal(v4.PublicKey, v6.PublicKey);
    }
    const h0 = lab.hosts[0];
    assert.match(await wg(lab, h0, 'show weft-wg-v6 dump'), /\[2001:db8:0:1::[0-9a-f]+\]:51821\t2001:db8:100:[0-9a-f]+::\/64/);
    assert.match((await lab.exec(h0, 'ip -6 route show dev weft-wg-v6', { check: true })).stdout, /2001:db8:100::\/48/);
  });

  it('dual stack with Mode ipv6: one device for both families, every peer reached over IPv6 at the port it listens on', async function () {
    const lab = await track(NetnsLab.create({ hosts: 3, ipv6: true }));
    const containers = await startWireguardCluster(lab, {
      Network: '198.18.0.0/16',
      EnableIPv6: true,
      IPv6Network: '2001:db8:100::/48',
      Backend: { Type: 'wireguard', Mode: 'ipv6' },
    });
    assert.deepEqual(await meshFailures(lab, containers, { family: 4 }), []);
    assert.deepEqual(await meshFailures(lab, containers, { family: 6 }), []);
    const h0 = lab.hosts[0];
    assert.equal((await lab.exec(h0, 'ip link show weft-wg-v6')).code, 1, 'no second device');
    const dump = await wg(lab, h0, 'show weft-wg dump');
    assert.match(dump, /\[2001:db8:0:1::[0-9a-f]+\]:51820\t198\.18\.\d+\.0\/24,2001:db8:100:[0-9a-f]+::\/64\t/);
    assert.match(
      (await lab.exec(h0, 'ip route show dev weft-wg; ip -6 route show dev weft-wg', { check: true })).stdout,
      /198\.18\.0\.0\/16[\s\S]*2001:db8:100::\/48/,
    );
    for (const lease of await listSubnetLeases(lab)) assert.equal((lease.attrs?.BackendV6Data as { Port?: number }).Port, 51820);
  });
});
