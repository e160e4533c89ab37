import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { requireOrSkip } from '../../test/requirements.js';
import { waitFor } from '../../test/wait.js';
import { ipv6Host, parseIpv4Prefix, ipv4Host } from './addr.js';
import { parseSubnetEnv, shellQuote } from './driver.js';
import {
  etcdDel,
  etcdGet,
  etcdPut,
  httpGet,
  LAB_NETWORK_CONFIG,
  leaseOf,
  listSubnetLeases,
  parsePing,
  ping,
  seedNetworkConfig,
  startPing,
  waitForSubnetEnv,
} from './helpers.js';
import { NetnsLab } from './netns-lab.js';

const fakeAgent = fileURLToPath(new URL('./fixtures/fake-weftd.js', import.meta.url));
const labChild = fileURLToPath(new URL('./fixtures/lab-child.js', import.meta.url));

/** What the lab needs and this machine lacks, if anything. */
function labUnmet(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root';
  const missing = ['ip', 'etcd', 'etcdctl', 'ping'].filter(
    (command) => spawnSync('sh', ['-c', `command -v ${command} || PATH=$PATH:/usr/sbin:/sbin command -v ${command}`]).status !== 0,
  );
  return missing.length === 0 ? undefined : `needs ${missing.join(', ')} (deploy/ensure-deps.sh installs them)`;
}

