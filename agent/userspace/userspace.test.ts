import assert from 'node:assert/strict';
import { constants } from 'node:os';
import { IpAddress, Prefix } from '../../common/cidr.js';
import { parseNetworkConfig, type VxlanBackendConfig } from '../../common/config.js';
import { scenarioRunner, useNetns } from '../../test/netns.js';
import type { BackendContext } from '../backend.js';
import type { PublicInterface } from '../host/interfaces.js';
import { NetlinkError, type Kernel } from '../kernel/index.js';
import { createLogger } from '../log.js';
import { createUdpBackend } from '../udp/udp.js';
import { AutoVxlanBackend, createVxlanBackend, kernelVxlanUnavailable } from '../vxlan/mode.js';
import { VxlanBackend, VxlanDeviceError } from '../vxlan/vxlan.js';
import { vethPayload } from '../kernel/veth.js';
import { OVERLAY_GSO_MAX_SIZE } from './overlay-device.js';
import { UserspaceBackend, UserspaceIpv4OnlyError } from './backend.js';
import type * as Scenarios from './userspace.scenarios.js';

const run = scenarioRunner<typeof Scenarios>(new URL('./userspace.scenarios.js', import.meta.url));

const address = IpAddress.parse('192.0.2.11');
const publicInterface: PublicInterface = {
  name: 'eth1',
  index: 2,
  mtu: 1500,
  mac: undefined,
  address,
  prefix: Prefix.parse('192.0.2.0/24'),
  publicAddress: address,
  ipv4: { address, prefix: Prefix.parse('192.0.2.0/24'), publicAddress: address },
  ipv6: undefined,
};

function context(json: string, kernel: Partial<Kernel> = {}): { context: BackendContext; options: VxlanBackendConfig } {
  const config = parseNetworkConfig(json);
  return {
    context: { kernel: kernel as Kernel, log: createLogger('silent'), config, publicInterface },
    options: config.backend as VxlanBackendConfig,
  };
}

