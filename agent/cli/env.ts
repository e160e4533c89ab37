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
 * Flags for every option set in the environment but not on the command line: `WEFTD_<FLAG>`, or for
 * drop-in use of an existing flanneld unit's environment file, `FLANNELD_<FLAG>` (weft's own wins). A
 * list flag takes a comma-separated value.
 */
export function flagsFromEnvironment(flags: Iterable<string>, argv: readonly string[], env: NodeJS.ProcessEnv): string[] {
  const given = (flag: string) => argv.some((arg) => arg === `--${flag}` || arg.startsWith(`--${flag}=`) || arg === `--no-${flag}`);
  const added: string[] = [];
  for (const flag of flags) {
    const value = env[envName('WEFTD', flag)] ?? env[envName('FLANNELD', flag)];
    if (value !== undefined && !given(flag)) added.push(`--${flag}=${value}`);
  }
  return added;
}
