/**
 * Docker on weft hosts (issue 18), for any DockerClusterFactory (see suite.ts): on every host systemd starts
 * Debian's docker.service with weft's drop-in (deploy/docker/docker-weft.conf), so dockerd gets weft-docker-opts'
 * options the way a real host passes them, and containers that `docker run` puts on docker0 reach each other
 * across hosts on every backend; restarting dockerd or weftd costs no connectivity beyond the restart itself; and
 * with weft-docker-opts' --ip-masq exactly one of docker and weft masquerades a container's traffic leaving the
 * overlay network.
 */
import assert from 'node:assert/strict';
import { IpAddress, Prefix } from '../../common/cidr.js';
import { sleep, waitFor } from '../../test/wait.js';
import type { DockerHostOptions, DockerHosts } from '../lab/docker.js';
import {
  httpGet,
  parsePing,
  seedNetworkConfig,
  waitForSubnetEnv,
  type ClusterDriver,
  type LabHost,
  type PingResult,
  type SubnetEnv,
} from '../lab/index.js';
import { agentArgs, HEALTHZ_PORT, kernelState, metrics, metricValue } from './cluster.js';
import { requireHosts, useLabs, type DockerCluster, type DockerClusterFactory } from './suite.js';

/** One backend the docker scenarios run on: adding a backend is adding an entry. */
export interface DockerBackendCase {
  /** Shown in the test title. */
  readonly name: string;
  /** The network config's `Backend`. */
  readonly backend: Readonly<Record<string, unknown>>;
  /** Extra weftd flags for every host. */
  readonly agentArgs?: readonly string[];
  /** The `weft_data_path` sample every host reports as 1. */
  readonly dataPath: string;
}

export const DOCKER_BACKENDS: readonly DockerBackendCase[] = [
  { name: 'vxlan', backend: { Type: 'vxlan' }, dataPath: 'weft_data_path{backend="vxlan",path="kernel"}' },
  { name: 'host-gw', backend: { Type: 'host-gw' }, dataPath: 'weft_data_path{backend="host-gw",path="kernel"}' },
  {
    name: 'vxlan on the userspace path',
    backend: { Type: 'vxlan', Userspace: 'always' },
    dataPath: 'weft_data_path{backend="vxlan",path="userspace"}',
  },
];

const NETWORK = '198.18.0.0/16';
/** What every test container runs: a 1 MiB file of random bytes served over HTTP (busybox httpd, TCP port 8080). */
const SERVE_BLOB = 'head -c 1048576 /dev/urandom > /tmp/blob && exec httpd -f -p 8080 -h /tmp';

interface DockerContainer {
  readonly name: string;
  readonly host: LabHost;
  readonly ip: string;
}

interface DockerHostState {
  readonly host: LabHost;
  readonly env: SubnetEnv;
}

async function containerIp(docker: DockerHosts, host: LabHost, name: string): Promise<string> {
  const inspected = await docker.docker(host, ['inspect', '--format', '{{.State.Running}} {{.NetworkSettings.IPAddress}}', name], {
    check: true,
  });
  const [running, ip] = inspected.stdout.trim().split(' ');
  if (running !== 'true' || ip === undefined || ip === '')
    throw new Error(`${name} on ${host.name} is not running with an address: ${inspected.stdout}`);
  return ip;
}

/** `docker run` of one container that serves SERVE_BLOB and comes back when dockerd restarts. */
async function runContainer(docker: DockerHosts, host: LabHost, name: string): Promise<DockerContainer> {
  await docker.docker(host, ['run', '--detach', '--init', '--restart=always', `--name=${name}`, docker.image, 'sh', '-c', SERVE_BLOB], {
    check: true,
  });
  return { name, host, ip: await containerIp(docker, host, name) };
}

async function dockerPing(docker: DockerHosts, from: DockerContainer, toIp: string, count = 3): Promise<PingResult> {
  const result = await docker.docker(from.host, ['exec', from.name, 'ping', '-c', String(count), '-W', '2', toIp], {
    timeoutMs: (count + 10) * 1000,
  });
  return parsePing(result.stdout);
}

