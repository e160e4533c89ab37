/**
 * `npm run demo`: a 3-host weft cluster in network namespaces with its own etcd. Seeds the network
 * config, starts weftd on each host, prints who got which subnet, pings container to container across
 * hosts, then runs until Ctrl-C and removes everything it made.
 *
 *   npm run demo                  # vxlan, runs until Ctrl-C
 *   npm run demo -- --backend host-gw --hosts 4 --once
 */
import { formatTable } from '../common/table.js';
import yargs from 'yargs';
import { NetnsLab, ping, seedNetworkConfig, waitForSubnetEnv, type ClusterDriver, type LabContainer, type LabHost } from './lab/index.js';
import { peersProgrammed, HEALTHZ_PORT } from './scenarios/cluster.js';


async function describeCluster(lab: ClusterDriver, hosts: readonly LabHost[], backend: string): Promise<string> {
  const rows = [['HOST', 'PUBLIC IP', 'SUBNET', 'BACKEND', 'PEERS PROGRAMMED']];
  for (const host of hosts) {
    const env = await waitForSubnetEnv(lab, host);
    rows.push([host.name, host.publicIp, env.subnet?.toString() ?? '-', backend, String(await peersProgrammed(lab, host, backend))]);
  }
  return formatTable(rows);
}

async function main(): Promise<void> {
  const args = await yargs(process.argv.slice(2))
    .scriptName('npm run demo --')
    .option('hosts', { type: 'number', default: 3, describe: 'how many hosts' })
    .option('backend', { choices: ['vxlan', 'host-gw'] as const, default: 'vxlan' as const })
    .option('once', { type: 'boolean', default: false, describe: 'exit after the ping instead of waiting for Ctrl-C' })
    .strict()
    .parseAsync();

  console.log(`weft demo: ${args.hosts} hosts, backend ${args.backend}, etcd in its own namespace`);
  const lab = await NetnsLab.create({ hosts: args.hosts });
  try {
    await seedNetworkConfig(lab, { Network: '198.18.0.0/16', Backend: { Type: args.backend } });
    await Promise.all(lab.hosts.map((host) => lab.startAgent(host, [`--healthz-port=${HEALTHZ_PORT}`])));
    const containers: LabContainer[] = [];
    for (const host of lab.hosts) {
      await waitForSubnetEnv(lab, host);
      containers.push(...(await lab.addContainers(host, 1)));
    }
    console.log(`\n${await describeCluster(lab, lab.hosts, args.backend)}\n`);
    for (let i = 0; i < containers.length; i++) {
      const from = containers[i]!;
      const to = containers[(i + 1) % containers.length]!;
      const result = await ping(lab, from, to.ip, { count: 3, interval: 0.2 });
      console.log(`ping ${from.name} (${from.ip}, ${from.host.name}) -> ${to.ip} (${to.host.name}): ${result.received}/${result.transmitted} replies`);
    }
    console.log(`\nagent logs: ${lab.tempDir}/h<i>/weftd.log; each agent serves http://127.0.0.1:${HEALTHZ_PORT}/metrics and /readyz inside its host namespace`);
    console.log(`namespaces: ${lab.namespaces().join(' ')}`);
    if (!args.once) {
      console.log('\nrunning; press Ctrl-C to remove the cluster');
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
    }
  } finally {
    await lab.destroy();
    console.log('removed the demo cluster');
  }
}

main().catch((err: unknown) => {
  console.error(`demo failed: ${(err as Error).stack ?? String(err)}`);
  process.exitCode = 1;
});
