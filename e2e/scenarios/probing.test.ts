/**
 * Peer health probing end to end in the namespace lab: every weftd probes its peers over the overlay,
 * /peers and /metrics say how each peer answers, and `weftctl status` joins the hosts' reports into the
 * directions that lose packets — a firewall dropping VXLAN one way, an underlay link whose MTU is too small.
 */
import assert from 'node:assert/strict';
import { waitFor } from '../../test/wait.js';
import { httpGet, NetnsLab, type ClusterDriver, type ExecResult, type LabHost } from '../lab/index.js';
import type { PeersReport } from '../../common/reachability.js';
import { HEALTHZ_PORT, metricValue, metrics, startCluster } from './cluster.js';
import { netnsFactory, useLabs } from './suite.js';

interface PathRow {
  lease: string;
  publicIP: string;
  paths: { from: string; to: string; state: string; detail: string; since: string | null }[];
  problems: string[];
}

async function peersOf(cluster: ClusterDriver, host: LabHost, query = ''): Promise<PeersReport> {
  const reply = await httpGet(cluster, host, `http://127.0.0.1:${HEALTHZ_PORT}/peers${query}`);
  assert.equal(reply.status, 200, reply.body);
  return JSON.parse(reply.body) as PeersReport;
}

function status(cluster: ClusterDriver, host: LabHost, ...extra: string[]): Promise<ExecResult> {
  return cluster.exec(host, cluster.weftctlCommand(['status', `--healthz-port=${HEALTHZ_PORT}`, ...extra]), { timeoutMs: 60_000 });
}

/** Every direction status reports, as "h1→h2 lost". */
function reported(cluster: ClusterDriver, rows: readonly PathRow[]): string[] {
  const hostOf = (lease: string) =>
    cluster.hosts.find((host) => host.publicIp === rows.find((row) => row.lease === lease)?.publicIP)?.name ?? lease;
  return rows.flatMap((row) => row.paths.map((path) => `${hostOf(path.from)}→${hostOf(path.to)} ${path.state}`)).sort();
}

