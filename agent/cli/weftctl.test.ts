import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Etcd3 } from 'etcd3';
import { EtcdServer, freePort } from '../../test/etcd-server.js';
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

  /** weftctl with exactly this environment (and PATH). */
  function run(env: Record<string, string>, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      const child = spawn(process.execPath, [WEFTCTL, ...args], { env: { PATH: process.env.PATH, ...env } });
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
    assert.deepEqual(JSON.parse((await weftctl('config', 'get')).stdout).Backend, { Type: 'vxlan' }, 'nothing written on a bad value');
  });

  it('refuses to change Network or Backend.Type under live leases unless --force', async function () {
    await weftctl('config', 'set', '--network', '198.18.0.0/16');
    const etcdLease = (await client.leaseClient.leaseGrant({ TTL: 60 })).ID;
    await client.put(`${prefix}/subnets/198.18.5.0-24`).value('{"PublicIP":"192.0.2.11","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:00:00:00:00:05"}}').lease(etcdLease);
    const refused = await weftctl('config', 'set', '--network', '198.18.0.0/16', '--backend', 'host-gw');
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /1 hosts hold leases; use --force/);
    const forced = await weftctl('config', 'set', '--network', '198.18.0.0/16', '--backend', 'host-gw', '--force');
    assert.equal(forced.code, 0, forced.stderr);
  });

  it('lists, reserves and revokes leases', async function () {
    const etcdLease = (await client.leaseClient.leaseGrant({ TTL: 3600 })).ID;
    await client.put(`${prefix}/subnets/198.18.5.0-24`).value('{"PublicIP":"192.0.2.11","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:00:00:00:00:05"}}').lease(etcdLease);
    const reserve = await weftctl('lease', 'reserve', '198.18.9.0/24', '--public-ip', '192.0.2.19');
    assert.equal(reserve.code, 0, reserve.stderr);
    const again = await weftctl('lease', 'reserve', '198.18.9.0/24', '--public-ip', '192.0.2.20');
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already leased or reserved/);

    const table = await weftctl('leases', 'ls');
    assert.equal(table.code, 0, table.stderr);
    const lines = table.stdout.trim().split('\n');
    assert.match(lines[0]!, /^SUBNET\s+PUBLIC IP\s+BACKEND\s+VTEP MAC\s+EXPIRES\s+STATUS$/);
    assert.match(lines[1]!, /^198\.18\.5\.0\/24\s+192\.0\.2\.11\s+vxlan\s+0a:00:00:00:00:05\s+(59m\d\ds|1h00m)\s+in use$/);
    assert.match(lines[2]!, /^198\.18\.9\.0\/24\s+192\.0\.2\.19\s+vxlan\s+-\s+reserved\s+in use$/);
    assert.match(table.stderr, /no valid config .*: cannot tell which leases the agents ignore/);
    const json = JSON.parse((await weftctl('leases', 'ls', '-o', 'json')).stdout) as { subnet: string; reserved: boolean }[];
    assert.deepEqual(json.map((row) => [row.subnet, row.reserved]), [['198.18.5.0/24', false], ['198.18.9.0/24', true]]);

    const revoke = await weftctl('lease', 'revoke', '198.18.5.0/24');
    assert.equal(revoke.code, 0, revoke.stderr);
    assert.equal((await client.get(`${prefix}/subnets/198.18.5.0-24`).string()), null);
    const missing = await weftctl('lease', 'revoke', '198.18.5.0/24');
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no lease 198\.18\.5\.0-24/);
  });

  it('shows which leases every weftd ignores, and why; status counts them as nobody\'s peers', async function () {
    await weftctl('config', 'set', '--network', '198.18.0.0/16');
    const etcdLease = (await client.leaseClient.leaseGrant({ TTL: 3600 })).ID;
    const value = (ip: string, mac: string) => JSON.stringify({ PublicIP: ip, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: mac } });
    await client.put(`${prefix}/subnets/198.18.5.0-24`).value(value('192.0.2.11', '0a:00:00:00:00:05')).lease(etcdLease);
    await client.put(`${prefix}/subnets/198.18.5.0-24&2001:db8:100:5::-64`).value(value('198.19.0.66', '0a:00:00:00:00:66')).lease(etcdLease);
    await client.put(`${prefix}/subnets/198.18.0.0-16`).value(value('198.19.0.67', '0a:00:00:00:00:67')).lease(etcdLease);
    await client.put(`${prefix}/subnets/198.18.6.0-24`).value(value('192.0.2.12', '0a:00:00:00:00:05')).lease(etcdLease);
    const json = JSON.parse((await weftctl('leases', 'ls', '-o', 'json')).stdout) as { subnet: string; ignored: { reason: string; detail: string } | null }[];
    assert.deepEqual(json.map((row) => [row.subnet, row.ignored?.reason ?? null]), [
      ['198.18.0.0/16', 'invalid-subnet'],
      ['198.18.5.0/24', null],
      ['198.18.5.0/24,2001:db8:100:5::/64', 'subnet-conflict'],
      ['198.18.6.0/24', 'vtep-mac-conflict'],
    ]);
    const table = (await weftctl('leases', 'ls')).stdout.trim().split('\n');
    assert.match(table[3]!, /\s+ignored: 198\.18\.5\.0\/24 is held by 198\.18\.5\.0-24, whose key is older$/);
    const status = JSON.parse((await weftctl('status', '-o', 'json')).stdout) as { subnet: string; expectedPeers: number; problems: string[] }[];
    assert.deepEqual(status.map((row) => [row.expectedPeers, row.problems.length]), [[0, 1], [0, 0], [0, 1], [0, 1]]);
  });

  it('shows both families of a dual-stack lease and revokes it by either subnet', async function () {
    const etcdLease = (await client.leaseClient.leaseGrant({ TTL: 3600 })).ID;
    const value = JSON.stringify({
      PublicIP: '192.0.2.11', PublicIPv6: '2001:db8:0:1::11', BackendType: 'vxlan',
      BackendData: { VNI: 1, VtepMAC: '0a:00:00:00:00:05' }, BackendV6Data: { VNI: 1, VtepMAC: '0a:00:00:00:00:15' },
    });
    await client.put(`${prefix}/subnets/198.18.5.0-24&2001:db8:100:5::-64`).value(value).lease(etcdLease);
    await client.put(`${prefix}/subnets/0.0.0.0-0&2001:db8:100:6::-64`).value(JSON.stringify({ PublicIP: null, PublicIPv6: '2001:db8:0:1::12', BackendType: 'vxlan', BackendV6Data: { VNI: 1, VtepMAC: '0a:00:00:00:00:16' } })).lease(etcdLease);
    const table = (await weftctl('leases', 'ls')).stdout.trim().split('\n');
    assert.match(table[1]!, /^2001:db8:100:6::\/64\s+2001:db8:0:1::12\s+vxlan\s+0a:00:00:00:00:16\s+\S+\s+in use$/);
    assert.match(table[2]!, /^198\.18\.5\.0\/24,2001:db8:100:5::\/64\s+192\.0\.2\.11,2001:db8:0:1::11\s+vxlan\s+0a:00:00:00:00:05,0a:00:00:00:00:15\s+\S+\s+in use$/);
    const json = JSON.parse((await weftctl('leases', 'ls', '-o', 'json')).stdout) as { subnet: string; publicIP: string; publicIPv6: string }[];
    assert.deepEqual(json.map((row) => [row.subnet, row.publicIP, row.publicIPv6]), [
      ['2001:db8:100:6::/64', '2001:db8:0:1::12', '2001:db8:0:1::12'],
      ['198.18.5.0/24,2001:db8:100:5::/64', '192.0.2.11', '2001:db8:0:1::11'],
    ]);
    // status expects each host to program the other for the family they share (IPv6)
    const status = JSON.parse((await weftctl('status', '-o', 'json')).stdout) as { subnet: string; expectedPeers: number }[];
    assert.deepEqual(status.map((row) => row.expectedPeers), [1, 1]);

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
      await client.put(`${prefix}/subnets/198.18.5.0-24`).value('{"PublicIP":"127.0.0.1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:00:00:00:00:05"}}').lease(etcdLease);
      await client.put(`${prefix}/subnets/198.18.6.0-24`).value('{"PublicIP":"127.0.0.2","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:00:00:00:00:06"}}').lease(etcdLease);

      const leasesOnly = await weftctl('status');
      assert.equal(leasesOnly.code, 0, leasesOnly.stderr);
      assert.match(leasesOnly.stdout, /^198\.18\.5\.0\/24\s+127\.0\.0\.1\s+vxlan\s+(59m\d\ds|1h00m)\s+-\s+-\s+-$/m);
      assert.match(leasesOnly.stderr, /agents not asked: give --healthz-port/);

      const table = await weftctl('status', '--healthz-port', String(port));
      assert.equal(table.code, 1);
      assert.match(table.stdout, /^SUBNET\s+PUBLIC IP\s+BACKEND\s+EXPIRES\s+AGENT\s+PEERS\s+PROBLEMS$/m);
      assert.match(table.stdout, /^198\.18\.5\.0\/24\s+127\.0\.0\.1\s+vxlan\s+\S+\s+ready\s+1\/1\s+-$/m);
      assert.match(table.stdout, new RegExp(`^198\\.18\\.6\\.0/24\\s+127\\.0\\.0\\.2\\s+vxlan\\s+\\S+\\s+unreachable\\s+-\\s+agent unreachable at http://127\\.0\\.0\\.2:${port} \\(ECONNREFUSED\\)$`, 'm'));
      assert.match(table.stderr, /^weftctl: 1 of 2 hosts have problems: 198\.18\.6\.0\/24 \(127\.0\.0\.2\)$/m);

      // the port can come from weftd's environment variable, as on a node; not ready shows which checks
      readiness.setReady('dataplane', false, 'netlink failing');
      const json = await run({ FLANNELD_ETCD_ENDPOINTS: etcd.endpoint, WEFTD_ETCD_PREFIX: prefix, WEFTD_HEALTHZ_PORT: String(port) }, ['--environment-file=', 'status', '-o', 'json']);
      const rows = JSON.parse(json.stdout) as { subnet: string; agent: { ready: boolean; peers: number; info: Record<string, unknown> }; problems: string[] }[];
      assert.equal(rows[0]!.agent.ready, false);
      assert.equal(rows[0]!.agent.peers, 1);
      assert.deepEqual(rows[0]!.agent.info, { backend: 'vxlan' });
      assert.deepEqual(rows[0]!.problems, ['not ready: dataplane']);
    } finally {
      await server.destroy();
    }
  });

  it('reads etcd settings from the environment file; the environment and flags win over it', async function () {
    const dir = mkdtempSync(join(tmpdir(), 'weftctl-env-'));
    try {
      const file = join(dir, 'weftd.env');
      writeFileSync(file, `# as deploy/weftd.env\nWEFTD_ETCD_ENDPOINTS=${etcd.endpoint}\nexport FLANNELD_ETCD_PREFIX="${prefix}/from-file"\n`);
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

  for (const command of [[], ['config'], ['leases', 'ls'], ['lease'], ['status'], ['doctor']]) {
    it(`weftctl ${command.join(' ')} --help shows an example`.replace('  ', ' '), async function () {
      const help = await weftctl(...command, '--help');
      assert.equal(help.code, 0, help.stderr);
      assert.match(help.stdout, /\nExamples:\n {2}(sudo )?weftctl /);
    });
  }
});
