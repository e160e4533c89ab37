import assert from 'node:assert/strict';
import { childEnvironment, createCommandRunner } from './command.js';

describe('host commands', () => {
  const secrets = {
    WEFTD_ETCD_PASSWORD: 'weft-secret',
    FLANNELD_ETCD_KEYFILE: '/etc/flannel/client-key.pem',
    FLANNELD_ETCD_USERNAME: 'flannel',
    ETCDCTL_PASSWORD: 'etcdctl-secret',
    ETCD_PEER_KEY_FILE: '/etc/etcd/peer-key.pem',
    weftd_etcd_certfile: '/etc/weft/client.pem',
  };
  const kept = { WEFTD_IFACE: 'eth1', FLANNELD_IP_MASQ: 'true', WEFT_USERSPACE_NATIVE_UDP: '1' };
  let saved: Record<string, string | undefined>;

  beforeEach(() => {
    saved = Object.fromEntries(Object.keys({ ...secrets, ...kept }).map((name) => [name, process.env[name]]));
    Object.assign(process.env, secrets, kept);
  });

  afterEach(() => {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  });

  it('runs tools without the etcd settings in their environment (password, key and certificate paths), keeping the rest', async () => {
    const result = await createCommandRunner()(['env']);
    assert.equal(result.code, 0, result.stderr);
    const env = new Map(
      result.stdout
        .trim()
        .split('\n')
        .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
    );
    for (const name of Object.keys(secrets)) assert.equal(env.has(name), false, `${name} reached the tool`);
    for (const [name, value] of Object.entries(kept)) assert.equal(env.get(name), value);
    assert.equal(env.get('LC_ALL'), 'C');
    assert.equal(env.get('PATH'), process.env.PATH);
  });

  it("childEnvironment: the same for weft's own helper processes", () => {
    const env = childEnvironment({ EXTRA: '1' });
    for (const name of Object.keys(secrets)) assert.equal(env[name], undefined, name);
    assert.equal(env.WEFTD_IFACE, 'eth1');
    assert.equal(env.EXTRA, '1');
  });
});
