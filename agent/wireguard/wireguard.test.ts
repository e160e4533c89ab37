import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { scenarioRunner, useNetns } from '../../test/netns.js';
import { IpAddress } from '../../common/cidr.js';
import { parseNetworkConfig, type WireguardBackendConfig } from '../../common/config.js';
import { formatLeaseAttrs, parseLeaseAttrs } from '../../common/lease.js';
import { wireguardBackendData } from './wireguard.js';
import { keyFromHex, keyToHex, loadOrCreateKeys, WireguardKeyError, WireguardKeys } from './keys.js';
import { UapiClient, UapiError } from './uapi.js';
import { inSocketDir } from './wireguard-go.js';
import type * as Scenarios from './wireguard.scenarios.js';

const run = scenarioRunner<typeof Scenarios>(new URL('./wireguard.scenarios.js', import.meta.url));
const wireguardGo =
  spawnSync('wireguard-go', ['--version'], { stdio: 'ignore' }).status === 0 &&
  spawnSync('wg', ['--version'], { stdio: 'ignore' }).status === 0;

function wgPubkey(privateKey: string): string {
  return spawnSync('wg', ['pubkey'], { input: privateKey, encoding: 'utf8' }).stdout.trim();
}

describe('wireguard keys', function () {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'weft-wgkey-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('makes the key file (0600, parent directories too) on first start and reuses it afterwards', async function () {
    const path = join(dir, 'run', 'flannel', 'wgkey');
    const first = await loadOrCreateKeys(path);
    assert.equal(first.created, true);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.equal(first.mode, 0o600);
    // flanneld's format: the base64 key without a newline
    assert.match(readFileSync(path, 'utf8'), /^[A-Za-z0-9+/]{43}=$/);
    const second = await loadOrCreateKeys(path);
    assert.equal(second.created, false);
    assert.equal(second.keys.publicKey, first.keys.publicKey);
  });

  it('derives the public key as wg pubkey does, from a key of its own or one wg genkey made', async function () {
    if (!wireguardGo) this.skip();
    const path = join(dir, 'wgkey');
    const made = await loadOrCreateKeys(path);
    assert.equal(made.keys.publicKey, wgPubkey(readFileSync(path, 'utf8')));
    const genkey = spawnSync('wg', ['genkey'], { encoding: 'utf8' }).stdout;
    writeFileSync(path, genkey); // with the newline wg writes
    assert.equal((await loadOrCreateKeys(path)).keys.publicKey, wgPubkey(genkey));
  });

  it('never shows the private key: not in inspect, JSON, string form or the error for a bad file', async function () {
    const keys = WireguardKeys.generate();
    const secret = keys.privateKeyBase64();
    for (const shown of [inspect(keys), JSON.stringify(keys), String(keys), JSON.stringify({ keys })]) {
      assert.ok(!shown.includes(secret) && !shown.includes(keys.privateKeyHex()), shown);
      assert.ok(shown.includes(keys.publicKey), shown);
    }
    const path = join(dir, 'wgkey');
    const almost = `${secret.slice(0, 40)}!!!=`;
    writeFileSync(path, almost, { mode: 0o600 });
    await assert.rejects(loadOrCreateKeys(path), (err: Error) => {
      assert.ok(err instanceof WireguardKeyError);
      assert.equal(err.code, 'WEFT_WIREGUARD_KEY');
      assert.ok(!err.message.includes(secret.slice(0, 40)), err.message);
      assert.match(err.message, /does not hold a key/);
      return true;
    });
  });

  it("converts between the lease's base64 and the UAPI's hex", function () {
    const keys = WireguardKeys.generate();
    assert.equal(keyFromHex(keyToHex(keys.publicKey)), keys.publicKey);
    assert.match(keyToHex(keys.publicKey), /^[0-9a-f]{64}$/);
  });
});

