#!/usr/bin/env node
// first: V8's settings, before the other modules run (ES modules run in import order)
import { optimiseFromNowOn } from './v8-flags.js';
import { buildInfo } from '../build-info.js';
import { SystemdNotifier, SystemdNotifyError } from '../host/systemd-notify.js';
import { createLogger } from '../log.js';
import { RegistryStoppedError } from '../registry/errors.js';
import { checkReadable, rootHint } from './error-text.js';
import { parseWeftdOptions, UsageError } from './weftd-options.js';

/** How long a SIGTERM may take before weftd exits anyway. */
const STOP_TIMEOUT_MS = 10_000;

async function main(): Promise<void> {
  let options;
  try {
    options = await parseWeftdOptions(process.argv.slice(2));
    if (options !== undefined) {
      const { caFile, certFile, keyFile } = options.etcd;
      checkReadable({ 'etcd-cafile': caFile, 'etcd-certfile': certFile, 'etcd-keyfile': keyFile }, 'weftd');
    }
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`weftd: ${err.message}\nRun weftd --help for the flags.\n`);
      process.exit(2);
    }
    throw err;
  }
  if (options === undefined) return;
  // The agent's modules (etcd's client, netlink, the backends) load for a run only, not for --help or --version.
  const { Agent } = await import('../daemon.js');
  const log = createLogger(options.logLevel);
  const build = buildInfo();
  log.info({ version: build.version, revision: build.revision, node: process.version }, 'weftd starting');
  for (const { setting, reason } of options.ignored) log.warn({ setting }, `ignoring ${setting}: ${reason}`);
  // before anything starts a child: the notifier takes systemd's variables out of the environment
  let notifier: SystemdNotifier | undefined;
  try {
    notifier = SystemdNotifier.fromEnvironment(log.child({ component: 'systemd' }));
  } catch (err) {
    if (!(err instanceof SystemdNotifyError)) throw err;
    log.fatal({ err }, 'weftd failed to start');
    process.exit(1);
  }
  const agent = new Agent(options, log);
  let lastStatus = '';
  const status = (line = agent.statusLine()) => {
    if (line !== lastStatus && notifier?.status(line) === true) lastStatus = line;
  };
  // systemd's STATUS= follows the start every second
  const starting = notifier === undefined ? undefined : setInterval(status, 1000).unref();

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    log.info({ signal }, 'shutting down');
    clearInterval(starting);
    notifier?.stopping(`stopping (${signal})`);
    setTimeout(() => {
      log.error('shutdown timed out: exiting now');
      process.exit(1);
    }, STOP_TIMEOUT_MS).unref();
    agent.stop().then(
      () => process.exit(0),
      (err: Error) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  try {
    status();
    await agent.start();
    clearInterval(starting);
    optimiseFromNowOn();
    if (notifier !== undefined && !agent.stopping) {
      // systemd starts the units ordered after weftd (docker) now: the data plane is programmed and subnet.env written
      lastStatus = agent.statusLine();
      await notifier.ready(lastStatus);
      const watchdogMs = notifier.watchdogMs;
      notifier.startWatchdog({ alive: () => watchdogMs !== undefined && agent.alive(watchdogMs), tick: () => status() });
    }
    const memory = process.memoryUsage();
    const mb = (bytes: number) => Math.round(bytes / 2 ** 20);
    log.info(
      { rssMB: mb(memory.rss), heapMB: mb(memory.heapUsed), heapTotalMB: mb(memory.heapTotal), externalMB: mb(memory.external) },
      'ready',
    );
  } catch (err) {
    clearInterval(starting);
    if (err instanceof RegistryStoppedError || agent.stopping) return;
    const hint = rootHint(err, 'weftd');
    log.fatal({ err }, `weftd failed to start${hint}`);
    notifier?.status(`failed to start: ${(err as Error).message}${hint}`);
    await agent.stop().catch(() => undefined);
    process.exit(1);
  }
}

void main();
