#!/usr/bin/env node
import { setFlagsFromString } from 'node:v8';
import { Agent } from '../daemon.js';
import { createLogger } from '../log.js';
import { RegistryStoppedError } from '../registry/errors.js';
import { parseWeftdOptions, UsageError } from './weftd-options.js';

/** How long a SIGTERM may take before weftd exits anyway. */
const STOP_TIMEOUT_MS = 10_000;

/**
 * weftd keeps little alive (some 25 MB for 10 000 peers) but allocates in bursts: thousands of leases from
 * etcd at start, tens of thousands of netlink requests and notifications while it programs them. With V8's
 * default heap growth the garbage of a burst pushes the heap far past what is live before a full collection
 * runs (about 190 MB RSS at 10 000 peers); growing the old generation by 15% at a time keeps it near the
 * live size (about 150 MB) at no measurable cost in time. The heap controller reads this at every
 * collection, so setting it here, after the modules loaded, is early enough.
 */
setFlagsFromString('--heap-growing-percent=15');

async function main(): Promise<void> {
  let options;
  try {
    options = await parseWeftdOptions(process.argv.slice(2));
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`weftd: ${err.message}\nRun weftd --help for the flags.\n`);
      process.exit(2);
    }
    throw err;
  }
  if (options === undefined) return;
  const log = createLogger(options.logLevel);
  const agent = new Agent(options, log);

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    log.info({ signal }, 'shutting down');
    setTimeout(() => {
      log.error('shutdown timed out: exiting now');
      process.exit(1);
    }, STOP_TIMEOUT_MS).unref();
    agent.stop().then(
      () => process.exit(0),
      (err: Error) => {
        log.error({ err: err.message }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  try {
    await agent.start();
    const memory = process.memoryUsage();
    const mb = (bytes: number) => Math.round(bytes / 2 ** 20);
    log.info({ rssMB: mb(memory.rss), heapMB: mb(memory.heapUsed), heapTotalMB: mb(memory.heapTotal), externalMB: mb(memory.external) }, 'ready');
  } catch (err) {
    if (err instanceof RegistryStoppedError || agent.stopping) return;
    log.fatal({ err: (err as Error).message, code: (err as { code?: string }).code }, 'weftd failed to start');
    await agent.stop().catch(() => undefined);
    process.exit(1);
  }
}

void main();