describe('wireguard lease', function () {
  const KEY = 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=';

  it("writes flanneld's wireguard lease value byte for byte (IPv4, and dual stack with Mode separate)", function () {
    // as flanneld v0.26.6 and later marshal its LeaseAttrs and wireguardLeaseAttrs{PublicKey, Port}
    const flanneld = `{"PublicIP":"192.0.2.12","PublicIPv6":null,"BackendType":"wireguard","BackendData":{"PublicKey":"${KEY}","Port":51820}}`;
    const v4 = parseNetworkConfig('{"Network":"198.18.0.0/16","Backend":{"Type":"wireguard"}}').backend as WireguardBackendConfig;
    const attrs = {
      publicIP: IpAddress.parse('192.0.2.12'),
      publicIPv6: undefined,
      backendType: 'wireguard',
      backendData: wireguardBackendData(KEY, v4, 4),
      backendV6Data: undefined,
      extra: {},
    };
    assert.equal(formatLeaseAttrs(attrs), flanneld);
    const dual = `{"PublicIP":"192.0.2.12","PublicIPv6":"2001:db8:0:1::12","BackendType":"wireguard","BackendData":{"PublicKey":"${KEY}","Port":51820},"BackendV6Data":{"PublicKey":"${KEY}","Port":51821}}`;
    assert.equal(
      formatLeaseAttrs({ ...attrs, publicIPv6: IpAddress.parse('2001:db8:0:1::12'), backendV6Data: wireguardBackendData(KEY, v4, 6) }),
      dual,
    );
    assert.equal(formatLeaseAttrs(parseLeaseAttrs(dual, 'k')), dual);
  });
});

describe('wireguard-go socket directory', function () {
  it('runs a command as is for /var/run/wireguard, else in a private mount namespace with the directory bind-mounted there', function () {
    assert.deepEqual(inSocketDir('/var/run/wireguard', ['wg', 'show']), ['wg', 'show']);
    assert.deepEqual(inSocketDir('/run/wireguard/', ['wg', 'show']), ['wg', 'show']);
    const argv = inSocketDir('/tmp/lab/h1/wireguard', ['wireguard-go', '-f', 'weft-wg']);
    assert.deepEqual(argv.slice(0, 5), ['unshare', '--mount', '--propagation', 'private', '--']);
    assert.deepEqual(argv.slice(-4), ['/tmp/lab/h1/wireguard', 'wireguard-go', '-f', 'weft-wg']);
  });

  it('a UAPI socket that is not there is a UapiError naming the socket', async function () {
    await assert.rejects(
      new UapiClient('/nonexistent/weft-wg.sock').get(),
      (err: Error) =>
        err instanceof UapiError && err.code === 'WEFT_WIREGUARD_UAPI' && /\/nonexistent\/weft-wg\.sock: ENOENT/.test(err.message),
    );
  });
});

