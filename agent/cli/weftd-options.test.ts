import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
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

  it('reads flags, repeatable --iface, WEFTD_* and flanneld\'s FLANNELD_* variables, weft\'s own winning', async function () {
    const options = await parsed(
      ['--iface=eth1', '--iface', '192.0.2.11', '--etcd-endpoints=http://192.0.2.2:2379,http://192.0.2.3:2379', '--ip-masq'],
      { FLANNELD_PUBLIC_IP: '192.0.2.50', FLANNELD_SUBNET_FILE: '/tmp/flannel.env', WEFTD_SUBNET_FILE: '/tmp/weft.env', FLANNELD_IFACE_REGEX: 'eth.*' },
    );
    assert.deepEqual(options.iface, ['eth1', '192.0.2.11']);
    assert.deepEqual(options.etcd.endpoints, ['http://192.0.2.2:2379', 'http://192.0.2.3:2379']);
    assert.equal(options.ipMasq, true);
    assert.equal(options.publicIP?.toString(), '192.0.2.50');
    assert.equal(options.subnetFile, '/tmp/weft.env');
    assert.deepEqual(options.ifaceRegex.map((regex) => regex.source), ['eth.*']);
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

  it('WireGuard: the implementation (auto, kernel, userspace), the key file (flag, WEFTD_*, flanneld\'s WIREGUARD_KEY_FILE, /run/flannel/wgkey) and the socket directory', async function () {
    assert.deepEqual((await parsed([])).wireguard, { implementation: 'auto', keyFile: '/run/flannel/wgkey', socketDir: '/var/run/wireguard' });
    assert.equal((await parsed(['--wireguard-implementation=userspace'])).wireguard.implementation, 'userspace');
    assert.equal((await parsed([], { WIREGUARD_KEY_FILE: '/etc/flannel/wgkey' })).wireguard.keyFile, '/etc/flannel/wgkey');
    assert.equal((await parsed([], { WIREGUARD_KEY_FILE: '/etc/flannel/wgkey', WEFTD_WIREGUARD_KEY_FILE: '/etc/weft/wgkey' })).wireguard.keyFile, '/etc/weft/wgkey');
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
    const result = spawnSync(process.execPath, [WEFTD, '--healthz-port=-1'], { encoding: 'utf8', env: { PATH: process.env.PATH }, timeout: 10_000 });
    assert.equal(result.status, 2);
    assert.match(result.stderr, /--healthz-port/);
    const help = spawnSync(process.execPath, [WEFTD, '--help'], { encoding: 'utf8', timeout: 10_000 });
    assert.equal(help.status, 0);
    assert.match(help.stdout, /--etcd-endpoints/);
    assert.match(help.stdout, /FLANNELD_<FLAG>/);
  });
});
