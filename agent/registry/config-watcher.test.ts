import assert from 'node:assert/strict';
import type { Etcd3 } from 'etcd3';
import type { NetworkConfig } from '../../common/config.js';
import { EtcdServer } from '../../test/etcd-server.js';
import { captureLogger, warnings } from '../../test/log-capture.js';
import { sleep, waitFor } from '../../test/wait.js';
import { ConfigWatcher } from './config-watcher.js';
import { connectEtcd, NetworkKeys } from './etcd.js';

describe('ConfigWatcher against a real etcd', function () {
  let etcd: EtcdServer;
  let client: Etcd3;
  let keys: NetworkKeys;
  let testIndex = 0;
  let watcher: ConfigWatcher | undefined;

  before(async function () {
    etcd = await EtcdServer.start();
    client = connectEtcd({ endpoints: [etcd.endpoint] });
  });

  beforeEach(function () {
    keys = new NetworkKeys(`/weft-test-${process.pid}/config-${testIndex++}`);
  });

  afterEach(async function () {
    await watcher?.stop();
    watcher = undefined;
  });

  after(async function () {
    client?.close();
    await etcd?.destroy();
  });

  it('waits while the config is missing or invalid, logging one line per change, and resolves on a valid one', async function () {
    const { logger, records } = captureLogger();
    watcher = new ConfigWatcher({ client, keys, logger });
    let resolved = undefined as NetworkConfig | undefined;
    const waiting = watcher.waitForValid().then((config) => (resolved = config));
    await waitFor(() => warnings(records).length === 1, 'the missing-config line');
    assert.match(warnings(records)[0].msg, /missing/);
    await sleep(300);
    assert.equal(warnings(records).length, 1, 'no repeated lines while nothing changes');

    await client.put(keys.config).value('{"Network":"198.18.0.0/16","SubnetLen":33,"Backend":{"Type":"vxlan"}}');
    await waitFor(() => warnings(records).length === 2, 'the invalid-config line');
    assert.match(String((warnings(records)[1].err as { message?: string } | undefined)?.message), /SubnetLen 33 is longer than 32/);
    await client.put(keys.config).value('not json');
    await waitFor(() => warnings(records).length === 3, 'the second invalid-config line');
    assert.equal(resolved, undefined, 'never acts on an invalid config');

    await client.put(keys.config).value('{"Network":"198.18.0.0/16","Backend":{"Type":"host-gw"}}');
    const config = await waiting;
    assert.equal(config.backend.type, 'host-gw');
    assert.equal(config.ipv4?.subnetLen, 24);
    assert.equal(warnings(records).length, 3);
  });

  it('keeps the last valid config when it turns invalid or disappears, and follows a valid change', async function () {
    await client.put(keys.config).value('{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"}}');
    const { logger, records } = captureLogger();
    watcher = new ConfigWatcher({ client, keys, logger });
    const seen: string[] = [];
    watcher.on('config', (config) => seen.push(config.backend.type));
    watcher.on('invalid', (err) => seen.push(err.code));
    await watcher.waitForValid();
    await client.put(keys.config).value('{"Network":"198.18.0.0/29","Backend":{"Type":"vxlan"}}');
    await waitFor(() => seen.length === 2, 'the invalid event');
    assert.equal(watcher.current?.backend.type, 'vxlan');
    assert.ok(
      warnings(records).some((record) =>
        /198\.18\.0\.0\/29 is smaller than \/28/.test(String((record.err as { message?: string } | undefined)?.message)),
      ),
    );
    await client.delete().key(keys.config);
    await waitFor(() => warnings(records).some((record) => /deleted/.test(record.msg)), 'the deletion line');
    assert.equal(watcher.current?.backend.type, 'vxlan');
    await client.put(keys.config).value('{"Network":"198.18.0.0/16"}');
    await waitFor(() => seen.length === 3, 'the valid change');
    assert.deepEqual(seen, ['vxlan', 'WEFT_INVALID_CONFIG', 'udp']);
    assert.ok(
      warnings(records).some((record) => /Backend is missing/.test(record.msg)),
      'the missing Backend is taken as udp, with a warning',
    );
  });

  it('reads the config key alone: megabytes under keys it is a prefix of change nothing', async function () {
    this.timeout(30_000);
    const junk = 'x'.repeat(1.4 * 1024 * 1024);
    for (const suffix of ['-a', '-b', '-c', '/x']) await client.put(`${keys.config}${suffix}`).value(junk);
    await client.put(keys.config).value('{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"}}');
    const { logger, records } = captureLogger();
    watcher = new ConfigWatcher({ client, keys, logger });
    const events: string[] = [];
    watcher.on('config', () => events.push('config'));
    watcher.on('invalid', () => events.push('invalid'));
    const config = await Promise.race([
      watcher.waitForValid(),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no config within 10 s')), 10_000)),
    ]);
    assert.equal(config.backend.type, 'vxlan');
    await client.put(`${keys.config}-d`).value('{"Network":"not a network"}');
    await client.put(keys.config).value('{"Network":"198.18.0.0/16","Backend":{"Type":"host-gw"}}');
    await waitFor(() => events.length === 2, 'the change of the config key');
    assert.deepEqual(events, ['config', 'config']);
    assert.deepEqual(warnings(records), []);
  });

  it('survives a config nested thousands of levels deep, written twice: the deep field is dropped with a warning', async function () {
    const { logger, records } = captureLogger();
    watcher = new ConfigWatcher({ client, keys, logger });
    const deep = '['.repeat(5000) + ']'.repeat(5000);
    await client.put(keys.config).value(`{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"},"Junk":${deep}}`);
    const config = await watcher.waitForValid();
    assert.deepEqual(config.raw, { Network: '198.18.0.0/16', Backend: { Type: 'vxlan' } });
    assert.ok(warnings(records).some((record) => /ignoring the config field "Junk": it nests deeper than 32 levels/.test(record.msg)));
    const invalid: string[] = [];
    watcher.on('invalid', (err) => invalid.push(err.message));
    await client.put(keys.config).value(`{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan","X":${deep}}}`);
    await client.put(keys.config).value(`{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan","X":${deep}}}`);
    await client.put(keys.config).value(deep);
    await waitFor(() => invalid.length === 2, 'the two invalid configs');
    assert.deepEqual(invalid, ['Backend nests deeper than 32 levels', 'config nested deeper than 32 levels is not a JSON object']);
    assert.equal(watcher.current, config, 'the last valid config stays');
  });
});
