import assert from 'node:assert/strict';
import type { Etcd3, ITxnRequest } from 'etcd3';
import { IpAddress, Prefix } from '../../common/cidr.js';
import { parseNetworkConfig, type NetworkConfig } from '../../common/config.js';
import { leaseBackendTypeFor, parseLeaseAttrs, parseLeaseKey } from '../../common/lease.js';
import { EtcdServer } from '../../test/etcd-server.js';
import { captureLogger, warnings } from '../../test/log-capture.js';
import { waitFor } from '../../test/wait.js';
import { connectEtcd, NetworkKeys } from './etcd.js';
import { NoFreeSubnetError } from './errors.js';
import { SubnetLeaseManager, type LeaseRequest, type LeaseTakeover } from './subnet-lease.js';

const CONFIG = parseNetworkConfig('{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"}}');

function request(publicIP: string, mac = '0a:00:00:00:00:01'): LeaseRequest {
  return {
    publicIP: IpAddress.parse(publicIP),
    publicIPv6: undefined,
    backendType: 'vxlan',
    backendData: { VNI: 1, VtepMAC: mac },
    backendV6Data: undefined,
  };
}

describe('SubnetLeaseManager against a real etcd', function () {
  let etcd: EtcdServer;
  let client: Etcd3;
  let keys: NetworkKeys;
  let testIndex = 0;
  const managers: SubnetLeaseManager[] = [];
  const clients: Etcd3[] = [];

  function manager(options: { ttlSeconds?: number; renewMarginSeconds?: number; client?: Etcd3 } = {}): SubnetLeaseManager {
    const created = new SubnetLeaseManager({ client, keys, logger: captureLogger().logger, ...options });
    created.on('error', () => undefined);
    managers.push(created);
    return created;
  }

  async function keyInfo(name: string): Promise<{ value: string; lease: string } | undefined> {
    const response = await client.kv.range({ key: Buffer.from(keys.lease(name)) });
    const kv = response.kvs[0];
    return kv === undefined ? undefined : { value: kv.value.toString(), lease: String(kv.lease) };
  }

  async function putLease(name: string, publicIP: string, ttl?: number): Promise<void> {
    const value = JSON.stringify({
      PublicIP: publicIP,
      PublicIPv6: null,
      BackendType: 'vxlan',
      BackendData: { VNI: 1, VtepMAC: '0a:00:00:00:00:99' },
    });
    const put = client.put(keys.lease(name)).value(value);
    if (ttl !== undefined) put.lease((await client.leaseClient.leaseGrant({ TTL: ttl })).ID);
    await put;
  }

  before(async function () {
    etcd = await EtcdServer.start();
    client = connectEtcd({ endpoints: [etcd.endpoint] });
  });

  beforeEach(function () {
    keys = new NetworkKeys(`/weft-test-${process.pid}/net-${testIndex++}`);
  });

  afterEach(async function () {
    await Promise.all(managers.splice(0).map((m) => m.stop()));
    for (const c of clients.splice(0)) c.close();
  });

  after(async function () {
    client?.close();
    await etcd?.destroy();
  });

  it('creates a lease inside SubnetMin..SubnetMax, attached to an etcd lease with the TTL', async function () {
    const own = await manager({ ttlSeconds: 120, renewMarginSeconds: 10 }).acquire(CONFIG, request('198.19.0.1'));
    const subnet = own.lease.subnets.ipv4!;
    assert.ok(CONFIG.ipv4!.network.contains(subnet));
    assert.equal(subnet.length, 24);
    assert.notEqual(subnet.toString(), '198.18.0.0/24', 'the first subnet is never handed out');
    const info = await keyInfo(own.lease.name);
    assert.ok(info);
    assert.notEqual(info.lease, '0');
    const ttl = await client.leaseClient.leaseTimeToLive({ ID: info.lease });
    assert.ok(Number(ttl.TTL) > 100 && Number(ttl.TTL) <= 120, `TTL ${ttl.TTL}`);
    const attrs = parseLeaseAttrs(info.value, own.lease.name);
    assert.equal(attrs.publicIP?.toString(), '198.19.0.1');
    assert.deepEqual(attrs.backendData, { VNI: 1, VtepMAC: '0a:00:00:00:00:01' });
  });

  it('reuses the lease whose PublicIP is ours, keeping unknown fields and attaching a fresh TTL', async function () {
    const value = JSON.stringify({
      PublicIP: '198.19.0.2',
      BackendType: 'vxlan',
      BackendData: { VNI: 1, VtepMAC: '0a:00:00:00:00:02' },
      Zone: 'b',
    });
    const oldLease = (await client.leaseClient.leaseGrant({ TTL: 30 })).ID;
    await client.put(keys.lease('198.18.77.0-24')).value(value).lease(oldLease);
    const own = await manager({ ttlSeconds: 300, renewMarginSeconds: 10 }).acquire(CONFIG, request('198.19.0.2', '0a:00:00:00:00:03'));
    assert.equal(own.lease.name, '198.18.77.0-24');
    const info = await keyInfo('198.18.77.0-24');
    assert.ok(info);
    assert.notEqual(info.lease, '0');
    assert.notEqual(info.lease, String(oldLease));
    const parsed = JSON.parse(info.value) as Record<string, unknown>;
    assert.equal(parsed.Zone, 'b');
    assert.deepEqual(parsed.BackendData, { VNI: 1, VtepMAC: '0a:00:00:00:00:03' });
  });

  it('takes the subnet from the old subnet.env when it is free and valid, and not when it is taken', async function () {
    const hint = { ipv4: Prefix.parse('198.18.200.0/24'), ipv6: undefined };
    const first = await manager().acquire(CONFIG, request('198.19.0.3'), hint);
    assert.equal(first.lease.name, '198.18.200.0-24');
    const second = await manager().acquire(CONFIG, request('198.19.0.4'), hint);
    assert.notEqual(second.lease.name, '198.18.200.0-24');
    const outside = await manager().acquire(CONFIG, request('198.19.0.5'), { ipv4: Prefix.parse('198.18.0.0/24'), ipv6: undefined });
    assert.notEqual(outside.lease.name, '198.18.0.0-24', 'a hint below SubnetMin is not valid for the config');
  });

  it('honours a reservation and never attaches a TTL to it, even across renewals', async function () {
    await putLease('198.18.9.0-24', '198.19.0.6');
    const leaser = manager({ ttlSeconds: 3, renewMarginSeconds: 2 });
    const own = await leaser.acquire(CONFIG, request('198.19.0.6'));
    assert.equal(own.lease.name, '198.18.9.0-24');
    assert.equal(own.lease.reservation, true);
    assert.equal(own.expiresAt, undefined);
    await new Promise((resolve) => setTimeout(resolve, 3500));
    const info = await keyInfo('198.18.9.0-24');
    assert.equal(info?.lease, '0');
    assert.deepEqual(parseLeaseAttrs(info.value, 'k').backendData, { VNI: 1, VtepMAC: '0a:00:00:00:00:01' });
  });

  it('lets 50 concurrent acquirers on one etcd all succeed with distinct subnets', async function () {
    this.timeout(60_000);
    const racers = Array.from({ length: 50 }, () => {
      const own = connectEtcd({ endpoints: [etcd.endpoint] });
      clients.push(own);
      return manager({ client: own });
    });
    const leases = await Promise.all(racers.map((racer, i) => racer.acquire(CONFIG, request(`198.19.1.${i + 1}`))));
    const names = new Set(leases.map((own) => own.lease.name));
    assert.equal(names.size, 50);
    const stored = await client.getAll().prefix(keys.subnets).strings();
    assert.equal(Object.keys(stored).length, 50);
    for (const own of leases) {
      const attrs = parseLeaseAttrs(stored[keys.lease(own.lease.name)], own.lease.name);
      assert.equal(attrs.publicIP?.toString(), own.lease.attrs.publicIP?.toString());
    }
  });

  it('after losing a create race picks again among twice as many free subnets, without listing every lease again', async function () {
    const own = connectEtcd({ endpoints: [etcd.endpoint] });
    clients.push(own);
    let listings = 0;
    const range = own.kv.range.bind(own.kv);
    own.kv.range = (req, options) => {
      if (req.range_end !== undefined) listings++;
      return range(req, options);
    };
    const txn = own.kv.txn.bind(own.kv);
    let raced: string | undefined;
    own.kv.txn = async (req, options) => {
      if (raced === undefined) {
        // another host creates the very key first
        raced = keys.leaseName(Buffer.from(req.compare![0].key!).toString())!;
        await putLease(raced, '198.19.9.9');
      }
      return txn(req, options);
    };
    const leaser = new SubnetLeaseManager({ client: own, keys, logger: captureLogger().logger, random: () => 0.999 });
    managers.push(leaser);
    const held = await leaser.acquire(CONFIG, request('198.19.0.10'));
    assert.equal(raced, '198.18.100.0-24', "the first pick is among the first 100 free subnets, as flanneld's");
    assert.equal(held.lease.name, '198.18.201.0-24', 'the second among the first 200 still free');
    assert.equal(listings, 1);
    assert.match((await keyInfo(raced))!.value, /198\.19\.9\.9/, 'the winner keeps its lease');
  });

  /** A client whose transactions matching `replay` are sent twice, the first answer lost: what the etcd client does when an answer times out. */
  function replayingClient(replay: (req: ITxnRequest) => boolean): { client: Etcd3; listings: () => number } {
    const own = connectEtcd({ endpoints: [etcd.endpoint] });
    clients.push(own);
    let listings = 0;
    const range = own.kv.range.bind(own.kv);
    own.kv.range = (req, options) => {
      if (req.range_end !== undefined) listings++;
      return range(req, options);
    };
    const txn = own.kv.txn.bind(own.kv);
    own.kv.txn = async (req, options) => {
      if (replay(req)) await txn(req, options);
      return txn(req, options);
    };
    return { client: own, listings: () => listings };
  }

  it('takes a create whose answer was lost (the client sent it again) as its own: one key, no further listing', async function () {
    let replayed = false;
    const { client: own, listings } = replayingClient((req) => req.compare?.[0]?.target === 'Create' && !replayed && (replayed = true));
    const leaser = new SubnetLeaseManager({ client: own, keys, logger: captureLogger().logger });
    managers.push(leaser);
    const held = await leaser.acquire(CONFIG, request('198.19.0.20'));
    assert.equal(replayed, true);
    const stored = await client.getAll().prefix(keys.subnets).strings();
    assert.deepEqual(Object.keys(stored), [keys.lease(held.lease.name)], 'one key');
    assert.equal((await keyInfo(held.lease.name))?.lease, held.etcdLeaseId);
    assert.equal(listings(), 1);
  });

  it('keeps its lease through a renewal whose answer was lost (the client sent it again)', async function () {
    this.timeout(20_000);
    let replays = 0;
    const { client: own } = replayingClient((req) => req.compare?.[0]?.target === 'Mod' && replays++ === 0);
    const leaser = new SubnetLeaseManager({ client: own, keys, logger: captureLogger().logger, ttlSeconds: 3, renewMarginSeconds: 2 });
    leaser.on('error', () => undefined);
    managers.push(leaser);
    const lost: string[] = [];
    leaser.on('lost', (reason) => lost.push(reason));
    const held = await leaser.acquire(CONFIG, request('198.19.0.21'));
    await new Promise<void>((resolve) => leaser.once('renewed', () => resolve()));
    assert.equal(replays, 1, 'the renewal was sent twice');
    assert.deepEqual(lost, []);
    const info = await keyInfo(held.lease.name);
    assert.equal(info?.lease, leaser.current?.etcdLeaseId, 'the key is on the renewed etcd lease');
    assert.notEqual(info?.lease, held.etcdLeaseId);
  });

  it('reports exhaustion with the range and how many subnets are leased and reserved', async function () {
    // /28 split into four /30s; the first is never handed out, leaving three.
    const small = parseNetworkConfig('{"Network":"198.18.0.0/28","Backend":{"Type":"vxlan"}}');
    assert.equal(small.ipv4!.subnetLen, 30);
    await putLease('198.18.0.4-30', '198.19.0.7');
    await manager().acquire(small, request('198.19.0.8'));
    await manager().acquire(small, request('198.19.0.9'));
    await assert.rejects(manager().acquire(small, request('198.19.0.10')), (err: unknown) => {
      assert.ok(err instanceof NoFreeSubnetError);
      assert.equal(err.code, 'WEFT_NO_FREE_SUBNET');
      assert.match(err.message, /198\.18\.0\.4\/30\.\.198\.18\.0\.12\/30/);
      assert.match(err.message, /2 leased and 1 reserved/);
      return true;
    });
  });

  it('renews before expiry so the key outlives its first TTL', async function () {
    this.timeout(20_000);
    const leaser = manager({ ttlSeconds: 3, renewMarginSeconds: 2 });
    let renewals = 0;
    leaser.on('renewed', () => renewals++);
    const own = await leaser.acquire(CONFIG, request('198.19.0.11'));
    await new Promise((resolve) => setTimeout(resolve, 5000));
    assert.ok(renewals >= 2, `renewed ${renewals} times`);
    const info = await keyInfo(own.lease.name);
    assert.ok(info, 'the key still exists after more than one TTL');
    assert.equal(leaser.current?.etcdLeaseId, info.lease);
  });

  it('re-acquires the same subnet when its key is deleted', async function () {
    const leaser = manager();
    const own = await leaser.acquire(CONFIG, request('198.19.0.12'));
    const reacquired = new Promise<string>((resolve) => leaser.once('acquired', (next) => resolve(next.lease.name)));
    await client.delete().key(keys.lease(own.lease.name));
    assert.equal(await reacquired, own.lease.name);
    await waitFor(async () => (await keyInfo(own.lease.name)) !== undefined, 'the key to be written again');
  });

  it('never goes on with a subnet that names another PublicIP: it moves to another one', async function () {
    const leaser = manager();
    const own = await leaser.acquire(CONFIG, request('198.19.0.13'));
    const lost = new Promise<string>((resolve) => leaser.once('lost', resolve));
    const reacquired = new Promise<string>((resolve) => leaser.once('acquired', (next) => resolve(next.lease.name)));
    await putLease(own.lease.name, '198.19.0.99', 60);
    assert.match(await lost, /198\.19\.0\.99/);
    const next = await reacquired;
    assert.notEqual(next, own.lease.name);
    const taken = await keyInfo(own.lease.name);
    assert.equal(parseLeaseAttrs(taken!.value, own.lease.name).publicIP?.toString(), '198.19.0.99', 'the other host keeps its lease');
  });

  it('keeps the lease on stop and deletes it on release (never a reservation)', async function () {
    const kept = manager();
    const keptLease = await kept.acquire(CONFIG, request('198.19.0.14'));
    await kept.stop();
    assert.ok(await keyInfo(keptLease.lease.name));

    const released = manager();
    const releasedLease = await released.acquire(CONFIG, request('198.19.0.15'));
    await released.release();
    assert.equal(await keyInfo(releasedLease.lease.name), undefined);

    await putLease('198.18.10.0-24', '198.19.0.16');
    const reserved = manager();
    await reserved.acquire(CONFIG, request('198.19.0.16'));
    await reserved.release();
    assert.ok(await keyInfo('198.18.10.0-24'), 'a reservation survives release');
  });

  it('leaves the lease of another host (node ID) with the same public IP alone, reports it and takes a free subnet; a restart of each node reuses its own', async function () {
    const nodeA = '11111111-1111-4111-8111-111111111111';
    const nodeB = '22222222-2222-4222-8222-222222222222';
    const first = await manager().acquire(CONFIG, { ...request('198.19.0.20'), nodeId: nodeA });
    const held = (await keyInfo(first.lease.name))!;
    assert.equal((JSON.parse(held.value) as Record<string, unknown>).WeftNodeID, nodeA);
    const { logger, records } = captureLogger();
    const other = new SubnetLeaseManager({ client, keys, logger });
    managers.push(other);
    const second = await other.acquire(CONFIG, { ...request('198.19.0.20'), nodeId: nodeB });
    assert.notEqual(second.lease.name, first.lease.name);
    assert.deepEqual(await keyInfo(first.lease.name), held, "the other node's lease is untouched");
    const reported = warnings(records).find((record) => record.lease === first.lease.name);
    assert.match(reported?.msg ?? '', /belongs to another node/);
    assert.equal(reported?.node, nodeA);
    assert.equal((await manager().acquire(CONFIG, { ...request('198.19.0.20'), nodeId: nodeA })).lease.name, first.lease.name);
    assert.equal((await manager().acquire(CONFIG, { ...request('198.19.0.20'), nodeId: nodeB })).lease.name, second.lease.name);
  });

  it('takes no key of another length for a lease: a /16 over the whole network or a /25 inside a subnet blocks nothing', async function () {
    await putLease('198.18.0.0-16', '198.19.0.30', 60);
    await putLease('198.18.1.128-25', '198.19.0.31', 60);
    const small = parseNetworkConfig(
      '{"Network":"198.18.0.0/16","SubnetMin":"198.18.1.0","SubnetMax":"198.18.2.0","Backend":{"Type":"vxlan"}}',
    );
    const own = await manager().acquire(small, request('198.19.0.32'), { ipv4: Prefix.parse('198.18.1.0/24'), ipv6: undefined });
    assert.equal(own.lease.name, '198.18.1.0-24', 'the /25 inside it does not make the subnet taken');
    const next = await manager().acquire(small, request('198.19.0.33'));
    assert.equal(next.lease.name, '198.18.2.0-24');
  });

  it('finds a free IPv6 subnet past a key covering the whole network and thousands of leased ones', async function () {
    this.timeout(60_000);
    const v6 = parseNetworkConfig(
      '{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"2001:db8:100::/48","IPv6SubnetLen":120,"IPv6SubnetMax":"2001:db8:100::f:f000","Backend":{"Type":"vxlan"}}',
    );
    const plan = v6.ipv6!;
    const value = (n: number) =>
      JSON.stringify({ PublicIP: null, PublicIPv6: `2001:db8:0:1::${(n + 0x1000).toString(16)}`, BackendType: 'vxlan' });
    const leased = Array.from({ length: 3000 }, (_, i) => plan.network.nthSubnet(120, i + 1));
    const names = ['0.0.0.0-0&2001:db8:100::-48', ...leased.map((subnet) => `0.0.0.0-0&${subnet.network}-120`)];
    for (let i = 0; i < names.length; i += 100) {
      await client.kv.txn({
        success: names
          .slice(i, i + 100)
          .map((name, j) => ({ request_put: { key: Buffer.from(keys.lease(name)), value: Buffer.from(value(i + j)) } })),
      });
    }
    const own = await manager().acquire(v6, {
      ...request('198.19.0.34'),
      publicIP: undefined,
      publicIPv6: IpAddress.parse('2001:db8:0:1::34'),
    });
    const subnet = parseLeaseKey(own.lease.name).ipv6!;
    assert.equal(subnet.length, 120);
    assert.ok(subnet.base > leased.at(-1)!.base && subnet.base <= plan.subnetMax.base, `${subnet} is past the 3000 leased subnets`);
  });

  it('creates a lease while the subnets hold more than a gRPC message of junk (the listing is paginated)', async function () {
    this.timeout(60_000);
    const junk = 'x'.repeat(1.4 * 1024 * 1024);
    for (const name of ['junk-1', 'junk-2', 'junk-3']) await client.put(keys.lease(name)).value(junk);
    await client
      .put(keys.lease('198.18.40.0-24'))
      .value('{"PublicIP":"198.19.0.40","BackendType":"vxlan","X":' + '['.repeat(5000) + ']'.repeat(5000) + '}');
    const own = await manager().acquire(CONFIG, request('198.19.0.41'));
    assert.notEqual(own.lease.name, '198.18.40.0-24', 'a key whose name is a valid subnet is taken, whatever its value');
    assert.ok(CONFIG.ipv4!.network.contains(own.lease.subnets.ipv4!));
  });

  it("adopts a lease flanneld wrote for our public IP (no node ID) and marks it as this node's", async function () {
    await putLease('198.18.33.0-24', '198.19.0.21', 60);
    const own = await manager().acquire(CONFIG, { ...request('198.19.0.21'), nodeId: '33333333-3333-4333-8333-333333333333' });
    assert.equal(own.lease.name, '198.18.33.0-24');
    const stored = JSON.parse((await keyInfo('198.18.33.0-24'))!.value) as Record<string, unknown>;
    assert.equal(stored.WeftNodeID, '33333333-3333-4333-8333-333333333333');
  });

  it("reuses the subnet of a host moving from flanneld's udp backend (its lease has no BackendType) and writes flanneld's udp bytes", async function () {
    const udp = parseNetworkConfig('{"Network":"198.18.0.0/16","Backend":{"Type":"udp"}}');
    // exactly what flanneld's udp backend writes (flannel's udp backend sets only PublicIP; BackendType is omitempty)
    const etcdLease = (await client.leaseClient.leaseGrant({ TTL: 60 })).ID;
    await client.put(keys.lease('198.18.44.0-24')).value('{"PublicIP":"198.19.0.22","PublicIPv6":null}').lease(etcdLease);
    const nodeId = '44444444-4444-4444-8444-444444444444';
    const udpRequest: LeaseRequest = {
      publicIP: IpAddress.parse('198.19.0.22'),
      publicIPv6: undefined,
      backendType: leaseBackendTypeFor('udp'),
      backendData: undefined,
      backendV6Data: undefined,
      nodeId,
    };
    const own = await manager().acquire(udp, udpRequest);
    assert.equal(own.lease.name, '198.18.44.0-24', 'the host keeps its subnet');
    // flanneld's bytes, then weft's node ID (flanneld's decoder ignores unknown fields)
    assert.equal((await keyInfo('198.18.44.0-24'))!.value, `{"PublicIP":"198.19.0.22","PublicIPv6":null,"WeftNodeID":"${nodeId}"}`);
    // a new weftd udp host writes the same form
    const fresh = await manager().acquire(udp, { ...udpRequest, publicIP: IpAddress.parse('198.19.0.23'), nodeId: undefined });
    assert.equal((await keyInfo(fresh.lease.name))!.value, '{"PublicIP":"198.19.0.23","PublicIPv6":null}');
  });

  it('says which host took over its IPv6-only lease when flanneld rewrites it (flanneld finds "its" lease by PublicIP 0.0.0.0)', async function () {
    const v6only = parseNetworkConfig(
      '{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"2001:db8:100::/48","Backend":{"Type":"vxlan"}}',
    );
    const leaser = manager();
    const own = await leaser.acquire(v6only, {
      publicIP: undefined,
      publicIPv6: IpAddress.parse('2001:db8:0:1::24'),
      backendType: 'vxlan',
      backendData: undefined,
      backendV6Data: { VNI: 1, VtepMAC: '0a:00:00:00:00:24' },
      nodeId: '55555555-5555-4555-8555-555555555555',
    });
    assert.match(own.lease.name, /^0\.0\.0\.0-0&2001:db8:100:[0-9a-f]+::-64$/);
    const takenOver = new Promise<LeaseTakeover>((resolve) => leaser.once('takenOver', resolve));
    const lost = new Promise<string>((resolve) => leaser.once('lost', resolve));
    const reacquired = new Promise<string>((resolve) => leaser.once('acquired', (next) => resolve(next.lease.name)));
    // what flanneld writes over the first IPv6-only lease it finds, with its own etcd lease
    const flanneldLease = (await client.leaseClient.leaseGrant({ TTL: 60 })).ID;
    await client
      .put(keys.lease(own.lease.name))
      .value(
        '{"PublicIP":"0.0.0.0","PublicIPv6":"2001:db8:0:1::25","BackendType":"vxlan","BackendV6Data":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:25"}}',
      )
      .lease(flanneldLease);
    assert.deepEqual(await takenOver, { lease: own.lease.name, publicIP: '2001:db8:0:1::25', nodeId: undefined });
    assert.match(await lost, /now names public IP 2001:db8:0:1::25/);
    assert.notEqual(await reacquired, own.lease.name, 'weftd moves to a free subnet and leaves flanneld the one it took');
  });

  it('allocates IPv4 and IPv6 subnets independently for a dual-stack config', async function () {
    const dual: NetworkConfig = parseNetworkConfig(
      '{"Network":"198.18.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8:100::/48","Backend":{"Type":"vxlan"}}',
    );
    const own = await manager().acquire(dual, { ...request('198.19.0.17'), publicIPv6: IpAddress.parse('2001:db8:0:1::17') });
    const subnets = parseLeaseKey(own.lease.name);
    assert.equal(subnets.ipv4?.length, 24);
    assert.equal(subnets.ipv6?.length, 64);
    assert.ok(dual.ipv6!.network.contains(subnets.ipv6));
    assert.match(own.lease.name, /^198\.18\.\d+\.0-24&2001:db8:100:[0-9a-f]+::-64$/);
  });
});
