import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NotifyListener } from '../../test/notify-listener.js';
import { sleep } from '../../test/wait.js';
import { createLogger } from '../log.js';
import { SystemdNotifier, SystemdNotifyError } from './systemd-notify.js';

const log = createLogger('silent');

describe('systemd notifications (sd_notify) to a real AF_UNIX datagram socket', function () {
  this.timeout(30_000);
  let dir: string;
  let listener: NotifyListener | undefined;
  let notifier: SystemdNotifier | undefined;

  beforeEach(function () {
    dir = mkdtempSync(join(tmpdir(), 'weft-notify-'));
  });

  afterEach(function () {
    notifier?.stopWatchdog();
    notifier = undefined;
    listener?.close();
    listener = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  it('is off without NOTIFY_SOCKET', function () {
    const env: NodeJS.ProcessEnv = { WATCHDOG_USEC: '1000000' };
    assert.equal(SystemdNotifier.fromEnvironment(log, env), undefined);
    assert.deepEqual(env, {}, 'stray watchdog variables are not passed on either');
  });

  it('sends READY=1 with STATUS, STATUS, STOPPING=1 from this process, and takes the variables out of the environment', async function () {
    listener = await NotifyListener.start(join(dir, 'notify'));
    const env: NodeJS.ProcessEnv = { NOTIFY_SOCKET: listener.address, KEEP: 'x' };
    notifier = SystemdNotifier.fromEnvironment(log, env);
    assert.ok(notifier);
    assert.deepEqual(env, { KEEP: 'x' }, 'children do not inherit NOTIFY_SOCKET');
    assert.equal(notifier.watchdogMs, undefined);
    assert.equal(notifier.status('not ready: lease (waiting for a usable network config in etcd)'), true);
    assert.equal(await notifier.ready('ready: lease 198.18.5.0-24, 2 peers programmed\nsecond line'), true);
    assert.equal(notifier.stopping('stopping (SIGTERM)'), true);
    await listener.waitFor((message) => message.fields.STOPPING === '1', 'STOPPING=1');
    assert.deepEqual(
      listener.messages.map((message) => message.text),
      [
        'STATUS=not ready: lease (waiting for a usable network config in etcd)\n',
        'READY=1\nSTATUS=ready: lease 198.18.5.0-24, 2 peers programmed second line\n',
        'STOPPING=1\nSTATUS=stopping (SIGTERM)\n',
      ],
    );
    assert.ok(
      listener.messages.every((message) => message.pid === process.pid),
      'the sender is this process (NotifyAccess=main)',
    );
  });

  it('reaches a socket in the abstract namespace (@name)', async function () {
    listener = await NotifyListener.start(`@weft-test-${randomBytes(6).toString('hex')}`);
    notifier = SystemdNotifier.fromEnvironment(log, { NOTIFY_SOCKET: listener.address });
    assert.equal(notifier!.status('hello'), true);
    await listener.waitFor((message) => message.text === 'STATUS=hello\n', 'the status on the abstract socket');
  });

  it('pings the watchdog at half of WATCHDOG_USEC only while the agent is alive, and refreshes on every tick', async function () {
    listener = await NotifyListener.start(join(dir, 'notify'));
    notifier = SystemdNotifier.fromEnvironment(log, {
      NOTIFY_SOCKET: listener.address,
      WATCHDOG_USEC: '1000000',
      WATCHDOG_PID: String(process.pid),
    });
    assert.equal(notifier!.watchdogMs, 1000);
    let alive = true;
    let ticks = 0;
    notifier!.startWatchdog({ alive: () => alive, tick: () => ticks++ });
    await listener.waitFor(() => listener!.messages.filter((message) => message.text === 'WATCHDOG=1\n').length >= 3, 'three pings');
    const pings = listener.messages.filter((message) => message.text === 'WATCHDOG=1\n');
    const gaps = pings.slice(1).map((ping, i) => ping.at - pings[i].at);
    // every 500 ms: never more often, and always well within the watchdog's 1 s
    assert.ok(
      gaps.every((gap) => gap > 0.4 && gap < 0.95),
      `pings 500 ms apart: ${gaps.join(', ')}`,
    );
    alive = false;
    await sleep(100);
    const before = listener.messages.length;
    const ticksBefore = ticks;
    await sleep(1600);
    assert.equal(listener.messages.length, before, 'no ping while the agent is not alive');
    assert.ok(ticks >= ticksBefore + 2, 'the ticks go on');
    alive = true;
    await listener.waitFor(
      (message) => message.text === 'WATCHDOG=1\n' && listener!.messages.indexOf(message) >= before,
      'pings again once alive',
    );
  });

  it('has no watchdog when WATCHDOG_PID names another process', function () {
    const listenerless = SystemdNotifier.fromEnvironment(log, {
      NOTIFY_SOCKET: join(dir, 'nobody'),
      WATCHDOG_USEC: '400000',
      WATCHDOG_PID: String(process.pid + 1),
    });
    assert.equal(listenerless!.watchdogMs, undefined);
  });

  it('refuses unusable variables naming them, and reports a socket nobody listens on without throwing', function () {
    const refused = (env: NodeJS.ProcessEnv, message: RegExp) =>
      assert.throws(
        () => SystemdNotifier.fromEnvironment(log, env),
        (err: unknown) => {
          assert.ok(err instanceof SystemdNotifyError);
          assert.equal(err.code, 'WEFT_SYSTEMD_NOTIFY');
          assert.match(err.message, message);
          return true;
        },
      );
    refused({ NOTIFY_SOCKET: 'run/notify' }, /^NOTIFY_SOCKET="run\/notify" is neither an absolute path nor an abstract socket name/);
    refused({ NOTIFY_SOCKET: 'vsock:2:1234' }, /^NOTIFY_SOCKET="vsock:2:1234" is neither/);
    refused({ NOTIFY_SOCKET: `/${'x'.repeat(120)}` }, /is longer than a socket address \(108 bytes\)/);
    refused({ NOTIFY_SOCKET: '/run/notify', WATCHDOG_USEC: '30s' }, /^WATCHDOG_USEC="30s" is not a positive number of microseconds/);
    refused({ NOTIFY_SOCKET: '/run/notify', WATCHDOG_USEC: '1000', WATCHDOG_PID: 'me' }, /^WATCHDOG_PID="me" is not a process id/);
    const nobody = SystemdNotifier.fromEnvironment(log, { NOTIFY_SOCKET: join(dir, 'nobody') });
    assert.equal(nobody!.status('lost'), false);
  });
});
