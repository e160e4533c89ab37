import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Etcd3 } from 'etcd3';
import { EtcdServer } from '../../test/etcd-server.js';
import { connectEtcd } from '../registry/etcd.js';

const WEFTCTL = fileURLToPath(new URL('./weftctl.js', import.meta.url));

describe('weftctl against a real etcd', function () {
  this.timeout(60_000);
  let etcd: EtcdServer;
  let client: Etcd3;
  let prefix: string;
  let testIndex = 0;

  function weftctl(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      const child = spawn(process.execPath, [WEFTCTL, ...args], {
        env: { PATH: process.env.PATH, FLANNELD_ETCD_ENDPOINTS: etcd.endpoint, WEFTD_ETCD_PREFIX: prefix },
      });
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
    assert.match(lines[0]!, /^SUBNET\s+PUBLIC IP\s+BACKEND\s+VTEP MAC\s+EXPIRES$/);
    assert.match(lines[1]!, /^198\.18\.5\.0\/24\s+192\.0\.2\.11\s+vxlan\s+0a:00:00:00:00:05\s+(59m\d\ds|1h00m)$/);
    assert.match(lines[2]!, /^198\.18\.9\.0\/24\s+192\.0\.2\.19\s+vxlan\s+-\s+reserved$/);
    const json = JSON.parse((await weftctl('leases', 'ls', '-o', 'json')).stdout) as { subnet: string; reserved: boolean }[];
    assert.deepEqual(json.map((row) => [row.subnet, row.reserved]), [['198.18.5.0/24', false], ['198.18.9.0/24', true]]);

    const revoke = await weftctl('lease', 'revoke', '198.18.5.0/24');
    assert.equal(revoke.code, 0, revoke.stderr);
    assert.equal((await client.get(`${prefix}/subnets/198.18.5.0-24`).string()), null);
    const missing = await weftctl('lease', 'revoke', '198.18.5.0/24');
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no lease 198\.18\.5\.0-24/);
  });
});
