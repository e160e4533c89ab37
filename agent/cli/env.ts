import type { Options } from 'yargs';

/** The etcd connection flags weftd and weftctl share, named as flanneld names them. */
export const ETCD_OPTIONS = {
  'etcd-endpoints': { type: 'string', default: 'http://127.0.0.1:2379', describe: 'comma-separated list of etcd endpoints' },
  'etcd-prefix': { type: 'string', default: '/coreos.com/network', describe: 'etcd prefix of the network config and leases' },
  'etcd-cafile': { type: 'string', describe: 'CA certificate to verify etcd servers (enables TLS)' },
  'etcd-certfile': { type: 'string', describe: 'client certificate for etcd' },
  'etcd-keyfile': { type: 'string', describe: 'client key for etcd' },
  'etcd-username': { type: 'string', describe: 'etcd user name for authentication' },
  'etcd-password': { type: 'string', describe: 'etcd password for authentication' },
} as const satisfies Record<string, Options>;

function envName(prefix: string, flag: string): string {
  return `${prefix}_${flag.toUpperCase().replace(/-/g, '_')}`;
}

/**
 * Copies flanneld's environment variables (`FLANNELD_IFACE`, ...) to weft's (`WEFTD_IFACE`, ...) where
 * weft's own is not set, so that weftd is a drop-in for an existing flanneld unit's environment file.
 */
export function adoptFlanneldEnvironment(flags: Iterable<string>, env: NodeJS.ProcessEnv = process.env): void {
  for (const flag of flags) {
    const ours = envName('WEFTD', flag);
    const theirs = envName('FLANNELD', flag);
    if (env[ours] === undefined && env[theirs] !== undefined) env[ours] = env[theirs];
  }
}
