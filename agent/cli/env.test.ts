import assert from 'node:assert/strict';
import {
  etcdTlsFiles,
  FLANNELD_ONLY_FLAGS,
  flagsFromEnvironment,
  ignoredEnvironment,
  normalizeArgv,
  parseGoBool,
  UsageError,
  type FlagKind,
} from './env.js';

const KINDS: ReadonlyMap<string, FlagKind> = new Map([
  ['ip-masq', 'boolean'],
  ['iptables-forward-rules', 'boolean'],
  ['etcd-endpoints', 'value'],
  ['etcd-password', 'value'],
  ['iface', 'value'],
]);

function usageError(fn: () => unknown): UsageError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof UsageError, `expected a UsageError, got ${String(err)}`);
    assert.equal(err.code, 'WEFT_USAGE');
    return err;
  }
  throw new Error('accepted');
}

describe('flags and environment as flanneld reads them (no root)', function () {
  it("reads booleans as Go's strconv.ParseBool does, and nothing else", function () {
    for (const text of ['1', 't', 'T', 'TRUE', 'true', 'True']) assert.equal(parseGoBool(text), true, text);
    for (const text of ['0', 'f', 'F', 'FALSE', 'false', 'False']) assert.equal(parseGoBool(text), false, text);
    for (const text of ['', 'yes', 'no', 'on', 'off', 'tRUE', ' true', '2', 'y'])
      assert.equal(parseGoBool(text), undefined, JSON.stringify(text));
  });

  it("accepts Go's one-dash long flags and Go's booleans on the command line", function () {
    const { argv, ignored } = normalizeArgv(
      ['-etcd-endpoints=http://192.0.2.2:2379', '-ip-masq', '-iptables-forward-rules=F', '--ip-masq=1', '-iface', 'eth1', '-o', 'json'],
      KINDS,
    );
    assert.deepEqual(argv, [
      '--etcd-endpoints=http://192.0.2.2:2379',
      '--ip-masq',
      '--no-iptables-forward-rules',
      '--ip-masq',
      '--iface',
      'eth1',
      '-o',
      'json',
    ]);
    assert.deepEqual(ignored, []);
    assert.deepEqual(normalizeArgv(['-ip-masq=false', '--ip-masq=True'], KINDS).argv, ['--no-ip-masq', '--ip-masq']);
  });

  it("passes a value flag's separate value through, dash or not, and leaves everything after -- alone", function () {
    assert.deepEqual(normalizeArgv(['-etcd-password', '-secret', '--', '-ip-masq=yes'], KINDS).argv, [
      '--etcd-password',
      '-secret',
      '--',
      '-ip-masq=yes',
    ]);
    assert.deepEqual(normalizeArgv(['config', 'set', '--file', '-'], KINDS).argv, ['config', 'set', '--file', '-']);
  });

  it('refuses any other spelling of a boolean, naming the flag', function () {
    for (const arg of ['--ip-masq=yes', '-ip-masq=on', '--iptables-forward-rules=', '-ip-masq=2']) {
      const err = usageError(() => normalizeArgv([arg], KINDS));
      assert.equal(err.flag, arg.includes('forward') ? 'iptables-forward-rules' : 'ip-masq');
      assert.match(
        err.message,
        /^--(ip-masq|iptables-forward-rules): ".*" is not a boolean \(one of 1, t, T, TRUE, true, True, 0, f, F, FALSE, false, False\)$/,
      );
    }
  });

  it("takes flanneld's flags weftd does not have out of the command line, with their values, and says why", function () {
    const { argv, ignored } = normalizeArgv(
      [
        '-kube-subnet-mgr',
        '--kube-api-url',
        'https://198.51.100.7:6443',
        '-v=2',
        '--ip-masq',
        '-iface-can-reach=192.0.2.2',
        '--ip-blackhole-route=true',
      ],
      KINDS,
      FLANNELD_ONLY_FLAGS,
    );
    assert.deepEqual(argv, ['--ip-masq']);
    assert.deepEqual(
      ignored.map((entry) => entry.setting),
      ['--kube-subnet-mgr', '--kube-api-url', '--v', '--iface-can-reach', '--ip-blackhole-route'],
    );
    assert.match(ignored[0].reason, /weft has no Kubernetes subnet manager/);
    assert.match(ignored[1].reason, /--kube-subnet-mgr/);
    assert.match(ignored[2].reason, /--log-level/);
  });

  it('sets flags from WEFTD_* before FLANNELD_*, booleans as Go reads them, an empty value as unset', function () {
    const env = {
      FLANNELD_IP_MASQ: '1',
      FLANNELD_IPTABLES_FORWARD_RULES: 'F',
      WEFTD_ETCD_ENDPOINTS: '',
      FLANNELD_ETCD_ENDPOINTS: 'http://192.0.2.2:2379',
      FLANNELD_IFACE: 'eth1,eth2',
      WEFTD_ETCD_PASSWORD: '',
    };
    assert.deepEqual(flagsFromEnvironment(KINDS, [], env), [
      '--ip-masq',
      '--no-iptables-forward-rules',
      '--etcd-endpoints=http://192.0.2.2:2379',
      '--iface=eth1,eth2',
    ]);
    assert.deepEqual(flagsFromEnvironment(KINDS, ['--no-ip-masq', '--iface=eth9'], { ...env, WEFTD_IP_MASQ: 'false' }), [
      '--no-iptables-forward-rules',
      '--etcd-endpoints=http://192.0.2.2:2379',
    ]);
    assert.deepEqual(flagsFromEnvironment(KINDS, [], { WEFTD_IP_MASQ: 'T', FLANNELD_IP_MASQ: '0' }), ['--ip-masq']);
  });

  it('refuses a boolean variable spelt otherwise, naming the variable and the flag', function () {
    const err = usageError(() => flagsFromEnvironment(KINDS, [], { FLANNELD_IP_MASQ: 'yes' }));
    assert.equal(err.flag, 'ip-masq');
    assert.match(
      err.message,
      /^--ip-masq: FLANNELD_IP_MASQ="yes" is not a boolean \(one of 1, t, T, TRUE, true, True, 0, f, F, FALSE, false, False\)$/,
    );
  });

  it('names every WEFTD_* / FLANNELD_* variable that sets no flag, with the reason', function () {
    const ignored = ignoredEnvironment(KINDS, {
      FLANNELD_KUBE_SUBNET_MGR: 'true',
      FLANNELD_IP_MASQ: 'true',
      WEFTD_IFACE: 'eth1',
      FLANNELD_NET_CONFIG_PATH: '/etc/kube-flannel/net-conf.json',
      FLANNELD_LOG_BACKTRACE_AT: 'main.go:1',
      FLANNELD_IPMASQ: 'true',
      WEFTD_BOGUS: '1',
      FLANNELD_HEALTHZ_IP: '',
      FLANNEL_MTU: '1450',
      PATH: '/bin',
    });
    assert.deepEqual(
      ignored.map((entry) => entry.setting),
      ['FLANNELD_IPMASQ', 'FLANNELD_KUBE_SUBNET_MGR', 'FLANNELD_LOG_BACKTRACE_AT', 'FLANNELD_NET_CONFIG_PATH', 'WEFTD_BOGUS'],
    );
    assert.equal(ignored[0].reason, 'no flag of flanneld or weftd has this name');
    assert.equal(ignored[1].reason, 'weft has no Kubernetes subnet manager: subnets come from etcd (--etcd-endpoints)');
    assert.match(ignored[3].reason, /Kubernetes subnet manager/);
  });

  it('takes a client certificate and key with or without a CA file; one without the other is refused', function () {
    assert.deepEqual(etcdTlsFiles({ 'etcd-certfile': '/pki/client.crt', 'etcd-keyfile': '/pki/client.key' }), {
      caFile: undefined,
      certFile: '/pki/client.crt',
      keyFile: '/pki/client.key',
    });
    assert.deepEqual(etcdTlsFiles({ 'etcd-cafile': '', 'etcd-certfile': '', 'etcd-keyfile': '' }), {
      caFile: undefined,
      certFile: undefined,
      keyFile: undefined,
    });
    assert.equal(usageError(() => etcdTlsFiles({ 'etcd-certfile': '/pki/client.crt' })).flag, 'etcd-keyfile');
    assert.equal(usageError(() => etcdTlsFiles({ 'etcd-cafile': '/pki/ca.crt', 'etcd-keyfile': '/pki/client.key' })).flag, 'etcd-certfile');
  });
});
