import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Etcd3 } from 'etcd3';
import { MAX_CONFIG_BYTES, parseNetworkConfig, type NetworkConfig } from '../../common/config.js';
import { InvalidConfigError, WeftError } from '../../common/errors.js';
import { RateLimitedLog, type Logger } from '../log.js';
import { KvMirror } from './kv-mirror.js';
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
 * What the watcher keeps of the config key: what parsing it gave, and a digest of the value (not the value:
 * it may be anything anyone wrote) to tell a rewrite with the same content from a change.
 */
interface ConfigVersion {
  digest: string;
  outcome: NetworkConfig | WeftError;
}

function readConfig(value: Buffer): NetworkConfig | WeftError {
  if (value.length > MAX_CONFIG_BYTES)
    return new InvalidConfigError('config', `config is ${value.length} bytes, more than the ${MAX_CONFIG_BYTES} weft reads`);
  try {
    return parseNetworkConfig(value.toString());
  } catch (err) {
    return err instanceof WeftError ? err : new InvalidConfigError('config', `config cannot be read: ${(err as Error).message}`);
  }
}

/**
 * Follows `<prefix>/config`: that key alone, not every key it is a prefix of. It never acts on an invalid
 * config: it logs one line per change of the key (a few a minute at most) and keeps the last valid config
 * until a valid one appears.
 */
export class ConfigWatcher extends EventEmitter<ConfigWatcherEvents> {
  private readonly mirror: KvMirror<ConfigVersion>;
  private readonly key: string;
  private readonly log: Logger;
  private readonly invalidLog: RateLimitedLog;
  private valid: NetworkConfig | undefined;
  private validDigest: string | undefined;

  constructor(options: { client: Etcd3; keys: NetworkKeys; logger: Logger }) {
    super();
    this.key = options.keys.config;
    this.log = options.logger;
    this.invalidLog = new RateLimitedLog(options.logger, 3);
    this.mirror = new KvMirror<ConfigVersion>({
      client: options.client,
      key: this.key,
      prefix: false,
      codec: {
        decode: (_key, _name, kv) => ({ digest: createHash('sha256').update(kv.value).digest('base64'), outcome: readConfig(kv.value) }),
        same: (a, b) => a.digest === b.digest,
      },
      logger: options.logger,
    });
    this.mirror.on('change', (change) => {
      if (change.kind === 'removed') this.onMissing();
      else this.onValue(change.value);
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

  private onValue({ digest, outcome }: ConfigVersion): void {
    if (digest === this.validDigest) return;
    if (outcome instanceof WeftError) {
      this.invalidLog.write(
        'error',
        { key: this.key, err: outcome },
        this.valid === undefined
          ? 'network config is invalid; waiting for a valid one'
          : 'network config is invalid; keeping the last valid config',
      );
      this.emit('invalid', outcome);
      return;
    }
    for (const warning of outcome.warnings) this.log.warn({ key: this.key }, warning);
    this.valid = outcome;
    this.validDigest = digest;
    this.emit('config', outcome);
  }
}
