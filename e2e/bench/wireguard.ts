/**
 * Container to container over WireGuard, side by side in one run (issue 14): weft's wireguard backend, a
 * pair of hosts configured by hand with `ip` and `wg` on the same WireGuard implementation, and kernel VXLAN
 * for scale. This machine class has no WireGuard module, so both WireGuard rows run wireguard-go on TUN.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { inSocketDir } from '../../agent/wireguard/wireguard-go.js';
import { NetnsLab, ping, seedNetworkConfig, shellQuote, waitForSubnetEnv, type LabContainer, type LabHost } from '../lab/index.js';
import { figure, median, percentile } from './stats.js';
import type { Benchmark, BenchContext, BenchmarkResult, Figure } from './types.js';

type PathName = 'vxlan' | 'weft-wireguard' | 'manual-wireguard';

const PATHS: readonly { name: PathName; label: string }[] = [
  { name: 'vxlan', label: 'kernel VXLAN (weftd)' },
  { name: 'weft-wireguard', label: 'WireGuard, weftd (wireguard-go)' },
  { name: 'manual-wireguard', label: 'WireGuard set up by hand with ip and wg (wireguard-go)' },
];

interface PathRun {
  path: PathName;
  mbps: number;
  retransmits: number;
  rttMs: number[];
  loadAverage: number;
}

const NETWORK = '198.18.0.0/16';
const MANUAL_DEVICE = 'wgm0';

function hostDir(lab: NetnsLab, host: LabHost): string {
  return dirname(lab.subnetFile(host));
}

/** Runs `argv` on a host, as a shell line. */
async function on(lab: NetnsLab, host: LabHost, argv: readonly string[]): Promise<string> {
  return (await lab.exec(host, argv.map(shellQuote).join(' '), { check: true })).stdout;
}

/**
 * The hand-made pair: on each host wireguard-go (foreground, its sockets in the host's own directory),
 * `wg set` with a key, the port and the other host as peer, the subnet's .0/32, MTU 1420, a route for the
 * network; and a subnet.env so that the lab gives the containers their addresses and MTU.
 */
async function manualPair(lab: NetnsLab, [h1, h2]: [LabHost, LabHost]): Promise<void> {
  const hosts = [
    { host: h1, subnet: '198.18.1.0', peer: h2, peerSubnet: '198.18.2.0' },
    { host: h2, subnet: '198.18.2.0', peer: h1, peerSubnet: '198.18.1.0' },
  ];
  const keys = new Map<LabHost, { file: string; publicKey: string }>();
  for (const { host } of hosts) {
    const file = join(hostDir(lab, host), 'manual-wgkey');
    const secret = spawnSync('wg', ['genkey'], { encoding: 'utf8' }).stdout;
    writeFileSync(file, secret, { mode: 0o600 });
    keys.set(host, { file, publicKey: spawnSync('wg', ['pubkey'], { input: secret, encoding: 'utf8' }).stdout.trim() });
  }
  for (const { host, subnet, peer, peerSubnet } of hosts) {
    const sockets = join(hostDir(lab, host), 'manual-wireguard');
    lab.background(
      host,
      `mkdir -p ${shellQuote(sockets)} && exec ${inSocketDir(sockets, ['wireguard-go', '-f', MANUAL_DEVICE]).map(shellQuote).join(' ')}`,
      { env: { WG_PROCESS_FOREGROUND: '1' } },
    );
    for (let i = 0; i < 200 && !(await lab.exec(host, `ip link show ${MANUAL_DEVICE}`)).stdout.includes(MANUAL_DEVICE); i++)
      await new Promise((r) => setTimeout(r, 25));
    for (let i = 0; i < 200 && (await lab.exec(host, `test -S ${shellQuote(join(sockets, `${MANUAL_DEVICE}.sock`))}`)).code !== 0; i++)
      await new Promise((r) => setTimeout(r, 25));
    await on(
      lab,
      host,
      inSocketDir(sockets, [
        'wg',
        'set',
        MANUAL_DEVICE,
        'private-key',
        keys.get(host)!.file,
        'listen-port',
        '51820',
        'peer',
        keys.get(peer)!.publicKey,
        'endpoint',
        `${peer.publicIp}:51820`,
        'allowed-ips',
        `${peerSubnet}/24`,
      ]),
    );
    await lab.exec(
      host,
      [
        `ip addr add ${subnet}/32 dev ${MANUAL_DEVICE}`,
        `ip link set ${MANUAL_DEVICE} mtu 1420 up`,
        `ip route add ${NETWORK} dev ${MANUAL_DEVICE}`,
        'sysctl -qw net.ipv4.ip_forward=1',
      ].join(' && '),
      { check: true },
    );
    const [a, b, c] = subnet.split('.');
    writeFileSync(
      lab.subnetFile(host),
      `FLANNEL_NETWORK=${NETWORK}\nFLANNEL_SUBNET=${a}.${b}.${c}.1/24\nFLANNEL_MTU=1420\nFLANNEL_IPMASQ=false\n`,
    );
  }
}