describe('wireguard-go in a namespace', function () {
  this.timeout(60_000);
  // Registered before useNetns' hook, so that it runs first: a scenario that timed out leaves its
  // wireguard-go behind, which must not outlive the namespace.
  afterEach(function () {
    for (const name of spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' })
      .stdout.split('\n')
      .map((line) => line.split(' ')[0])) {
      if (!name.startsWith(`weft-wg-${process.pid}-`)) continue;
      for (const pid of spawnSync('ip', ['netns', 'pids', name], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean)) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // gone already
        }
      }
    }
  });
  const ns = useNetns('weft-wg');
  before(function () {
    if (!wireguardGo) {
      process.stderr.write('      (skipped: wireguard-go and wireguard-tools are not installed: deploy/ensure-deps.sh installs them)\n');
      this.skip();
    }
  });

  /** These tests are for kernels without WireGuard (this machine class): where `auto` would pick the kernel they say so and stop. */
  function requireNoKernelWireguard(context: Mocha.Context): void {
    const probe = ns();
    const made = spawnSync('ip', ['-n', probe.name, 'link', 'add', 'wgprobe', 'type', 'wireguard'], { stdio: 'ignore' }).status === 0;
    if (made) {
      process.stderr.write('      (skipped: this kernel has WireGuard; the wireguard-go fallback is covered where it has not)\n');
      context.skip();
    }
  }

  it('the UAPI client and wg read and change the same device; the peer table repairs drift in one set and leaves an unchanged device alone', async function () {
    const peers = [WireguardKeys.generate(), WireguardKeys.generate(), WireguardKeys.generate()].map((keys) => keys.publicKey);
    const psk = WireguardKeys.generate().privateKeyBase64();
    const result = await run(ns(), 'controls', { peers, psk }, { timeoutMs: 40_000 });
    const [a, b, c] = peers as [string, string, string];
    assert.match(result.socketPath, /^\/tmp\/weft-wg-[^/]+\/wgt0\.sock$/);
    assert.equal(result.viaUapi.listenPort, 51820);
    assert.equal(result.viaUapi.publicKey, result.ownPublicKey);
    assert.deepEqual(result.viaUapi.peers, {
      [a]: { endpoint: '192.0.2.12:51820', allowedIPs: ['198.18.2.0/24'], psk: true, keepalive: 25 },
      [b]: { endpoint: '[2001:db8:0:1::13]:51821', allowedIPs: ['198.18.3.0/24', '2001:db8:100:3::/64'], psk: false, keepalive: 0 },
    });
    assert.deepEqual(result.viaWg, result.viaUapi, 'wg show dump reads what the UAPI does');
    assert.deepEqual(result.afterWg.peers, {
      [a]: { endpoint: '192.0.2.99:4000', allowedIPs: ['198.18.9.0/24'], psk: false, keepalive: 0 },
      [c]: { endpoint: '192.0.2.14:51820', allowedIPs: ['198.18.4.0/24'], psk: true, keepalive: 5 },
    });
    assert.deepEqual(result.wgDevice, { keyMatches: true, listenPort: 4000, peers: 2 });
    // a changed, b missing, c not wanted: three peers in one set
    assert.deepEqual({ operations: result.repair.operations, failures: result.repair.failures }, { operations: 3, failures: 0 });
    assert.deepEqual(result.repair.device.peers, {
      [a]: { endpoint: '192.0.2.12:51820', allowedIPs: ['198.18.2.0/24'], psk: true, keepalive: 25 },
      [b]: { endpoint: '[2001:db8:0:1::13]:51821', allowedIPs: ['198.18.3.0/24', '2001:db8:100:3::/64'], psk: true, keepalive: 25 },
    });
    // the event path touches the keys it is given only: a stays although no longer desired
    assert.equal(result.incremental.operations, 1);
    assert.deepEqual(Object.keys(result.incremental.device.peers).sort(), [a, b].sort());
    assert.deepEqual(result.incremental.device.peers[b], {
      endpoint: '[2001:db8:0:1::13]:4001',
      allowedIPs: ['198.18.3.0/24'],
      psk: true,
      keepalive: 25,
    });
    // the next full run removes a; nothing else
    assert.equal(result.idle.operations, 1);
  });

  it('the backend: wireguard-go for "auto" without a WireGuard module, address .0/32, the route for the network, MTU − 80, its key and port; repairs them', async function () {
    requireNoKernelWireguard(this);
    const dir = mkdtempSync(join(tmpdir(), 'weft-wgdev-'));
    try {
      const result = await run(
        ns(),
        'device',
        { keyFile: join(dir, 'wgkey'), socketDir: join(dir, 'sockets'), implementation: 'auto' },
        { timeoutMs: 40_000 },
      );
      assert.equal(result.kind, 'tun');
      assert.equal(result.mtu, 1420);
      assert.equal(result.up, true);
      assert.match(result.addresses, /inet 198\.18\.5\.0\/32/);
      assert.match(result.routes, /^198\.18\.0\.0\/16 scope link/m);
      assert.equal(result.listenPort, 4500);
      assert.equal(result.publicKeyMatches, true);
      assert.equal(result.dataPath, 'userspace');
      assert.match(
        result.reason,
        /^--wireguard-implementation "auto": kernel WireGuard is unavailable \(.+\), wireguard-go on TUN instead$/,
      );
      assert.match(result.repaired.addresses, /inet 198\.18\.5\.0\/32/);
      assert.match(result.repaired.routes, /^198\.18\.0\.0\/16 scope link/m);
      assert.equal(result.linkAfterClose, false);
      assert.equal(statSync(join(dir, 'wgkey')).mode & 0o777, 0o600);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('--wireguard-implementation=kernel without a WireGuard module: a clear error, no wireguard-go', async function () {
    requireNoKernelWireguard(this);
    const dir = mkdtempSync(join(tmpdir(), 'weft-wgdev-'));
    try {
      await assert.rejects(
        run(
          ns(),
          'device',
          { keyFile: join(dir, 'wgkey'), socketDir: join(dir, 'sockets'), implementation: 'kernel' },
          { timeoutMs: 40_000 },
        ),
        (err: Error & { code?: string }) => {
          assert.equal(err.code, 'WEFT_WIREGUARD_DEVICE');
          assert.match(
            err.message,
            /kernel WireGuard is unavailable \(create wireguard weft-wg mtu 1420: E[A-Z]+\); load the wireguard module/,
          );
          return true;
        },
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
