import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Etcd3 } from 'etcd3';
import { EtcdServer, freePort } from '../../test/etcd-server.js';
import { asReachableByOthers } from '../../test/unprivileged.js';
import { HealthServer, READINESS_CHECKS, Readiness } from '../http.js';
import { WeftMetrics } from '../metrics.js';
import { connectEtcd } from '../registry/etcd.js';

const WEFTCTL = fileURLToPath(new URL('./weftctl.js', import.meta.url));

describe('weftctl against a real etcd', function () {
  this.timeout(60_000);
  let etcd: EtcdServer;
  let client: Etcd3;
  let prefix: string;
  let testIndex = 0;

  function weftctl(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return run({ FLANNELD_ETCD_ENDPOINTS: etcd.endpoint, WEFTD_ETCD_PREFIX: prefix }, ['--environment-file=', ...args]);
  }

  /** weftctl with exactly this environment (and PATH), run through `wrapper` (e.g. setpriv) when given. */
  function run(
    env: Record<string, string>,
    args: string[],
    wrapper: string[] = [],
  ): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      const argv = [...wrapper, process.execPath, WEFTCTL, ...args];
      const child = spawn(argv[0], argv.slice(1), { env: { PATH: process.env.PATH, ...env } });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      child.on('close', (code) => resolve({ code, stdout, stderr }));
    });
  }

  before(async function () {
    etcd = await EtcdServer.start();
    client = connectEtcd({ endpoints: [etcd.endpoint] });
  });

  beforeEach(function () {
    prefix = `/weft-test-${process.pid}/ctl-${testIndex++}`;
  });

  after(async function () {
    client?.close();
    await etcd?.destroy();
  });

  it('writes a validated config with an explicit backend and reads it back', async function () {
    const set = await weftctl('config', 'set', '--network', '198.18.0.0/16');
    assert.equal(set.code, 0, set.stderr);
    const get = await weftctl('config', 'get');
    assert.deepEqual(JSON.parse(get.stdout), { Network: '198.18.0.0/16', Backend: { Type: 'vxlan' } });

    const bad = await weftctl('config', 'set', '--network', '198.18.0.0/16', '--subnet-len', '33');
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /SubnetLen 33 is longer than 32/);
    assert.deepEqual(
      (JSON.parse((await weftctl('config', 'get')).stdout) as { Backend: unknown }).Backend,
      { Type: 'vxlan' },
      'nothing written on a bad value',
    );
  });

  it('refuses to change Network, SubnetLen or Backend.Type under live leases unless --force; reservations do not count, other changes go through', async function () {
    const read = async () => client.get(`${prefix}/config`).string();
    const seeded = await weftctl('config', 'set', '--network', '198.18.0.0/16');
    assert.equal(seeded.code, 0, seeded.stderr);
    // a reservation is no live host
    await client
      .put(`${prefix}/subnets/198.18.9.0-24`)
      .value('{"PublicIP":"192.0.2.13","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:00:00:00:00:09"}}');
    const reserved = await weftctl('config', 'set', '--network', '198.18.0.0/16', '--backend', 'host-gw');
    assert.equal(reserved.code, 0, reserved.stderr);
    assert.equal((await weftctl('config', 'set', '--network', '198.18.0.0/16')).code, 0);
    const original = await read();

    const etcdLease = (await client.leaseClient.leaseGrant({ TTL: 60 })).ID;
    await client
      .put(`${prefix}/subnets/198.18.5.0-24`)
      .value('{"PublicIP":"192.0.2.11","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:00:00:00:00:05"}}')
      .lease(etcdLease);
    for (const [field, flags] of [
      ['Network', ['--network', '198.18.0.0/17']],
      ['SubnetLen', ['--network', '198.18.0.0/16', '--subnet-len', '25']],
      ['Backend.Type', ['--network', '198.18.0.0/16', '--backend', 'host-gw']],
    ] as const) {
      const refused = await weftctl('config', 'set', ...flags);
      assert.equal(refused.code, 1, `${field}: ${refused.stderr}`);
      assert.match(refused.stderr, /refusing to change Network, SubnetLen or Backend\.Type while 1 hosts hold leases; use --force/, field);
      assert.equal(await read(), original, `${field}: nothing written`);
    }
    const other = await weftctl('config', 'set', '--network', '198.18.0.0/16', '--subnet-len', '24', '--subnet-min', '198.18.10.0');
    assert.equal(other.code, 0, other.stderr);
    assert.deepEqual(JSON.parse((await read())!), {
      Network: '198.18.0.0/16',
      SubnetLen: 24,
      SubnetMin: '198.18.10.0',
      Backend: { Type: 'vxlan' },
    });
    const forced = await weftctl('config', 'set', '--network', '198.18.0.0/17', '--backend', 'host-gw', '--force');
    assert.equal(forced.code, 0, forced.stderr);
    assert.deepEqual(JSON.parse((await read())!), { Network: '198.18.0.0/17', Backend: { Type: 'host-gw' } });
  });

  it('refuses a tunnel port below 1024 unless --force, naming Backend.Port; refuses a device name Linux cannot hold', async function () {
    for (const [backend, port] of [
      ['vxlan', '53'],
      ['udp', '123'],
    ]) {
      const refused = await weftctl('config', 'set', '--network', '198.18.0.0/16', '--backend', backend, '--port', port);
      assert.equal(refused.code, 1, refused.stderr);
      assert.match(refused.stderr, new RegExp(`refusing to write the config: Backend\\.Port ${port} is below 1024.*Use --force`));
      assert.equal(await client.get(`${prefix}/config`).string(), null, 'nothing written');
    }
    const forced = await weftctl('config', 'set', '--network', '198.18.0.0/16', '--port', '53', '--force');
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(forced.stderr, /warning: Backend\.Port 53 is below 1024/);
    assert.deepEqual((JSON.parse((await weftctl('config', 'get')).stdout) as { Backend: unknown }).Backend, { Type: 'vxlan', Port: 53 });
    assert.equal((await weftctl('config', 'set', '--network', '198.18.0.0/16', '--port', '1024')).code, 0);

    const file = join(mkdtempSync(join(tmpdir(), 'weftctl-')), 'config.json');
    try {
      writeFileSync(
        file,
        JSON.stringify({
          Network: '198.18.0.0/16',
          EnableIPv6: true,
          IPv6Network: '2001:db8:100::/48',
          Backend: { Type: 'vxlan', VNI: 12_345_678 },
        }),
      );
      const named = await weftctl('config', 'set', '--file', file, '--force');
      assert.equal(named.code, 1);
      assert.match(named.stderr, /Backend\.VNI 12345678 makes the device name "weft-v6\.12345678" 16 characters long; Linux allows 15/);
    } finally {
      rmSync(dirname(file), { recursive: true, force: true });
    }
  });

  it('lists, reserves and revokes leases', async function () {
    await weftctl('config', 'set', '--network', '198.18.0.0/16');
    const etcdLease = (await client.leaseClient.leaseGrant({ TTL: 3600 })).ID;
    await client
      .put(`${prefix}/subnets/198.18.5.0-24`)
      .value('{"PublicIP":"192.0.2.11","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:00:00:00:00:05"}}')
      .lease(etcdLease);
    const reserve = await weftctl('lease', 'reserve', '198.18.9.0/24', '--public-ip', '192.0.2.19');
    assert.equal(reserve.code, 0, reserve.stderr);
    const again = await weftctl('lease', 'reserve', '198.18.9.0/24', '--public-ip', '192.0.2.20');
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already leased or reserved/);

    const table = await weftctl('leases', 'ls');
    assert.equal(table.code, 0, table.stderr);
    const lines = table.stdout.trim().split('\n');
    assert.match(lines[0], /^SUBNET\s+PUBLIC IP\s+BACKEND\s+VTEP MAC\s+EXPIRES\s+STATUS$/);
    assert.match(lines[1], /^198\.18\.5\.0\/24\s+192\.0\.2\.11\s+vxlan\s+0a:00:00:00:00:05\s+(59m\d\ds|1h00m)\s+in use$/);
    assert.match(lines[2], /^198\.18\.9\.0\/24\s+192\.0\.2\.19\s+vxlan\s+-\s+reserved\s+in use$/);
    const json = JSON.parse((await weftctl('leases', 'ls', '-o', 'json')).stdout) as { subnet: string; reserved: boolean }[];
    assert.deepEqual(
      json.map((row) => [row.subnet, row.reserved]),
      [
        ['198.18.5.0/24', false],
        ['198.18.9.0/24', true],
      ],
    );

    const revoke = await weftctl('lease', 'revoke', '198.18.5.0/24');
    assert.equal(revoke.code, 0, revoke.stderr);
    assert.equal(await client.get(`${prefix}/subnets/198.18.5.0-24`).string(), null);
    const missing = await weftctl('lease', 'revoke', '198.18.5.0/24');
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no lease 198\.18\.5\.0-24/);

    await client.delete().key(`${prefix}/config`);
    const unjudged = await weftctl('leases', 'ls');
    assert.equal(unjudged.code, 0, unjudged.stderr);
    assert.match(unjudged.stderr, /no valid config .*: cannot tell which leases the agents ignore/);
  });

  it('writes IPv6 configs from flags: dual stack, IPv6 only; refuses IPv6 flags without IPv6', async function () {
    const dual = await weftctl(
      'config',
      'set',
      '--network',
      '198.18.0.0/16',
      '--ipv6-network',
      '2001:db8:100::/48',
      '--ipv6-subnet-len',
      '64',
      '--ipv6-subnet-min',
      '2001:db8:100:10::',
      '--ipv6-subnet-max',
      '2001:db8:100:20::',
      '--subnet-min',
      '198.18.10.0',
    );
    assert.equal(dual.code, 0, dual.stderr);
    assert.deepEqual(JSON.parse((await weftctl('config', 'get')).stdout), {
      Network: '198.18.0.0/16',
      SubnetMin: '198.18.10.0',
      EnableIPv6: true,
      IPv6Network: '2001:db8:100::/48',
      IPv6SubnetLen: 64,
      IPv6SubnetMin: '2001:db8:100:10::',
      IPv6SubnetMax: '2001:db8:100:20::',
      Backend: { Type: 'vxlan' },
    });
    const only6 = await weftctl('config', 'set', '--enable-ipv4=false', '--ipv6-network', '2001:db8:100::/48', '--force');
    assert.equal(only6.code, 0, only6.stderr);
    assert.deepEqual(JSON.parse((await weftctl('config', 'get')).stdout), {
      EnableIPv4: false,
      EnableIPv6: true,
      IPv6Network: '2001:db8:100::/48',
      Backend: { Type: 'vxlan' },
    });
    const without = await weftctl(
      'config',
      'set',
      '--network',
      '198.18.0.0/16',
      '--enable-ipv6=false',
      '--ipv6-network',
      '2001:db8:100::/48',
    );
    assert.equal(without.code, 1);
    assert.match(without.stderr, /--ipv6-network need IPv6: drop --enable-ipv6=false/);
    const missing = await weftctl('config', 'set', '--enable-ipv6');
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /give --network/);
  });

  it('refuses a VNI above 65535 (flanneld before v0.24 would skip every host) and warns about host bits it masks', async function () {
    const big = await weftctl('config', 'set', '--network', '198.18.0.0/16', '--vni', '65536');
    assert.equal(big.code, 1);
    assert.match(big.stderr, /Backend\.VNI 65536 is above 65535: flanneld before v0\.24 reads a peer's VNI as a 16-bit number/);
    assert.equal(await client.get(`${prefix}/config`).string(), null, 'nothing written');
    const top = await weftctl('config', 'set', '--network', '198.18.0.0/16', '--vni', '65535');
    assert.equal(top.code, 0, top.stderr);
    const masked = await weftctl('config', 'set', '--network', '198.18.1.0/16', '--vni', '65535');
    assert.equal(masked.code, 0, masked.stderr);
    assert.match(masked.stderr, /warning: Network 198\.18\.1\.0\/16 has host bits set: using 198\.18\.0\.0\/16/);
  });

  it('reserves in the key form of the network: both families in a dual-stack network, never one alone; --backend', async function () {
    await weftctl('config', 'set', '--network', '198.18.0.0/16', '--ipv6-network', '2001:db8:100::/48');
    const single = await weftctl('lease', 'reserve', '198.18.9.0/24', '--public-ip', '192.0.2.19');
    assert.equal(single.code, 1);
    assert.match(
      single.stderr,
      /the network is dual-stack: a reservation names an IPv4 and an IPv6 subnet in one key \(flanneld crashes on a single-family key there\)/,
    );
    const v6alone = await weftctl('lease', 'reserve', '2001:db8:100:9::/64', '--public-ipv6', '2001:db8:0:1::19');
    assert.equal(v6alone.code, 1);
    const reserve = await weftctl(
      'lease',
      'reserve',
      '198.18.9.0/24',
      '--ipv6-subnet',
      '2001:db8:100:9::/64',
      '--public-ip',
      '192.0.2.19',
      '--public-ipv6',
      '2001:db8:0:1::19',
    );
    assert.equal(reserve.code, 0, reserve.stderr);
    assert.equal(reserve.stdout, 'reserved 198.18.9.0-24&2001:db8:100:9::-64 for 192.0.2.19 and 2001:db8:0:1::19\n');
    const stored = await client.get(`${prefix}/subnets/198.18.9.0-24&2001:db8:100:9::-64`).string();
    assert.equal(stored, '{"PublicIP":"192.0.2.19","PublicIPv6":"2001:db8:0:1::19","BackendType":"vxlan"}');
    const overlap = await weftctl(
      'lease',
      'reserve',
      '198.18.9.0/24',
      '--ipv6-subnet',
      '2001:db8:100:a::/64',
      '--public-ip',
      '192.0.2.20',
      '--public-ipv6',
      '2001:db8:0:1::20',
    );
    assert.equal(overlap.code, 1);
    assert.match(overlap.stderr, /overlaps 198\.18\.9\.0-24&2001:db8:100:9::-64, already leased or reserved/);
    const outside = await weftctl(
      'lease',
      'reserve',
      '198.18.0.0/24',
      '--ipv6-subnet',
      '2001:db8:100:a::/64',
      '--public-ip',
      '192.0.2.20',
      '--public-ipv6',
      '2001:db8:0:1::20',
    );
    assert.equal(outside.code, 1);
    assert.match(
      outside.stderr,
      /198\.18\.0\.0\/24 is not a subnet this network hands out: \/24 subnets of 198\.18\.0\.0\/16 from 198\.18\.1\.0 to 198\.18\.255\.0/,
    );
    const hostgw = await weftctl(
      'lease',
      'reserve',
      '198.18.10.0/24',
      '--ipv6-subnet',
      '2001:db8:100:a::/64',
      '--public-ip',
      '192.0.2.20',
      '--public-ipv6',
      '2001:db8:0:1::20',
      '--backend',
      'host-gw',
    );
    assert.equal(hostgw.code, 0, hostgw.stderr);
    assert.match((await client.get(`${prefix}/subnets/198.18.10.0-24&2001:db8:100:a::-64`).string())!, /"BackendType":"host-gw"/);
  });

  it('reserves IPv6-only and udp keys as flanneld writes them', async function () {
    await weftctl('config', 'set', '--enable-ipv4=false', '--ipv6-network', '2001:db8:100::/48');
    const v4 = await weftctl('lease', 'reserve', '198.18.9.0/24', '--public-ip', '192.0.2.19');
    assert.equal(v4.code, 1);
    assert.match(v4.stderr, /the network is IPv6-only: give an IPv6 subnet and --public-ipv6/);
    const v6 = await weftctl('lease', 'reserve', '2001:db8:100:9::/64', '--public-ipv6', '2001:db8:0:1::19');
    assert.equal(v6.code, 0, v6.stderr);
    assert.equal(
      await client.get(`${prefix}/subnets/0.0.0.0-0&2001:db8:100:9::-64`).string(),
      '{"PublicIP":"0.0.0.0","PublicIPv6":"2001:db8:0:1::19","BackendType":"vxlan"}',
    );

    prefix = `${prefix}-udp`;
    await weftctl('config', 'set', '--network', '198.18.0.0/16', '--backend', 'udp');
    const udp = await weftctl('lease', 'reserve', '198.18.9.0/24', '--public-ip', '192.0.2.19');
    assert.equal(udp.code, 0, udp.stderr);
    // flanneld's udp backend writes no BackendType
    assert.equal(await client.get(`${prefix}/subnets/198.18.9.0-24`).string(), '{"PublicIP":"192.0.2.19","PublicIPv6":null}');
    const table = (await weftctl('leases', 'ls')).stdout.trim().split('\n');
    assert.match(table[1], /^198\.18\.9\.0\/24\s+192\.0\.2\.19\s+udp\s+-\s+reserved\s+in use$/);
  });

  it('refuses to reserve without a network config, which decides the key form', async function () {
    const none = await weftctl('lease', 'reserve', '198.18.9.0/24', '--public-ip', '192.0.2.19');
    assert.equal(none.code, 1);
    assert.match(none.stderr, /no config at .*: a reservation takes its key form \(IPv4, IPv6 or both\) from it/);
  });

  it('never prints control characters from etcd or a peer raw: leases ls, status and config get escape them', async function () {
    const hostile = '\u001b[2J\u001b]0;pwned\u0007\r\n198.18.99.0/24  192.0.2.99  vxlan\u009b31m\u202e';
    const etcdLease = (await client.leaseClient.leaseGrant({ TTL: 3600 })).ID;
    await client
      .put(`${prefix}/subnets/198.18.5.0-24`)
      .value(
        JSON.stringify({
          PublicIP: '192.0.2.11',
          BackendType: `vxlan${hostile}`,
          BackendData: { VNI: 1, VtepMAC: hostile },
          [`Note${hostile}`]: hostile,
        }),
      )
      .lease(etcdLease);
    await client
      .put(`${prefix}/config`)
      .value(JSON.stringify({ Network: '198.18.0.0/16', Backend: { Type: 'vxlan' }, [`Comment${hostile}`]: hostile }));
    // an agent that answers with the same in its /readyz
    const readiness = new Readiness();
    readiness.setInfo('backend', hostile);
    readiness.setReady('lease', false, hostile);
    const agent = await HealthServer.listen({ host: '127.0.0.1', port: 0, readiness, metrics: new WeftMetrics() });
    await client
      .put(`${prefix}/subnets/198.18.6.0-24`)
      .value(JSON.stringify({ PublicIP: '127.0.0.1', BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: '0a:00:00:00:00:06' } }))
      .lease(etcdLease);
    try {
      const outputs = {
        'leases ls': await weftctl('leases', 'ls'),
        'leases ls -o json': await weftctl('leases', 'ls', '-o', 'json'),
        status: await weftctl('status', `--healthz-port=${agent.port}`),
        'status -o json': await weftctl('status', `--healthz-port=${agent.port}`, '-o', 'json'),
        'config get': await weftctl('config', 'get'),
      };
      for (const [command, { stdout, stderr }] of Object.entries(outputs)) {
        // eslint-disable-next-line no-control-regex -- the test looks for control characters
        assert.doesNotMatch(stdout + stderr, /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e]/, command);
      }
      for (const command of ['leases ls', 'status'] as const) {
        const lines = outputs[command].stdout.trimEnd().split('\n');
        assert.equal(lines.length, 3, `${command}: a header and one line per lease, no forged line:\n${outputs[command].stdout}`);
        assert.match(lines[2], /^198\.18\.6\.0\/24/);
      }
      assert.match(outputs['leases ls'].stdout, /vxlan\\u001b\[2J\\u001b\]0;pwned\\u0007\\u000d\\u000a198\.18\.99\.0\/24/);
      // JSON reads the escapes as the characters they stand for
      const rows = JSON.parse(outputs['leases ls -o json'].stdout) as { backend: string; vtepMac: string }[];
      assert.equal(rows[0].backend, `vxlan${hostile}`);
      assert.equal(rows[0].vtepMac, hostile);
      assert.equal(
        (JSON.parse(outputs['status -o json'].stdout) as { agent?: { info?: Record<string, unknown> } }[])[1].agent?.info?.backend,
        hostile,
      );
      assert.equal((JSON.parse(outputs['config get'].stdout) as Record<string, unknown>)[`Comment${hostile}`], hostile);
    } finally {
      await agent.destroy();
    }
  });

  it("shows which leases every weftd ignores, and why; status counts them as nobody's peers", async function () {
    await weftctl('config', 'set', '--network', '198.18.0.0/16');
    const etcdLease = (await client.leaseClient.leaseGrant({ TTL: 3600 })).ID;
    const value = (ip: string, mac: string) =>
      JSON.stringify({ PublicIP: ip, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: mac } });
    await client.put(`${prefix}/subnets/198.18.5.0-24`).value(value('192.0.2.11', '0a:00:00:00:00:05')).lease(etcdLease);
    await client
      .put(`${prefix}/subnets/198.18.5.0-24&2001:db8:100:5::-64`)
      .value(value('198.19.0.66', '0a:00:00:00:00:66'))
      .lease(etcdLease);
    await client.put(`${prefix}/subnets/198.18.0.0-16`).value(value('198.19.0.67', '0a:00:00:00:00:67')).lease(etcdLease);
    await client.put(`${prefix}/subnets/198.18.6.0-24`).value(value('192.0.2.12', '0a:00:00:00:00:05')).lease(etcdLease);
    const json = JSON.parse((await weftctl('leases', 'ls', '-o', 'json')).stdout) as {
      subnet: string;
      ignored: { reason: string; detail: string } | null;
    }[];
    assert.deepEqual(
      json.map((row) => [row.subnet, row.ignored?.reason ?? null]),
      [
        ['198.18.0.0/16', 'invalid-subnet'],
        ['198.18.5.0/24', null],
        ['198.18.5.0/24,2001:db8:100:5::/64', 'subnet-conflict'],
        ['198.18.6.0/24', 'vtep-mac-conflict'],
      ],
    );
    const table = (await weftctl('leases', 'ls')).stdout.trim().split('\n');
    assert.match(table[3], /\s+ignored: 198\.18\.5\.0\/24 is held by 198\.18\.5\.0-24, whose key is older$/);
    const status = JSON.parse((await weftctl('status', '-o', 'json')).stdout) as {
      subnet: string;
      expectedPeers: number;
      problems: string[];
    }[];
    assert.deepEqual(
      status.map((row) => [row.expectedPeers, row.problems.length]),
      [
        [0, 1],
        [0, 0],
        [0, 1],
        [0, 1],
      ],
    );
  });

  it('shows both families of a dual-stack lease and revokes it by either subnet', async function () {
    const etcdLease = (await client.leaseClient.leaseGrant({ TTL: 3600 })).ID;
    const value = JSON.stringify({
      PublicIP: '192.0.2.11',
      PublicIPv6: '2001:db8:0:1::11',
      BackendType: 'vxlan',
      BackendData: { VNI: 1, VtepMAC: '0a:00:00:00:00:05' },
      BackendV6Data: { VNI: 1, VtepMAC: '0a:00:00:00:00:15' },
    });
    await client.put(`${prefix}/subnets/198.18.5.0-24&2001:db8:100:5::-64`).value(value).lease(etcdLease);
    await client
      .put(`${prefix}/subnets/0.0.0.0-0&2001:db8:100:6::-64`)
      .value(
        JSON.stringify({
          PublicIP: null,
          PublicIPv6: '2001:db8:0:1::12',
          BackendType: 'vxlan',
          BackendV6Data: { VNI: 1, VtepMAC: '0a:00:00:00:00:16' },
        }),
      )
      .lease(etcdLease);
    const table = (await weftctl('leases', 'ls')).stdout.trim().split('\n');
    assert.match(table[1], /^2001:db8:100:6::\/64\s+2001:db8:0:1::12\s+vxlan\s+0a:00:00:00:00:16\s+\S+\s+in use$/);
    assert.match(
      table[2],
      /^198\.18\.5\.0\/24,2001:db8:100:5::\/64\s+192\.0\.2\.11,2001:db8:0:1::11\s+vxlan\s+0a:00:00:00:00:05,0a:00:00:00:00:15\s+\S+\s+in use$/,
    );
    const json = JSON.parse((await weftctl('leases', 'ls', '-o', 'json')).stdout) as {
      subnet: string;
      publicIP: string;
      publicIPv6: string;
    }[];
    assert.deepEqual(
      json.map((row) => [row.subnet, row.publicIP, row.publicIPv6]),
      [
        ['2001:db8:100:6::/64', '2001:db8:0:1::12', '2001:db8:0:1::12'],
        ['198.18.5.0/24,2001:db8:100:5::/64', '192.0.2.11', '2001:db8:0:1::11'],
      ],
    );
    // status expects each host to program the other for the family they share (IPv6)
    const status = JSON.parse((await weftctl('status', '-o', 'json')).stdout) as { subnet: string; expectedPeers: number }[];
    assert.deepEqual(
      status.map((row) => row.expectedPeers),
      [1, 1],
    );

    const byIpv6 = await weftctl('lease', 'revoke', '2001:db8:100:6::/64');
    assert.equal(byIpv6.code, 0, byIpv6.stderr);
    assert.equal(byIpv6.stdout, 'revoked 0.0.0.0-0&2001:db8:100:6::-64\n');
    const byIpv4 = await weftctl('lease', 'revoke', '198.18.5.0/24');
    assert.equal(byIpv4.code, 0, byIpv4.stderr);
    assert.equal(byIpv4.stdout, 'revoked 198.18.5.0-24&2001:db8:100:5::-64\n');
    assert.deepEqual(JSON.parse((await weftctl('leases', 'ls', '-o', 'json')).stdout), []);
  });

  it('status lists the leases, joined with what each agent reports, and exits 1 naming a host with a problem', async function () {
    // two agents on loopback addresses: 127.0.0.1 answers (a real HealthServer), 127.0.0.2 refuses
    const port = await freePort();
    const readiness = new Readiness();
    for (const check of READINESS_CHECKS) readiness.setReady(check, true);
    readiness.setInfo('backend', 'vxlan');
    const metrics = new WeftMetrics({ defaultMetrics: false });
    metrics.peers.set({ backend: 'vxlan' }, 1);
    metrics.etcdReachable.set(1);
    const server = await HealthServer.listen({ host: '127.0.0.1', port, readiness, metrics });
    try {
      const etcdLease = (await client.leaseClient.leaseGrant({ TTL: 3600 })).ID;
      await client
        .put(`${prefix}/subnets/198.18.5.0-24`)
        .value('{"PublicIP":"127.0.0.1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:00:00:00:00:05"}}')
        .lease(etcdLease);
      await client
        .put(`${prefix}/subnets/198.18.6.0-24`)
        .value('{"PublicIP":"127.0.0.2","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:00:00:00:00:06"}}')
        .lease(etcdLease);

      const leasesOnly = await weftctl('status');
      assert.equal(leasesOnly.code, 0, leasesOnly.stderr);
      assert.match(leasesOnly.stdout, /^198\.18\.5\.0\/24\s+127\.0\.0\.1\s+vxlan\s+(59m\d\ds|1h00m)\s+-\s+-\s+-$/m);
      assert.match(leasesOnly.stderr, /agents not asked: give --healthz-port/);

      const table = await weftctl('status', '--healthz-port', String(port));
      assert.equal(table.code, 1);
      assert.match(table.stdout, /^SUBNET\s+PUBLIC IP\s+BACKEND\s+EXPIRES\s+AGENT\s+PEERS\s+PROBLEMS$/m);
      assert.match(table.stdout, /^198\.18\.5\.0\/24\s+127\.0\.0\.1\s+vxlan\s+\S+\s+ready\s+1\/1\s+-$/m);
      assert.match(
        table.stdout,
        new RegExp(
          `^198\\.18\\.6\\.0/24\\s+127\\.0\\.0\\.2\\s+vxlan\\s+\\S+\\s+unreachable\\s+-\\s+agent unreachable at http://127\\.0\\.0\\.2:${port} \\(ECONNREFUSED\\)$`,
          'm',
        ),
      );
      assert.match(table.stderr, /^weftctl: 1 of 2 hosts have problems: 198\.18\.6\.0\/24 \(127\.0\.0\.2\)$/m);

      // the port can come from weftd's environment variable, as on a node; not ready shows which checks
      readiness.setReady('dataplane', false, 'netlink failing');
      const json = await run({ FLANNELD_ETCD_ENDPOINTS: etcd.endpoint, WEFTD_ETCD_PREFIX: prefix, WEFTD_HEALTHZ_PORT: String(port) }, [
        '--environment-file=',
        'status',
        '-o',
        'json',
      ]);
      const rows = JSON.parse(json.stdout) as {
        subnet: string;
        agent: { ready: boolean; peers: number; info: Record<string, unknown> };
        problems: string[];
      }[];
      assert.equal(rows[0].agent.ready, false);
      assert.equal(rows[0].agent.peers, 1);
      assert.deepEqual(rows[0].agent.info, { backend: 'vxlan' });
      assert.deepEqual(rows[0].problems, ['not ready: dataplane']);
    } finally {
      await server.destroy();
    }
  });

  it('reads etcd settings from the environment file; the environment and flags win over it', async function () {
    const dir = mkdtempSync(join(tmpdir(), 'weftctl-env-'));
    try {
      const file = join(dir, 'weftd.env');
      writeFileSync(
        file,
        `# as deploy/weftd.env\nWEFTD_ETCD_ENDPOINTS=${etcd.endpoint}\nexport FLANNELD_ETCD_PREFIX="${prefix}/from-file"\n`,
      );
      await client.put(`${prefix}/from-file/config`).value('{"Network":"198.18.0.0/16","Backend":{"Type":"host-gw"}}');
      await client.put(`${prefix}/config`).value('{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"}}');
      const fromFile = await run({}, [`--environment-file=${file}`, 'config', 'get']);
      assert.equal(fromFile.code, 0, fromFile.stderr);
      assert.match(fromFile.stdout, /host-gw/);
      const envWins = await run({ WEFTD_ETCD_PREFIX: prefix }, ['--environment-file', file, 'config', 'get']);
      assert.match(envWins.stdout, /vxlan/);
      const flagWins = await run({}, [`--environment-file=${file}`, 'config', 'get', `--etcd-prefix=${prefix}`]);
      assert.match(flagWins.stdout, /vxlan/);
      const missing = await run({}, [`--environment-file=${join(dir, 'nope.env')}`, 'config', 'get']);
      assert.equal(missing.code, 1);
      assert.match(missing.stderr, /--environment-file .*nope\.env: no such file/);
      writeFileSync(file, 'WEFTD_ETCD_ENDPOINTS\n');
      const malformed = await run({}, [`--environment-file=${file}`, 'config', 'get']);
      assert.equal(malformed.code, 1);
      assert.match(malformed.stderr, /weftd\.env line 1: "WEFTD_ETCD_ENDPOINTS" is not a NAME=value line/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names what is wrong: an unreachable etcd, an unknown flag, a missing command', async function () {
    const port = await freePort();
    const unreachable = await run({}, ['--environment-file=', 'leases', 'ls', `--etcd-endpoints=http://127.0.0.1:${port}`]);
    assert.equal(unreachable.code, 1);
    assert.match(unreachable.stderr, new RegExp(`^weftctl: etcd at http://127\\.0\\.0\\.1:${port}: .*UNAVAILABLE`));
    const unknown = await weftctl('leases', 'ls', '--bogus');
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /^weftctl: Unknown argument: bogus\nRun weftctl --help/);
    const none = await weftctl();
    assert.equal(none.code, 2);
    assert.match(none.stderr, /give a command/);
  });

  it("reads flanneld-style command lines and variables: one-dash flags, Go's booleans", async function () {
    const set = await run({}, [
      '-environment-file=',
      `-etcd-endpoints=${etcd.endpoint}`,
      `-etcd-prefix=${prefix}`,
      'config',
      'set',
      '-network',
      '198.18.0.0/16',
      '-direct-routing=T',
    ]);
    assert.equal(set.code, 0, set.stderr);
    assert.deepEqual((JSON.parse((await weftctl('config', 'get')).stdout) as { Backend: unknown }).Backend, {
      Type: 'vxlan',
      DirectRouting: true,
    });
    const off = await weftctl('config', 'set', '--network', '198.18.0.0/16', '--direct-routing=0');
    assert.equal(off.code, 0, off.stderr);
    assert.deepEqual((JSON.parse((await weftctl('config', 'get')).stdout) as { Backend: unknown }).Backend, {
      Type: 'vxlan',
      DirectRouting: false,
    });
    const bad = await weftctl('config', 'set', '--network', '198.18.0.0/16', '--direct-routing=yes');
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^weftctl: --direct-routing: "yes" is not a boolean/);
    // doctor reads weftd's booleans from the environment (file) the same way
    const badEnv = await run({ FLANNELD_IP_MASQ: 'on' }, ['--environment-file=', 'doctor']);
    assert.equal(badEnv.code, 2);
    assert.match(badEnv.stderr, /^weftctl: --ip-masq: FLANNELD_IP_MASQ="on" is not a boolean/);
    const certOnly = await weftctl('config', 'get', '--etcd-certfile=/nonexistent/client.crt');
    assert.equal(certOnly.code, 2);
    assert.match(certOnly.stderr, /^weftctl: --etcd-keyfile: missing/);
  });

  it('reads every boolean flag of every command as Go does', async function () {
    for (const command of [
      ['config', 'get'],
      ['config', 'set'],
      ['leases', 'ls'],
      ['lease', 'revoke', '198.18.5.0/24'],
      ['status'],
      ['doctor'],
    ]) {
      const help = await weftctl(...command, '--help');
      // one entry per option: its line (two spaces in, six when some flag has a short alias) and the continuation lines (which may hold the [boolean])
      const entries = help.stdout.split(/\n(?= {2}(?:-\w, | {4})?--[a-z])/);
      const booleans = entries
        .filter((entry) => entry.includes('[boolean]'))
        .map((entry) => /--([a-z][a-z0-9-]*)/.exec(entry)![1])
        .filter((flag) => flag !== 'help' && flag !== 'version');
      assert.ok(command[0] !== 'doctor' || booleans.includes('ip-masq'), help.stdout);
      for (const flag of booleans) {
        const result = await weftctl(...command, `--${flag}=maybe`, '--help');
        assert.equal(result.code, 2, `weftctl ${command.join(' ')} --${flag}=maybe: ${result.stdout}`);
        assert.match(result.stderr, new RegExp(`^weftctl: --${flag}: "maybe" is not a boolean`));
      }
    }
  });

  it('prints -o table, json or yaml on every read command: config get, leases ls, status', async function () {
    const { parse } = await import('yaml');
    await weftctl('config', 'set', '--network', '198.18.0.0/16', '--vni', '7');
    const etcdLease = (await client.leaseClient.leaseGrant({ TTL: 3600 })).ID;
    await client
      .put(`${prefix}/subnets/198.18.5.0-24`)
      .value('{"PublicIP":"192.0.2.11","BackendType":"vxlan","BackendData":{"VNI":7,"VtepMAC":"0a:00:00:00:00:05"}}')
      .lease(etcdLease);
    const stored = { Network: '198.18.0.0/16', Backend: { Type: 'vxlan', VNI: 7 } };
    // config get: JSON as stored by default and with -o json, a key/value table, YAML
    assert.deepEqual(JSON.parse((await weftctl('config', 'get')).stdout), stored);
    assert.deepEqual(JSON.parse((await weftctl('config', 'get', '-o', 'json')).stdout), stored);
    assert.deepEqual(parse((await weftctl('config', 'get', '-o', 'yaml')).stdout), stored);
    const table = await weftctl('config', 'get', '--output=table');
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^KEY\s+VALUE\nNetwork\s+198\.18\.0\.0\/16\nBackend\.Type\s+vxlan\nBackend\.VNI\s+7\n$/);
    const leases = parse((await weftctl('leases', 'ls', '-o', 'yaml')).stdout) as { subnet: string; vtepMac: string }[];
    assert.deepEqual(
      leases.map((row) => [row.subnet, row.vtepMac]),
      [['198.18.5.0/24', '0a:00:00:00:00:05']],
    );
    const status = parse((await weftctl('status', '-o', 'yaml')).stdout) as { lease: string; expectedPeers: number }[];
    assert.deepEqual(
      status.map((row) => row.lease),
      ['198.18.5.0-24'],
    );
    const bad = await weftctl('leases', 'ls', '-o', 'xml');
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /Choices: "table", "json", "yaml"/);
  });

  it('a bare noun prints its help; lease and leases are one noun for every verb', async function () {
    for (const noun of ['config', 'lease', 'leases']) {
      const help = await weftctl(noun);
      assert.equal(help.code, 0, help.stderr);
      assert.equal(help.stderr, '');
      assert.match(
        help.stdout,
        noun === 'config'
          ? /weftctl config get\b[\s\S]*weftctl config set\b/
          : /weftctl (lease|leases) ls\b[\s\S]*reserve <subnet>[\s\S]*revoke <subnet>/,
      );
    }
    await weftctl('config', 'set', '--network', '198.18.0.0/16');
    const reserve = await weftctl('leases', 'reserve', '198.18.9.0/24', '--public-ip', '192.0.2.19');
    assert.equal(reserve.code, 0, reserve.stderr);
    for (const listing of [
      ['lease', 'ls'],
      ['leases', 'ls'],
      ['lease', 'list'],
    ]) {
      assert.match((await weftctl(...listing)).stdout, /^198\.18\.9\.0\/24\s+192\.0\.2\.19\s/m, listing.join(' '));
    }
    const revoke = await weftctl('leases', 'revoke', '198.18.9.0/24');
    assert.equal(revoke.code, 0, revoke.stderr);
    assert.equal(revoke.stdout, 'revoked 198.18.9.0-24\n');
    const unknown = await weftctl('lease', 'bogus');
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /Unknown argument: bogus/);
  });

  it('names the flag whose file cannot be read, and says to use sudo when only root may read it', async function () {
    const missing = await weftctl('config', 'get', '--etcd-cafile=/nonexistent/ca.crt');
    assert.equal(missing.code, 2);
    assert.equal(missing.stderr, 'weftctl: --etcd-cafile: cannot read /nonexistent/ca.crt: no such file (ENOENT)\n');
    const dir = mkdtempSync(join(tmpdir(), 'weftctl-key-'));
    try {
      const key = join(dir, 'client.key');
      writeFileSync(key, 'not a key\n', { mode: 0o600 });
      writeFileSync(join(dir, 'client.crt'), 'not a certificate\n', { mode: 0o644 });
      chmodSync(dir, 0o755);
      // as nobody, as an operator without sudo would
      const denied = await asReachableByOthers(WEFTCTL, () =>
        run(
          { PATH: process.env.PATH ?? '' },
          [
            '--environment-file=',
            `--etcd-endpoints=${etcd.endpoint}`,
            `--etcd-certfile=${join(dir, 'client.crt')}`,
            `--etcd-keyfile=${key}`,
            'config',
            'get',
          ],
          ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'],
        ),
      );
      assert.equal(denied.code, 2, denied.stderr);
      assert.match(
        denied.stderr,
        new RegExp(
          `^weftctl: --etcd-keyfile: cannot read ${key.replace(/[./]/g, '\\$&')}: permission denied \\(EACCES\\): weftctl reads it as the user it runs as; run it as root \\(sudo weftctl …\\)`,
        ),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  for (const command of [[], ['config'], ['leases', 'ls'], ['lease'], ['status'], ['doctor']]) {
    it(`weftctl ${command.join(' ')} --help shows an example`.replace('  ', ' '), async function () {
      const help = await weftctl(...command, '--help');
      assert.equal(help.code, 0, help.stderr);
      assert.match(help.stdout, /\nExamples:\n {2}(sudo )?weftctl /);
    });
  }
});