async function measure(context: BenchContext, path: PathName, seconds: number, pings: number): Promise<PathRun> {
  const lab = await NetnsLab.create({ hosts: 2, repoRoot: context.repoRoot });
  try {
    const [h1, h2] = [lab.hosts[0], lab.hosts[1]];
    if (path === 'manual-wireguard') {
      await manualPair(lab, [h1, h2]);
    } else {
      await seedNetworkConfig(lab, { Network: NETWORK, Backend: { Type: path === 'vxlan' ? 'vxlan' : 'wireguard' } });
      for (const host of [h1, h2]) {
        const args =
          path === 'vxlan'
            ? ['--vxlan-userspace=never']
            : [
                `--wireguard-key-file=${join(hostDir(lab, host), 'wgkey')}`,
                `--wireguard-socket-dir=${join(hostDir(lab, host), 'wireguard')}`,
              ];
        await lab.startAgent(host, args);
      }
      await waitForSubnetEnv(lab, h1, { timeoutMs: 60_000 });
      await waitForSubnetEnv(lab, h2, { timeoutMs: 60_000 });
    }
    const [client] = (await lab.addContainers(h1, 1)) as [LabContainer];
    const [server] = (await lab.addContainers(h2, 1)) as [LabContainer];
    const warm = await ping(lab, client, server.ip, { count: Math.min(20, pings), interval: 0.05, deadline: 15 });
    if (warm.received === 0) throw new Error(`${path}: no ping from ${client.name} to ${server.ip}`);
    const rtt = await ping(lab, client, server.ip, { count: pings, interval: 0.01, deadline: Math.ceil(pings * 0.01) + 10 });
    const rttMs = [...rtt.output.matchAll(/time=([\d.]+) ms/g)].map((match) => Number(match[1]));
    const daemon = lab.background(server, 'iperf3 -s -1');
    try {
      for (let i = 0; i < 100 && !(await lab.exec(server, "ss -ltnH 'sport = :5201'")).stdout.includes(':5201'); i++)
        await new Promise((r) => setTimeout(r, 50));
      const run = await lab.exec(client, `iperf3 -c ${server.ip} -t ${seconds} -J`, { timeoutMs: (seconds + 30) * 1000 });
      const json = JSON.parse(run.stdout) as {
        error?: string;
        end?: { sum_received?: { bits_per_second: number }; sum_sent?: { retransmits?: number } };
      };
      if (json.error !== undefined || json.end?.sum_received === undefined) throw new Error(`${path}: iperf3: ${json.error ?? run.stderr}`);
      return {
        path,
        mbps: json.end.sum_received.bits_per_second / 1e6,
        retransmits: json.end.sum_sent?.retransmits ?? 0,
        rttMs,
        loadAverage: loadavg()[0],
      };
    } finally {
      await daemon.stop('SIGTERM');
    }
  } finally {
    await lab.destroy();
  }
}