/** Every ordered pair of containers on different hosts that does not ping (empty = full mesh). */
async function dockerMeshFailures(docker: DockerHosts, containers: readonly DockerContainer[]): Promise<string[]> {
  const pairs = containers.flatMap((from) => containers.filter((to) => to.host !== from.host).map((to) => [from, to] as const));
  const results = await Promise.all(
    pairs.map(async ([from, to]) =>
      (await dockerPing(docker, from, to.ip)).received > 0 ? undefined : `${from.name} (${from.host.name}) -> ${to.ip} (${to.host.name})`,
    ),
  );
  return results.filter((failure): failure is string => failure !== undefined);
}

/** TCP both ways between every pair: each container fetches the other's 1 MiB file over HTTP, byte for byte. */
async function assertTcpEveryPair(docker: DockerHosts, containers: readonly DockerContainer[]): Promise<void> {
  for (const from of containers) {
    for (const to of containers.filter((other) => other.host !== from.host)) {
      const expected = await docker.docker(to.host, ['exec', to.name, 'md5sum', '/tmp/blob'], { check: true });
      const fetched = await docker.docker(from.host, ['exec', from.name, 'sh', '-c', `wget -q -O - http://${to.ip}:8080/blob | md5sum`], {
        timeoutMs: 30_000,
      });
      assert.equal(
        fetched.stdout.split(' ')[0],
        expected.stdout.split(' ')[0],
        `${from.name} (${from.host.name}) fetched ${to.name}'s file from ${to.ip} over TCP: ${fetched.stderr}`,
      );
    }
  }
}

/** `ip` addresses of docker0 on the host, as "198.18.5.1/24". */
async function bridgeAddresses(driver: ClusterDriver, host: LabHost): Promise<string[]> {
  const shown = await driver.exec(host, 'ip -o -4 addr show dev docker0', { check: true });
  return [...shown.stdout.matchAll(/ inet (\S+)/g)].map((match) => match[1]);
}

/** dockerd's command line is Debian's ExecStart with the drop-in's $DOCKER_OPTS split into words, as systemd does. */
async function assertDockerdOptions(docker: DockerHosts, state: DockerHostState): Promise<void> {
  const argv = await docker.dockerdArgv(state.host);
  assert.deepEqual(
    argv,
    [
      'dockerd',
      '-H',
      'fd://',
      '--containerd=/run/containerd/containerd.sock',
      `--bip=${state.env.subnet}`,
      `--ip-masq=${!state.env.ipmasq}`,
      `--mtu=${state.env.mtu}`,
    ],
    `dockerd's command line on ${state.host.name}`,
  );
}

/**
 * Seeds the config, starts weftd on every host and, at once, docker.service (whose drop-in waits for subnet.env),
 * then checks that dockerd got weft-docker-opts' options and docker0 the host's subnet.
 */
async function startDockerCluster(
  cluster: DockerCluster,
  config: object,
  hostArgs: (host: LabHost) => readonly string[],
  dockerOptions: DockerHostOptions = {},
): Promise<DockerHostState[]> {
  const { driver, docker } = cluster;
  await seedNetworkConfig(driver, config);
  await Promise.all(
    driver.hosts.map(async (host) => {
      await driver.startAgent(host, agentArgs({ agentArgs: hostArgs(host) }));
      await docker.startDocker(host, dockerOptions);
    }),
  );
  const states: DockerHostState[] = [];
  for (const host of driver.hosts) {
    const state = { host, env: await waitForSubnetEnv(driver, host) };
    await assertDockerdOptions(docker, state);
    assert.deepEqual(await bridgeAddresses(driver, host), [state.env.subnet], `docker0 on ${host.name} carries FLANNEL_SUBNET`);
    states.push(state);
  }
  return states;
}