describe('e2e: peer health probing in the namespace lab', function () {
  this.timeout(240_000);
  const track = useLabs(netnsFactory);

  it('every host probes every peer; status names a path that a firewall breaks one way, within 30 s, and clears once it is fixed', async function () {
    const cluster: ClusterDriver = await track(NetnsLab.create({ hosts: 3 }));
    await startCluster(cluster);
    const [h1, h2, h3] = cluster.hosts as [LabHost, LabHost, LabHost];

    // the default interval (10 s): every peer answers within a round
    for (const host of cluster.hosts) {
      const report = await waitFor(
        async () => {
          const current = await peersOf(cluster, host);
          return current.peers.length === 2 && current.peers.every((peer) => peer.state === 'ok') ? current : undefined;
        },
        `${host.name}'s peers to answer its probes`,
        30_000,
        500,
      );
      assert.equal(report.roundSeconds, 10);
      assert.equal(report.sizes.small, 64);
      assert.equal(report.sizes.full, 1450, 'the full-size probe is the overlay MTU');
      assert.match(report.source ?? '', /^198\.18\.\d+\.0$/);
      for (const peer of report.peers) {
        assert.ok(peer.rttSeconds !== null && peer.rttSeconds > 0 && peer.rttSeconds < 1, JSON.stringify(peer));
        assert.match(peer.address, /^198\.18\.\d+\.0$/);
        assert.ok(Date.parse(peer.since) <= Date.now());
      }
      const text = await metrics(cluster, host);
      assert.equal(metricValue(text, 'weft_peers_unreachable'), 0);
      assert.equal(metricValue(text, 'weft_peers_probed{state="ok"}'), 2);
      assert.ok((metricValue(text, 'weft_peer_probe_rtt_seconds_count') ?? 0) >= 2, text);
    }
    assert.deepEqual((await peersOf(cluster, h1, '?state=problem')).peers, []);
    const healthy = await status(cluster, h1);
    assert.equal(healthy.code, 0, healthy.stdout + healthy.stderr);
    assert.match(healthy.stdout, /^REACHABILITY over the overlay/m);
    assert.match(healthy.stdout, /^no broken paths$/m);

    // h2 drops h1's VXLAN datagrams: h1→h2 loses everything, h2→h1 still carries (h1 hears h2's probes)
    const rule = `INPUT -s ${h1.publicIp} -p udp --dport 8472 -j DROP`;
    await cluster.exec(h2, `iptables -I ${rule}`, { check: true });
    const started = Date.now();
    const rows = await waitFor(
      async () => {
        const result = await status(cluster, h3, '-o', 'json');
        const parsed = JSON.parse(result.stdout) as PathRow[];
        return reported(cluster, parsed).includes('h1→h2 lost') ? { result, parsed } : undefined;
      },
      'status to name h1→h2',
      30_000,
      1000,
    );
    process.stderr.write(`      (h1→h2 named after ${((Date.now() - started) / 1000).toFixed(1)} s)\n`);
    assert.equal(rows.result.code, 1);
    assert.deepEqual(reported(cluster, rows.parsed), ['h1→h2 lost'], 'only that direction, only that pair');
    const h1Row = rows.parsed.find((row) => row.publicIP === h1.publicIp)!;
    assert.match(
      h1Row.problems.join('\n'),
      new RegExp(
        `no packets from ${h1.publicIp.replace(/\./g, '\\.')} arrive at ${h2.publicIp.replace(/\./g, '\\.')} over the overlay: ${h2.publicIp.replace(/\./g, '\\.')} hears none of the probes`,
      ),
    );
    const table = await status(cluster, h3);
    assert.equal(table.code, 1);
    assert.match(
      table.stdout,
      new RegExp(`^${h1.publicIp.replace(/\./g, '\\.')} → ${h2.publicIp.replace(/\./g, '\\.')}: no reply: no packets from`, 'm'),
      table.stdout,
    );
    // the matrix: h1's row says LOST towards h2 only
    const lines = table.stdout.split('\n');
    const columns = lines
      .find((line) => line.startsWith('FROM \\ TO'))!
      .slice('FROM \\ TO'.length)
      .trim()
      .split(/\s+/);
    const h1Cells = lines
      .find((line) => line.startsWith(`${h1.publicIp} `) && !line.includes('→'))!
      .trim()
      .split(/\s+/)
      .slice(1);
    assert.deepEqual(
      Object.fromEntries(columns.map((ip, i) => [ip, h1Cells[i]])),
      { [h1.publicIp]: '-', [h2.publicIp]: 'LOST', [h3.publicIp]: 'ok' },
      table.stdout,
    );
    const h1Metrics = await metrics(cluster, h1);
    assert.equal(metricValue(h1Metrics, 'weft_peers_unreachable'), 1, 'h1 gets no answer from h2');
    assert.equal((await peersOf(cluster, h1, '?state=problem')).peers[0]?.publicIP, h2.publicIp);

    await cluster.exec(h2, `iptables -D ${rule}`, { check: true });
    await waitFor(async () => (await status(cluster, h3)).code === 0, 'status to clear once the rule is gone', 30_000, 1000);
  });

  it('an underlay link with a smaller MTU: status says only small packets pass, and which way', async function () {
    const cluster: ClusterDriver = await track(NetnsLab.create({ hosts: 2 }));
    await startCluster(cluster, { agentArgs: ['--probe-interval=2'] });
    const [h1, h2] = cluster.hosts as [LabHost, LabHost];
    await waitFor(
      async () => (await peersOf(cluster, h1)).peers[0]?.state === 'ok' && (await peersOf(cluster, h2)).peers[0]?.state === 'ok',
      'both hosts to answer',
      20_000,
      250,
    );

    // h2's own interface takes at most 1400 bytes: h1's full-size VXLAN datagrams (1500) are dropped on the
    // way in; h2's are fragmented by its kernel and arrive
    await cluster.exec(h2, `ip link set ${h2.iface} mtu 1400`, { check: true });
    const rows = await waitFor(
      async () => {
        const parsed = JSON.parse((await status(cluster, h1, '-o', 'json')).stdout) as PathRow[];
        return reported(cluster, parsed).includes('h1→h2 mtu') ? parsed : undefined;
      },
      'status to report h1→h2 as an MTU problem',
      30_000,
      1000,
    );
    assert.deepEqual(reported(cluster, rows), ['h1→h2 mtu']);
    const h1Row = rows.find((row) => row.publicIP === h1.publicIp)!;
    assert.match(
      h1Row.problems.join('\n'),
      /only small packets from .* arrive at .* over the overlay, 1450-byte packets are lost \(an MTU black hole\)/,
    );
    assert.equal((await peersOf(cluster, h1)).peers[0]?.state, 'mtu');
    assert.equal(metricValue(await metrics(cluster, h1), 'weft_peers_probed{state="mtu"}'), 1);
    const table = await status(cluster, h1);
    assert.match(
      table.stdout,
      new RegExp(`^${h1.publicIp.replace(/\./g, '\\.')} → ${h2.publicIp.replace(/\./g, '\\.')}: MTU: only small packets`, 'm'),
      table.stdout,
    );

    await cluster.exec(h2, `ip link set ${h2.iface} mtu 1500`, { check: true });
    await waitFor(async () => (await status(cluster, h1)).code === 0, 'status to clear once the MTU is back', 30_000, 500);
  });

  it("host-gw hosts answer at their subnet's .0 (on lo), so their probes cross the routes via the peers' public IPs", async function () {
    const cluster: ClusterDriver = await track(NetnsLab.create({ hosts: 2 }));
    await startCluster(cluster, { backend: 'host-gw', agentArgs: ['--probe-interval=1'] });
    const [h1, h2] = cluster.hosts as [LabHost, LabHost];
    const subnet = (await cluster.readSubnetEnv(h1))!.subnet!.replace(/\.1\/24$/, '.0');
    const lo = await cluster.exec(h1, 'ip -4 -o addr show dev lo', { check: true });
    assert.match(lo.stdout, new RegExp(`inet ${subnet.replace(/\./g, '\\.')}/32 `));
    for (const host of [h1, h2]) {
      await waitFor(
        async () => (await peersOf(cluster, host)).peers[0]?.state === 'ok',
        `${host.name}'s host-gw peer to answer`,
        20_000,
        250,
      );
    }
    // the route to h2's subnet is what carries the probes: without it h2 is unreachable
    const peerSubnet = (await cluster.readSubnetEnv(h2))!.subnet!.replace(/\.1\/24$/, '.0/24');
    await cluster.stopAgent(h1);
    await cluster.exec(h1, `ip route del ${peerSubnet}`, { check: true });
    const lost = await cluster.exec(h1, `ping -c 1 -W 1 -I ${subnet} ${peerSubnet.replace(/\/24$/, '')}`);
    assert.notEqual(lost.code, 0, "nothing else routes to h2's .0");
  });
});