describe('vxlan backend data path choice', function () {
  it('"never" is kernel VXLAN, "always" the userspace path: same lease data and MTU either way', function () {
    const { context: ctx, options } = context('{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan","VNI":4}}');
    const kernel = createVxlanBackend(ctx, options, 'never', 'Backend.Userspace');
    const userspace = createVxlanBackend(ctx, options, 'always', '--vxlan-userspace');
    assert.ok(kernel instanceof VxlanBackend);
    assert.ok(userspace instanceof UserspaceBackend);
    assert.equal(kernel.dataPath, 'kernel');
    assert.equal(userspace.dataPath, 'userspace');
    assert.equal(kernel.dataPathReason, 'Backend.Userspace "never"');
    assert.equal(userspace.dataPathReason, '--vxlan-userspace "always"');
    assert.deepEqual(userspace.backendData, kernel.backendData);
    assert.equal(userspace.mtu, 1450);
    assert.equal(kernel.mtu, 1450);
    assert.equal(userspace.deviceName, 'weft.4');
    assert.ok(createVxlanBackend(ctx, options, 'auto', 'Backend.Userspace') instanceof AutoVxlanBackend);
  });

  it('"auto" falls back only when the kernel refuses VXLAN devices, not on a clash', async function () {
    const refuse = (errno: number) =>
      context('{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"}}', {
        getLink: () => Promise.resolve(null),
        createVxlan: () => Promise.reject(new NetlinkError('create vxlan weft.1', errno)),
      });
    const unsupported = refuse(constants.errno.EOPNOTSUPP);
    const auto = new AutoVxlanBackend(unsupported.context, unsupported.options);
    await auto.prepare();
    assert.equal(auto.dataPath, 'userspace');
    assert.match(auto.dataPathReason, /^Userspace "auto": kernel VXLAN is unavailable \(create vxlan weft\.1: (EOPNOTSUPP|ENOTSUP)\)$/);
    const clash = refuse(constants.errno.EEXIST);
    await assert.rejects(new AutoVxlanBackend(clash.context, clash.options).prepare(), (err: unknown) => err instanceof VxlanDeviceError);
    assert.equal(kernelVxlanUnavailable(new NetlinkError('x', constants.errno.EPERM)), true);
    assert.equal(kernelVxlanUnavailable(new NetlinkError('x', constants.errno.ENOBUFS)), false);
    assert.equal(kernelVxlanUnavailable(new Error('EOPNOTSUPP')), false);
  });

  it('refuses an IPv6 data plane: the userspace path carries IPv4 only', async function () {
    const v6 = IpAddress.parse('2001:db8:0:1::11');
    const view: PublicInterface = { ...publicInterface, address: v6, prefix: Prefix.parse('2001:db8:0:1::/64'), publicAddress: v6 };
    const config = parseNetworkConfig(
      '{"Network":"198.18.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8:100::/48","Backend":{"Type":"vxlan"}}',
    );
    const refusing: Partial<Kernel> = {
      getLink: () => Promise.resolve(null),
      createVxlan: () => Promise.reject(new NetlinkError('create vxlan weft-v6.1', constants.errno.EPERM)),
    };
    const ctx: BackendContext = { kernel: refusing as Kernel, log: createLogger('silent'), config, publicInterface: view };
    const ipv4Only = (err: unknown) => err instanceof UserspaceIpv4OnlyError && err.code === 'WEFT_USERSPACE_IPV4_ONLY';
    assert.throws(() => createVxlanBackend(ctx, config.backend as VxlanBackendConfig, 'always', 'Backend.Userspace'), ipv4Only);
    assert.throws(() => createUdpBackend(ctx, { type: 'udp', port: 8285, mtu: undefined }), ipv4Only);
    await assert.rejects(
      new AutoVxlanBackend(ctx, config.backend as VxlanBackendConfig).prepare(),
      (err: unknown) =>
        ipv4Only(err) &&
        /^kernel VXLAN is unavailable \(create vxlan weft-v6\.1: EPERM\), and the userspace data path carries IPv4 only/.test(
          (err as Error).message,
        ),
    );
    assert.equal(createVxlanBackend(ctx, config.backend as VxlanBackendConfig, 'never', 'Backend.Userspace').dataPath, 'kernel');
  });

  it("udp backend: flannel's port and MTU, no BackendData", function () {
    const { context: ctx } = context('{"Network":"198.18.0.0/16","Backend":{"Type":"udp"}}');
    const backend = createUdpBackend(ctx, { type: 'udp', port: 8285, mtu: undefined });
    assert.equal(backend.type, 'udp');
    assert.equal(backend.dataPath, 'userspace');
    assert.equal(backend.mtu, 1472);
    assert.equal(backend.backendData, undefined);
  });
});

