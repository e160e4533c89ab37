import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Netns, requireNetns } from '../../test/netns.js';
import { parseWeftdOptions, UsageError } from './weftd-options.js';

const WEFTD = fileURLToPath(new URL('./weftd.js', import.meta.url));

async function parsed(argv: string[], env: NodeJS.ProcessEnv = {}) {
  const options = await parseWeftdOptions(argv, env);
  assert.ok(options);
  return options;
}

async function usageError(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<UsageError> {
  try {
    await parseWeftdOptions(argv, env);
  } catch (err) {
    assert.ok(err instanceof UsageError, `expected a UsageError, got ${String(err)}`);
    assert.equal(err.code, 'WEFT_USAGE');
    return err;
  }
  throw new Error(`${argv.join(' ')} was accepted`);
}

describe('weftd flags', function () {
  it("has flanneld's defaults", async function () {
    const options = await parsed([]);
    assert.deepEqual(options.etcd.endpoints, ['http://127.0.0.1:2379']);
    assert.equal(options.etcd.prefix, '/coreos.com/network');
    assert.equal(options.subnetFile, '/run/flannel/subnet.env');
    assert.equal(options.ipMasq, false);
    assert.equal(options.iptablesForwardRules, true);
    assert.equal(options.iptablesResyncSeconds, 5);
    assert.equal(options.leaseTtlSeconds, 24 * 3600);
    assert.equal(options.leaseRenewMarginSeconds, 3600);
    assert.equal(options.healthzPort, 0);
    assert.equal(options.releaseOnExit, false);
  });

  it("reads flags, repeatable --iface, WEFTD_* and flanneld's FLANNELD_* variables, weft's own winning", async function () {
    const options = await parsed(
      ['--iface=eth1', '--iface', '192.0.2.11', '--etcd-endpoints=http://192.0.2.2:2379,http://192.0.2.3:2379', '--ip-masq'],
      {
        FLANNELD_PUBLIC_IP: '192.0.2.50',
        FLANNELD_SUBNET_FILE: '/tmp/flannel.env',
        WEFTD_SUBNET_FILE: '/tmp/weft.env',
        FLANNELD_IFACE_REGEX: 'eth.*',
      },
    );
    assert.deepEqual(options.iface, ['eth1', '192.0.2.11']);
    assert.deepEqual(options.etcd.endpoints, ['http://192.0.2.2:2379', 'http://192.0.2.3:2379']);
    assert.equal(options.ipMasq, true);
    assert.equal(options.publicIP?.toString(), '192.0.2.50');
    assert.equal(options.subnetFile, '/tmp/weft.env');
    assert.deepEqual(
      options.ifaceRegex.map((regex) => regex.source),
      ['eth.*'],
    );
  });

  it('--vxlan-userspace overrides Backend.Userspace for this host only; unset, the config decides', async function () {
    assert.equal((await parsed([])).vxlanUserspace, undefined);
    assert.equal((await parsed(['--vxlan-userspace=always'])).vxlanUserspace, 'always');
    assert.equal((await parsed([], { WEFTD_VXLAN_USERSPACE: 'never' })).vxlanUserspace, 'never');
    const err = await usageError(['--vxlan-userspace=sometimes']);
    assert.equal(err.flag, 'vxlan-userspace');
    assert.match(err.message, /^--vxlan-userspace: Given: "sometimes", Choices: "auto", "always", "never"$/);
    const help = spawnSync(process.execPath, [WEFTD, '--help'], { encoding: 'utf8', timeout: 10_000 });
    assert.match(help.stdout, /--vxlan-userspace\s+this host's VXLAN data path, overriding the\s+network\s+config's\s+Backend\.Userspace/);
    assert.match(help.stdout, /\[choices: "auto", "always", "never"\]/);
  });

  it("WireGuard: the implementation (auto, kernel, userspace), the key file (flag, WEFTD_*, flanneld's WIREGUARD_KEY_FILE, /run/flannel/wgkey) and the socket directory", async function () {
    assert.deepEqual((await parsed([])).wireguard, {
      implementation: 'auto',
      keyFile: '/run/flannel/wgkey',
      socketDir: '/var/run/wireguard',
    });
    assert.equal((await parsed(['--wireguard-implementation=userspace'])).wireguard.implementation, 'userspace');
    assert.equal((await parsed([], { WIREGUARD_KEY_FILE: '/etc/flannel/wgkey' })).wireguard.keyFile, '/etc/flannel/wgkey');
    assert.equal(
      (await parsed([], { WIREGUARD_KEY_FILE: '/etc/flannel/wgkey', WEFTD_WIREGUARD_KEY_FILE: '/etc/weft/wgkey' })).wireguard.keyFile,
      '/etc/weft/wgkey',
    );
    assert.equal((await parsed(['--wireguard-key-file=/k'], { WEFTD_WIREGUARD_KEY_FILE: '/etc/weft/wgkey' })).wireguard.keyFile, '/k');
    assert.equal((await parsed(['--wireguard-socket-dir=/run/weft/wg'])).wireguard.socketDir, '/run/weft/wg');
    const err = await usageError(['--wireguard-implementation=fast']);
    assert.equal(err.flag, 'wireguard-implementation');
  });

  it('routes through nexthop objects unless --no-nexthop-objects (or WEFTD_NEXTHOP_OBJECTS=false) says otherwise', async function () {
    assert.equal((await parsed([])).nexthopObjects, true);
    assert.equal((await parsed(['--no-nexthop-objects'])).nexthopObjects, false);
    assert.equal((await parsed([], { WEFTD_NEXTHOP_OBJECTS: 'false' })).nexthopObjects, false);
  });

  it("reads flanneld's command lines: one-dash flags, Go's booleans", async function () {
    const options = await parsed([
      '-etcd-endpoints=http://192.0.2.2:2379',
      '-ip-masq',
      '-iptables-forward-rules=false',
      '-iface',
      'eth1',
      '-subnet-file=/tmp/s.env',
    ]);
    assert.deepEqual(options.etcd.endpoints, ['http://192.0.2.2:2379']);
    assert.equal(options.ipMasq, true);
    assert.equal(options.iptablesForwardRules, false);
    assert.deepEqual(options.iface, ['eth1']);
    assert.equal(options.subnetFile, '/tmp/s.env');
    for (const [text, value] of [
      ['1', true],
      ['t', true],
      ['TRUE', true],
      ['True', true],
      ['0', false],
      ['F', false],
      ['FALSE', false],
    ] as const) {
      assert.equal((await parsed([`--ip-masq=${text}`])).ipMasq, value, `--ip-masq=${text}`);
      assert.equal((await parsed([`-ip-masq=${text}`])).ipMasq, value, `-ip-masq=${text}`);
    }
    const err = await usageError(['--ip-masq=yes']);
    assert.equal(err.flag, 'ip-masq');
    assert.match(err.message, /"yes" is not a boolean/);
  });

  it("reads flanneld's environment files: FLANNELD_IP_MASQ=1 is true, other spellings are refused, empty is unset", async function () {
    assert.equal((await parsed([], { FLANNELD_IP_MASQ: '1' })).ipMasq, true);
    assert.equal((await parsed([], { FLANNELD_IP_MASQ: 't', WEFTD_IPTABLES_FORWARD_RULES: '0' })).iptablesForwardRules, false);
    assert.equal((await parsed(['--no-ip-masq'], { FLANNELD_IP_MASQ: 'TRUE' })).ipMasq, false, 'the command line wins');
    assert.equal((await parsed([], { WEFTD_IP_MASQ: '', FLANNELD_IP_MASQ: 'True' })).ipMasq, true, 'an empty WEFTD_ variable is unset');
    assert.deepEqual((await parsed([], { FLANNELD_ETCD_ENDPOINTS: '' })).etcd.endpoints, ['http://127.0.0.1:2379']);
    const err = await usageError([], { FLANNELD_IP_MASQ: 'yes' });
    assert.equal(err.flag, 'ip-masq');
    assert.match(err.message, /^--ip-masq: FLANNELD_IP_MASQ="yes" is not a boolean/);
  });

  it('uses an etcd client certificate without a CA file, and refuses a certificate without its key', async function () {
    const options = await parsed(['--etcd-certfile=/pki/client.crt'], { FLANNELD_ETCD_KEYFILE: '/pki/client.key' });
    assert.deepEqual([options.etcd.caFile, options.etcd.certFile, options.etcd.keyFile], [undefined, '/pki/client.crt', '/pki/client.key']);
    assert.equal((await usageError(['--etcd-certfile=/pki/client.crt'])).flag, 'etcd-keyfile');
  });

  it('names every flanneld flag and WEFTD_* / FLANNELD_* variable it ignores, and why', async function () {
    const options = await parsed(['-kube-subnet-mgr', '--kubeconfig-file', '/etc/kubeconfig', '-v=2', '--ip-masq'], {
      FLANNELD_KUBE_SUBNET_MGR: 'true',
      FLANNELD_IP_BLACKHOLE_ROUTE: 'true',
      FLANNELD_IPMASQ: 'true',
      FLANNELD_IFACE: 'eth1',
    });
    assert.equal(options.ipMasq, true);
    assert.deepEqual(options.iface, ['eth1']);
    assert.deepEqual(
      options.ignored.map((entry) => entry.setting),
      ['--kube-subnet-mgr', '--kubeconfig-file', '--v', 'FLANNELD_IPMASQ', 'FLANNELD_IP_BLACKHOLE_ROUTE', 'FLANNELD_KUBE_SUBNET_MGR'],
    );
    assert.match(
      options.ignored.find((entry) => entry.setting === 'FLANNELD_KUBE_SUBNET_MGR')!.reason,
      /weft has no Kubernetes subnet manager/,
    );
    assert.deepEqual((await parsed([], { FLANNELD_IFACE: 'eth1' })).ignored, []);
  });

  it("turns --random-fully off with flanneld's --ip-masq-fully-random-disable", async function () {
    assert.equal((await parsed([])).ipMasqRandomFullyDisable, false);
    assert.equal((await parsed([], { FLANNELD_IP_MASQ_FULLY_RANDOM_DISABLE: 'true' })).ipMasqRandomFullyDisable, true);
  });

  it('logs a warning for each ignored setting when it starts (in a network namespace)', async function () {
    requireNetns(this);
    this.timeout(30_000);
    const ns = Netns.create();
    const dir = mkdtempSync(join(tmpdir(), 'weft-ignored-'));
    try {
      // etcd never answers on the namespace's own loopback: weftd logs its warnings, then waits for it
      const child = spawn(
        'ip',
        [
          'netns',
          'exec',
          ns.name,
          process.execPath,
          WEFTD,
          '-kube-subnet-mgr',
          '--etcd-endpoints=http://127.0.0.1:9',
          `--node-id-file=${join(dir, 'node-id')}`,
          `--subnet-file=${join(dir, 'subnet.env')}`,
        ],
        {
          env: { PATH: process.env.PATH, FLANNELD_KUBE_API_URL: 'https://198.51.100.7:6443' },
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let output = '';
      const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
      const warned = new Promise<void>((resolve, reject) => {
        const onData = (chunk: Buffer) => {
          output += chunk.toString();
          if (output.includes('FLANNELD_KUBE_API_URL')) resolve();
        };
        child.stdout.on('data', onData);
        child.stderr.on('data', onData);
        child.once('close', () => reject(new Error(`weftd exited:\n${output}`)));
      });
      try {
        await warned;
      } finally {
        child.kill('SIGTERM');
        await exited;
      }
      const records = output
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as { level: number; msg: string; setting?: string; version?: string });
      // its first line, once its modules are loaded and before any work, says what runs (the benchmarks time it)
      assert.equal(records[0]?.msg, 'weftd starting', output);
      assert.equal(
        records[0]?.version,
        (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version,
      );
      const ignored = records.filter((record) => record.msg.startsWith('ignoring '));
      assert.deepEqual(
        ignored.map((record) => record.setting),
        ['--kube-subnet-mgr', 'FLANNELD_KUBE_API_URL'],
        output,
      );
      assert.ok(
        ignored.every((record) => record.level === 40),
        'warnings',
      );
      assert.match(ignored[0].msg, /^ignoring --kube-subnet-mgr: weft has no Kubernetes subnet manager/);
    } finally {
      ns.destroy();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names the flag in every bad value', async function () {
    const cases: [string[], NodeJS.ProcessEnv, string, RegExp][] = [
      [['--healthz-port', 'abc'], {}, 'healthz-port', /not an integer/],
      [['--healthz-port=70000'], {}, 'healthz-port', /not a port/],
      [['--public-ip=192.0.2'], {}, 'public-ip', /not an IP address/],
      [['--public-ip=2001:db8::1'], {}, 'public-ip', /not an IPv4 address/],
      [['--log-level=loud'], {}, 'log-level', /not one of/],
      [['--iface-regex=('], {}, 'iface-regex', /not a regular expression/],
      [['--etcd-endpoints=192.0.2.2:2379'], {}, 'etcd-endpoints', /not an http\(s\):\/\/host:port URL/],
      [['--subnet-lease-renew-margin=90', '--subnet-lease-ttl=60'], {}, 'subnet-lease-renew-margin', /not shorter/],
      [['--resync-interval=0'], {}, 'resync-interval', /≥ 0.1/],
      [['--bogus-flag'], {}, 'bogus-flag', /unknown flag/],
      [[], { FLANNELD_IPTABLES_RESYNC: 'soon' }, 'iptables-resync', /not a number/],
    ];
    for (const [argv, env, flag, message] of cases) {
      const err = await usageError(argv, env);
      assert.equal(err.flag, flag, `${argv.join(' ')}: ${err.message}`);
      assert.match(err.message, new RegExp(`^--${flag}: `));
      assert.match(err.message, message);
    }
  });

  it('exits with code 2 and names the flag on a bad value', function () {
    const result = spawnSync(process.execPath, [WEFTD, '--healthz-port=-1'], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH },
      timeout: 10_000,
    });
    assert.equal(result.status, 2);
    assert.match(result.stderr, /--healthz-port/);
    const help = spawnSync(process.execPath, [WEFTD, '--help'], { encoding: 'utf8', timeout: 10_000 });
    assert.equal(help.status, 0);
    assert.match(help.stdout, /--etcd-endpoints/);
    assert.match(help.stdout, /FLANNELD_<FLAG>/);
  });
});
