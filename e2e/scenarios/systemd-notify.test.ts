/**
 * weftd under `Type=notify`, without systemd: a test socket stands where systemd's would ($NOTIFY_SOCKET) and
 * reads what weftd sends in a namespace lab, with the sender's credentials as systemd sees them.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { requireNetns } from '../../test/netns.js';
import { NotifyListener } from '../../test/notify-listener.js';
import { sleep } from '../../test/wait.js';
import { NetnsLab, seedNetworkConfig, shippedProgram } from '../lab/index.js';

const WEFTD = shippedProgram('weftd');

describe("e2e: weftd speaks systemd's notification protocol (no systemd needed)", function () {
  this.timeout(90_000);
  let lab: NetnsLab | undefined;
  let listener: NotifyListener | undefined;

  afterEach(async function () {
    listener?.close();
    listener = undefined;
    await lab?.destroy();
    lab = undefined;
  });

  it('sends READY=1 only once subnet.env is written, from its main process, then watchdog pings, and STOPPING=1 on SIGTERM', async function () {
    requireNetns(this);
    lab = await NetnsLab.create({ hosts: 1 });
    const host = lab.hosts[0];
    listener = await NotifyListener.start(join(lab.tempDir, 'notify.sock'), lab.subnetFile(host));
    const messages = listener.messages;
    const agent = await lab.startAgent(host, ['--healthz-port=9910'], { NOTIFY_SOCKET: listener.address, WATCHDOG_USEC: '3000000' });

    // no network config in etcd yet: weftd waits, says so, and is not ready
    await listener.waitFor(
      (message) => /^not ready: lease \(waiting for a usable network config in etcd\)/.test(message.fields.STATUS ?? ''),
      'a status saying weftd waits for the config',
    );
    await sleep(1500);
    assert.ok(
      !messages.some((message) => 'READY' in message.fields || 'WATCHDOG' in message.fields),
      'neither READY=1 nor a ping without a config',
    );

    await seedNetworkConfig(lab);
    const ready = await listener.waitFor((message) => message.fields.READY === '1', 'READY=1');
    assert.equal(ready.watchedExists, true, 'subnet.env was there when READY=1 arrived');
    assert.match(ready.fields.STATUS ?? '', /^ready: lease 198\.18\.\d+\.0-24, 0 peers programmed$/);
    assert.ok((await lab.readSubnetEnv(host))?.subnet !== undefined);
    const readyAt = messages.indexOf(ready);
    assert.ok(
      messages.slice(0, readyAt).every((message) => !('WATCHDOG' in message.fields)),
      'no ping before READY=1',
    );

    // a ping every 1.5 s; the loop counts as stalled only after a run of 3 s, which a loaded CI machine must not reach
    await listener.waitFor(
      () => messages.slice(readyAt).filter((message) => message.fields.WATCHDOG === '1').length >= 3,
      'three watchdog pings after READY=1',
      30_000,
    );
    await lab.stopAgent(host);
    await listener.waitFor((message) => message.fields.STOPPING === '1', 'STOPPING=1');
    assert.ok(agent.pid > 0);
    assert.deepEqual(
      [...new Set(messages.map((message) => message.pid))],
      [agent.pid],
      "every message comes from weftd's main process (NotifyAccess=main)",
    );
  });

  it('refuses to start on an unusable NOTIFY_SOCKET, naming it', function () {
    const result = spawnSync(process.execPath, [WEFTD, '--etcd-endpoints=http://127.0.0.1:9'], {
      encoding: 'utf8',
      env: { ...process.env, NOTIFY_SOCKET: 'run/systemd/notify' },
      timeout: 30_000,
    });
    assert.equal(result.status, 1, result.stderr);
    assert.match(
      result.stderr,
      /"level":60.*NOTIFY_SOCKET=\\"run\/systemd\/notify\\" is neither an absolute path nor an abstract socket name/,
    );
  });
});
