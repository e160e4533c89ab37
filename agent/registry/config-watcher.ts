import { EventEmitter } from 'node:events';
import type { Etcd3 } from 'etcd3';
import { parseNetworkConfig, type NetworkConfig } from '../../common/config.js';
import { WeftError } from '../../common/errors.js';
import type { Logger } from '../log.js';
import { KvMirror, kvEntries } from './kv-mirror.js';
import type { NetworkKeys } from './etcd.js';
import { RegistryStoppedError } from './errors.js';

export interface ConfigWatcherEvents {
  /** A valid config that differs from the last valid one. */
  config: [NetworkConfig];
  /** The key holds something invalid; the last valid config (if any) stays in force. */
  invalid: [WeftError];
  /** The key was deleted; the last valid config (if any) stays in force. */
  missing: [];
}

/**
 * Follows `<prefix>/config`. It never acts on an invalid config: it logs one line per change of the key
 * and keeps the last valid config until a valid one appears.
 */
export class ConfigWatcher extends EventEmitter<ConfigWatcherEvents> {
  private readonly mirror: KvMirror;
  private readonly key: string;
  private readonly log: Logger;
  private valid: NetworkConfig | undefined;
  private validText: string | undefined;

  constructor(options: { client: Etcd3; keys: NetworkKeys; logger: Logger }) {
    super();
    this.key = options.keys.config;
    this.log = options.logger;
    this.mirror = new KvMirror({ client: options.client, prefix: this.key, codec: kvEntries, logger: options.logger });
    this.mirror.on('change', (change) => {
      if (change.key !== this.key) return;
      if (change.kind === 'removed') this.onMissing();
      else this.onValue(change.value.value);
    });
  }

  get current(): NetworkConfig | undefined {
    return this.valid;
  }

  async start(): Promise<void> {
    await this.mirror.start();
    if (!this.mirror.has(this.key)) this.onMissing();
  }

  stop(): Promise<void> {
    return this.mirror.stop();
  }

  /** Resolves with the first valid config; waits (without polling) while it is missing or invalid. */
  async waitForValid(signal?: AbortSignal): Promise<NetworkConfig> {
    await this.start();
    if (this.valid !== undefined) return this.valid;
    return new Promise((resolve, reject) => {
      const onConfig = (config: NetworkConfig) => {
        signal?.removeEventListener('abort', onAbort);
        resolve(config);
      };
      const onAbort = () => {
        this.off('config', onConfig);
        reject(new RegistryStoppedError());
      };
      this.once('config', onConfig);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private onMissing(): void {
    this.log.warn(
      { key: this.key },
      this.valid === undefined
        ? 'network config is missing; waiting for it (seed it with: weftctl config set)'
        : 'network config was deleted; keeping the last valid config',
    );
    this.emit('missing');
  }

  private onValue(text: string): void {
    if (text === this.validText) return;
    let config: NetworkConfig;
    try {
      config = parseNetworkConfig(text);
    } catch (err) {
      if (!(err instanceof WeftError)) throw err;
      this.log.error(
        { key: this.key, err },
        this.valid === undefined ? 'network config is invalid; waiting for a valid one' : 'network config is invalid; keeping the last valid config',
      );
      this.emit('invalid', err);
      return;
    }
    for (const warning of config.warnings) this.log.warn({ key: this.key }, warning);
    this.valid = config;
    this.validText = text;
    this.emit('config', config);
  }
}
