import assert from 'node:assert/strict';
import { isIP } from 'node:net';
import fc from 'fast-check';
import { IpAddress, Prefix, type Family } from './cidr.js';
import { InvalidCidrError, WeftError } from './errors.js';

/** Asserts that `fn` throws an InvalidCidrError (a WeftError with its stable code) whose message matches. */
function throwsCidr(fn: () => unknown, message?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof InvalidCidrError, `expected InvalidCidrError, got ${String(err)}`);
    assert.ok(err instanceof WeftError);
    assert.equal(err.code, 'WEFT_INVALID_CIDR');
    if (message) assert.match(err.message, message);
    return true;
  });
}

const V4_MAX = (1n << 32n) - 1n;
const V6_MAX = (1n << 128n) - 1n;

function bitsOf(family: Family): number {
  return family === 4 ? 32 : 128;
}

/** Eight 16-bit groups, biased towards zero groups so that "::" compression is exercised. */
const v6Groups = fc.array(fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: 0, max: 0xffff })), {
  minLength: 8,
  maxLength: 8,
});

function groupsToValue(groups: number[]): bigint {
  return groups.reduce((acc, group) => (acc << 16n) | BigInt(group), 0n);
}

/** An independent RFC 5952 oracle: the WHATWG URL parser's IPv6 serializer. */
function whatwgIPv6(groups: number[]): string {
  return new URL(`http://[${groups.map((g) => g.toString(16)).join(':')}]/`).hostname.slice(1, -1);
}

const anyAddress = fc.oneof(
  fc.bigInt({ min: 0n, max: V4_MAX }).map((value) => IpAddress.fromValue(4, value)),
  v6Groups.map((groups) => IpAddress.fromValue(6, groupsToValue(groups))),
);

/** A prefix of either family with a random base (host bits cleared by Prefix.of) and length. */
const anyPrefix = fc
  .tuple(anyAddress, fc.integer({ min: 0, max: 128 }))
  .map(([address, length]) => Prefix.of(address, length % (address.bits + 1)));

