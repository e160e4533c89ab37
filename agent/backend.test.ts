import assert from 'node:assert/strict';
import { IpAddress, Prefix } from '../common/cidr.js';
import { parseNetworkConfig } from '../common/config.js';
import type { PublicInterface } from './host/interfaces.js';
import type { Kernel } from './kernel/index.js';
import { createLogger } from './log.js';
import { createBackend } from './backends.js';

function publicInterface(address: string, prefix: string, mtu: number): PublicInterface {
  const ip = IpAddress.parse(address);
  const entry = { address: ip, prefix: Prefix.parse(prefix), publicAddress: ip };
  return {
    name: 'eth1',
    index: 2,
    mtu,
    mac: undefined,
    ...entry,
    ipv4: ip.family === 4 ? entry : undefined,
    ipv6: ip.family === 6 ? entry : undefined,
  };
}

/** The MTU weftd gives the containers (FLANNEL_MTU) with this backend config on this interface. */
function containerMtu(backend: object, iface: PublicInterface, ipv6 = false): number {
  const config = parseNetworkConfig(
    JSON.stringify(
      ipv6
        ? { EnableIPv4: false, EnableIPv6: true, IPv6Network: '2001:db8:100::/48', Backend: backend }
        : { Network: '198.18.0.0/16', Backend: backend },
    ),
  );
  // Userspace "never": the kernel data path, whose MTU needs no kernel to compute.
  const vxlanUserspace = (backend as { Type: string }).Type === 'vxlan' ? ('never' as const) : undefined;
  return createBackend({ kernel: {} as Kernel, log: createLogger('silent'), config, publicInterface: iface, vxlanUserspace }).mtu;
}

describe('container MTU (subnet.env FLANNEL_MTU) per backend, as flanneld writes it', function () {
  const eth1 = publicInterface('192.0.2.11', '192.0.2.0/24', 1500);
  const jumbo = publicInterface('192.0.2.11', '192.0.2.0/24', 9000);

  it('vxlan: the public interface MTU − 50', function () {
    assert.equal(containerMtu({ Type: 'vxlan' }, eth1), 1450);
    assert.equal(containerMtu({ Type: 'vxlan' }, jumbo), 8950);
  });

  it('udp: the public interface MTU − 28', function () {
    assert.equal(containerMtu({ Type: 'udp' }, eth1), 1472);
    assert.equal(containerMtu({ Type: 'udp' }, jumbo), 8972);
  });

  it("wireguard: the public interface MTU − 80, Backend.MTU the underlay's, as flanneld", function () {
    assert.equal(containerMtu({ Type: 'wireguard' }, eth1), 1420);
    assert.equal(containerMtu({ Type: 'wireguard' }, jumbo), 8920);
    assert.equal(containerMtu({ Type: 'wireguard', MTU: 1400 }, eth1), 1320);
    assert.equal(containerMtu({ Type: 'wireguard' }, publicInterface('2001:db8:0:1::11', '2001:db8:0:1::/64', 1500), true), 1420);
  });

  it('host-gw: the public interface MTU', function () {
    assert.equal(containerMtu({ Type: 'host-gw' }, eth1), 1500);
  });

  it("Backend.MTU is the underlay MTU the encapsulation is taken from, as flanneld (v0.21.3 and later) reads vxlan's; udp reads it alike", function () {
    assert.equal(containerMtu({ Type: 'vxlan', MTU: 1400 }, eth1), 1350);
    assert.equal(containerMtu({ Type: 'udp', MTU: 1400 }, eth1), 1372);
  });

  it('vxlan over an IPv6 underlay: − 70, 20 bytes below flanneld, which leaves no room for the outer IPv6 header', function () {
    const v6 = publicInterface('2001:db8:0:1::11', '2001:db8:0:1::/64', 1500);
    assert.equal(containerMtu({ Type: 'vxlan' }, v6, true), 1430);
  });
});
