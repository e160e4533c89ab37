import { readFileSync } from 'node:fs';
import {
  ConsecutiveBreaker,
  ExponentialBackoff,
  circuitBreaker,
  decorrelatedJitterGenerator,
  handleWhen,
  retry,
  type IBackoffFactory,
} from 'cockatiel';
import { Etcd3 as Etcd3Client, GRPCResourceExhastedError, isRecoverableError, type Etcd3, type IOptions } from 'etcd3';

/**
 * Delays between retries that grow from `initialDelayMs` to at most `maxDelayMs`, each drawn at random
 * (cockatiel's decorrelated jitter): the agents of a cluster that lost etcd together do not come back to
 * it together.
 */
export function retryBackoff(initialDelayMs: number, maxDelayMs: number): IBackoffFactory<unknown> {
  return new ExponentialBackoff({ generator: decorrelatedJitterGenerator, initialDelay: initialDelayMs, maxDelay: maxDelayMs });
}

export const DEFAULT_PREFIX = '/coreos.com/network';

/**
 * The largest gRPC message weft takes from etcd, set explicitly rather than left at gRPC's 4 MiB default:
 * above etcd's largest request (1.5 MiB by default), so that a watch response carrying a few large values
 * still arrives; listings are paginated (listPrefix), so their size does not grow with the cluster.
 */
export const MAX_RECEIVE_BYTES = 16 * 1024 * 1024;

/** etcd's answer did not fit MAX_RECEIVE_BYTES (gRPC RESOURCE_EXHAUSTED). */
export function isResourceExhausted(err: unknown): boolean {
  return err instanceof GRPCResourceExhastedError;
}

export interface EtcdConnectionOptions {
  endpoints: string[];
  caFile?: string | undefined;
  certFile?: string | undefined;
  keyFile?: string | undefined;
  username?: string | undefined;
  password?: string | undefined;
  /** Deadline for one unary call, so that a dead endpoint fails fast instead of hanging the agent. */
  callTimeoutMs?: number;
}

/**
 * An etcd3 client tuned for an agent that must notice etcd coming back quickly: the library's defaults
 * keep a failed host out for 5 s and back watch reconnects off to 30 s.
 */
export function connectEtcd(options: EtcdConnectionOptions): Etcd3 {
  const callTimeoutMs = options.callTimeoutMs ?? 5000;
  const config: IOptions = {
    hosts: options.endpoints,
    dialTimeout: callTimeoutMs,
    grpcOptions: { 'grpc.max_receive_message_length': MAX_RECEIVE_BYTES },
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + callTimeoutMs }),
    faultHandling: {
      host: () => circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: 1000, breaker: new ConsecutiveBreaker(3) }),
      global: retry(handleWhen(isRecoverableError), { maxAttempts: Math.max(2, options.endpoints.length) }),
      watchBackoff: retryBackoff(100, 2000).next(undefined),
    },
  };
  if (options.caFile !== undefined || options.certFile !== undefined || options.keyFile !== undefined) {
    // A client certificate is used with or without a CA file, as flanneld does. Without one the server is
    // verified against the default CA store: etcd3 types rootCertificate as a Buffer, but hands it to grpc's
    // createSsl, where null means exactly that.
    config.credentials = {
      rootCertificate: options.caFile === undefined ? (null as unknown as Buffer) : readFileSync(options.caFile),
      ...(options.keyFile === undefined ? {} : { privateKey: readFileSync(options.keyFile) }),
      ...(options.certFile === undefined ? {} : { certChain: readFileSync(options.certFile) }),
    };
  }
  if (options.username !== undefined && options.username !== '') {
    config.auth = { username: options.username, password: options.password ?? '' };
  }
  return new Etcd3Client(config);
}

/** The keys of one weft/flannel network in etcd. */
export class NetworkKeys {
  readonly prefix: string;
  constructor(prefix: string = DEFAULT_PREFIX) {
    this.prefix = prefix.replace(/\/+$/, '');
  }
  get config(): string {
    return `${this.prefix}/config`;
  }
  get subnets(): string {
    return `${this.prefix}/subnets/`;
  }
  lease(name: string): string {
    return `${this.subnets}${name}`;
  }
  /** The lease name of a key under `subnets`, or undefined for a key elsewhere. */
  leaseName(key: string): string | undefined {
    return key.startsWith(this.subnets) ? key.slice(this.subnets.length) : undefined;
  }
}
