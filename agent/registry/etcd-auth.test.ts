import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { parseNetworkConfig } from '../../common/config.js';
import { EtcdServer } from '../../test/etcd-server.js';
import { captureLogger, warnings } from '../../test/log-capture.js';
import { waitFor } from '../../test/wait.js';
import { ConfigWatcher } from './config-watcher.js';
import { connectEtcd, NetworkKeys } from './etcd.js';

describe('etcd user/password authentication', function () {
  this.timeout(60_000);
  let etcd: EtcdServer;
  const keys = new NetworkKeys(`/weft-auth-${process.pid}`);

  function etcdctl(...args: string[]): string {
    return execFileSync('etcdctl', [`--endpoints=${etcd.endpoint}`, ...args], {
      encoding: 'utf8',
      env: { ...process.env, ETCDCTL_API: '3' },
    });
  }

  before(async function () {
    etcd = await EtcdServer.start();
    etcdctl('put', keys.config, '{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"}}');
    etcdctl('user', 'add', 'root:root-secret');
    etcdctl('user', 'grant-role', 'root', 'root');
    etcdctl('user', 'add', 'weft:weft-secret');
    etcdctl('role', 'add', 'weft-agent');
    etcdctl('role', 'grant-permission', 'weft-agent', '--prefix=true', 'readwrite', `${keys.prefix}/`);
    etcdctl('user', 'grant-role', 'weft', 'weft-agent');
    etcdctl('auth', 'enable');
  });

  after(async function () {
    await etcd?.destroy();
  });

  it('reads the config as a user with a role on the prefix', async function () {
    const client = connectEtcd({ endpoints: [etcd.endpoint], username: 'weft', password: 'weft-secret' });
    const watcher = new ConfigWatcher({ client, keys, logger: captureLogger().logger });
    try {
      const config = await watcher.waitForValid();
      assert.deepEqual(config, parseNetworkConfig('{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"}}'));
    } finally {
      await watcher.stop();
      client.close();
    }
  });

  it('says clearly that the password was refused, and keeps trying instead of exiting', async function () {
    const client = connectEtcd({ endpoints: [etcd.endpoint], username: 'weft', password: 'wrong', callTimeoutMs: 1000 });
    const { logger, records } = captureLogger();
    const watcher = new ConfigWatcher({ client, keys, logger });
    const started = watcher.start();
    try {
      await waitFor(() => warnings(records).length > 0, 'a warning');
      assert.match(
        String((warnings(records)[0].err as { message?: string } | undefined)?.message),
        /authentication failed|invalid user ID or password/,
      );
    } finally {
      await watcher.stop();
      await started;
      client.close();
    }
  });
});
