import assert from 'node:assert/strict';
import { scenarioRunner, useNetns } from '../../test/netns.js';
import { createCommandRunner, type CommandRunner } from './command.js';
import { InterfaceError } from './errors.js';
import type * as Scenarios from './interfaces.scenarios.js';
import { defaultRouteInterface, parseIpAddr } from '../kernel/interfaces.js';
import { selectPublicInterface, type InterfaceSelection, type PublicInterface } from './interfaces.js';

const run = scenarioRunner<typeof Scenarios>(new URL('./interfaces.scenarios.js', import.meta.url));

function summary(iface: PublicInterface): Record<string, unknown> {
  return {
    name: iface.name,
    address: iface.address.toString(),
    prefix: iface.prefix.toString(),
    publicAddress: iface.publicAddress.toString(),
    ipv6: iface.ipv6 && `${iface.ipv6.address} ${iface.ipv6.prefix} ${iface.ipv6.publicAddress}`,
  };
}

function interfaceError(message: string): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof InterfaceError, String(err));
    assert.equal(err.code, 'WEFT_INTERFACE');
    assert.equal(err.message, message);
    return true;
  };
}

describe('public interface selection', function () {
  describe('pure parts', function () {
    it('parses ip -j addr, skipping what it cannot use', function () {
      const links = parseIpAddr(
        JSON.stringify([
          {
            ifindex: 1,
            ifname: 'lo',
            flags: ['LOOPBACK', 'UP'],
            mtu: 65536,
            link_type: 'loopback',
            address: '00:00:00:00:00:00',
            addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8, scope: 'host' }],
          },
          { ifname: 'broken' },
          {
            ifindex: 7,
            ifname: 'eth0',
            flags: ['BROADCAST', 'UP'],
            mtu: 1500,
            link_type: 'ether',
            address: 'AA:BB:CC:00:11:22',
            addr_info: [
              { family: 'inet', local: '192.0.2.7', prefixlen: 24 },
              { family: 'inet6', local: 'junk', prefixlen: 64 },
              { family: 'inet6', local: '2001:db8:0:1::7', prefixlen: 64, dadfailed: true },
            ],
          },
        ]),
      );
      assert.equal(links.length, 2);
      assert.equal(links[0].mac, undefined);
      assert.equal(links[0].loopback, true);
      assert.equal(links[1].mac, 'aa:bb:cc:00:11:22');
      assert.deepEqual(
        links[1].addresses.map((a) => `${a.address} ${a.prefix} ${a.scope} ${a.dadFailed}`),
        ['192.0.2.7 192.0.2.0/24 global false', '2001:db8:0:1::7 2001:db8:0:1::/64 global true'],
      );
      assert.deepEqual(parseIpAddr(''), []);
    });

    it('takes the lowest-metric default route and the first nexthop of a multipath one', async function () {
      const answer =
        (stdout: string): CommandRunner =>
        async () => ({ code: 0, stdout, stderr: '' });
      const routes = [
        { dst: 'default', gateway: '192.0.2.1', dev: 'a0', metric: 100 },
        {
          dst: 'default',
          nexthops: [
            { gateway: '198.51.100.1', dev: 'b0' },
            { gateway: '203.0.113.1', dev: 'c0' },
          ],
          metric: 20,
        },
      ];
      assert.deepEqual(await defaultRouteInterface(4, answer(JSON.stringify(routes))), { dev: 'b0', prefsrc: undefined });
      assert.equal(await defaultRouteInterface(4, answer('[]\n')), undefined);
      await assert.rejects(
        defaultRouteInterface(6, async () => ({ code: 1, stdout: '', stderr: 'boom' })),
        /ip -j -6 route show default: exit 1: boom/,
      );
    });
  });

  describe('in a network namespace', function () {
    const ns = useNetns();
    let runner: CommandRunner;

    beforeEach(function () {
      const ip = (...args: string[]): string => ns().ip(...args);
      ip('link', 'add', 'pub0', 'type', 'veth', 'peer', 'name', 'pub0p');
      ip('link', 'add', 'sec0', 'type', 'veth', 'peer', 'name', 'sec0p');
      ip('link', 'set', 'pub0', 'mtu', '1400');
      for (const dev of ['pub0', 'pub0p', 'sec0', 'sec0p']) ip('link', 'set', dev, 'up');
      ip('addr', 'add', '192.0.2.10/24', 'dev', 'pub0');
      ip('addr', 'add', '2001:db8:0:1::10/64', 'dev', 'pub0', 'nodad');
      ip('addr', 'add', '198.51.100.10/24', 'dev', 'sec0');
      ip('route', 'add', 'default', 'via', '192.0.2.1', 'dev', 'pub0', 'metric', '100');
      ip('-6', 'route', 'add', 'default', 'via', '2001:db8:0:1::1', 'dev', 'pub0');
      runner = createCommandRunner({ netns: ns().name });
    });

    const select = (selection: InterfaceSelection = {}): Promise<PublicInterface> => selectPublicInterface({ runner, ...selection });

    it("defaults to the default route's interface, with index, MTU, MAC, address and on-link prefix", async function () {
      const iface = await select();
      const [link] = ns().ipJson<{ ifindex: number; address: string }[]>('link', 'show', 'pub0');
      assert.equal(iface.name, 'pub0');
      assert.equal(iface.index, link.ifindex);
      assert.equal(iface.mtu, 1400);
      assert.equal(iface.mac, link.address);
      assert.deepEqual(summary(iface), {
        name: 'pub0',
        address: '192.0.2.10',
        prefix: '192.0.2.0/24',
        publicAddress: '192.0.2.10',
        ipv6: undefined,
      });
      assert.equal(iface.ipv4?.address.toString(), '192.0.2.10');
    });

    it('prefers the default route with the lowest metric', async function () {
      ns().ip('route', 'add', 'default', 'via', '198.51.100.1', 'dev', 'sec0', 'metric', '50');
      assert.equal((await select()).name, 'sec0');
    });

    it('gives both families for dual stack, and uses the IPv6 default route when IPv4 is off', async function () {
      assert.deepEqual(summary(await select({ ipv6: true })), {
        name: 'pub0',
        address: '192.0.2.10',
        prefix: '192.0.2.0/24',
        publicAddress: '192.0.2.10',
        ipv6: '2001:db8:0:1::10 2001:db8:0:1::/64 2001:db8:0:1::10',
      });
      ns().ip('route', 'del', 'default');
      const v6 = await select({ ipv4: false, ipv6: true, publicIpv6: '2001:db8:0:2::99' });
      assert.deepEqual(summary(v6), {
        name: 'pub0',
        address: '2001:db8:0:1::10',
        prefix: '2001:db8:0:1::/64',
        publicAddress: '2001:db8:0:2::99',
        ipv6: '2001:db8:0:1::10 2001:db8:0:1::/64 2001:db8:0:2::99',
      });
      await assert.rejects(
        select({ ipv6: true, iface: ['sec0'] }),
        interfaceError('--iface sec0: sec0: interface has no global IPv6 address'),
      );
    });

    it('--iface takes names or IPs, the first that matches wins', async function () {
      assert.equal((await select({ iface: ['sec0'] })).name, 'sec0');
      assert.equal((await select({ iface: ['eth9', 'pub0p', 'sec0', 'pub0'] })).name, 'sec0');
      const byIp = await select({ iface: ['198.51.100.10'] });
      assert.deepEqual(summary(byIp), {
        name: 'sec0',
        address: '198.51.100.10',
        prefix: '198.51.100.0/24',
        publicAddress: '198.51.100.10',
        ipv6: undefined,
      });
      await assert.rejects(select({ iface: ['eth9'] }), interfaceError('--iface eth9: no such interface'));
      await assert.rejects(
        select({ iface: ['eth9', '203.0.113.1', 'pub0p'] }),
        interfaceError(
          '--iface eth9: no such interface; --iface 203.0.113.1: no interface has this address; --iface pub0p: pub0p: interface has no global IPv4 address',
        ),
      );
    });

    it('--iface-regex matches addresses first, then names; --iface comes before it', async function () {
      assert.equal((await select({ ifaceRegex: ['^198\\.51\\.'] })).address.toString(), '198.51.100.10');
      assert.equal((await select({ ifaceRegex: ['^sec'] })).name, 'sec0');
      assert.equal((await select({ ifaceRegex: ['0$'] })).name, 'pub0', 'the address 192.0.2.10 matches before the name sec0');
      assert.equal((await select({ iface: ['pub0'], ifaceRegex: ['^sec'] })).name, 'pub0');
      assert.equal((await select({ iface: ['eth9'], ifaceRegex: ['^sec'] })).name, 'sec0');
      await assert.rejects(select({ ifaceRegex: ['^nomatch$'] }), interfaceError('no interface matches --iface-regex "^nomatch$"'));
      await assert.rejects(
        select({ ifaceRegex: ['('] }),
        (err: unknown) => err instanceof InterfaceError && err.message.startsWith('--iface-regex "(": invalid regular expression'),
      );
    });

    it('says to give --iface when there is no default route', async function () {
      ns().ip('route', 'del', 'default');
      await assert.rejects(select(), interfaceError('no default route: give --iface'));
      assert.equal((await select({ iface: ['pub0'] })).name, 'pub0');
    });

    it('--public-ip overrides the announced address, and picks its interface when it is local', async function () {
      const natted = await select({ publicIp: '203.0.113.7' });
      assert.deepEqual(summary(natted), {
        name: 'pub0',
        address: '192.0.2.10',
        prefix: '192.0.2.0/24',
        publicAddress: '203.0.113.7',
        ipv6: undefined,
      });
      assert.equal((await select({ publicIp: '198.51.100.10' })).name, 'sec0');
      await assert.rejects(select({ publicIp: '2001:db8::1' }), interfaceError('--public-ip 2001:db8::1: not an IPv4 address'));
    });

    it('works with the default runner from a process inside the namespace', async function () {
      const result = await run(ns(), 'select', { ipv6: true });
      assert.equal(result.name, 'pub0');
      assert.equal(result.mtu, 1400);
      assert.equal(result.address, '192.0.2.10');
      assert.equal(result.ipv6, '2001:db8:0:1::10');
    });
  });
});
