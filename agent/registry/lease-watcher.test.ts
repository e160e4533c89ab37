import assert from 'node:assert/strict';
import type { Etcd3 } from 'etcd3';
import { parseNetworkConfig } from '../../common/config.js';
import { stableVtepMac } from '../../common/dataplane.js';
import { IpAddress } from '../../common/cidr.js';
import { EtcdServer } from '../../test/etcd-server.js';
import { captureLogger, warnings, type LogRecord } from '../../test/log-capture.js';
import { TcpProxy } from '../../test/tcp-proxy.js';
import { sleep, waitFor } from '../../test/wait.js';
import { connectEtcd, NetworkKeys } from './etcd.js';
import { LeaseWatcher, type LeaseEvent } from './lease-watcher.js';

const CONFIG = parseNetworkConfig('{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"}}');
const DEEP = '['.repeat(5000) + ']'.repeat(5000);

function leaseValue(publicIP: string, mac: string): string {
  return JSON.stringify({ PublicIP: publicIP, PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: mac } });
}

describe('LeaseWatcher against a real etcd', function () {
  let etcd: EtcdServer;
  let admin: Etcd3;
  let keys: NetworkKeys;
  let testIndex = 0;
  const cleanups: (() => Promise<void> | void)[] = [];

  /** A watcher on its own client (optionally through a proxy), recording every event it emits. */
  async function watch(endpoint = etcd.endpoint): Promise<{ watcher: LeaseWatcher; events: LeaseEvent[]; records: LogRecord[] }> {
    const client = connectEtcd({ endpoints: [endpoint], callTimeoutMs: 1000 });
    const { logger, records } = captureLogger();
    const watcher = new LeaseWatcher({ client, keys, logger, maxBackoffMs: 300 });
    const events: LeaseEvent[] = [];
    watcher.on('lease', (event) => events.push(event));
    cleanups.push(async () => {
      await watcher.stop();
      client.close();
    });
    await watcher.start(CONFIG);
    return { watcher, events, records };
  }

  function put(name: string, value: string): Promise<unknown> {
    return admin.put(keys.lease(name)).value(value).exec();
  }

  function macOf(watcher: LeaseWatcher, name: string): unknown {
    return watcher.leases.get(name)?.attrs.backendData?.VtepMAC;
  }

  before(async function () {
    etcd = await EtcdServer.start();
    admin = connectEtcd({ endpoints: [etcd.endpoint] });
  });

  beforeEach(function () {
    keys = new NetworkKeys(`/weft-test-${process.pid}/watch-${testIndex++}`);
  });

  afterEach(async function () {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  after(async function () {
    admin?.close();
    await etcd?.destroy();
  });

  it('lists existing leases, then follows additions and removals', async function () {
    await put('198.18.1.0-24', leaseValue('198.19.0.1', '0a:00:00:00:01:01'));
    const { watcher, events } = await watch();
    assert.deepEqual([...watcher.leases.keys()], ['198.18.1.0-24']);
    await put('198.18.2.0-24', leaseValue('198.19.0.2', '0a:00:00:00:01:02'));
    await admin.delete().key(keys.lease('198.18.1.0-24'));
    await waitFor(() => events.length === 3, 'three events');
    assert.deepEqual(
      events.map((e) => `${e.kind} ${e.lease.name}`),
      ['added 198.18.1.0-24', 'added 198.18.2.0-24', 'removed 198.18.1.0-24'],
    );
  });

  it("reports a peer's VtepMAC change as one changed event, and a same-content rewrite as none", async function () {
    await put('198.18.3.0-24', leaseValue('198.19.0.3', '0a:00:00:00:03:01'));
    const { watcher, events } = await watch();
    await put('198.18.3.0-24', leaseValue('198.19.0.3', '0a:00:00:00:03:01'));
    await put('198.18.3.0-24', leaseValue('198.19.0.3', '0a:00:00:00:03:02'));
    await waitFor(() => events.length >= 2, 'the change event');
    await sleep(200);
    assert.deepEqual(
      events.map((e) => e.kind),
      ['added', 'changed'],
    );
    const change = events[1];
    assert.ok(change.kind === 'changed');
    assert.equal(change.previous.attrs.backendData?.VtepMAC, '0a:00:00:00:03:01');
    assert.equal(macOf(watcher, '198.18.3.0-24'), '0a:00:00:00:03:02');
  });

  it('skips malformed values and stray keys with a warning naming the key, without disturbing other peers', async function () {
    await put('198.18.4.0-24', leaseValue('198.19.0.4', '0a:00:00:00:04:01'));
    await put('198.18.5.0-24', '{"PublicIP": "not-an-ip", "BackendType": "vxlan"}');
    await put('not-a-subnet', leaseValue('198.19.0.6', '0a:00:00:00:06:01'));
    await admin.put(`${keys.subnets}198.18.6.0-24/extra`).value('x');
    const { watcher, events, records } = await watch();
    assert.deepEqual([...watcher.leases.keys()], ['198.18.4.0-24']);
    const warned = warnings(records).map((record) => String(record.key));
    assert.ok(warned.includes(keys.lease('198.18.5.0-24')), `warned about ${warned.join(', ')}`);
    assert.ok(warned.includes(keys.lease('not-a-subnet')));
    assert.ok(warned.includes(`${keys.subnets}198.18.6.0-24/extra`));

    // A valid peer that is then overwritten with garbage keeps its last valid lease.
    await put('198.18.4.0-24', 'garbage');
    await put('198.18.7.0-24', 'also garbage');
    await put('198.18.8.0-24', leaseValue('198.19.0.8', '0a:00:00:00:08:01'));
    await waitFor(() => watcher.leases.has('198.18.8.0-24'), 'the valid peer added after the bad writes');
    assert.equal(macOf(watcher, '198.18.4.0-24'), '0a:00:00:00:04:01');
    assert.deepEqual(
      events.map((e) => `${e.kind} ${e.lease.name}`),
      ['added 198.18.4.0-24', 'added 198.18.8.0-24'],
    );
    assert.ok(warnings(records).some((record) => record.key === keys.lease('198.18.4.0-24')));
  });

  it('after a partition and a compaction, ends with exactly the right peers and no removal of a surviving peer', async function () {
    this.timeout(30_000);
    const proxy = await TcpProxy.start(etcd.clientPort);
    cleanups.push(() => proxy.close());
    for (const n of [1, 2, 3, 4]) await put(`198.18.1${n}.0-24`, leaseValue(`198.19.0.1${n}`, `0a:00:00:00:1${n}:01`));
    const { watcher, events } = await watch(proxy.endpoint);
    let resyncs = 0;
    watcher.on('synced', () => resyncs++);
    assert.equal(watcher.leases.size, 4);

    proxy.cut();
    await admin.delete().key(keys.lease('198.18.14.0-24'));
    await put('198.18.12.0-24', leaseValue('198.19.0.12', '0a:00:00:00:12:02'));
    await put('198.18.15.0-24', leaseValue('198.19.0.15', '0a:00:00:00:15:01'));
    // Churn on an unrelated key, then compact the history the watch would need to resume.
    for (let i = 0; i < 20; i++) await admin.put(`/weft-test-${process.pid}/noise`).value(String(i));
    const { header } = await admin.kv.range({ key: Buffer.from('/') });
    await admin.kv.compact({ revision: header.revision, physical: true });
    proxy.restore();

    await waitFor(() => watcher.leases.size === 4 && watcher.leases.has('198.18.15.0-24'), 'the resync', 15_000);
    assert.ok(resyncs >= 1);
    assert.deepEqual([...watcher.leases.keys()].sort(), ['198.18.11.0-24', '198.18.12.0-24', '198.18.13.0-24', '198.18.15.0-24']);
    assert.equal(macOf(watcher, '198.18.12.0-24'), '0a:00:00:00:12:02');
    const afterCut = events
      .slice(4)
      .map((e) => `${e.kind} ${e.lease.name}`)
      .sort();
    assert.deepEqual(afterCut, ['added 198.18.15.0-24', 'changed 198.18.12.0-24', 'removed 198.18.14.0-24']);

    // The new watch is live after the resync.
    await put('198.18.16.0-24', leaseValue('198.19.0.16', '0a:00:00:00:16:01'));
    await waitFor(() => watcher.leases.has('198.18.16.0-24'), 'an event on the new watch');
  });

  it('rides out etcd being stopped and restarted under a live watch', async function () {
    this.timeout(40_000);
    await put('198.18.21.0-24', leaseValue('198.19.0.21', '0a:00:00:00:21:01'));
    const { watcher, events } = await watch();
    const reachability: boolean[] = [];
    watcher.on('reachable', (ok) => reachability.push(ok));
    await etcd.kill();
    await sleep(1500);
    assert.equal(watcher.leases.size, 1, 'an outage removes nobody');
    await etcd.run();
    await put('198.18.22.0-24', leaseValue('198.19.0.22', '0a:00:00:00:22:01'));
    await waitFor(() => watcher.leases.has('198.18.22.0-24'), 'the peer added after the restart', 20_000);
    assert.deepEqual(
      events.map((e) => `${e.kind} ${e.lease.name}`),
      ['added 198.18.21.0-24', 'added 198.18.22.0-24'],
    );
    assert.ok(reachability.includes(false), 'the outage was noticed');
    assert.equal(reachability.at(-1), true);
  });

  it('lists again at moments spread over a window after a disruption that reached every watcher at once', async function () {
    this.timeout(60_000);
    // 400 leases: each watcher waits a random delay of up to 2 s before it asks etcd for the listing again
    const config = parseNetworkConfig('{"Network":"198.18.0.0/16","SubnetLen":28,"Backend":{"Type":"vxlan"}}');
    const hex = (n: number) => n.toString(16).padStart(2, '0');
    const hosts = Array.from({ length: 400 }, (_, i) => i + 1);
    for (let at = 0; at < hosts.length; at += 50) {
      await Promise.all(
        hosts
          .slice(at, at + 50)
          .map((host) =>
            put(
              `198.18.${host >> 4}.${(host & 15) * 16}-28`,
              leaseValue(`198.19.${host >> 8}.${host & 255}`, `0a:00:00:00:${hex(host >> 8)}:${hex(host & 255)}`),
            ),
          ),
      );
    }
    const proxy = await TcpProxy.start(etcd.clientPort);
    cleanups.push(() => proxy.close());
    let cutAt = Infinity;
    /** per watcher: when it asked etcd for a listing of the leases after the cut */
    const listings: number[][] = [];
    const watchers = await Promise.all(
      Array.from({ length: 30 }, async (_, w) => {
        const client = connectEtcd({ endpoints: [proxy.endpoint], callTimeoutMs: 1000 });
        const times: number[] = (listings[w] = []);
        const range = client.kv.range.bind(client.kv);
        client.kv.range = (request, options) => {
          if (request.range_end !== undefined && performance.now() >= cutAt) times.push(performance.now());
          return range(request, options);
        };
        const watcher = new LeaseWatcher({ client, keys, logger: captureLogger().logger });
        cleanups.push(async () => {
          await watcher.stop();
          client.close();
        });
        await watcher.start(config);
        return watcher;
      }),
    );
    assert.ok(watchers.every((watcher) => watcher.leases.size === 400));
    let relisted = 0;
    for (const watcher of watchers) watcher.on('synced', () => relisted++);

    // every watch stream drops at the same instant; etcd answers again at once
    cutAt = performance.now();
    proxy.cut();
    proxy.restore();
    await waitFor(
      () => relisted >= watchers.length && watchers.every((watcher) => watcher.leases.size === 400),
      'every watcher to list again',
      30_000,
    );
    // each watcher's first listing request, in 100 ms bins from the disruption: at most a third of them in any
    // one (without the spread all 30 ask within the same few milliseconds)
    const bins = new Map<number, number>();
    for (const times of listings) {
      assert.ok(times.length > 0, 'every watcher listed again');
      const bin = Math.floor((times[0] - cutAt) / 100);
      bins.set(bin, (bins.get(bin) ?? 0) + 1);
    }
    const busiest = Math.max(...bins.values());
    assert.ok(
      busiest <= 10,
      `${busiest} of 30 watchers asked for a listing in the same 100 ms: ${JSON.stringify([...bins].sort((a, b) => a[0] - b[0]))}`,
    );
  });

  it('takes a lease nested thousands of levels deep, written twice, as a malformed key and goes on', async function () {
    await put('198.18.31.0-24', leaseValue('198.19.0.31', '0a:00:00:00:31:01'));
    const { watcher, events, records } = await watch();
    const nested = `{"PublicIP":"198.19.0.32","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:00:00:00:32:01"},"X":${DEEP}}`;
    // small enough for the size limit, too deep for the depth limit
    const shallower = nested.replace(DEEP, '['.repeat(1000) + ']'.repeat(1000));
    for (const [name, value] of [
      ['198.18.32.0-24', nested],
      ['198.18.33.0-24', shallower],
    ]) {
      await put(name, value);
      await put(name, value);
    }
    await put('198.18.34.0-24', leaseValue('198.19.0.34', '0a:00:00:00:34:01'));
    await waitFor(() => watcher.leases.has('198.18.34.0-24'), 'the lease written after the nested ones');
    assert.deepEqual(
      events.map((e) => `${e.kind} ${e.lease.name}`),
      ['added 198.18.31.0-24', 'added 198.18.34.0-24'],
    );
    const errors = warnings(records).map((record) => `${String(record.key).split('/').at(-1)}: ${String(record.err)}`);
    assert.ok(
      errors.includes('198.18.32.0-24: 198.18.32.0-24: value is 10107 bytes, more than the 4096 a lease may have'),
      errors.join('\n'),
    );
    assert.ok(errors.includes('198.18.33.0-24: 198.18.33.0-24: value nests deeper than 16 levels'), errors.join('\n'));
    assert.equal(watcher.ignoredCounts().get('malformed'), 2);
  });

  it('never lets a listener that throws out into the watch stream', async function () {
    const { watcher, records } = await watch();
    watcher.on('lease', () => {
      throw new Error('a listener bug');
    });
    await put('198.18.35.0-24', leaseValue('198.19.0.35', '0a:00:00:00:35:01'));
    await put('198.18.36.0-24', leaseValue('198.19.0.36', '0a:00:00:00:36:01'));
    await waitFor(() => watcher.leases.has('198.18.36.0-24'), 'the second lease');
    assert.equal(records.filter((record) => /could not apply a change/.test(record.msg)).length, 2);
  });

  it('ignores a second key for a live subnet (a dual-stack form with another host) and a subnet of another length; the older key wins everywhere', async function () {
    await put('198.18.40.0-24', leaseValue('198.19.0.40', '0a:00:00:00:40:01'));
    const first = await watch();
    await put(
      '198.18.40.0-24&2001:db8:100:28::-64',
      JSON.stringify({
        PublicIP: '198.19.0.66',
        PublicIPv6: '2001:db8:0:1::66',
        BackendType: 'vxlan',
        BackendData: { VNI: 1, VtepMAC: '0a:00:00:00:66:01' },
        BackendV6Data: { VNI: 1, VtepMAC: '0a:00:00:00:66:02' },
      }),
    );
    await put('198.18.40.128-25', leaseValue('198.19.0.67', '0a:00:00:00:67:01'));
    await put('198.18.0.0-16', leaseValue('198.19.0.68', '0a:00:00:00:68:01'));
    await put('198.18.41.0-24', leaseValue('198.19.0.41', '0a:00:00:00:41:01'));
    await waitFor(() => first.watcher.leases.has('198.18.41.0-24'), 'the lease after the hostile ones');
    // a host that starts now lists them all at once, in key order
    const second = await watch();
    for (const { watcher } of [first, second]) {
      assert.deepEqual([...watcher.leases.keys()].sort(), ['198.18.40.0-24', '198.18.41.0-24']);
      assert.equal(watcher.leases.get('198.18.40.0-24')?.attrs.publicIP?.toString(), '198.19.0.40');
      assert.deepEqual(Object.fromEntries(watcher.ignoredCounts()), {
        'invalid-subnet': 2,
        'subnet-conflict': 1,
        'vtep-mac-conflict': 0,
        'public-key-conflict': 0,
        malformed: 0,
      });
      const hijack = watcher.ignored().find((entry) => entry.lease.name.includes('&'));
      assert.match(hijack?.detail ?? '', /198\.18\.40\.0\/24 is held by 198\.18\.40\.0-24, whose key is older/);
    }
    assert.deepEqual(
      first.events.map((e) => `${e.kind} ${e.lease.name}`),
      ['added 198.18.40.0-24', 'added 198.18.41.0-24'],
    );
    assert.ok(warnings(first.records).some((record) => record.msg === 'ignoring a lease' && record.reason === 'subnet-conflict'));

    // once the older key is gone, the other one is the only claimant: every host takes it
    await admin.delete().key(keys.lease('198.18.40.0-24'));
    await waitFor(() => first.watcher.leases.has('198.18.40.0-24&2001:db8:100:28::-64'), 'the remaining claimant');
    assert.deepEqual(
      first.events.slice(2).map((e) => `${e.kind} ${e.lease.name}`),
      ['removed 198.18.40.0-24', 'added 198.18.40.0-24&2001:db8:100:28::-64'],
    );
  });

  it('gives a VtepMAC to the lease whose public IP derives it, else to the older key', async function () {
    const derived = stableVtepMac(IpAddress.parse('198.19.0.51'), 1);
    // written before its host exists, in a key that sorts first
    await put('198.18.50.0-24', leaseValue('198.19.0.50', derived));
    await put('198.18.51.0-24', leaseValue('198.19.0.51', derived));
    await put('198.18.52.0-24', leaseValue('198.19.0.52', '0a:00:00:00:52:01'));
    await put('198.18.49.0-24', leaseValue('198.19.0.49', '0a:00:00:00:52:01'));
    const { watcher } = await watch();
    assert.deepEqual([...watcher.leases.keys()].sort(), ['198.18.51.0-24', '198.18.52.0-24']);
    const details = watcher
      .ignored()
      .map((entry) => `${entry.lease.name}: ${entry.detail}`)
      .sort();
    assert.deepEqual(details, [
      '198.18.49.0-24: VtepMAC 0a:00:00:00:52:01 belongs to 198.18.52.0-24: its key is older',
      `198.18.50.0-24: VtepMAC ${derived} belongs to 198.18.51.0-24: its public IP derives it`,
    ]);
  });

  it('lists past the gRPC message limit: megabytes of junk under the prefix do not stop it', async function () {
    this.timeout(30_000);
    const junk = 'x'.repeat(1.4 * 1024 * 1024);
    for (const name of ['junk-1', 'junk-2', 'junk-3']) await put(name, junk);
    await put('198.18.60.0-24', leaseValue('198.19.0.60', '0a:00:00:00:60:01'));
    const { watcher, records } = await Promise.race([
      watch(),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the watcher did not list within 10 s')), 10_000)),
    ]);
    assert.deepEqual([...watcher.leases.keys()], ['198.18.60.0-24']);
    assert.equal(watcher.ignoredCounts().get('malformed'), 3);
    assert.ok(warnings(records).some((record) => /1468006 bytes, more than the 4096/.test(String(record.err))));
    await put('junk-4', junk);
    await put('198.18.61.0-24', leaseValue('198.19.0.61', '0a:00:00:00:61:01'));
    await waitFor(() => watcher.leases.has('198.18.61.0-24'), 'the lease written after more junk');
  });

  it('warns about at most 10 bad keys a minute, counting them all', async function () {
    for (let i = 0; i < 40; i++) await put(`198.18.${70 + i}.0-24`, `junk ${i}`);
    const { watcher, records } = await watch();
    assert.equal(watcher.ignoredCounts().get('malformed'), 40);
    assert.equal(warnings(records).length, 10);
    await put('198.18.110.0-24', leaseValue('198.19.0.110', '0a:00:00:00:6e:01'));
    await waitFor(() => watcher.leases.has('198.18.110.0-24'), 'a valid lease');
  });
});
