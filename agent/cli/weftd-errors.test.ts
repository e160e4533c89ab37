/**
 * What weftd says when it cannot start: the flag whose file is missing, that it needs root (a netlink
 * EPERM as a user), errors in the log with their stack and code and nothing else of them; --iface's default.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { netnsAvailable } from '../../test/netns.js';
import { asReachableByOthers } from '../../test/unprivileged.js';
import { NetnsLab, seedNetworkConfig, shellQuote } from '../../e2e/lab/index.js';
import { createLogger } from '../log.js';
import { NetlinkError } from '../kernel/index.js';

const WEFTD = fileURLToPath(new URL('./weftd.js', import.meta.url));

function weftd(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [WEFTD, ...args], { encoding: 'utf8', timeout: 30_000, env: { PATH: process.env.PATH } });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('weftd: what it says when it cannot start', function () {
  this.timeout(60_000);

  it('--help says what --iface defaults to', function () {
    const help = weftd('--help');
    assert.equal(help.code, 0, help.stderr);
    assert.match(
      help.stdout.replace(/\s+/g, ' '),
      /--iface interface \(name or IP\) for inter-host traffic; repeatable, first match wins \(default: the interface of the default route/,
    );
  });

  it('names the flag whose file is missing', function () {
    const result = weftd('--etcd-endpoints=http://127.0.0.1:9', '--etcd-cafile=/nonexistent/ca.crt');
    assert.equal(result.code, 2);
    assert.equal(
      result.stderr,
      'weftd: --etcd-cafile: cannot read /nonexistent/ca.crt: no such file (ENOENT)\nRun weftd --help for the flags.\n',
    );
  });

  it('logs an error with its type, message, stack, code and causes, and none of its other fields', function () {
    const lines: string[] = [];
    const log = createLogger(
      'info',
      new Writable({
        write(chunk: Buffer, _encoding, done) {
          lines.push(chunk.toString());
          done();
        },
      }),
    );
    const err = Object.assign(new NetlinkError('create vxlan weft.1', 1), { options: { password: 'hunter2' } });
    log.error({ err: Object.assign(new Error('outer', { cause: err }), { code: 'WEFT_X', auth: { token: 'secret' } }) }, 'failed');
    const entry = JSON.parse(lines[0]) as { err: Record<string, unknown> & { cause: Record<string, unknown> } };
    assert.equal(entry.err.message, 'outer');
    assert.equal(entry.err.code, 'WEFT_X');
    assert.match(String(entry.err.stack), /^Error: outer\n\s+at /);
    assert.equal(entry.err.cause.errnoName, 'EPERM');
    assert.equal(entry.err.cause.code, 'WEFT_NETLINK');
    assert.equal(entry.err.cause.type, 'NetlinkError');
    assert.doesNotMatch(lines[0], /hunter2|secret/);
  });

  it('says to run it as root when the kernel refuses a user (netlink, nft, sysctl: EPERM, EACCES)', async function () {
    if (!netnsAvailable()) this.skip();
    const lab = await NetnsLab.create({ hosts: 1 });
    // a directory the user may write: what fails is the kernel's refusal, not a file
    const dir = mkdtempSync(join(tmpdir(), 'weftd-nobody-'));
    chmodSync(dir, 0o777);
    try {
      await seedNetworkConfig(lab);
      const host = lab.hosts[0];
      const argv = [
        'setpriv',
        '--reuid=65534',
        '--regid=65534',
        '--clear-groups',
        process.execPath,
        WEFTD,
        `--etcd-endpoints=${lab.etcdEndpoint}`,
        `--subnet-file=${dir}/subnet.env`,
        `--node-id-file=${dir}/node-id`,
      ];
      const result = await asReachableByOthers(WEFTD, () => lab.exec(host, argv.map(shellQuote).join(' '), { timeoutMs: 30_000 }));
      assert.equal(result.code, 1, result.stdout + result.stderr);
      const fatal = (result.stdout + result.stderr)
        .split('\n')
        .filter((line) => line.includes('"level":60'))
        .map((line) => JSON.parse(line) as { msg: string; err: { code: string; errnoName?: string; stack: string } });
      assert.equal(fatal.length, 1, result.stderr);
      // which refusal comes first varies: a netlink request, nft, the ip_forward sysctl
      assert.match(
        fatal[0].msg,
        /^weftd failed to start \((EPERM|EACCES): weftd needs root for this: run it with sudo, e\.g\. sudo weftd …\)$/,
      );
      assert.ok(fatal[0].err.code !== undefined);
      assert.match(fatal[0].err.stack, /\n\s+at /);
    } finally {
      await lab.destroy();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