async function runOneContainerEach(docker: DockerHosts, states: readonly DockerHostState[]): Promise<DockerContainer[]> {
  const containers: DockerContainer[] = [];
  for (const { host, env } of states) {
    const container = await runContainer(docker, host, `c-${host.name}`);
    assert.ok(
      Prefix.parse(env.subnet!, { allowHostBits: true }).contains(IpAddress.parse(container.ip)),
      `${container.name}'s address ${container.ip} is in ${env.subnet}`,
    );
    const link = await docker.docker(host, ['exec', container.name, 'cat', '/sys/class/net/eth0/mtu'], { check: true });
    assert.equal(Number(link.stdout.trim()), env.mtu, `${container.name}'s eth0 has FLANNEL_MTU`);
    containers.push(container);
  }
  return containers;
}

/**
 * A busybox ping from a container in the background, every `interval` seconds until stopped (at most a minute).
 * stop() interrupts it inside the container (`docker exec` passes no signal on) and reports.
 */
function backgroundPing(docker: DockerHosts, from: DockerContainer, toIp: string, interval = 0.02): { stop(): Promise<PingResult> } {
  const command = docker.dockerBackground(from.host, ['exec', from.name, 'ping', '-i', String(interval), '-w', '60', toIp]);
  return {
    async stop() {
      await docker.docker(from.host, ['exec', from.name, 'killall', '-INT', 'ping'], { check: true });
      // interrupted: its last request may be in flight, not lost
      return parsePing((await command.exited).stdout, { inFlightAtEnd: true });
    },
  };
}

function describeLoss(result: PingResult): string {
  return `${result.transmitted - result.received} of ${result.transmitted} lost (longest run ${result.longestLossRun}):\n${result.output.split('\n').slice(-4).join('\n')}`;
}

async function waitReady(driver: ClusterDriver, host: LabHost): Promise<void> {
  await waitFor(
    async () => (await httpGet(driver, host, `http://127.0.0.1:${HEALTHZ_PORT}/readyz`)).status === 200,
    `weftd on ${host.name} to be ready`,
    30_000,
    100,
  );
}

/** Packet counters of the nat POSTROUTING rules (docker's) and of weft's masquerade chain, by rule text. */
async function masqueradeCounters(
  driver: ClusterDriver,
  host: LabHost,
): Promise<{ docker: number | undefined; weft: number | undefined; weftChain: boolean }> {
  const postrouting = (await driver.exec(host, 'iptables -w -t nat -L POSTROUTING -n -v -x', { check: true })).stdout;
  const dockerRule = postrouting.split('\n').find((line) => /\bMASQUERADE\b/.test(line) && !/weft/.test(line));
  const weftChain = /^-N WEFT-POSTRTG$/m.test((await driver.exec(host, 'iptables -w -t nat -S', { check: true })).stdout);
  const weftRules = weftChain ? (await driver.exec(host, 'iptables -w -t nat -L WEFT-POSTRTG -n -v -x', { check: true })).stdout : '';
  const weftRule = weftRules
    .split('\n')
    .find((line) => /\bMASQUERADE\b/.test(line) && line.includes(`${NETWORK} `) && line.includes('!224.0.0.0/4'));
  return {
    docker: dockerRule === undefined ? undefined : Number(dockerRule.trim().split(/\s+/)[0]),
    weft: weftRule === undefined ? undefined : Number(weftRule.trim().split(/\s+/)[0]),
    weftChain,
  };
}

