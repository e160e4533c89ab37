/**
 * A 3-member etcd cluster with TLS (server, peer and client certificates from a CA generated with openssl)
 * in a lab's etcd namespace, replacing the lab's plain single etcd. Members listen on 192.0.2.2, .3 and .4;
 * their processes live in the lab's namespaces, so the lab's destroy() removes them too.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { waitFor } from '../../test/wait.js';
import type { ExecResult } from './driver.js';
import type { NetnsLab } from './netns-lab.js';

const MEMBER_IPS = ['192.0.2.2', '192.0.2.3', '192.0.2.4'] as const;

export interface TlsFiles {
  caFile: string;
  certFile: string;
  keyFile: string;
}

async function openssl(lab: NetnsLab, args: string): Promise<void> {
  const result = await lab.execIn(lab.etcdHost.netns, `openssl ${args}`);
  if (result.code !== 0) throw new Error(`openssl ${args}: ${result.stderr}`);
}

/** A CA, a server/peer certificate valid for every member IP, and a client certificate (CN weft). */
async function makePki(lab: NetnsLab, dir: string): Promise<{ server: TlsFiles; client: TlsFiles }> {
  mkdirSync(dir, { recursive: true });
  const at = (name: string) => join(dir, name);
  writeFileSync(
    at('server.ext'),
    `subjectAltName=${MEMBER_IPS.map((ip) => `IP:${ip}`).join(',')},IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n`,
  );
  writeFileSync(at('client.ext'), 'extendedKeyUsage=clientAuth\n');
  await openssl(lab, `req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=weft-test-ca -keyout ${at('ca.key')} -out ${at('ca.crt')}`);
  for (const name of ['server', 'client']) {
    await openssl(
      lab,
      `req -newkey rsa:2048 -nodes -subj /CN=${name === 'client' ? 'weft' : 'etcd'} -keyout ${at(`${name}.key`)} -out ${at(`${name}.csr`)}`,
    );
    await openssl(
      lab,
      `x509 -req -in ${at(`${name}.csr`)} -CA ${at('ca.crt')} -CAkey ${at('ca.key')} -CAcreateserial -days 2 -extfile ${at(`${name}.ext`)} -out ${at(`${name}.crt`)}`,
    );
  }
  return {
    server: { caFile: at('ca.crt'), certFile: at('server.crt'), keyFile: at('server.key') },
    client: { caFile: at('ca.crt'), certFile: at('client.crt'), keyFile: at('client.key') },
  };
}

export class TlsEtcdCluster {
  private readonly members: (ChildProcess | undefined)[] = MEMBER_IPS.map(() => undefined);

  private constructor(
    private readonly lab: NetnsLab,
    private readonly dir: string,
    private readonly server: TlsFiles,
    readonly client: TlsFiles,
  ) {}

  /** Stops the lab's own etcd and starts the TLS cluster in its place. */
  static async start(lab: NetnsLab): Promise<TlsEtcdCluster> {
    await lab.stopEtcd();
    const dir = join(lab.tempDir, 'etcd-tls');
    const { server, client } = await makePki(lab, join(dir, 'pki'));
    for (const ip of MEMBER_IPS.slice(1)) {
      const added = await lab.execIn(lab.etcdHost.netns, `ip addr add ${ip}/24 dev ${lab.etcdHost.iface}`);
      if (added.code !== 0) throw new Error(`adding ${ip}: ${added.stderr}`);
    }
    const cluster = new TlsEtcdCluster(lab, dir, server, client);
    await Promise.all(MEMBER_IPS.map((_, index) => cluster.startMember(index, 'new')));
    await cluster.waitHealthy(MEMBER_IPS.map((_, index) => index));
    return cluster;
  }

  get endpoints(): string[] {
    return MEMBER_IPS.map((ip) => `https://${ip}:2379`);
  }

  /** weftd's flags for this cluster. */
  get agentFlags(): string[] {
    return [
      `--etcd-endpoints=${this.endpoints.join(',')}`,
      `--etcd-cafile=${this.client.caFile}`,
      `--etcd-certfile=${this.client.certFile}`,
      `--etcd-keyfile=${this.client.keyFile}`,
    ];
  }

  etcdctl(args: string, endpoints: readonly string[] = this.endpoints): Promise<ExecResult> {
    return this.lab.execIn(
      this.lab.etcdHost.netns,
      `ETCDCTL_API=3 etcdctl --endpoints=${endpoints.join(',')} --cacert=${this.client.caFile} --cert=${this.client.certFile} --key=${this.client.keyFile} ${args}`,
    );
  }

  async stopMember(index: number): Promise<void> {
    const child = this.members[index];
    this.members[index] = undefined;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGKILL');
    await exited;
  }

  async restartMember(index: number): Promise<void> {
    await this.startMember(index, 'existing');
  }

  async waitHealthy(indexes: readonly number[]): Promise<void> {
    const endpoints = indexes.map((index) => this.endpoints[index]);
    await waitFor(
      async () => (await this.etcdctl('endpoint health --command-timeout=1s', endpoints)).code === 0,
      'the etcd members to be healthy',
      30_000,
      200,
    );
  }

  private async startMember(index: number, state: 'new' | 'existing'): Promise<void> {
    const ip = MEMBER_IPS[index];
    const name = `m${index + 1}`;
    const logFile = join(this.dir, `${name}.log`);
    const fd = openSync(logFile, 'a');
    try {
      // `ip netns exec` execs etcd in place, so the child's pid is etcd's.
      this.members[index] = spawn(
        'ip',
        [
          'netns',
          'exec',
          this.lab.etcdHost.netns,
          'etcd',
          '--name',
          name,
          '--data-dir',
          join(this.dir, name),
          '--listen-client-urls',
          `https://${ip}:2379`,
          '--advertise-client-urls',
          `https://${ip}:2379`,
          '--listen-peer-urls',
          `https://${ip}:2380`,
          '--initial-advertise-peer-urls',
          `https://${ip}:2380`,
          '--initial-cluster',
          MEMBER_IPS.map((memberIp, i) => `m${i + 1}=https://${memberIp}:2380`).join(','),
          '--initial-cluster-state',
          state,
          '--client-cert-auth',
          '--trusted-ca-file',
          this.server.caFile,
          '--cert-file',
          this.server.certFile,
          '--key-file',
          this.server.keyFile,
          '--peer-client-cert-auth',
          '--peer-trusted-ca-file',
          this.server.caFile,
          '--peer-cert-file',
          this.server.certFile,
          '--peer-key-file',
          this.server.keyFile,
          '--logger',
          'zap',
          '--log-level',
          'warn',
        ],
        { stdio: ['ignore', fd, fd] },
      );
    } finally {
      closeSync(fd);
    }
  }
}
