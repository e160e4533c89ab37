/**
 * `npm run demo`: a 3-host weft cluster in network namespaces with its own etcd. Seeds the network
 * config, starts weftd on each host, prints who got which subnet, pings container to container across
 * hosts, then runs until Ctrl-C and removes everything it made.
 *
 *   npm run demo                  # vxlan, runs until Ctrl-C
 *   npm run demo -- --backend host-gw --hosts 4 --once
 *   npm run demo -- --docker      # dockerd on every host (systemd with weft's drop-in), `docker run` containers
 */
import { formatTable } from '../common/table.js';
import yargs from 'yargs';
import {
  NetnsLab,
  parsePing,
  ping,
  seedNetworkConfig,
  waitForSubnetEnv,
  type ClusterDriver,
  type LabContainer,
  type LabHost,
} from './lab/index.js';
import { dockerCommandLine, dockerUnavailable, NetnsDocker } from './lab/docker.js';
import { peersProgrammed, HEALTHZ_PORT } from './scenarios/cluster.js';

async function describeCluster(lab: ClusterDriver, hosts: readonly LabHost[], backend: string): Promise<string> {
  const rows = [['HOST', 'PUBLIC IP', 'SUBNET', 'BACKEND', 'PEERS PROGRAMMED']];
  for (const host of hosts) {
    const env = await waitForSubnetEnv(lab, host);
    rows.push([host.name, host.publicIp, env.subnet?.toString() ?? '-', backend, String(await peersProgrammed(lab, host, backend))]);
  }
  return formatTable(rows);
}

/** Prints a command as typed on `host` and the first lines of what it printed. */
function show(host: LabHost, command: string, output = ''): void {
  console.log(`  ${host.name}$ ${command}`);
  for (const line of output.trimEnd().split('\n').filter(Boolean).slice(0, 4)) console.log(`      ${line}`);
}

/**
 * Every host becomes a docker host: systemd starts docker.service with weft's drop-in, which turns subnet.env into
 * dockerd's options; then one `docker run` container per host, and pings between them across hosts. Prints the
 * commands as a user types them on a real host.
 */
async function dockerContainers(lab: NetnsLab, backend: string): Promise<void> {
  const docker = new NetnsDocker(lab);
  console.log("\nOn every host systemd starts docker.service with weft's drop-in (deploy/docker/docker-weft.conf installed as");
  console.log('/etc/systemd/system/docker.service.d/weft.conf): it waits for /run/flannel/subnet.env, runs weft-docker-opts,');
  console.log('and passes $DOCKER_OPTS to dockerd.\n');
  await Promise.all(lab.hosts.map((host) => docker.startDocker(host)));
  const containers: { host: LabHost; name: string; ip: string }[] = [];
  for (const host of lab.hosts) {
    show(host, 'systemctl start docker');
    show(host, 'cat /run/docker_opts.env', (await docker.runOn(host, ['cat', '/run/docker_opts.env'], { check: true })).stdout);
    show(host, 'ps -o args= -C dockerd', (await docker.dockerdArgv(host)).join(' '));
    show(host, dockerCommandLine(['import', 'busybox.tar', docker.image]));
    const name = `${host.name}-c1`;
    const runArgs = ['run', '--detach', '--init', `--name=${name}`, docker.image, 'sleep', '1d'];
    show(host, dockerCommandLine(runArgs), (await docker.docker(host, runArgs, { check: true })).stdout.slice(0, 12));
    const inspectArgs = ['inspect', '--format', '{{.NetworkSettings.IPAddress}}', name];
    const ip = (await docker.docker(host, inspectArgs, { check: true })).stdout.trim();
    show(host, dockerCommandLine(inspectArgs), ip);
    containers.push({ host, name, ip });
    console.log('');
  }
  console.log(`${await describeCluster(lab, lab.hosts, backend)}\n`);
  for (let i = 0; i < containers.length; i++) {
    const from = containers[i];
    const to = containers[(i + 1) % containers.length];
    if (to.host === from.host) continue;
    const pingArgs = ['exec', from.name, 'ping', '-c', '3', to.ip];
    const result = await docker.docker(from.host, pingArgs, { timeoutMs: 30_000 });
    const parsed = parsePing(result.stdout);
    show(from.host, dockerCommandLine(pingArgs), `${parsed.received}/${parsed.transmitted} replies from ${to.name} on ${to.host.name}`);
  }
  console.log(
    `\nto type docker commands on a host yourself: ${docker.enterCommand(lab.hosts[0])} docker ps   (h1; logs in ${docker.logFile(lab.hosts[0])})`,
  );
}

async function main(): Promise<void> {
  const args = await yargs(process.argv.slice(2))
    .scriptName('npm run demo --')
    .option('hosts', { type: 'number', default: 3, describe: 'how many hosts' })
    .option('backend', { choices: ['vxlan', 'host-gw'] as const, default: 'vxlan' as const })
    .option('once', { type: 'boolean', default: false, describe: 'exit after the ping instead of waiting for Ctrl-C' })
    .option('docker', {
      type: 'boolean',
      default: false,
      describe: "run dockerd on every host (systemd with weft's drop-in) and ping between `docker run` containers",
    })
    .strict()
    .parseAsync();

  if (args.docker) {
    const why = dockerUnavailable();
    if (why !== undefined) throw new Error(`--docker ${why}`);
  }
  console.log(
    `weft demo: ${args.hosts} hosts, backend ${args.backend}, etcd in its own namespace${args.docker ? ', docker on every host' : ''}`,
  );
  const lab = await NetnsLab.create({ hosts: args.hosts });
  try {
    await seedNetworkConfig(lab, { Network: '198.18.0.0/16', Backend: { Type: args.backend } });
    await Promise.all(lab.hosts.map((host) => lab.startAgent(host, [`--healthz-port=${HEALTHZ_PORT}`])));
    if (args.docker) {
      await dockerContainers(lab, args.backend);
    } else {
      const containers: LabContainer[] = [];
      for (const host of lab.hosts) {
        await waitForSubnetEnv(lab, host);
        containers.push(...(await lab.addContainers(host, 1)));
      }
      console.log(`\n${await describeCluster(lab, lab.hosts, args.backend)}\n`);
      for (let i = 0; i < containers.length; i++) {
        const from = containers[i];
        const to = containers[(i + 1) % containers.length];
        const result = await ping(lab, from, to.ip, { count: 3, interval: 0.2 });
        console.log(
          `ping ${from.name} (${from.ip}, ${from.host.name}) -> ${to.ip} (${to.host.name}): ${result.received}/${result.transmitted} replies`,
        );
      }
    }
    console.log(
      `\nagent logs: ${lab.tempDir}/h<i>/weftd.log; each agent serves http://127.0.0.1:${HEALTHZ_PORT}/metrics and /readyz inside its host namespace`,
    );
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