function rootLinks(): string[] {
  return spawnSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' })
    .stdout.split('\n')
    .map((line) => line.split(':')[1]?.trim().split('@')[0] ?? '')
    .filter(Boolean);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function netnsList(): string[] {
  return spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .stdout.split('\n')
    .map((line) => line.split(' ')[0])
    .filter(Boolean);
}

describe('lab address helpers and parsers (no root)', function () {
  it('computes container addresses', function () {
    assert.equal(ipv4Host(parseIpv4Prefix('198.18.5.1/24'), 2), '198.18.5.2');
    assert.throws(() => ipv4Host(parseIpv4Prefix('198.18.5.1/30'), 3));
    assert.equal(ipv6Host('2001:db8:100:5::1/64', 2), '2001:db8:100:5::2');
    assert.equal(ipv6Host('2001:db8:0:1::/64', 0x11), '2001:db8:0:1::11');
  });

  it('parses subnet.env as flannel writes it', function () {
    const env = parseSubnetEnv('FLANNEL_NETWORK=198.18.0.0/16\nFLANNEL_SUBNET=198.18.5.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n');
    assert.deepEqual(
      { ...env, raw: undefined },
      {
        network: '198.18.0.0/16',
        subnet: '198.18.5.1/24',
        mtu: 1450,
        ipmasq: true,
        ipv6Network: undefined,
        ipv6Subnet: undefined,
        raw: undefined,
      },
    );
    assert.equal(parseSubnetEnv('FLANNEL_NETWORK=198.18.0.0/16\n'), undefined, 'incomplete file');
  });

  it('parses ping output and finds the longest outage', function () {
    const replies = [1, 2, 6, 7, 8].map((seq) => `64 bytes from 198.18.5.2: icmp_seq=${seq} ttl=63 time=0.05 ms`).join('\n');
    const result = parsePing(
      `${replies}\n--- 198.18.5.2 ping statistics ---\n9 packets transmitted, 5 received, 44.4444% packet loss, time 80ms\n`,
      { inFlightAtEnd: true },
    );
    assert.equal(result.transmitted, 8);
    assert.equal(result.received, 5);
    assert.equal(result.longestLossRun, 3);
    assert.equal(parsePing('2 packets transmitted, 0 received, +2 errors, 100% packet loss').lossPercent, 100);
  });

  it("parses busybox ping's output (sequence numbers from 0)", function () {
    const replies = [0, 1, 5, 6].map((seq) => `64 bytes from 198.18.5.2: seq=${seq} ttl=62 time=0.112 ms`).join('\n');
    const result = parsePing(
      `PING 198.18.5.2 (198.18.5.2): 56 data bytes\n${replies}\n\n--- 198.18.5.2 ping statistics ---\n8 packets transmitted, 4 packets received, 50% packet loss\n`,
    );
    assert.deepEqual(
      { ...result, output: undefined },
      { transmitted: 8, received: 4, lossPercent: 50, longestLossRun: 3, output: undefined },
    );
  });

  it('quotes shell arguments', function () {
    assert.equal(shellQuote(`{"a":'b'}`), `'{"a":'\\''b'\\''}'`);
    assert.equal(shellQuote('/coreos.com/network'), '/coreos.com/network');
  });
});

describe('NetnsLab (network namespaces, needs root)', function () {
  this.timeout(60_000);
  let lab: NetnsLab;
  let linksBefore: string[];
  let createMs: number;

  before(async function () {
    requireOrSkip(this, labUnmet());
    linksBefore = rootLinks();
    const start = Date.now();
    lab = await NetnsLab.create({ hosts: 3, agentCommand: [process.execPath, fakeAgent] });
    createMs = Date.now() - start;
  });

  after(async function () {
    await lab?.destroy();
  });

  it('comes up quickly, with run-unique namespaces and short interface names, and nothing in the root namespace', async function () {
    assert.ok(createMs < 10_000, `creation took ${createMs} ms`);
    assert.deepEqual(lab.namespaces().sort(), ['etcd', 'h1', 'h2', 'h3', 'rt', 'sw'].map((role) => `${lab.prefix}-${role}`).sort());
    assert.deepEqual(
      rootLinks().filter((link) => link.includes(lab.runId) || !linksBefore.includes(link)),
      [],
    );
    for (const ns of lab.namespaces()) {
      const links = (await lab.execIn(ns, 'ip -o link show', { check: true })).stdout
        .split('\n')
        .map((line) => line.split(':')[1]?.trim().split('@')[0])
        .filter((name): name is string => name !== undefined);
      for (const link of links) {
        assert.ok(link.length <= 15, link);
        if (link !== 'lo') assert.ok(link.includes(lab.runId), `${link} in ${ns} names the run`);
      }
    }
  });

  it('gives every host an underlay address, MTU 1500, a default route via 192.0.2.1 and ip_forward 0', async function () {
    assert.deepEqual(
      lab.hosts.map((host) => host.publicIp),
      ['192.0.2.11', '192.0.2.12', '192.0.2.13'],
    );
    for (const host of lab.hosts) {
      const route = await lab.exec(host, 'ip route show default', { check: true });
      assert.match(route.stdout, new RegExp(`default via 192\\.0\\.2\\.1 dev ${host.iface}`));
      const link = await lab.exec(host, `ip -o link show ${host.iface}`, { check: true });
      assert.match(link.stdout, /mtu 1500 /);
      const forward = await lab.exec(host, 'cat /proc/sys/net/ipv4/ip_forward', { check: true });
      assert.equal(forward.stdout.trim(), '0');
      const got = await lab.exec(host, 'ip -4 -o route get 198.18.1.1', { check: true });
      assert.match(got.stdout, new RegExp(`src ${host.publicIp.replace(/\./g, '\\.')}`), 'weft would pick this interface and address');
    }
  });

  it('lets hosts ping each other and the gateway on the underlay', async function () {
    const pairs = lab.hosts.flatMap((from) =>
      [...lab.hosts.filter((to) => to !== from).map((to) => to.publicIp), '192.0.2.1', '192.0.2.2'].map((to) => ({ from, to })),
    );
    const results = await Promise.all(pairs.map(({ from, to }) => ping(lab, from, to, { count: 2, interval: 0.05 })));
    results.forEach((result, index) =>
      assert.equal(result.lossPercent, 0, `${pairs[index].from.name} → ${pairs[index].to}\n${result.output}`),
    );
  });

  it('serves etcd to the hosts at 192.0.2.2:2379', async function () {
    const health = await lab.exec('h2', `ETCDCTL_API=3 etcdctl --endpoints ${lab.etcdEndpoint} endpoint health`);
    assert.equal(health.code, 0, health.stderr);
    assert.match(health.stdout + health.stderr, /is healthy/);
    assert.equal(lab.etcdEndpoint, 'http://192.0.2.2:2379');
  });

  it('seeds, reads and deletes keys with etcdctl, keeping etcd leases visible', async function () {
    await seedNetworkConfig(lab);
    const [config] = await etcdGet(lab, '/coreos.com/network/config');
    assert.deepEqual(JSON.parse(config.value), LAB_NETWORK_CONFIG);
    assert.equal(config.leaseId, undefined);

    const grant = await lab.etcdctl(['lease', 'grant', '600'], { check: true });
    const leaseId = /lease ([0-9a-f]+) granted/.exec(grant.stdout)![1];
    const value = JSON.stringify({
      PublicIP: '192.0.2.12',
      PublicIPv6: null,
      BackendType: 'vxlan',
      BackendData: { VNI: 1, VtepMAC: '02:00:00:00:00:12' },
    });
    await lab.etcdctl(['put', '--lease', leaseId, '/coreos.com/network/subnets/198.18.9.0-24', value], { check: true });
    await etcdPut(lab, '/coreos.com/network/subnets/198.18.10.0-24', JSON.stringify({ PublicIP: '192.0.2.13', BackendType: 'host-gw' }));

    const leases = await listSubnetLeases(lab);
    assert.deepEqual(
      leases.map((lease) => [lease.subnet, lease.attrs?.PublicIP, lease.leaseId]),
      [
        ['198.18.10.0/24', '192.0.2.13', undefined],
        ['198.18.9.0/24', '192.0.2.12', leaseId],
      ],
    );
    assert.equal((await leaseOf(lab, '192.0.2.12'))?.key, '/coreos.com/network/subnets/198.18.9.0-24');
    assert.equal(await etcdDel(lab, '/coreos.com/network/subnets/198.18.9.0-24'), 1);
    assert.equal(await etcdDel(lab, '/coreos.com/network/subnets/', { prefix: true }), 1);
    assert.deepEqual(await listSubnetLeases(lab), []);
  });

  it('stops etcd (SIGKILL) and starts it again with its data', async function () {
    await etcdPut(lab, '/weft-lab/survives', 'yes');
    await lab.stopEtcd();
    const down = await lab.exec(
      'h1',
      `ETCDCTL_API=3 etcdctl --endpoints ${lab.etcdEndpoint} --command-timeout=300ms get /weft-lab/survives`,
    );
    assert.notEqual(down.code, 0);
    await lab.startEtcd();
    assert.deepEqual(
      (await etcdGet(lab, '/weft-lab/survives')).map((entry) => entry.value),
      ['yes'],
    );
  });

  it('adds containers from a subnet.env that reach their gateway and each other, with the flannel MTU', async function () {
    const host = lab.host('h1');
    await assert.rejects(lab.addContainers(host, 1), /no complete subnet\.env/);
    writeFileSync(
      lab.subnetFile(host),
      'FLANNEL_NETWORK=198.18.0.0/16\nFLANNEL_SUBNET=198.18.5.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n',
    );
    const containers = await lab.addContainers(host, 2);
    assert.deepEqual(
      containers.map((container) => [container.name, container.ip]),
      [
        ['h1c1', '198.18.5.2'],
        ['h1c2', '198.18.5.3'],
      ],
    );
    assert.equal(lab.resolve('h1c2'), containers[1]);
    for (const container of containers) {
      assert.equal((await ping(lab, container, '198.18.5.1', { count: 2, interval: 0.05 })).lossPercent, 0);
      const route = await container.exec('ip route show default', { check: true });
      assert.match(route.stdout, /default via 198\.18\.5\.1/);
      assert.match((await container.exec('ip -o link show', { check: true })).stdout, /mtu 1450 /);
    }
    assert.equal((await ping(lab, containers[0], containers[1].ip, { count: 2, interval: 0.05 })).lossPercent, 0);
    const bridge = await lab.exec(host, 'ip -o addr show type bridge', { check: true });
    assert.match(bridge.stdout, /inet 198\.18\.5\.1\/24/);
    assert.match((await lab.exec(host, 'ip -o link show type bridge', { check: true })).stdout, /mtu 1450 /);

    const [third] = await lab.addContainers(host, 1);
    assert.equal(third.ip, '198.18.5.4');
    assert.equal(host.containers.length, 3);

    // Without the agent nothing leaves the host: ip_forward stays 0. h2 routes the containers' subnet back to h1,
    // so the ping would be answered the moment h1 forwarded it (checked by turning forwarding on for a moment).
    const h2 = lab.host('h2');
    await lab.exec(h2, `ip route add 198.18.5.0/24 via ${host.publicIp}`, { check: true });
    try {
      assert.equal((await lab.exec(host, 'cat /proc/sys/net/ipv4/ip_forward', { check: true })).stdout.trim(), '0');
      assert.equal((await ping(lab, third, h2.publicIp, { count: 1, deadline: 1 })).received, 0, 'h1 does not forward');
      await lab.exec(host, 'echo 1 > /proc/sys/net/ipv4/ip_forward', { check: true });
      try {
        assert.equal((await ping(lab, third, h2.publicIp, { count: 1, deadline: 2 })).received, 1, 'answered once h1 forwards');
      } finally {
        await lab.exec(host, 'echo 0 > /proc/sys/net/ipv4/ip_forward', { check: true });
      }
    } finally {
      await lab.exec(h2, 'ip route del 198.18.5.0/24', { check: true });
    }

    writeFileSync(
      lab.subnetFile(host),
      'FLANNEL_NETWORK=198.18.0.0/16\nFLANNEL_SUBNET=198.18.8.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n',
    );
    await assert.rejects(lab.addContainers(host, 1), /removeContainers first/);
    await lab.removeContainers(host);
    assert.deepEqual(
      lab.namespaces().filter((ns) => ns.startsWith(`${host.netns}c`)),
      [],
    );
    const [fresh] = await lab.addContainers(host, 1);
    assert.equal(fresh.ip, '198.18.8.2');
    assert.equal((await ping(lab, fresh, '198.18.8.1', { count: 1 })).lossPercent, 0);
  });

  it('starts an agent in the host namespace with the lab flags, logs its output and stops it', async function () {
    const host = lab.host('h2');
    const agent = await lab.startAgent(host, ['--iface', host.iface, '--log-level=debug'], { FAKE_SUBNET: '198.18.12.1/24' });
    await assert.rejects(lab.startAgent(host), /already runs weftd/);
    const env = await waitForSubnetEnv(lab, host, { timeoutMs: 10_000 });
    assert.equal(env.subnet, '198.18.12.1/24');
    assert.equal(env.mtu, 1450);
    const nodeIdFile = lab.subnetFile(host).replace(/subnet\.env$/, 'node-id');
    assert.deepEqual(agent.args, [
      `--etcd-endpoints=${lab.etcdEndpoint}`,
      `--node-id-file=${nodeIdFile}`,
      `--subnet-file=${lab.subnetFile(host)}`,
      '--iface',
      host.iface,
      '--log-level=debug',
    ]);
    const started = await waitFor(
      () =>
        agent
          .log()
          .split('\n')
          .find((line) => line.startsWith('{')),
      'agent output',
    );
    const report = JSON.parse(started) as { addresses: string[]; etcd: string };
    assert.ok(report.addresses.includes(host.publicIp), 'the agent runs in its host namespace');
    assert.ok(!report.addresses.includes(lab.hosts[0].publicIp));
    assert.equal(report.etcd, lab.etcdEndpoint);

    const [container] = await lab.addContainers(host, 1);
    assert.equal(container.ip, '198.18.12.2');

    assert.deepEqual(await lab.stopAgent(host), { code: 0, signal: null });
    assert.match(agent.log(), /fake-weftd: SIGTERM/);
    assert.ok(!alive(agent.pid));

    const again = await lab.startAgent(host, ['--subnet-file=/nonexistent/dir/subnet.env']);
    assert.deepEqual(await again.exited, { code: 1, signal: null }, 'writing to /nonexistent fails');
    assert.equal(again.args.filter((arg) => arg.startsWith('--subnet-file')).length, 1, 'an explicit --subnet-file wins');

    const third = await lab.startAgent(host);
    third.kill('SIGKILL');
    assert.deepEqual(await third.exited, { code: null, signal: 'SIGKILL' });
    assert.equal(lab.agent(host), third);
  });

  it('keeps a 10 ms ping flowing in the background and sees an underlay outage', async function () {
    const stream = startPing(lab, 'h1', lab.hosts[2].publicIp);
    await waitFor(() => stream.progress().received >= 20, '20 replies');
    const before = await stream.stop();
    assert.equal(before.lossPercent, 0, before.output);
    assert.ok(before.transmitted >= 20);

    const during = startPing(lab, 'h1', lab.hosts[2].publicIp);
    await waitFor(() => during.progress().received >= 5, 'first replies');
    await lab.setUnderlay('h3', false);
    await new Promise((resolve) => setTimeout(resolve, 300));
    await lab.setUnderlay('h3', true);
    await waitFor(() => {
      const progress = during.progress();
      return progress.longestLossRun >= 10 && progress.output.trimEnd().split('\n').at(-1)!.includes('bytes from');
    }, 'replies after the outage');
    await new Promise((resolve) => setTimeout(resolve, 100));
    const result = await during.stop();
    assert.ok(result.longestLossRun >= 10 && result.longestLossRun <= 200, `outage of ${result.longestLossRun} × 10 ms`);
    assert.ok(result.received > 10);
  });

  it('fetches HTTP from inside a host (for healthz, readyz and metrics)', async function () {
    const [h1, h2] = lab.hosts;
    const server = lab.background(
      h1,
      `node -e ${shellQuote(`require('http').createServer((q, r) => r.end('ok ' + q.url)).listen(8471, '${h1.publicIp}', () => console.log('listening'))`)}`,
    );
    try {
      await waitFor(() => server.output().stdout.includes('listening'), 'test server');
      assert.deepEqual(await httpGet(lab, h2, `http://${h1.publicIp}:8471/healthz`), { status: 200, body: 'ok /healthz' });
      const refused = await httpGet(lab, h2, `http://${h1.publicIp}:8472/healthz`);
      assert.equal(refused.status, 0);
      assert.match(refused.body, /ECONNREFUSED/);
    } finally {
      await server.stop('SIGTERM');
    }
  });

  it('lets a second lab with another run id coexist (6 hosts, created in well under 10 s)', async function () {
    const start = Date.now();
    const other = await NetnsLab.create({ hosts: 6 });
    try {
      const elapsed = Date.now() - start;
      assert.ok(elapsed < 10_000, `6-host lab took ${elapsed} ms`);
      assert.notEqual(other.runId, lab.runId);
      assert.equal(other.namespaces().length, 9);
      assert.equal((await ping(other, 'h6', '192.0.2.11', { count: 1 })).lossPercent, 0);
      assert.equal((await other.etcdctl(['endpoint', 'health'])).code, 0);
      assert.equal((await ping(lab, 'h1', '192.0.2.12', { count: 1 })).lossPercent, 0);
    } finally {
      await other.destroy();
    }
    assert.deepEqual(other.namespaces(), []);
    assert.equal((await ping(lab, 'h1', '192.0.2.13', { count: 1 })).lossPercent, 0, 'the first lab is untouched');
    assert.ok((await lab.etcdctl(['endpoint', 'health'])).code === 0);
  });

  it('puts hosts on other L2 segments behind a router, with an optional IPv6 underlay', async function () {
    const routed = await NetnsLab.create({ hosts: [{ segments: ['a'] }, { segments: ['b'] }, { segments: ['a', 'c'] }], ipv6: true });
    try {
      const [h1, h2, h3] = routed.hosts;
      assert.deepEqual([h1.publicIp, h2.publicIp, h3.publicIp], ['192.0.2.11', '198.51.100.12', '192.0.2.13']);
      assert.deepEqual([h1.publicIpv6, h2.publicIpv6, h3.publicIpv6], ['2001:db8:0:1::11', undefined, '2001:db8:0:1::13']);
      assert.match((await routed.exec(h2, 'ip route show default', { check: true })).stdout, /via 198\.51\.100\.1 /);
      // h1 reaches h2 only through the router: not directly connected (host-gw cannot work there).
      assert.match((await routed.exec(h1, 'ip -o route get 198.51.100.12', { check: true })).stdout, /via 192\.0\.2\.1 /);
      assert.equal((await ping(routed, h1, h2.publicIp, { count: 2, interval: 0.05 })).lossPercent, 0);
      assert.equal((await routed.exec(h2, `ETCDCTL_API=3 etcdctl --endpoints ${routed.etcdEndpoint} endpoint health`)).code, 0);
      // h3 is on a and c.
      assert.match((await routed.exec(h3, 'ip -4 -o addr show', { check: true })).stdout, /203\.0\.113\.13\/24/);
      assert.equal((await ping(routed, h3, h1.publicIpv6!, { count: 2, interval: 0.05 })).lossPercent, 0);
      assert.equal((await routed.exec(h1, 'cat /proc/sys/net/ipv4/ip_forward')).stdout.trim(), '0');
    } finally {
      await routed.destroy();
    }
  });

  it('adds dual-stack containers when subnet.env has FLANNEL_IPV6_SUBNET', async function () {
    const host = lab.host('h3');
    writeFileSync(
      lab.subnetFile(host),
      'FLANNEL_NETWORK=198.18.0.0/16\nFLANNEL_SUBNET=198.18.20.1/24\nFLANNEL_IPV6_NETWORK=2001:db8:100::/48\nFLANNEL_IPV6_SUBNET=2001:db8:100:20::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n',
    );
    const [c1, c2] = await lab.addContainers(host, 2);
    assert.equal(c1.ipv6, '2001:db8:100:20::2');
    assert.equal((await ping(lab, c1, '2001:db8:100:20::1', { count: 1 })).lossPercent, 0);
    assert.equal((await ping(lab, c1, c2.ipv6!, { count: 1 })).lossPercent, 0);
  });

  it('destroy() removes every namespace, process and temp file, and is safe twice and after partial damage', async function () {
    const doomed = await NetnsLab.create({ hosts: 2, agentCommand: [process.execPath, fakeAgent] });
    const agent = await doomed.startAgent('h1');
    await waitForSubnetEnv(doomed, 'h1');
    await doomed.addContainers('h1', 2);
    const sleeper = doomed.background('h1c1', 'sleep 600');
    const stream = startPing(doomed, 'h1c2', '198.18.7.1');
    const pids = [agent.pid, sleeper.pid, stream.pid];
    assert.ok(pids.every(alive));
    // Partial damage: a namespace already gone, etcd already dead.
    assert.equal(spawnSync('ip', ['netns', 'del', `${doomed.prefix}-h2`]).status, 0);
    await doomed.stopEtcd();
    await Promise.all([doomed.destroy(), doomed.destroy()]);
    await doomed.destroy();
    assert.deepEqual(
      netnsList().filter((ns) => ns.startsWith(`${doomed.prefix}-`)),
      [],
    );
    await waitFor(() => pids.every((pid) => !alive(pid)), 'lab processes gone', 2_000);
    assert.ok(!existsSync(doomed.tempDir));
    await assert.rejects(async () => doomed.exec('h1', 'true'), /destroyed/);
  });

  for (const mode of ['wait', 'throw'] as const) {
    it(`cleans up when the process ${mode === 'wait' ? 'gets SIGINT (Ctrl-C)' : 'dies of an uncaught exception'}`, async function () {
      const runId = `x${process.pid.toString(36).slice(-3)}${mode[0]}`;
      const child = spawn(process.execPath, [labChild, runId, mode], { stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      try {
        if (mode === 'wait') {
          await waitFor(() => output.includes('ready'), `lab-child ready: ${output}`, 20_000);
          assert.ok(netnsList().some((ns) => ns.startsWith(`wlab-${runId}-`)));
          child.kill('SIGINT');
        }
        assert.equal(await exited, mode === 'wait' ? 130 : 1, output);
        assert.match(output, /ready/);
        assert.deepEqual(
          netnsList().filter((ns) => ns.startsWith(`wlab-${runId}-`)),
          [],
        );
        assert.deepEqual(
          readdirSync(tmpdir()).filter((entry) => entry.startsWith(`weft-lab-${runId}-`)),
          [],
        );
      } finally {
        child.kill('SIGKILL');
        NetnsLab.sweepStale(runId);
      }
    });
  }
});
