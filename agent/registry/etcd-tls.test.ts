import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../test/etcd-server.js';
import { waitFor } from '../../test/wait.js';

const WEFTCTL = fileURLToPath(new URL('../cli/weftctl.js', import.meta.url));
const CONFIG = '{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"}}';

describe('etcd over TLS with client certificates (a real etcd on loopback)', function () {
  this.timeout(60_000);
  let dir: string;
  let etcd: ChildProcess | undefined;
  let endpoint: string;
  const at = (name: string) => join(dir, name);

  function openssl(...args: string[]): void {
    execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  }

  function etcdctl(...args: string[]): string {
    return execFileSync(
      'etcdctl',
      [
        `--endpoints=${endpoint}`,
        `--cacert=${at('ca.crt')}`,
        `--cert=${at('client.crt')}`,
        `--key=${at('client.key')}`,
        '--command-timeout=2s',
        ...args,
      ],
      {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { PATH: process.env.PATH, ETCDCTL_API: '3' },
      },
    );
  }

  /** weftctl with exactly this environment (and PATH), no environment file. */
  function weftctl(env: Record<string, string>, ...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      const child = spawn(process.execPath, [WEFTCTL, '--environment-file=', ...args], { env: { PATH: process.env.PATH, ...env } });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      child.on('close', (code) => resolve({ code, stdout, stderr }));
    });
  }

  before(async function () {
    dir = mkdtempSync(join(tmpdir(), 'weft-etcd-tls-'));
    // a CA, a server certificate for 127.0.0.1 and a client certificate, as an etcd operator makes them
    writeFileSync(at('server.ext'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
    writeFileSync(at('client.ext'), 'extendedKeyUsage=clientAuth\n');
    openssl(
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '2',
      '-subj',
      '/CN=weft-test-ca',
      '-keyout',
      at('ca.key'),
      '-out',
      at('ca.crt'),
    );
    for (const name of ['server', 'client']) {
      openssl(
        'req',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-subj',
        `/CN=${name === 'client' ? 'weft' : 'etcd'}`,
        '-keyout',
        at(`${name}.key`),
        '-out',
        at(`${name}.csr`),
      );
      openssl(
        'x509',
        '-req',
        '-in',
        at(`${name}.csr`),
        '-CA',
        at('ca.crt'),
        '-CAkey',
        at('ca.key'),
        '-CAcreateserial',
        '-days',
        '2',
        '-extfile',
        at(`${name}.ext`),
        '-out',
        at(`${name}.crt`),
      );
    }
    const [clientPort, peerPort] = [await freePort(), await freePort()];
    endpoint = `https://127.0.0.1:${clientPort}`;
    const peer = `http://127.0.0.1:${peerPort}`;
    etcd = spawn(
      'etcd',
      [
        '--name',
        'weft-tls',
        '--data-dir',
        at('data'),
        '--listen-client-urls',
        endpoint,
        '--advertise-client-urls',
        endpoint,
        '--listen-peer-urls',
        peer,
        '--initial-advertise-peer-urls',
        peer,
        '--initial-cluster',
        `weft-tls=${peer}`,
        '--client-cert-auth',
        '--trusted-ca-file',
        at('ca.crt'),
        '--cert-file',
        at('server.crt'),
        '--key-file',
        at('server.key'),
        '--logger',
        'zap',
        '--log-level',
        'error',
      ],
      { stdio: 'ignore' },
    );
    await waitFor(
      () => {
        try {
          etcdctl('endpoint', 'health');
          return true;
        } catch {
          return false;
        }
      },
      'etcd with TLS to be healthy',
      20_000,
      100,
    );
    etcdctl('put', '/coreos.com/network/config', CONFIG);
  });

  after(async function () {
    if (etcd !== undefined && etcd.exitCode === null) {
      const exited = new Promise((resolve) => etcd!.once('exit', resolve));
      etcd.kill('SIGKILL');
      await exited;
    }
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('reads the config with --etcd-cafile, --etcd-certfile and --etcd-keyfile', async function () {
    const result = await weftctl(
      {},
      `--etcd-endpoints=${endpoint}`,
      `--etcd-cafile=${at('ca.crt')}`,
      `--etcd-certfile=${at('client.crt')}`,
      `--etcd-keyfile=${at('client.key')}`,
      'config',
      'get',
    );
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(JSON.parse(result.stdout), JSON.parse(CONFIG));
  });

  it('presents the client certificate without --etcd-cafile, the server verified by the default CA store', async function () {
    // the CA is not given as a flag: Node's default store, to which NODE_EXTRA_CA_CERTS adds it, vouches for the server
    const trusted = { NODE_EXTRA_CA_CERTS: at('ca.crt') };
    const flags = [`--etcd-endpoints=${endpoint}`, `--etcd-certfile=${at('client.crt')}`, `--etcd-keyfile=${at('client.key')}`];
    const result = await weftctl(trusted, ...flags, 'config', 'get');
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(JSON.parse(result.stdout), JSON.parse(CONFIG));
    // the same as FLANNELD_* variables of a flanneld unit
    const fromEnv = await weftctl(
      { ...trusted, FLANNELD_ETCD_ENDPOINTS: endpoint, FLANNELD_ETCD_CERTFILE: at('client.crt'), FLANNELD_ETCD_KEYFILE: at('client.key') },
      'config',
      'get',
    );
    assert.equal(fromEnv.code, 0, fromEnv.stderr);

    // the server requires the certificate: without it the handshake fails; without the CA trusted, so does verification
    const noCert = await weftctl(trusted, `--etcd-endpoints=${endpoint}`, 'config', 'get');
    assert.equal(noCert.code, 1, noCert.stdout);
    assert.match(noCert.stderr, /alert bad certificate/, 'refused by the server for want of a client certificate');
    const untrusted = await weftctl({}, ...flags, 'config', 'get');
    assert.equal(untrusted.code, 1, untrusted.stdout);
    assert.match(untrusted.stderr, /unable to verify the first certificate/, 'the server refused by the client');
  });
});