export const benchmark: Benchmark = {
  name: 'wireguard',
  title: 'WireGuard: weftd against a pair set up by hand, and kernel VXLAN',
  async run(context): Promise<BenchmarkResult> {
    const rounds = context.quick ? 1 : context.runs;
    const seconds = context.quick ? 1 : 10;
    const pings = context.quick ? 10 : 500;
    const runs: PathRun[] = [];
    for (let round = 1; round <= rounds; round++) {
      for (const { name } of PATHS) {
        const run = await measure(context, name, seconds, pings);
        runs.push(run);
        context.log(
          `round ${round} ${name}: ${run.mbps.toFixed(0)} Mbit/s (${run.retransmits} retransmits), rtt p50 ${percentile(run.rttMs, 50).toFixed(3)} ms, load ${run.loadAverage.toFixed(1)}`,
        );
      }
    }
    const of = (path: PathName) => runs.filter((run) => run.path === path);
    const mbps = (path: PathName) => of(path).map((run) => run.mbps);
    const rtt = (path: PathName) => of(path).map((run) => percentile(run.rttMs, 50));
    const ratio = (a: number[], b: number[]) => a.map((value, i) => value / b[i]);
    const figures: Figure[] = [];
    for (const { name, label } of PATHS)
      figures.push(figure({ id: `wireguard.tcp.${name}`, label: `iperf3 TCP, ${label}`, unit: 'Mbit/s', samples: mbps(name) }));
    for (const { name, label } of PATHS)
      figures.push(figure({ id: `wireguard.rtt.${name}`, label: `ping RTT p50, ${label}`, unit: 'ms', samples: rtt(name) }));
    figures.push(
      figure({
        id: 'wireguard.tcp.ratio',
        label: 'TCP throughput, weftd WireGuard ÷ WireGuard by hand',
        unit: '×',
        samples: ratio(mbps('weft-wireguard'), mbps('manual-wireguard')),
        target: { op: '>=', value: 0.9, source: 'issue 14' },
      }),
    );
    figures.push(
      figure({
        id: 'wireguard.rtt.ratio',
        label: 'ping RTT p50, weftd WireGuard ÷ WireGuard by hand',
        unit: '×',
        samples: ratio(rtt('weft-wireguard'), rtt('manual-wireguard')),
        target: { op: '<=', value: 1.1, source: 'issue 14' },
      }),
    );
    figures.push(
      figure({
        id: 'wireguard.tcp.vxlan-ratio',
        label: 'TCP throughput, weftd WireGuard ÷ kernel VXLAN',
        unit: '×',
        samples: ratio(mbps('weft-wireguard'), mbps('vxlan')),
      }),
    );
    return {
      name: 'wireguard',
      title: 'WireGuard: weftd against a pair set up by hand, and kernel VXLAN',
      method: [
        'For each path a fresh lab of two hosts with one container each (underlay MTU 1500; overlay 1420 for WireGuard, 1450 for VXLAN);',
        `${pings} pings at 10 ms intervals (after ${Math.min(20, pings)} to warm up) give the RTT, then iperf3 TCP for ${seconds} s, one stream,`,
        "from the first host's container to the second's. The paths run interleaved, one of each per round, so that each round sees the same load.",
        '"weftd" runs weftd with {"Type":"wireguard"} on both hosts: this kernel has no WireGuard module, so weftd runs wireguard-go on TUN.',
        '"By hand" runs the same wireguard-go on both hosts, configured with `wg set` (key, port 51820, the other host as peer) and `ip`',
        "(the subnet's .0/32, MTU 1420, a route for the network), no weftd. Kernel VXLAN (weftd, --vxlan-userspace=never) is there for scale.",
      ].join(' '),
      figures,
      notes: [
        `Load average during the runs: median ${median(runs.map((run) => run.loadAverage)).toFixed(1)} (2 cores: anything above ~1 means other work competed with the measured paths).`,
      ],
      details: runs.map((run) => ({
        ...run,
        rttMs: { p50: percentile(run.rttMs, 50), p99: percentile(run.rttMs, 99), count: run.rttMs.length },
      })),
    };
  },
};