describe('cidr', () => {
  describe('IpAddress.parse (IPv4)', () => {
    it('parses a dotted quad into family 4 and an integer value', () => {
      const address = IpAddress.parse('192.0.2.1');
      assert.equal(address.family, 4);
      assert.equal(address.value, 0xc0000201n);
      assert.equal(address.bits, 32);
      assert.equal(address.toString(), '192.0.2.1');
      assert.equal(IpAddress.parse('0.0.0.0').value, 0n);
      assert.equal(IpAddress.parse('255.255.255.255').value, V4_MAX);
    });

    for (const text of [
      '',
      '10',
      '10.5',
      '10.5.0',
      '10.5.0.0.0',
      '0x0a.5.0.0',
      '012.5.0.0',
      '10.05.0.0',
      '256.0.0.1',
      '10.5.0.-1',
      ' 192.0.2.1',
      '192.0.2.1 ',
      '192.0.2.1\n',
      '192.0.2.1/32',
      '192.0.2',
      'localhost',
    ]) {
      it(`rejects ${JSON.stringify(text)}`, () => throwsCidr(() => IpAddress.parse(text), /is not an IPv4 or IPv6 address/));
    }

    it('rejects a value that is not a string with a typed error', () => {
      throwsCidr(() => IpAddress.parse(42 as unknown as string), /is not a string/);
      throwsCidr(() => IpAddress.parse(undefined as unknown as string), /is not a string/);
    });
  });

  describe('IpAddress.parse (IPv6)', () => {
    const cases: [string, bigint][] = [
      ['::', 0n],
      ['::1', 1n],
      ['2001:db8::1', 0x20010db8000000000000000000000001n],
      ['2001:DB8::1', 0x20010db8000000000000000000000001n],
      ['2001:0db8:0000:0000:0000:0000:0000:0001', 0x20010db8000000000000000000000001n],
      ['2001:db8:100::', 0x20010db8010000000000000000000000n],
      ['fc00::', 0xfc000000000000000000000000000000n],
      ['1:2:3:4:5:6:7::', 0x00010002000300040005000600070000n],
      ['::2:3:4:5:6:7:8', 0x00000002000300040005000600070008n],
      ['::ffff:192.0.2.1', 0x00000000000000000000ffffc0000201n],
      ['64:ff9b::192.0.2.1', 0x0064ff9b0000000000000000c0000201n],
      // RFC 4291 §2.2: "::a.b.c.d" is ::a.b.c.d (IPv4-compatible), not the IPv4-mapped ::ffff:a.b.c.d.
      ['::192.0.2.1', 0xc0000201n],
    ];
    for (const [text, value] of cases) {
      it(`parses ${text}`, () => {
        const address = IpAddress.parse(text);
        assert.equal(address.family, 6);
        assert.equal(address.bits, 128);
        assert.equal(address.value, value);
      });
    }

    for (const text of [
      ':',
      ':::',
      '1::2::3',
      '2001:db8::g',
      '00001::',
      '1:2:3:4:5:6:7:8:9',
      '1:2:3:4:5:6:7',
      '1::2:3:4:5:6:7:8',
      '1:2:3:4:5:6:7:8::',
      '::01.2.3.4',
      '::1.2.3.256',
      '::ffff:1.2.3',
      '[2001:db8::1]',
      '2001:db8::1/128',
    ]) {
      it(`rejects ${JSON.stringify(text)}`, () => throwsCidr(() => IpAddress.parse(text), /is not an IPv4 or IPv6 address/));
    }

    it('rejects an address with a zone', () => {
      throwsCidr(() => IpAddress.parse('fe80::1%eth0'), /has a zone/);
      throwsCidr(() => IpAddress.parse('fe80::1%eth0.100'), /has a zone/);
    });
  });

  describe('IpAddress.toString (RFC 5952)', () => {
    const cases: [string, string][] = [
      ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
      ['2001:db8:0:1:0:0:0:1', '2001:db8:0:1::1'],
      // a single zero group is never compressed
      ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
      // the longest run wins
      ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'],
      // on a tie the first run wins, also when it starts the address
      ['0:0:1:0:0:1:2:3', '::1:0:0:1:2:3'],
      ['1:0:0:2:0:0:3:4', '1::2:0:0:3:4'],
      ['0:0:0:1:0:0:0:1', '::1:0:0:0:1'],
      ['1:0:0:0:0:0:0:0', '1::'],
      ['0:0:0:0:0:0:0:0', '::'],
      ['fc00:0:0:0:0:0:0:0', 'fc00::'],
      ['::ffff:192.0.2.1', '::ffff:c000:201'],
    ];
    for (const [text, canonical] of cases) {
      it(`prints ${text} as ${canonical}`, () => assert.equal(IpAddress.parse(text).toString(), canonical));
    }
  });

  describe('IpAddress.fromValue, equals, toBytes', () => {
    it('accepts the full range of each family and nothing outside it', () => {
      assert.equal(IpAddress.fromValue(4, V4_MAX).toString(), '255.255.255.255');
      assert.equal(IpAddress.fromValue(6, V6_MAX).toString(), 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff');
      throwsCidr(() => IpAddress.fromValue(4, V4_MAX + 1n), /out of range for IPv4/);
      throwsCidr(() => IpAddress.fromValue(6, V6_MAX + 1n), /out of range for IPv6/);
      throwsCidr(() => IpAddress.fromValue(4, -1n), /out of range/);
    });

    it('compares family and value', () => {
      assert.ok(IpAddress.parse('192.0.2.1').equals(IpAddress.parse('192.0.2.1')));
      assert.ok(!IpAddress.parse('192.0.2.1').equals(IpAddress.parse('192.0.2.2')));
      // same integer, different family
      assert.ok(!IpAddress.parse('::c000:201').equals(IpAddress.parse('192.0.2.1')));
      assert.equal(IpAddress.parse('::c000:201').value, IpAddress.parse('192.0.2.1').value);
    });

    it('gives network-order bytes of the family length', () => {
      assert.deepEqual([...IpAddress.parse('192.0.2.1').toBytes()], [192, 0, 2, 1]);
      const v6 = IpAddress.parse('2001:db8::1').toBytes();
      assert.equal(v6.length, 16);
      assert.deepEqual([...v6], [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    });
  });

  describe('IpAddress properties', () => {
    it('IPv4: toString is the dotted quad of the value and parses back to the same address', () => {
      fc.assert(
        fc.property(fc.bigInt({ min: 0n, max: V4_MAX }), (value) => {
          const address = IpAddress.fromValue(4, value);
          const n = Number(value);
          const dotted = `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
          assert.equal(address.toString(), dotted);
          assert.ok(IpAddress.parse(dotted).equals(address));
        }),
        { numRuns: 500 },
      );
    });

    it('IPv6: toString matches an independent RFC 5952 serializer and parses back to the same address', () => {
      fc.assert(
        fc.property(v6Groups, (groups) => {
          const address = IpAddress.fromValue(6, groupsToValue(groups));
          assert.equal(address.toString(), whatwgIPv6(groups));
          assert.ok(IpAddress.parse(address.toString()).equals(address));
        }),
        { numRuns: 1000 },
      );
    });

    it('IPv6: every RFC 4291 spelling of an address (case, leading zeros, "::", dotted tail) parses to its value', () => {
      const spelling = fc.record({
        groups: v6Groups,
        pad: fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 8, maxLength: 8 }),
        upper: fc.boolean(),
        compress: fc.nat(),
        dotted: fc.boolean(),
      });
      fc.assert(
        fc.property(spelling, ({ groups, pad, upper, compress, dotted }) => {
          const words = groups.map((g, i) => {
            const hex = g.toString(16);
            return '0'.repeat(Math.min(pad[i], 4 - hex.length)) + hex;
          });
          const parts: string[] = dotted
            ? [...words.slice(0, 6), `${groups[6] >> 8}.${groups[6] & 255}.${groups[7] >> 8}.${groups[7] & 255}`]
            : words;
          // compress one run of zero groups (of any length >= 1) among the hex words, if there is one
          const zeroRuns: [number, number][] = [];
          const hexCount = dotted ? 6 : 8;
          for (let i = 0; i < hexCount; i++) {
            if (groups[i] !== 0) continue;
            for (let j = i + 1; j <= hexCount && groups[j - 1] === 0; j++) zeroRuns.push([i, j]);
          }
          let text: string;
          if (zeroRuns.length > 0 && compress % 3 !== 0) {
            const [start, end] = zeroRuns[compress % zeroRuns.length];
            text = `${parts.slice(0, start).join(':')}::${parts.slice(end).join(':')}`;
          } else {
            text = parts.join(':');
          }
          if (upper) text = text.toUpperCase();
          const address = IpAddress.parse(text);
          assert.equal(address.family, 6, text);
          assert.equal(address.value, groupsToValue(groups), text);
        }),
        { numRuns: 2000 },
      );
    });

    it("accepts exactly the strings Node's net.isIP accepts (zones excepted), and throws only InvalidCidrError", () => {
      const unit = fc.constantFrom(...'0123456789abcdefABCDEF:.'.split(''));
      const candidates = fc.oneof(fc.string({ unit, maxLength: 40 }), fc.ipV4(), fc.ipV6(), fc.ipV4Extended(), fc.string());
      fc.assert(
        fc.property(candidates, (text) => {
          let parsed: IpAddress | undefined;
          try {
            parsed = IpAddress.parse(text);
          } catch (err) {
            assert.ok(err instanceof InvalidCidrError, `${JSON.stringify(text)} threw ${String(err)}`);
          }
          const expected = text.includes('%') ? 0 : isIP(text);
          assert.equal(parsed?.family ?? 0, expected, JSON.stringify(text));
        }),
        { numRuns: 3000 },
      );
    });
  });

  describe('Prefix.parse', () => {
    it('parses an IPv4 prefix', () => {
      const prefix = Prefix.parse('198.18.0.0/16');
      assert.equal(prefix.family, 4);
      assert.equal(prefix.base, 0xc6120000n);
      assert.equal(prefix.length, 16);
      assert.equal(prefix.bits, 32);
      assert.equal(prefix.toString(), '198.18.0.0/16');
    });

    it('parses an IPv6 prefix and prints it canonically', () => {
      const prefix = Prefix.parse('2001:DB8:100:0::/48');
      assert.equal(prefix.family, 6);
      assert.equal(prefix.length, 48);
      assert.equal(prefix.toString(), '2001:db8:100::/48');
    });

    it('parses the extremes /0 and /32, /128', () => {
      assert.equal(Prefix.parse('0.0.0.0/0').size, 1n << 32n);
      assert.equal(Prefix.parse('192.0.2.7/32').size, 1n);
      assert.equal(Prefix.parse('::/0').size, 1n << 128n);
      assert.equal(Prefix.parse('2001:db8::1/128').size, 1n);
    });

    it('rejects host bits unless asked to mask them', () => {
      throwsCidr(() => Prefix.parse('198.18.0.1/16'), /host bits set \(the network is 198\.18\.0\.0\/16\)/);
      throwsCidr(() => Prefix.parse('2001:db8::1/64'), /host bits set/);
      assert.equal(Prefix.parse('192.0.2.7/24', { allowHostBits: true }).toString(), '192.0.2.0/24');
      assert.equal(Prefix.parse('2001:db8::1/64', { allowHostBits: true }).toString(), '2001:db8::/64');
    });

    it('rejects a length longer than the family allows', () => {
      throwsCidr(() => Prefix.parse('198.18.0.0/33'), /prefix length 33 is longer than 32/);
      throwsCidr(() => Prefix.parse('2001:db8::/129'), /prefix length 129 is longer than 128/);
    });

    for (const text of [
      '198.18.0.0/',
      '198.18.0.0/-1',
      '198.18.0.0/1.5',
      '198.18.0.0/ 16',
      '198.18.0.0/0x10',
      '198.18.0.0/1000',
      '198.18.0.0/16/16',
    ]) {
      it(`rejects the length in ${JSON.stringify(text)}`, () => throwsCidr(() => Prefix.parse(text), /invalid prefix length/));
    }

    for (const text of ['198.18.0.0', '', '2001:db8::']) {
      it(`rejects ${JSON.stringify(text)} without a length`, () => throwsCidr(() => Prefix.parse(text), /no "\/length"/));
    }

    it('rejects a bad address part', () => {
      throwsCidr(() => Prefix.parse('/16'), /is not an IPv4 or IPv6 address/);
      throwsCidr(() => Prefix.parse('198.18/16'), /is not an IPv4 or IPv6 address/);
      throwsCidr(() => Prefix.parse(null as unknown as string), /is not a string/);
    });
  });

  describe('Prefix geometry', () => {
    const net = Prefix.parse('198.18.0.0/16');

    it('of() masks the host bits and validates the length', () => {
      assert.equal(Prefix.of(IpAddress.parse('198.18.52.7'), 24).toString(), '198.18.52.0/24');
      assert.equal(Prefix.of(IpAddress.parse('198.18.52.7'), 0).toString(), '0.0.0.0/0');
      assert.equal(Prefix.of(IpAddress.parse('2001:db8:100:7::1'), 48).toString(), '2001:db8:100::/48');
      throwsCidr(() => Prefix.of(IpAddress.parse('198.18.52.7'), 33), /prefix length 33 is invalid for IPv4/);
      throwsCidr(() => Prefix.of(IpAddress.parse('198.18.52.7'), -1), /invalid/);
      throwsCidr(() => Prefix.of(IpAddress.parse('198.18.52.7'), 24.5), /invalid/);
    });

    it('size, last, network and host()', () => {
      assert.equal(net.size, 65536n);
      assert.equal(IpAddress.fromValue(4, net.last).toString(), '198.18.255.255');
      assert.equal(net.network.toString(), '198.18.0.0');
      assert.equal(net.host(1).toString(), '198.18.0.1');
      assert.equal(net.host(65535n).toString(), '198.18.255.255');
      throwsCidr(() => net.host(65536), /outside 198\.18\.0\.0\/16/);
      throwsCidr(() => net.host(-1), /outside/);
      assert.equal(Prefix.parse('2001:db8:100:34::/64').host(1).toString(), '2001:db8:100:34::1');
    });

    it('contains addresses and prefixes of its own family only', () => {
      assert.ok(net.contains(IpAddress.parse('198.18.0.0')));
      assert.ok(net.contains(IpAddress.parse('198.18.255.255')));
      assert.ok(!net.contains(IpAddress.parse('198.19.0.0')));
      assert.ok(!net.contains(IpAddress.parse('198.17.255.255')));
      assert.ok(net.contains(Prefix.parse('198.18.52.0/24')));
      assert.ok(net.contains(net));
      assert.ok(!net.contains(Prefix.parse('198.18.0.0/15')));
      assert.ok(!net.contains(Prefix.parse('198.19.0.0/24')));
      // ::c612:1 has the same integer value as 198.18.0.1
      assert.ok(!net.contains(IpAddress.parse('::c612:1')));
      assert.ok(!Prefix.parse('::/0').contains(IpAddress.parse('198.18.0.1')));
      assert.ok(!Prefix.parse('::/0').contains(net));
    });

    it('overlaps is symmetric and excludes adjacent prefixes', () => {
      const a = Prefix.parse('198.18.0.0/24');
      const b = Prefix.parse('198.18.1.0/24');
      assert.ok(!a.overlaps(b));
      assert.ok(!b.overlaps(a));
      assert.ok(a.overlaps(net) && net.overlaps(a));
      assert.ok(a.overlaps(a));
      // touching at a single address counts
      const lastOfA = Prefix.parse('198.18.0.255/32');
      assert.ok(a.overlaps(lastOfA) && lastOfA.overlaps(a));
      assert.ok(lastOfA.overlaps(lastOfA));
      assert.ok(!lastOfA.overlaps(Prefix.parse('198.18.1.0/32')));
      assert.ok(!Prefix.parse('::/0').overlaps(net));
    });

    it('equals compares family, base and length', () => {
      assert.ok(net.equals(Prefix.parse('198.18.0.0/16')));
      assert.ok(!net.equals(Prefix.parse('198.18.0.0/17')));
      assert.ok(!Prefix.parse('::/96').equals(Prefix.parse('0.0.0.0/0')));
    });

    it('subnetCount and nthSubnet', () => {
      assert.equal(net.subnetCount(24), 256n);
      assert.equal(net.subnetCount(16), 1n);
      assert.equal(net.nthSubnet(24, 0).toString(), '198.18.0.0/24');
      assert.equal(net.nthSubnet(24, 1).toString(), '198.18.1.0/24');
      assert.equal(net.nthSubnet(24, 52n).toString(), '198.18.52.0/24');
      assert.equal(net.nthSubnet(24, 255).toString(), '198.18.255.0/24');
      assert.equal(net.nthSubnet(26, 5).toString(), '198.18.1.64/26');
      throwsCidr(() => net.nthSubnet(24, 256), /has 256 subnets of \/24; index 256 is out of range/);
      throwsCidr(() => net.nthSubnet(24, -1), /out of range/);
      throwsCidr(() => net.subnetCount(15), /subnet length \/15 does not fit/);
      throwsCidr(() => net.subnetCount(33), /does not fit/);
      throwsCidr(() => net.nthSubnet(24.5, 0), /does not fit/);
      const v6 = Prefix.parse('2001:db8:100::/48');
      assert.equal(v6.subnetCount(64), 65536n);
      assert.equal(v6.nthSubnet(64, 0xffff).toString(), '2001:db8:100:ffff::/64');
    });

    it('indexOf is the inverse of nthSubnet and rejects outside subnets', () => {
      assert.equal(net.indexOf(Prefix.parse('198.18.52.0/24')), 52n);
      assert.equal(net.indexOf(Prefix.parse('198.18.1.64/26')), 5n);
      assert.equal(net.indexOf(net), 0n);
      throwsCidr(() => net.indexOf(Prefix.parse('198.19.0.0/24')), /198\.19\.0\.0\/24 is not inside 198\.18\.0\.0\/16/);
      throwsCidr(() => net.indexOf(Prefix.parse('198.18.0.0/15')), /not inside/);
    });

    it('subnetsBetween yields min..max inclusive in order', () => {
      const list = [...net.subnetsBetween(24, IpAddress.parse('198.18.3.0'), IpAddress.parse('198.18.6.0'))];
      assert.deepEqual(list.map(String), ['198.18.3.0/24', '198.18.4.0/24', '198.18.5.0/24', '198.18.6.0/24']);
      const one = [...net.subnetsBetween(24, IpAddress.parse('198.18.9.0'), IpAddress.parse('198.18.9.0'))];
      assert.deepEqual(one.map(String), ['198.18.9.0/24']);
      assert.deepEqual([...net.subnetsBetween(24, IpAddress.parse('198.18.9.0'), IpAddress.parse('198.18.8.0'))], []);
      const v6 = Prefix.parse('2001:db8:100::/48');
      const six = [...v6.subnetsBetween(64, IpAddress.parse('2001:db8:100:fffe::'), IpAddress.parse('2001:db8:100:ffff::'))];
      assert.deepEqual(six.map(String), ['2001:db8:100:fffe::/64', '2001:db8:100:ffff::/64']);
      assert.throws(() => net.subnetsBetween(8, net.network, net.network).next(), InvalidCidrError);
    });
  });

  describe('Prefix properties', () => {
    it('toString parses back to an equal prefix', () => {
      fc.assert(
        fc.property(anyPrefix, (prefix) => {
          const again = Prefix.parse(prefix.toString());
          assert.ok(again.equals(prefix), `${prefix} -> ${again}`);
          assert.equal(again.toString(), prefix.toString());
        }),
        { numRuns: 1000 },
      );
    });

    it('a prefix with host bits is rejected, and masked to Prefix.of with allowHostBits', () => {
      fc.assert(
        fc.property(anyAddress, fc.integer({ min: 0, max: 128 }), (address, rawLength) => {
          const length = rawLength % (address.bits + 1);
          const text = `${address}/${length}`;
          const expected = Prefix.of(address, length);
          assert.ok(Prefix.parse(text, { allowHostBits: true }).equals(expected));
          if (expected.base === address.value) assert.ok(Prefix.parse(text).equals(expected));
          else assert.throws(() => Prefix.parse(text), InvalidCidrError);
        }),
        { numRuns: 1000 },
      );
    });

    it('nthSubnet and indexOf round trip, and the n-th subnet holds exactly its addresses', () => {
      const arb = anyPrefix.chain((prefix) =>
        fc
          .integer({ min: prefix.length, max: prefix.bits })
          .chain((length) =>
            fc
              .tuple(
                fc.bigInt({ min: 0n, max: prefix.subnetCount(length) - 1n }),
                fc.bigInt({ min: 0n, max: (1n << BigInt(prefix.bits - length)) - 1n }),
              )
              .map(([index, offset]) => ({ prefix, length, index, offset })),
          ),
      );
      fc.assert(
        fc.property(arb, ({ prefix, length, index, offset }) => {
          const subnet = prefix.nthSubnet(length, index);
          assert.equal(subnet.length, length);
          assert.equal(subnet.family, prefix.family);
          assert.ok(prefix.contains(subnet));
          assert.equal(prefix.indexOf(subnet), index);
          // any address inside the subnet leads back to it
          const inside = subnet.host(offset);
          assert.ok(subnet.contains(inside));
          assert.ok(Prefix.of(inside, length).equals(subnet));
          // the neighbours are outside it
          if (subnet.base > 0n) assert.ok(!subnet.contains(IpAddress.fromValue(subnet.family, subnet.base - 1n)));
          if (subnet.last < (1n << BigInt(bitsOf(subnet.family))) - 1n) {
            assert.ok(!subnet.contains(IpAddress.fromValue(subnet.family, subnet.last + 1n)));
          }
        }),
        { numRuns: 1000 },
      );
    });

    it('two prefixes of one family overlap exactly when one contains the other', () => {
      const pair = fc.constantFrom<Family>(4, 6).chain((family) => {
        const max = family === 4 ? V4_MAX : V6_MAX;
        // share a random common top so that overlaps actually happen
        const one = fc
          .tuple(fc.bigInt({ min: 0n, max }), fc.integer({ min: 0, max: bitsOf(family) }))
          .map(([value, length]) => Prefix.of(IpAddress.fromValue(family, value), length));
        return fc.tuple(one, one, fc.integer({ min: 0, max: bitsOf(family) })).map(([a, b, keep]) => {
          const shift = BigInt(bitsOf(family) - keep);
          const mixed = ((a.base >> shift) << shift) | (b.base & ((1n << shift) - 1n));
          return [a, Prefix.of(IpAddress.fromValue(family, mixed), b.length)] as const;
        });
      });
      fc.assert(
        fc.property(pair, ([a, b]) => {
          assert.equal(a.overlaps(b), b.overlaps(a));
          assert.equal(a.overlaps(b), a.contains(b) || b.contains(a));
          assert.equal(a.equals(b), a.contains(b) && b.contains(a));
        }),
        { numRuns: 1000 },
      );
    });

    it('subnetsBetween yields consecutive subnets, as many as the index distance', () => {
      const arb = fc
        .tuple(anyPrefix, fc.integer({ min: 0, max: 8 }))
        .filter(([prefix, extra]) => prefix.length + extra <= prefix.bits)
        .chain(([prefix, extra]) => {
          const length = prefix.length + extra;
          const count = prefix.subnetCount(length);
          return fc
            .tuple(fc.bigInt({ min: 0n, max: count - 1n }), fc.bigInt({ min: 0n, max: count - 1n }))
            .map(([i, j]) => ({ prefix, length, min: i < j ? i : j, max: i < j ? j : i }));
        });
      fc.assert(
        fc.property(arb, ({ prefix, length, min, max }) => {
          const first = prefix.nthSubnet(length, min);
          const last = prefix.nthSubnet(length, max);
          const list = [...prefix.subnetsBetween(length, first.network, last.network)];
          assert.equal(BigInt(list.length), max - min + 1n);
          list.forEach((subnet, i) => assert.ok(subnet.equals(prefix.nthSubnet(length, min + BigInt(i)))));
        }),
        { numRuns: 300 },
      );
    });
  });
});