describe('overlay veth pair', function () {
  it('encodes `ip link add … type veth peer name …` with the near end ARP off', function () {
    const payload = vethPayload({
      name: 'weft.1',
      peerName: 'weft.1.c',
      mtu: 1450,
      mac: '02:00:00:00:00:01',
      gsoMaxSize: OVERLAY_GSO_MAX_SIZE,
    });
    const flags = payload.readUInt32LE(8);
    assert.equal(flags & 0x80, 0x80, 'IFF_NOARP');
    assert.equal(flags & 0x1, 0, 'not up in the request: the kernel opens the peer before linking it');
    assert.ok(payload.includes(Buffer.from('veth\0')));
    assert.ok(payload.includes(Buffer.from('weft.1.c\0')));
    assert.ok(payload.includes(Buffer.from([2, 0, 0, 0, 0, 1])));
    // IFLA_GSO_MAX_SIZE (41) = 60000: the largest TSO frame plus its Ethernet header fits libpcap's snapshot.
    assert.ok(payload.includes(Buffer.from([8, 0, 41, 0, 0x60, 0xea, 0, 0])));
  });

  describe('against the kernel', function () {
    this.timeout(60_000);
    const ns = useNetns();

    it('creates the pair, sets its offloads, repairs MTU, MAC, ARP and state in place, and is idempotent', async function () {
      type Link = { ifindex: number; ifname: string; mtu: number; flags: string[]; address: string; link: string };
      const link = (name: string): Link => ns().ipJson<Link[]>('link', 'show', name)[0];
      const first = await run(ns(), 'capturePair', null);
      assert.equal(first.created, true);
      assert.deepEqual(first.unset, []);
      const [detail] = ns().ipJson<{ gso_max_size?: number }[]>('-d', 'link', 'show', 'weft.1');
      assert.equal(detail?.gso_max_size, 60_000);
      assert.equal((await run(ns(), 'capturePair', null)).created, false, 'nothing to do the second time');

      // each break is checked to have happened (Netns.ip throws when a command fails, and the state is read back)
      for (const args of [
        ['weft.1', 'mtu', '1400'],
        ['weft.1', 'address', '02:00:00:00:00:99'],
        ['weft.1', 'arp', 'on'],
        ['weft.1', 'down'],
        ['weft.1.c', 'mtu', '1300'],
        ['weft.1.c', 'down'],
      ]) {
        ns().ip('link', 'set', ...args);
      }
      const broken = { near: link('weft.1'), far: link('weft.1.c') };
      assert.equal(broken.near.mtu, 1400);
      assert.equal(broken.near.address, '02:00:00:00:00:99');
      assert.ok(!broken.near.flags.includes('NOARP') && !broken.near.flags.includes('UP'), JSON.stringify(broken.near));
      assert.equal(broken.far.mtu, 1300);
      assert.ok(!broken.far.flags.includes('UP'), JSON.stringify(broken.far));

      const second = await run(ns(), 'capturePair', null);
      assert.equal(second.created, false, 'repaired, not made anew');
      assert.equal(second.nearIndex, first.nearIndex);
      const near = link('weft.1');
      assert.equal(near.ifindex, first.nearIndex);
      assert.equal(near.mtu, 1450);
      assert.equal(near.address, '02:00:00:00:00:01');
      assert.ok(near.flags.includes('NOARP') && near.flags.includes('UP'), JSON.stringify(near));
      assert.equal(near.link, 'weft.1.c');
      const far = link('weft.1.c');
      assert.equal(far.mtu, 1450);
      assert.ok(far.flags.includes('UP'), JSON.stringify(far));
    });

    it('replaces a kernel VXLAN device that has its name (the other mode left it)', async function () {
      assert.deepEqual(await run(ns(), 'replaceVxlan', null), { created: true, kind: 'veth' });
    });

    describe('"auto" with a public interface', function () {
      beforeEach(function () {
        ns().ip('link', 'add', 'pub0', 'type', 'veth', 'peer', 'name', 'pub1');
        ns().ip('addr', 'add', '192.0.2.11/24', 'dev', 'pub0');
        ns().ip('link', 'set', 'pub0', 'up');
        ns().ip('link', 'set', 'pub1', 'up');
      });

      it('uses kernel VXLAN where the kernel makes the device', async function () {
        const result = await run(ns(), 'autoChoice', { iface: 'pub0' });
        assert.equal(result.dataPath, 'kernel');
        assert.equal(result.kind, 'vxlan');
        assert.equal(result.routesOnly, false);
        assert.equal(result.counters, null);
      });

      it('runs the userspace path, device and worker, where the kernel refuses VXLAN devices', async function () {
        const result = await run(ns(), 'autoChoice', { iface: 'pub0', refuse: constants.errno.EOPNOTSUPP });
        assert.equal(result.dataPath, 'userspace');
        assert.match(result.reason, /EOPNOTSUPP|ENOTSUP/);
        assert.equal(result.kind, 'veth');
        assert.equal(result.routesOnly, true);
        assert.deepEqual(result.counters, { tx: 0, rx: 0 }, 'the worker answers');
        assert.match(result.udp, /192\.0\.2\.11:8472/, 'bound to the public IP and the VXLAN port');
      });
    });
  });
});