export function dockerScenarios(factory: DockerClusterFactory): void {
  describe(`e2e: docker hosts (dockerd under systemd with weft's drop-in) in the ${factory.name}`, function () {
    this.timeout(240_000);

    const track = useLabs(factory);

    async function create(context: Mocha.Context, hosts: number): Promise<DockerCluster> {
      requireHosts(context, factory, hosts);
      return track(factory.create({ hosts }));
    }

    for (const backend of DOCKER_BACKENDS) {
      it(`${backend.name}: containers on docker0 ping and carry TCP across hosts`, async function () {
        const cluster = await create(this, 2);
        const { driver, docker } = cluster;
        const states = await startDockerCluster(cluster, { Network: NETWORK, Backend: backend.backend }, () => backend.agentArgs ?? []);
        for (const host of driver.hosts)
          assert.equal(metricValue(await metrics(driver, host), backend.dataPath), 1, `${host.name}: ${backend.dataPath}`);
        const containers = await runOneContainerEach(docker, states);
        await waitFor(
          async () => (await dockerMeshFailures(docker, containers)).length === 0,
          "every container to reach the other host's",
          20_000,
          200,
        ).catch(async (err: Error) => {
          assert.fail(`${err.message}: ${(await dockerMeshFailures(docker, containers)).join(', ')}`);
        });
        await assertTcpEveryPair(docker, containers);
      });
    }

    it('restarting dockerd keeps weft and the other hosts untouched; restarting weftd loses no container packet', async function () {
      const cluster = await create(this, 2);
      const { driver, docker } = cluster;
      const [h1, h2] = [driver.hosts[0], driver.hosts[1]];
      const states = await startDockerCluster(cluster, { Network: NETWORK, Backend: { Type: 'vxlan' } }, () => []);
      const [c1, c2] = (await runOneContainerEach(docker, states)) as [DockerContainer, DockerContainer];
      await waitFor(
        async () => (await dockerMeshFailures(docker, [c1, c2])).length === 0,
        'the containers to reach each other',
        20_000,
        200,
      );
      const weftStateBefore = [await kernelState(driver, h1), await kernelState(driver, h2)];
      const agentPid = driver.agent(h1)!.pid;

      // dockerd on h1 restarts (its containers with it): docker0 keeps its address, so h2's container never loses h1.
      const gateway1 = states[0].env.subnet!.split('/')[0];
      const toBridge = backgroundPing(docker, c2, gateway1);
      await sleep(1000);
      const restarted = await docker.systemctl(h1, ['restart', 'docker.service'], { timeoutMs: 120_000 });
      assert.equal(restarted.code, 0, restarted.stderr);
      await assertDockerdOptions(docker, states[0]);
      const c1Again = {
        ...c1,
        ip: await waitFor(() => containerIp(docker, h1, c1.name).catch(() => undefined), `${c1.name} to run again`, 30_000, 200),
      };
      await waitFor(
        async () => (await dockerMeshFailures(docker, [c1Again, c2])).length === 0,
        'the containers to reach each other after the dockerd restart',
        20_000,
        200,
      );
      const bridgePing = await toBridge.stop();
      assert.ok(bridgePing.transmitted > 100, `sent ${bridgePing.transmitted}`);
      assert.equal(
        bridgePing.transmitted - bridgePing.received,
        0,
        `h2's container to h1's docker0 during h1's dockerd restart: ${describeLoss(bridgePing)}`,
      );
      assert.deepEqual(
        [await kernelState(driver, h1), await kernelState(driver, h2)],
        weftStateBefore,
        "weft's routes, neighbours and FDB entries are untouched",
      );
      assert.equal(driver.agent(h1)!.exit, undefined, 'weftd on h1 kept running');
      assert.equal(driver.agent(h1)!.pid, agentPid);
      await assertTcpEveryPair(docker, [c1Again, c2]);

      // weftd on h1 restarts while the containers run: a 20 ms ping between them loses nothing.
      const started = (await docker.docker(h1, ['inspect', '--format', '{{.State.StartedAt}}', c1.name], { check: true })).stdout;
      const across = backgroundPing(docker, c2, c1Again.ip);
      await sleep(1000);
      await driver.stopAgent(h1);
      await driver.startAgent(h1, agentArgs());
      await waitReady(driver, h1);
      await sleep(500);
      const acrossPing = await across.stop();
      assert.ok(acrossPing.transmitted > 100, `sent ${acrossPing.transmitted}`);
      assert.equal(
        acrossPing.transmitted - acrossPing.received,
        0,
        `${c2.name} -> ${c1.name} during h1's weftd restart: ${describeLoss(acrossPing)}`,
      );
      assert.equal(
        (await docker.docker(h1, ['inspect', '--format', '{{.State.StartedAt}}', c1.name], { check: true })).stdout,
        started,
        `${c1.name} kept running`,
      );
      assert.equal((await waitForSubnetEnv(driver, h1)).subnet, states[0].env.subnet, 'the same subnet after the restart');
      assert.deepEqual(await bridgeAddresses(driver, h1), [states[0].env.subnet]);
      await assertTcpEveryPair(docker, [c1Again, c2]);
    });

    it('--ip-masq both ways: exactly one of weft and docker masquerades a container leaving the overlay', async function () {
      const cluster = await create(this, 2);
      const { driver, docker } = cluster;
      const h1 = driver.hosts[0];
      // h1: weftd --ip-masq, so weft-docker-opts gives docker --ip-masq=false; h2: weftd without, docker --ip-masq=true.
      // docker masquerades through iptables only: both dockerds run with their firewall rules on, as on a real host.
      const states = await startDockerCluster(
        cluster,
        { Network: NETWORK, Backend: { Type: 'vxlan' } },
        (host) => (host === h1 ? ['--ip-masq'] : []),
        { iptables: true },
      );
      assert.deepEqual(
        states.map((state) => state.env.ipmasq),
        [true, false],
      );
      const containers = await runOneContainerEach(docker, states);
      await waitFor(
        async () => (await dockerMeshFailures(docker, containers)).length === 0,
        "the containers to reach each other past docker's FORWARD rules",
        20_000,
        200,
      );

      // The far end, outside the overlay network: the etcd host records the source address of each TCP connection.
      const farEnd = driver.etcdHost.publicIp;
      const listener = driver.background(
        driver.etcdHost,
        `node -e ${JSON.stringify(
          `require('net').createServer((s) => { console.log(s.remoteAddress); s.end(); }).listen(7001, '${farEnd}', () => console.log('listening'))`,
        )}`,
      );
      try {
        await waitFor(() => listener.output().stdout.includes('listening'), 'the far end to listen', 10_000, 50);
        for (const [index, container] of containers.entries()) {
          const host = container.host;
          const before = await masqueradeCounters(driver, host);
          const connected = await docker.docker(host, ['exec', container.name, 'sh', '-c', `nc -w 5 ${farEnd} 7001 </dev/null`], {
            timeoutMs: 20_000,
          });
          assert.equal(connected.code, 0, `${container.name} reached ${farEnd}: ${connected.stderr}`);
          await waitFor(
            () =>
              listener
                .output()
                .stdout.split('\n')
                .filter((line) => line !== 'listening' && line !== '').length > index,
            'the far end to see the connection',
            5_000,
            50,
          );
          const after = await masqueradeCounters(driver, host);
          const seen = listener
            .output()
            .stdout.split('\n')
            .filter((line) => line !== 'listening' && line !== '')[index];
          assert.equal(seen, host.publicIp, `the far end sees ${container.name}'s connection from ${host.name}'s address`);
          if (host === h1) {
            assert.equal(before.docker, undefined, 'docker has no MASQUERADE rule with --ip-masq=false');
            assert.equal(after.docker, undefined);
            assert.ok(
              after.weft !== undefined && before.weft !== undefined && after.weft > before.weft,
              `weft masqueraded the connection (WEFT-POSTRTG counter ${before.weft} -> ${after.weft})`,
            );
          } else {
            assert.equal(after.weftChain, false, 'weft has no masquerade chain without --ip-masq');
            assert.ok(
              after.docker !== undefined && before.docker !== undefined && after.docker > before.docker,
              `docker masqueraded the connection (POSTROUTING counter ${before.docker} -> ${after.docker})`,
            );
          }
        }
      } finally {
        await listener.stop('SIGTERM');
      }
    });
  });
}
