import assert from 'node:assert/strict';
import fc from 'fast-check';
import { IpAddress, Prefix } from './cidr.js';
import {
  candidateSubnets,
  captureDeviceName,
  isWellKnownPort,
  vxlanDeviceName,
  DEFAULT_UDP_PORT,
  DEFAULT_VNI,
  DEFAULT_VXLAN_PORT,
  DEFAULT_WIREGUARD_PORT,
  DEFAULT_WIREGUARD_PORT_V6,
  isSubnetAllowed,
  MAX_CONFIG_BYTES,
  parseNetworkConfig,
  SUPPORTED_BACKENDS,
  type FamilyConfig,
  type NetworkConfig,
} from './config.js';
import { InvalidConfigError, WeftError } from './errors.js';

/** How many subnets the range SubnetMin..SubnetMax holds. */
function subnetRangeSize(plan: FamilyConfig): bigint {
  return plan.network.indexOf(plan.subnetMax) - plan.network.indexOf(plan.subnetMin) + 1n;
}

function parse(config: Record<string, unknown>): NetworkConfig {
  return parseNetworkConfig(JSON.stringify(config));
}

/** Asserts that parsing throws an InvalidConfigError naming `field`, with a message matching `message`. */
function rejects(config: Record<string, unknown> | string, field: string, message: RegExp | string): void {
  const text = typeof config === 'string' ? config : JSON.stringify(config);
  assert.throws(
    () => parseNetworkConfig(text),
    (err: unknown) => {
      assert.ok(err instanceof InvalidConfigError, `expected InvalidConfigError, got ${String(err)}`);
      assert.ok(err instanceof WeftError);
      assert.equal(err.code, 'WEFT_INVALID_CONFIG');
      assert.equal(err.name, 'InvalidConfigError');
      assert.equal(err.field, field);
      if (typeof message === 'string') assert.equal(err.message, message);
      else assert.match(err.message, message);
      return true;
    },
  );
}

function ipv4(config: NetworkConfig): FamilyConfig {
  assert.ok(config.ipv4, 'expected an IPv4 plan');
  return config.ipv4;
}

function ipv6(config: NetworkConfig): FamilyConfig {
  assert.ok(config.ipv6, 'expected an IPv6 plan');
  return config.ipv6;
}

function plan(family: FamilyConfig): Record<string, string | number> {
  return {
    network: family.network.toString(),
    subnetLen: family.subnetLen,
    subnetMin: family.subnetMin.toString(),
    subnetMax: family.subnetMax.toString(),
  };
}

const VXLAN = { Type: 'vxlan' };
/** What no overlay Network may overlap ("this network", loopback, link-local, multicast; ::, ::1). */
const SPECIAL_IPV4 = ['0.0.0.0/8', '127.0.0.0/8', '169.254.0.0/16', '224.0.0.0/4'].map((text) => Prefix.parse(text));
const SPECIAL_IPV6 = ['::/128', '::1/128', 'fe80::/10', 'ff00::/8'].map((text) => Prefix.parse(text));

describe('config', () => {
  describe('parseNetworkConfig: a typical flannel config', () => {
    it('fills in flannel defaults for {"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}', () => {
      const config = parseNetworkConfig('{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}');
      assert.deepEqual(plan(ipv4(config)), {
        network: '10.5.0.0/16',
        subnetLen: 24,
        subnetMin: '10.5.1.0/24',
        subnetMax: '10.5.255.0/24',
      });
      assert.equal(ipv4(config).family, 4);
      assert.equal(config.ipv6, undefined);
      assert.deepEqual(config.backend, {
        type: 'vxlan',
        vni: 1,
        port: 8472,
        gbp: false,
        learning: false,
        directRouting: false,
        mtu: undefined,
        userspace: 'auto',
      });
      assert.deepEqual(config.warnings, []);
      assert.deepEqual(config.raw, { Network: '10.5.0.0/16', Backend: { Type: 'vxlan' } });
    });

    it('exports flannel default ports and VNI', () => {
      assert.equal(DEFAULT_VXLAN_PORT, 8472);
      assert.equal(DEFAULT_UDP_PORT, 8285);
      assert.equal(DEFAULT_VNI, 1);
      assert.deepEqual([DEFAULT_WIREGUARD_PORT, DEFAULT_WIREGUARD_PORT_V6], [51820, 51821]);
      assert.deepEqual([...SUPPORTED_BACKENDS].sort(), ['host-gw', 'udp', 'vxlan', 'wireguard']);
    });

    it('keeps fields it does not know in raw', () => {
      const text = '{"Network":"198.18.0.0/16","EnableNFTables":true,"Backend":{"Type":"vxlan","Future":[1,2]},"Zzz":{"a":null}}';
      const config = parseNetworkConfig(text);
      assert.equal(JSON.stringify(config.raw), text);
    });
  });

  describe('SubnetLen default', () => {
    // flannel: 24 when Network is /22 or larger, else Network's length + 2; a Network smaller than /28 is rejected.
    const table: [string, number, string, string][] = [
      ['10.0.0.0/8', 24, '10.0.1.0/24', '10.255.255.0/24'],
      ['198.18.0.0/15', 24, '198.18.1.0/24', '198.19.255.0/24'],
      ['198.18.0.0/16', 24, '198.18.1.0/24', '198.18.255.0/24'],
      ['198.18.0.0/21', 24, '198.18.1.0/24', '198.18.7.0/24'],
      ['198.18.0.0/22', 24, '198.18.1.0/24', '198.18.3.0/24'],
      ['198.18.0.0/23', 25, '198.18.0.128/25', '198.18.1.128/25'],
      ['198.18.0.0/24', 26, '198.18.0.64/26', '198.18.0.192/26'],
      ['198.18.0.0/26', 28, '198.18.0.16/28', '198.18.0.48/28'],
      ['198.18.0.0/28', 30, '198.18.0.4/30', '198.18.0.12/30'],
    ];
    for (const [network, subnetLen, min, max] of table) {
      it(`Network ${network} -> SubnetLen ${subnetLen}, ${min} .. ${max}`, () => {
        assert.deepEqual(plan(ipv4(parse({ Network: network, Backend: VXLAN }))), {
          network,
          subnetLen,
          subnetMin: min,
          subnetMax: max,
        });
      });
    }

    it('treats SubnetLen 0 (Go zero value) and null as unset', () => {
      assert.equal(ipv4(parse({ Network: '198.18.0.0/16', SubnetLen: 0, Backend: VXLAN })).subnetLen, 24);
      assert.equal(ipv4(parse({ Network: '198.18.0.0/16', SubnetLen: null, Backend: VXLAN })).subnetLen, 24);
    });

    for (const length of [29, 30, 31, 32]) {
      it(`rejects Network /${length} as smaller than /28`, () => {
        const network = `198.18.0.0/${length}`;
        rejects({ Network: network, Backend: VXLAN }, 'Network', `Network ${network} is smaller than /28`);
      });
    }

    it('names the exact value in the smaller-than error (flannel example)', () => {
      rejects({ Network: '10.5.0.0/29', Backend: VXLAN }, 'Network', 'Network 10.5.0.0/29 is smaller than /28');
    });

    it('rejects a too-small Network even with an explicit SubnetLen', () => {
      rejects({ Network: '198.18.0.0/29', SubnetLen: 31, Backend: VXLAN }, 'Network', /is smaller than \/28/);
    });
  });

  describe('SubnetLen explicit', () => {
    it('accepts lengths from Network+2 up to 30', () => {
      assert.deepEqual(plan(ipv4(parse({ Network: '198.18.0.0/16', SubnetLen: 18, Backend: VXLAN }))), {
        network: '198.18.0.0/16',
        subnetLen: 18,
        subnetMin: '198.18.64.0/18',
        subnetMax: '198.18.192.0/18',
      });
      assert.deepEqual(plan(ipv4(parse({ Network: '198.18.0.0/16', SubnetLen: 30, Backend: VXLAN }))), {
        network: '198.18.0.0/16',
        subnetLen: 30,
        subnetMin: '198.18.0.4/30',
        subnetMax: '198.18.255.252/30',
      });
      assert.equal(ipv4(parse({ Network: '198.18.0.0/28', SubnetLen: 30, Backend: VXLAN })).subnetLen, 30);
    });

    it('rejects SubnetLen longer than the address', () => {
      rejects({ Network: '198.18.0.0/16', SubnetLen: 33, Backend: VXLAN }, 'SubnetLen', 'SubnetLen 33 is longer than 32');
      rejects({ Network: '198.18.0.0/16', SubnetLen: 1000, Backend: VXLAN }, 'SubnetLen', 'SubnetLen 1000 is longer than 32');
    });

    it('rejects SubnetLen 31 and 32 (no room for a bridge and a tunnel address)', () => {
      rejects({ Network: '198.18.0.0/16', SubnetLen: 31, Backend: VXLAN }, 'SubnetLen', /^SubnetLen 31 is longer than 30/);
      rejects({ Network: '198.18.0.0/16', SubnetLen: 32, Backend: VXLAN }, 'SubnetLen', /^SubnetLen 32 is longer than 30/);
    });

    it('rejects a SubnetLen that leaves fewer than four subnets', () => {
      rejects(
        { Network: '198.18.0.0/16', SubnetLen: 17, Backend: VXLAN },
        'SubnetLen',
        'SubnetLen 17 leaves Network 198.18.0.0/16 fewer than four subnets (use /18 or longer)',
      );
      rejects({ Network: '198.18.0.0/16', SubnetLen: 16, Backend: VXLAN }, 'SubnetLen', /SubnetLen 16 leaves/);
      rejects({ Network: '198.18.0.0/16', SubnetLen: 8, Backend: VXLAN }, 'SubnetLen', /SubnetLen 8 leaves/);
    });

    for (const bad of ['24', 24.5, true, [24], { v: 24 }]) {
      it(`rejects SubnetLen ${JSON.stringify(bad)} as not an integer`, () => {
        rejects({ Network: '198.18.0.0/16', SubnetLen: bad, Backend: VXLAN }, 'SubnetLen', /^SubnetLen .* is not an integer$/);
      });
    }

    it('rejects a negative SubnetLen (Go decodes it into a uint and fails)', () => {
      rejects({ Network: '198.18.0.0/16', SubnetLen: -1, Backend: VXLAN }, 'SubnetLen', /^SubnetLen -1 is outside/);
    });
  });

  describe('SubnetMin and SubnetMax', () => {
    const base = { Network: '10.5.0.0/16', Backend: VXLAN };

    it('takes explicit bounds', () => {
      const family = ipv4(parse({ ...base, SubnetMin: '10.5.10.0', SubnetMax: '10.5.20.0' }));
      assert.equal(family.subnetMin.toString(), '10.5.10.0/24');
      assert.equal(family.subnetMax.toString(), '10.5.20.0/24');
      assert.equal(subnetRangeSize(family), 11n);
    });

    it('allows the first subnet when asked for explicitly, and min == max', () => {
      const family = ipv4(parse({ ...base, SubnetMin: '10.5.0.0', SubnetMax: '10.5.0.0' }));
      assert.equal(family.subnetMin.toString(), '10.5.0.0/24');
      assert.equal(subnetRangeSize(family), 1n);
    });

    it('treats "" and null as unset', () => {
      const family = ipv4(parse({ ...base, SubnetMin: '', SubnetMax: null }));
      assert.equal(family.subnetMin.toString(), '10.5.1.0/24');
      assert.equal(family.subnetMax.toString(), '10.5.255.0/24');
    });

    it('treats "0.0.0.0" as unset, as flannel does (Go zero value of its IP4 field)', () => {
      const family = ipv4(parse({ ...base, SubnetMin: '0.0.0.0', SubnetMax: '0.0.0.0' }));
      assert.equal(family.subnetMin.toString(), '10.5.1.0/24');
      assert.equal(family.subnetMax.toString(), '10.5.255.0/24');
    });

    it('rejects a bound that is not on a SubnetLen boundary', () => {
      rejects({ ...base, SubnetMin: '10.5.0.7' }, 'SubnetMin', 'SubnetMin 10.5.0.7 is not on a /24 boundary');
      rejects({ ...base, SubnetMax: '10.5.9.128' }, 'SubnetMax', 'SubnetMax 10.5.9.128 is not on a /24 boundary');
      rejects({ ...base, SubnetLen: 26, SubnetMin: '10.5.0.32' }, 'SubnetMin', 'SubnetMin 10.5.0.32 is not on a /26 boundary');
    });

    it('rejects a bound outside Network', () => {
      rejects({ ...base, SubnetMin: '10.6.0.0' }, 'SubnetMin', 'SubnetMin 10.6.0.0 is outside Network 10.5.0.0/16');
      rejects({ ...base, SubnetMax: '10.4.255.0' }, 'SubnetMax', 'SubnetMax 10.4.255.0 is outside Network 10.5.0.0/16');
      rejects({ ...base, SubnetMin: 'fc00::' }, 'SubnetMin', /^SubnetMin fc00:: is outside Network/);
    });

    it('rejects a bound that is not an address or not a string', () => {
      rejects({ ...base, SubnetMin: 'ten.five' }, 'SubnetMin', 'SubnetMin "ten.five" is not an IP address');
      rejects({ ...base, SubnetMax: '10.5.9.0/24' }, 'SubnetMax', 'SubnetMax "10.5.9.0/24" is not an IP address');
      rejects({ ...base, SubnetMin: 167117056 }, 'SubnetMin', 'SubnetMin 167117056 is not a string');
    });

    it('rejects SubnetMin above SubnetMax', () => {
      rejects({ ...base, SubnetMin: '10.5.20.0', SubnetMax: '10.5.10.0' }, 'SubnetMin', 'SubnetMin 10.5.20.0 is above SubnetMax 10.5.10.0');
      rejects({ ...base, SubnetMin: '10.5.20.0', SubnetMax: '10.5.0.0' }, 'SubnetMin', /is above SubnetMax/);
    });
  });

  describe('Network', () => {
    it('is required when IPv4 is enabled', () => {
      rejects({ Backend: VXLAN }, 'Network', "Network is missing: give the overlay's IPv4 CIDR");
      rejects({ Network: '', Backend: VXLAN }, 'Network', /^Network is missing/);
      rejects({ Network: null, Backend: VXLAN }, 'Network', /^Network is missing/);
    });

    it('must be an IPv4 CIDR string', () => {
      rejects({ Network: 10, Backend: VXLAN }, 'Network', 'Network 10 is not a string');
      rejects({ Network: '10.5.0.0', Backend: VXLAN }, 'Network', /^Network "10\.5\.0\.0" is invalid: .*no "\/length"/);
      rejects({ Network: '10.5.0.0/33', Backend: VXLAN }, 'Network', /^Network "10\.5\.0\.0\/33" is invalid/);
      rejects({ Network: '2001:db8:100::/48', Backend: VXLAN }, 'Network', 'Network 2001:db8:100::/48 is not an IPv4 prefix');
    });

    it("masks host bits off Network and IPv6Network as flanneld does (Go's net.ParseCIDR), with a warning", () => {
      const config = parse({ Network: '198.18.1.0/16', EnableIPv6: true, IPv6Network: '2001:db8:100:7::/48', Backend: VXLAN });
      assert.equal(ipv4(config).network.toString(), '198.18.0.0/16');
      assert.equal(ipv4(config).subnetMin.toString(), '198.18.1.0/24');
      assert.equal(ipv6(config).network.toString(), '2001:db8:100::/48');
      assert.deepEqual(config.warnings, [
        'Network 198.18.1.0/16 has host bits set: using 198.18.0.0/16 (as flanneld does); write 198.18.0.0/16 in the config',
        'IPv6Network 2001:db8:100:7::/48 has host bits set: using 2001:db8:100::/48 (as flanneld does); write 2001:db8:100::/48 in the config',
      ]);
      assert.deepEqual(parse({ Network: '198.18.0.0/16', Backend: VXLAN }).warnings, []);
    });

    it('refuses a Network that covers every address, or overlaps loopback, link-local, multicast or "this network"', () => {
      rejects({ Network: '0.0.0.0/0', Backend: VXLAN }, 'Network', /^Network 0\.0\.0\.0\/0 covers every address/);
      const table: [string, string][] = [
        ['127.0.0.0/8', 'the loopback range 127.0.0.0/8'],
        ['127.5.0.0/16', 'the loopback range 127.0.0.0/8'],
        ['0.0.0.0/1', 'the "this network" range 0.0.0.0/8'],
        ['96.0.0.0/3', 'the loopback range 127.0.0.0/8'],
        ['169.254.0.0/16', 'the link-local range 169.254.0.0/16'],
        ['169.254.169.0/24', 'the link-local range 169.254.0.0/16'],
        ['128.0.0.0/1', 'the link-local range 169.254.0.0/16'],
        ['224.0.0.0/4', 'the multicast range 224.0.0.0/4'],
        ['239.1.0.0/16', 'the multicast range 224.0.0.0/4'],
        ['0.5.0.0/16', 'the "this network" range 0.0.0.0/8'],
      ];
      for (const [network, range] of table) {
        rejects(
          { Network: network, Backend: VXLAN },
          'Network',
          `Network ${network} overlaps ${range}: those addresses cannot be routed through an overlay`,
        );
      }
      // next to them, and flannel's usual ranges, are fine
      for (const network of [
        '1.0.0.0/8',
        '126.0.0.0/8',
        '128.0.0.0/8',
        '169.253.0.0/16',
        '169.255.0.0/16',
        '208.0.0.0/4',
        '240.0.0.0/8',
        '10.0.0.0/8',
        '198.18.0.0/15',
      ]) {
        assert.equal(ipv4(parse({ Network: network, Backend: VXLAN })).network.toString(), network);
      }
    });
  });

  describe('EnableIPv4 and EnableIPv6', () => {
    it('IPv4 only by default; explicit true is the same', () => {
      const config = parse({ Network: '198.18.0.0/16', EnableIPv4: true, EnableIPv6: false, Backend: VXLAN });
      assert.ok(config.ipv4);
      assert.equal(config.ipv6, undefined);
    });

    it('IPv6 only when EnableIPv4 is false; Network is then not needed', () => {
      const config = parse({ EnableIPv4: false, EnableIPv6: true, IPv6Network: '2001:db8:100::/48', Backend: VXLAN });
      assert.equal(config.ipv4, undefined);
      assert.equal(ipv6(config).family, 6);
    });

    it('dual stack', () => {
      const config = parse({
        Network: '198.18.0.0/16',
        EnableIPv6: true,
        IPv6Network: '2001:db8:100::/48',
        Backend: VXLAN,
      });
      assert.equal(ipv4(config).subnetLen, 24);
      assert.equal(ipv6(config).subnetLen, 64);
    });

    it('rejects both disabled', () => {
      rejects(
        { EnableIPv4: false, EnableIPv6: false, Backend: VXLAN },
        'EnableIPv4',
        'EnableIPv4 and EnableIPv6 are both false: nothing to route',
      );
    });

    it('rejects non-booleans and takes null as the default', () => {
      rejects({ Network: '198.18.0.0/16', EnableIPv4: 'true', Backend: VXLAN }, 'EnableIPv4', 'EnableIPv4 "true" is not true or false');
      rejects({ Network: '198.18.0.0/16', EnableIPv6: 1, Backend: VXLAN }, 'EnableIPv6', 'EnableIPv6 1 is not true or false');
      assert.ok(parse({ Network: '198.18.0.0/16', EnableIPv4: null, Backend: VXLAN }).ipv4);
    });

    it('ignores IPv6 fields when IPv6 is not enabled', () => {
      const config = parse({ Network: '198.18.0.0/16', IPv6Network: 'garbage', IPv6SubnetLen: 'x', Backend: VXLAN });
      assert.equal(config.ipv6, undefined);
    });

    it('ignores IPv4 fields when IPv4 is disabled', () => {
      const config = parse({ EnableIPv4: false, Network: 'garbage', EnableIPv6: true, IPv6Network: 'fc00::/48', Backend: VXLAN });
      assert.equal(config.ipv4, undefined);
    });
  });

  describe('IPv6', () => {
    const v6 = (extra: Record<string, unknown>) => ({ EnableIPv4: false, EnableIPv6: true, Backend: VXLAN, ...extra });

    const table: [string, number, string, string][] = [
      ['2001:db8:100::/48', 64, '2001:db8:100:1::/64', '2001:db8:100:ffff::/64'],
      ['2001:db8:100::/62', 64, '2001:db8:100:1::/64', '2001:db8:100:3::/64'],
      ['2001:db8:100::/63', 65, '2001:db8:100:0:8000::/65', '2001:db8:100:1:8000::/65'],
      ['2001:db8:100::/120', 122, '2001:db8:100::40/122', '2001:db8:100::c0/122'],
      ['2001:db8:100::/124', 126, '2001:db8:100::4/126', '2001:db8:100::c/126'],
    ];
    for (const [network, subnetLen, min, max] of table) {
      it(`IPv6Network ${network} -> IPv6SubnetLen ${subnetLen}, ${min} .. ${max}`, () => {
        assert.deepEqual(plan(ipv6(parse(v6({ IPv6Network: network })))), { network, subnetLen, subnetMin: min, subnetMax: max });
      });
    }

    it('rejects an IPv6Network smaller than /124', () => {
      rejects(v6({ IPv6Network: '2001:db8:100::/125' }), 'IPv6Network', 'IPv6Network 2001:db8:100::/125 is smaller than /124');
    });

    it('refuses an IPv6Network that covers every address, or overlaps loopback, link-local, multicast or ::', () => {
      rejects(v6({ IPv6Network: '::/0' }), 'IPv6Network', /^IPv6Network ::\/0 covers every address/);
      const table: [string, string][] = [
        ['::/64', 'the unspecified-address range ::/128'],
        ['fe80::/64', 'the link-local range fe80::/10'],
        ['fe80::/9', 'the link-local range fe80::/10'],
        ['ff02::/16', 'the multicast range ff00::/8'],
        ['8000::/1', 'the link-local range fe80::/10'],
      ];
      for (const [network, range] of table)
        rejects(
          v6({ IPv6Network: network }),
          'IPv6Network',
          `IPv6Network ${network} overlaps ${range}: those addresses cannot be routed through an overlay`,
        );
      assert.equal(ipv6(parse(v6({ IPv6Network: 'fec0::/10' }))).network.toString(), 'fec0::/10');
      assert.equal(ipv6(parse(v6({ IPv6Network: '::100/120' }))).network.toString(), '::100/120');
    });

    it('requires IPv6Network and an IPv6 prefix in it', () => {
      rejects(v6({}), 'IPv6Network', /^IPv6Network is missing/);
      rejects(v6({ IPv6Network: '198.18.0.0/16' }), 'IPv6Network', 'IPv6Network 198.18.0.0/16 is not an IPv6 prefix');
      rejects(v6({ IPv6Network: 'fc00::/48x' }), 'IPv6Network', /^IPv6Network "fc00::\/48x" is invalid/);
    });

    it('validates IPv6SubnetLen', () => {
      assert.equal(ipv6(parse(v6({ IPv6Network: '2001:db8:100::/48', IPv6SubnetLen: 80 }))).subnetLen, 80);
      rejects(v6({ IPv6Network: '2001:db8:100::/48', IPv6SubnetLen: 129 }), 'IPv6SubnetLen', 'IPv6SubnetLen 129 is longer than 128');
      rejects(v6({ IPv6Network: '2001:db8:100::/48', IPv6SubnetLen: 127 }), 'IPv6SubnetLen', /^IPv6SubnetLen 127 is longer than 126/);
      rejects(v6({ IPv6Network: '2001:db8:100::/48', IPv6SubnetLen: 49 }), 'IPv6SubnetLen', /^IPv6SubnetLen 49 leaves IPv6Network/);
    });

    it('validates IPv6SubnetMin and IPv6SubnetMax', () => {
      const family = ipv6(
        parse(v6({ IPv6Network: '2001:db8:100::/48', IPv6SubnetMin: '2001:db8:100:a::', IPv6SubnetMax: '2001:DB8:100:14::' })),
      );
      assert.equal(family.subnetMin.toString(), '2001:db8:100:a::/64');
      assert.equal(family.subnetMax.toString(), '2001:db8:100:14::/64');
      assert.equal(subnetRangeSize(family), 11n);
      rejects(
        v6({ IPv6Network: '2001:db8:100::/48', IPv6SubnetMin: '2001:db8:100:a::1' }),
        'IPv6SubnetMin',
        'IPv6SubnetMin 2001:db8:100:a::1 is not on a /64 boundary',
      );
      rejects(
        v6({ IPv6Network: '2001:db8:100::/48', IPv6SubnetMax: '2001:db8:200::' }),
        'IPv6SubnetMax',
        'IPv6SubnetMax 2001:db8:200:: is outside IPv6Network 2001:db8:100::/48',
      );
      rejects(
        v6({ IPv6Network: '2001:db8:100::/48', IPv6SubnetMin: '2001:db8:100:9::', IPv6SubnetMax: '2001:db8:100:8::' }),
        'IPv6SubnetMin',
        'IPv6SubnetMin 2001:db8:100:9:: is above IPv6SubnetMax 2001:db8:100:8::',
      );
    });

    it('treats "::" as an unset IPv6SubnetMin/Max, as flannel does', () => {
      const family = ipv6(parse(v6({ IPv6Network: '2001:db8:100::/48', IPv6SubnetMin: '::', IPv6SubnetMax: '0::0' })));
      assert.equal(family.subnetMin.toString(), '2001:db8:100:1::/64');
      assert.equal(family.subnetMax.toString(), '2001:db8:100:ffff::/64');
    });
  });

  describe('field names are case-insensitive, like Go encoding/json', () => {
    it('reads any casing of every field', () => {
      const config = parse({
        network: '198.18.0.0/16',
        SUBNETLEN: 26,
        subnetmin: '198.18.0.64',
        SubNetMax: '198.18.1.0',
        enableipv6: true,
        ipv6network: '2001:db8:100::/48',
        IPV6SUBNETLEN: 80,
        ipv6subnetmin: '2001:db8:100:0:1::',
        backend: { type: 'vxlan', vni: 7, port: 4789, gbp: true, learning: true, directrouting: true, mtu: 1400, USERSPACE: 'never' },
      });
      assert.deepEqual(plan(ipv4(config)), {
        network: '198.18.0.0/16',
        subnetLen: 26,
        subnetMin: '198.18.0.64/26',
        subnetMax: '198.18.1.0/26',
      });
      assert.equal(ipv6(config).subnetLen, 80);
      assert.equal(ipv6(config).subnetMin.toString(), '2001:db8:100:0:1::/80');
      assert.deepEqual(config.backend, {
        type: 'vxlan',
        vni: 7,
        port: 4789,
        gbp: true,
        learning: true,
        directRouting: true,
        mtu: 1400,
        userspace: 'never',
      });
      assert.deepEqual(config.warnings, []);
    });

    it('lets the last of several matching keys win, whatever their case (Go assigns each in document order)', () => {
      const read = (text: string) => ipv4(parseNetworkConfig(text)).network.toString();
      assert.equal(read('{"Network":"10.5.0.0/16","network":"10.6.0.0/16","Backend":{"Type":"vxlan"}}'), '10.6.0.0/16');
      assert.equal(read('{"network":"10.6.0.0/16","Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}'), '10.5.0.0/16');
      assert.equal(read('{"network":"10.5.0.0/16","NETWORK":"10.6.0.0/16","Backend":{"Type":"vxlan"}}'), '10.6.0.0/16');
      // an exact duplicate: JSON.parse keeps the last value, as Go does
      assert.equal(read('{"Network":"10.5.0.0/16","Network":"10.6.0.0/16","Backend":{"Type":"vxlan"}}'), '10.6.0.0/16');
      const backend = parseNetworkConfig('{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan","type":"host-gw"}}').backend;
      assert.equal(backend.type, 'host-gw');
    });

    it('does not match names that only look alike', () => {
      rejects({ Net_work: '198.18.0.0/16', Backend: VXLAN }, 'Network', /^Network is missing/);
      rejects({ ' Network': '198.18.0.0/16', Backend: VXLAN }, 'Network', /^Network is missing/);
    });
  });

  describe('Backend', () => {
    const net = { Network: '198.18.0.0/16' };

    it('missing Backend means udp, as flannel code does, with a warning', () => {
      const config = parse(net);
      assert.deepEqual(config.backend, { type: 'udp', port: 8285, mtu: undefined });
      assert.equal(config.warnings.length, 1);
      assert.match(config.warnings[0], /Backend is missing/);
      assert.match(config.warnings[0], /udp/);
    });

    it('refuses a null Backend, as flanneld does (it keeps the literal null, finds no Type and exits), rather than taking udp', () => {
      rejects({ ...net, Backend: null }, 'Backend', /^Backend is null: flanneld refuses it \(unknown backend type ""\)/);
      rejects('{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"},"backend":null}', 'Backend', /^Backend is null/);
    });

    it('an explicit backend gives no warning', () => {
      for (const type of ['vxlan', 'host-gw', 'udp']) assert.deepEqual(parse({ ...net, Backend: { Type: type } }).warnings, []);
    });

    it('rejects a Backend that is not an object', () => {
      rejects({ ...net, Backend: 'vxlan' }, 'Backend', 'Backend "vxlan" is not an object');
      rejects({ ...net, Backend: ['vxlan'] }, 'Backend', 'Backend ["vxlan"] is not an object');
      rejects({ ...net, Backend: 1 }, 'Backend', 'Backend 1 is not an object');
    });

    it('requires Backend.Type', () => {
      rejects({ ...net, Backend: {} }, 'Backend.Type', 'Backend.Type is missing');
      rejects({ ...net, Backend: { Type: '' } }, 'Backend.Type', 'Backend.Type is missing');
      rejects({ ...net, Backend: { Type: 1 } }, 'Backend.Type', 'Backend.Type 1 is not a string');
    });

    it('rejects an unknown type, naming it', () => {
      rejects({ ...net, Backend: { Type: 'foo' } }, 'Backend.Type', 'Backend.Type "foo" is unknown');
      // flannel's backend registry is case-sensitive
      rejects({ ...net, Backend: { Type: 'VXLAN' } }, 'Backend.Type', 'Backend.Type "VXLAN" is unknown');
    });

    for (const type of ['ipip', 'ipsec', 'alloc', 'extension', 'gce', 'aws-vpc', 'ali-vpc', 'tencent-vpc']) {
      it(`names flannel's ${type} as not supported rather than unknown`, () => {
        rejects(
          { ...net, Backend: { Type: type } },
          'Backend.Type',
          /^Backend\.Type ".*" is not supported by weft \(supported: vxlan, host-gw, udp, wireguard\)$/,
        );
      });
    }

    it('warns about a VNI above 65535, which flanneld before v0.24 reads as 16 bits and so skips the host', () => {
      const vni = (value: number) => parse({ ...net, Backend: { Type: 'vxlan', VNI: value } });
      assert.deepEqual(vni(65535).warnings, []);
      assert.equal((vni(65536).backend as { vni: number }).vni, 65536);
      assert.deepEqual(vni(65536).warnings, [
        "Backend.VNI 65536 is above 65535: flanneld before v0.24 reads a peer's VNI as a 16-bit number and skips this network's hosts",
      ]);
    });

    it('vxlan options and their bounds', () => {
      const vxlan = (options: Record<string, unknown>) => parse({ ...net, Backend: { Type: 'vxlan', ...options } }).backend;
      assert.deepEqual(vxlan({ VNI: 0 }), { ...vxlan({}), vni: 0 });
      assert.equal((vxlan({ VNI: 0xffffff }) as { vni: number }).vni, 0xffffff);
      assert.equal((vxlan({ Port: 0 }) as { port: number }).port, 8472);
      assert.equal((vxlan({ Port: 4789 }) as { port: number }).port, 4789);
      assert.equal((vxlan({ Port: 65535 }) as { port: number }).port, 65535);
      assert.equal((vxlan({ MTU: 138 }) as { mtu: number }).mtu, 138);
      assert.equal((vxlan({ Userspace: 'always' }) as { userspace: string }).userspace, 'always');
      assert.equal((vxlan({ Userspace: 'auto' }) as { userspace: string }).userspace, 'auto');
      assert.equal((vxlan({ GBP: null }) as { gbp: boolean }).gbp, false);
      const path = 'Backend.VNI';
      rejects({ ...net, Backend: { Type: 'vxlan', VNI: 0x1000000 } }, path, 'Backend.VNI 16777216 is outside 0-16777215');
      rejects({ ...net, Backend: { Type: 'vxlan', VNI: -1 } }, path, 'Backend.VNI -1 is outside 0-16777215');
      rejects({ ...net, Backend: { Type: 'vxlan', VNI: '1' } }, path, 'Backend.VNI "1" is not an integer');
      rejects({ ...net, Backend: { Type: 'vxlan', Port: 65536 } }, 'Backend.Port', 'Backend.Port 65536 is outside 0-65535');
      rejects({ ...net, Backend: { Type: 'vxlan', MTU: 137 } }, 'Backend.MTU', 'Backend.MTU 137 is outside 138-65535');
      rejects({ ...net, Backend: { Type: 'vxlan', GBP: 'true' } }, 'Backend.GBP', 'Backend.GBP "true" is not true or false');
      rejects({ ...net, Backend: { Type: 'vxlan', Learning: 0 } }, 'Backend.Learning', 'Backend.Learning 0 is not true or false');
      rejects({ ...net, Backend: { Type: 'vxlan', DirectRouting: 'yes' } }, 'Backend.DirectRouting', /^Backend\.DirectRouting "yes"/);
      rejects(
        { ...net, Backend: { Type: 'vxlan', Userspace: 'sometimes' } },
        'Backend.Userspace',
        'Backend.Userspace "sometimes" is not one of auto, always, never',
      );
    });

    it('refuses a VNI whose device name Linux cannot hold (15 characters): weft-v6.<VNI>, or weft.<VNI>.c', () => {
      const dual = { ...net, EnableIPv6: true, IPv6Network: '2001:db8:100::/48' };
      assert.equal((parse({ ...dual, Backend: { Type: 'vxlan', VNI: 9_999_999 } }).backend as { vni: number }).vni, 9_999_999);
      rejects(
        { ...dual, Backend: { Type: 'vxlan', VNI: 10_000_000 } },
        'Backend.VNI',
        'Backend.VNI 10000000 makes the device name "weft-v6.10000000" 16 characters long; Linux allows 15 (use a VNI below 10000000)',
      );
      rejects(
        { EnableIPv4: false, EnableIPv6: true, IPv6Network: '2001:db8:100::/48', Backend: { Type: 'vxlan', VNI: 0xffffff } },
        'Backend.VNI',
        /^Backend\.VNI 16777215 makes the device name "weft-v6\.16777215" 16 characters long/,
      );
      // IPv4 alone: weft.16777215.c (the userspace path's capture end) is 15 characters
      assert.equal((parse({ ...net, Backend: { Type: 'vxlan', VNI: 0xffffff } }).backend as { vni: number }).vni, 0xffffff);
      assert.equal(vxlanDeviceName(4, 0xffffff), 'weft.16777215');
      assert.equal(captureDeviceName(vxlanDeviceName(4, 0xffffff)).length, 15);
      // other backends have fixed names
      assert.equal(parse({ ...dual, Backend: { Type: 'host-gw', VNI: 10_000_000 } }).backend.type, 'host-gw');
    });

    it('warns of a tunnel port below 1024, where well-known services listen', () => {
      for (const [type, port] of [
        ['vxlan', 53],
        ['vxlan', 123],
        ['udp', 67],
        ['udp', 1023],
      ] as const) {
        const config = parse({ ...net, Backend: { Type: type, Port: port } });
        assert.equal((config.backend as { port: number }).port, port);
        assert.equal(config.warnings.length, 1, `${type} ${port}`);
        assert.match(
          config.warnings[0],
          new RegExp(`^Backend\\.Port ${port} is below 1024.*leaves the port without its ingress allow-list`),
        );
      }
      assert.deepEqual(parse({ ...net, Backend: { Type: 'vxlan', Port: 1024 } }).warnings, []);
      assert.deepEqual(parse({ ...net, Backend: { Type: 'vxlan', Port: 0 } }).warnings, [], 'Port 0 is the default, 8472');
      assert.equal(isWellKnownPort(1023), true);
      assert.equal(isWellKnownPort(1024), false);
    });

    it("wireguard: flanneld's options and defaults (ListenPort 51820, ListenPortV6 51821, Mode separate, no PSK, no keepalive)", () => {
      const wireguard = (options: Record<string, unknown>) => parse({ ...net, Backend: { Type: 'wireguard', ...options } }).backend;
      assert.deepEqual(wireguard({}), {
        type: 'wireguard',
        listenPort: 51820,
        listenPortV6: 51821,
        psk: undefined,
        persistentKeepaliveInterval: 0,
        mode: 'separate',
        mtu: undefined,
      });
      const psk = 'yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=';
      assert.deepEqual(
        wireguard({ ListenPort: 4000, ListenPortV6: 4001, PSK: psk, PersistentKeepaliveInterval: 25, Mode: 'auto', MTU: 1400 }),
        {
          type: 'wireguard',
          listenPort: 4000,
          listenPortV6: 4001,
          psk,
          persistentKeepaliveInterval: 25,
          mode: 'auto',
          mtu: 1400,
        },
      );
      // Go's encoding/json matches field names case-insensitively, as for every other option
      assert.equal((wireguard({ listenport: 4000, mode: 'ipv6' }) as { listenPort: number }).listenPort, 4000);
      assert.equal((wireguard({ PSK: '' }) as { psk: unknown }).psk, undefined);
      for (const mode of ['separate', 'auto', 'ipv4', 'ipv6']) assert.equal((wireguard({ Mode: mode }) as { mode: string }).mode, mode);
    });

    it('wireguard: bad options are refused naming the key; a bad PSK is not echoed', () => {
      const wg = (options: Record<string, unknown>) => ({ ...net, Backend: { Type: 'wireguard', ...options } });
      // flanneld refuses an empty or unknown Mode ("no valid Mode configured")
      rejects(wg({ Mode: '' }), 'Backend.Mode', 'Backend.Mode "" is not one of separate, auto, ipv4, ipv6');
      rejects(wg({ Mode: 'both' }), 'Backend.Mode', 'Backend.Mode "both" is not one of separate, auto, ipv4, ipv6');
      rejects(wg({ ListenPort: 65536 }), 'Backend.ListenPort', 'Backend.ListenPort 65536 is outside 0-65535');
      rejects(wg({ ListenPortV6: '51821' }), 'Backend.ListenPortV6', 'Backend.ListenPortV6 "51821" is not an integer');
      // flanneld reads the interval as a whole number of seconds; "25s" does not parse there either
      rejects(wg({ PersistentKeepaliveInterval: '25s' }), 'Backend.PersistentKeepaliveInterval', /is not an integer/);
      rejects(wg({ PersistentKeepaliveInterval: 65536 }), 'Backend.PersistentKeepaliveInterval', /is outside 0-65535/);
      rejects(wg({ MTU: 147 }), 'Backend.MTU', 'Backend.MTU 147 is outside 148-65535');
      const secret = 'not-a-key-but-secret-all-the-same';
      try {
        parse(wg({ PSK: secret }));
        assert.fail('a bad PSK was accepted');
      } catch (err) {
        assert.ok(err instanceof InvalidConfigError);
        assert.equal(err.field, 'Backend.PSK');
        assert.doesNotMatch(err.message, /secret/);
      }
    });

    it('host-gw takes no options', () => {
      assert.deepEqual(parse({ ...net, Backend: { Type: 'host-gw', VNI: 'ignored' } }).backend, { type: 'host-gw' });
    });

    it('udp options', () => {
      assert.deepEqual(parse({ ...net, Backend: { Type: 'udp' } }).backend, { type: 'udp', port: 8285, mtu: undefined });
      assert.deepEqual(parse({ ...net, Backend: { Type: 'udp', Port: 0 } }).backend, { type: 'udp', port: 8285, mtu: undefined });
      assert.deepEqual(parse({ ...net, Backend: { Type: 'udp', Port: 9000, MTU: 1472 } }).backend, { type: 'udp', port: 9000, mtu: 1472 });
      rejects({ ...net, Backend: { Type: 'udp', Port: 1.5 } }, 'Backend.Port', 'Backend.Port 1.5 is not an integer');
    });
  });

  describe('malformed documents', () => {
    for (const text of ['', '{', 'not json', '{"Network":}', "{'Network':'10.5.0.0/16'}"]) {
      it(`rejects ${JSON.stringify(text)} as invalid JSON`, () => rejects(text, 'config', /^config is not valid JSON: /));
    }
    for (const text of ['null', '[]', '[{"Network":"10.5.0.0/16"}]', '42', '"10.5.0.0/16"', 'true']) {
      it(`rejects ${text} as not an object`, () => rejects(text, 'config', `config ${text} is not a JSON object`));
    }
  });

  describe('candidateSubnets, isSubnetAllowed, subnetRangeSize', () => {
    it('lists SubnetMin..SubnetMax in order for a /28', () => {
      const family = ipv4(parse({ Network: '198.18.0.0/28', Backend: VXLAN }));
      assert.deepEqual([...candidateSubnets(family)].map(String), ['198.18.0.4/30', '198.18.0.8/30', '198.18.0.12/30']);
      assert.equal(subnetRangeSize(family), 3n);
    });

    it('counts 255 subnets for a /16 with /24 subnets (the first is never handed out)', () => {
      const family = ipv4(parse({ Network: '10.5.0.0/16', Backend: VXLAN }));
      assert.equal(subnetRangeSize(family), 255n);
      const list = [...candidateSubnets(family)];
      assert.equal(list.length, 255);
      assert.equal(list[0].toString(), '10.5.1.0/24');
      assert.equal(list[254].toString(), '10.5.255.0/24');
    });

    it('respects explicit bounds', () => {
      const family = ipv4(parse({ Network: '10.5.0.0/16', SubnetMin: '10.5.52.0', SubnetMax: '10.5.54.0', Backend: VXLAN }));
      assert.deepEqual([...candidateSubnets(family)].map(String), ['10.5.52.0/24', '10.5.53.0/24', '10.5.54.0/24']);
    });

    it('allows only subnets of the right family and length inside the range', () => {
      const family = ipv4(parse({ Network: '10.5.0.0/16', SubnetMin: '10.5.10.0', SubnetMax: '10.5.20.0', Backend: VXLAN }));
      const allowed = (text: string) => isSubnetAllowed(family, Prefix.parse(text));
      assert.ok(allowed('10.5.10.0/24'));
      assert.ok(allowed('10.5.15.0/24'));
      assert.ok(allowed('10.5.20.0/24'));
      assert.ok(!allowed('10.5.9.0/24'));
      assert.ok(!allowed('10.5.21.0/24'));
      assert.ok(!allowed('10.5.15.0/25'));
      assert.ok(!allowed('10.5.14.0/23'));
      assert.ok(!allowed('10.6.15.0/24'));
      assert.ok(!allowed('::a05:f00/120'));
      assert.ok(!isSubnetAllowed(ipv4(parse({ Network: '10.5.0.0/16', Backend: VXLAN })), Prefix.parse('10.5.0.0/24')));
    });
  });

  describe('properties', () => {
    it('default SubnetLen, SubnetMin and SubnetMax follow flannel for every usable IPv4 Network', () => {
      const arb = fc
        .tuple(fc.bigInt({ min: 0n, max: (1n << 32n) - 1n }), fc.integer({ min: 1, max: 28 }))
        .map(([value, length]) => Prefix.of(IpAddress.fromValue(4, value), length))
        .filter((network) => !SPECIAL_IPV4.some((special) => special.overlaps(network)));
      fc.assert(
        fc.property(arb, (network) => {
          const family = ipv4(parse({ Network: network.toString(), Backend: VXLAN }));
          const expected = network.length <= 22 ? 24 : network.length + 2;
          assert.equal(family.subnetLen, expected);
          assert.ok(family.network.equals(network));
          assert.equal(family.subnetMin.base, network.base + (1n << BigInt(32 - expected)));
          assert.equal(family.subnetMax.base, network.last + 1n - (1n << BigInt(32 - expected)));
          assert.equal(family.subnetMin.length, expected);
          assert.equal(family.subnetMax.length, expected);
        }),
        { numRuns: 500 },
      );
    });

    it('default IPv6SubnetLen, IPv6SubnetMin and IPv6SubnetMax follow flannel for every usable IPv6Network', () => {
      const arb = fc
        .tuple(fc.bigInt({ min: 0n, max: (1n << 128n) - 1n }), fc.integer({ min: 1, max: 124 }))
        .map(([value, length]) => Prefix.of(IpAddress.fromValue(6, value), length))
        .filter((network) => !SPECIAL_IPV6.some((special) => special.overlaps(network)));
      fc.assert(
        fc.property(arb, (network) => {
          const family = ipv6(parse({ EnableIPv4: false, EnableIPv6: true, IPv6Network: network.toString(), Backend: VXLAN }));
          const expected = network.length <= 62 ? 64 : network.length + 2;
          assert.equal(family.subnetLen, expected);
          assert.equal(family.subnetMin.base, network.base + (1n << BigInt(128 - expected)));
          assert.equal(family.subnetMax.base, network.last + 1n - (1n << BigInt(128 - expected)));
        }),
        { numRuns: 500 },
      );
    });

    it('throws nothing but InvalidConfigError on arbitrary text', () => {
      fc.assert(
        fc.property(fc.oneof(fc.string(), fc.json(), fc.string({ unit: 'binary' })), (text) => {
          try {
            parseNetworkConfig(text);
          } catch (err) {
            assert.ok(err instanceof InvalidConfigError, `${JSON.stringify(text)} threw ${String(err)}`);
            assert.equal(err.code, 'WEFT_INVALID_CONFIG');
          }
        }),
        { numRuns: 2000 },
      );
    });

    /** A value of any JSON type, weighted towards values that are almost right for the known fields. */
    const fieldValue = fc.oneof(
      { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
      { weight: 2, arbitrary: fc.integer({ min: -2, max: 140 }) },
      { weight: 1, arbitrary: fc.boolean() },
      { weight: 1, arbitrary: fc.constant(null) },
      { weight: 1, arbitrary: fc.ipV4().map((a) => `${a}`) },
      { weight: 1, arbitrary: fc.ipV6().map((a) => `${a}`) },
      {
        weight: 3,
        arbitrary: fc
          .tuple(
            fc.oneof(fc.ipV4(), fc.ipV6(), fc.constantFrom('198.18.0.0', '2001:db8:100::', '0.0.0.0', '::')),
            fc.integer({ min: 0, max: 130 }),
          )
          .map(([a, n]) => `${a}/${n}`),
      },
      { weight: 1, arbitrary: fc.constantFrom('198.18.1.0', '198.18.0.64', '2001:db8:100:1::', '') },
    );
    const key = (name: string) => fc.oneof(fc.constant(name), fc.mixedCase(fc.constant(name)));
    const backendArb = fc.oneof(
      fieldValue,
      fc.dictionary(
        fc.oneof(
          key('Type'),
          key('VNI'),
          key('Port'),
          key('MTU'),
          key('GBP'),
          key('Learning'),
          key('DirectRouting'),
          key('Userspace'),
          fc.string(),
        ),
        fc.oneof(fieldValue, fc.constantFrom('vxlan', 'host-gw', 'udp', 'wireguard', 'auto', 'never')),
        { maxKeys: 6 },
      ),
    );
    const configArb = fc
      .dictionary(
        fc.oneof(
          key('Network'),
          key('SubnetLen'),
          key('SubnetMin'),
          key('SubnetMax'),
          key('EnableIPv4'),
          key('EnableIPv6'),
          key('IPv6Network'),
          key('IPv6SubnetLen'),
          key('IPv6SubnetMin'),
          key('IPv6SubnetMax'),
          fc.string(),
        ),
        fieldValue,
        { maxKeys: 10 },
      )
      .chain((obj) => backendArb.map((backend) => ({ ...obj, Backend: backend })));

    it('throws nothing but InvalidConfigError on objects with the known keys and random values, and what it accepts is consistent', () => {
      fc.assert(
        fc.property(configArb, (obj) => {
          let config: NetworkConfig;
          try {
            config = parseNetworkConfig(JSON.stringify(obj));
          } catch (err) {
            assert.ok(err instanceof InvalidConfigError, `${JSON.stringify(obj)} threw ${String(err)}`);
            assert.ok(err.field.length > 0);
            return;
          }
          assert.ok(config.ipv4 !== undefined || config.ipv6 !== undefined);
          for (const family of [config.ipv4, config.ipv6]) {
            if (family === undefined) continue;
            const bits = family.family === 4 ? 32 : 128;
            assert.ok(family.network.length <= bits - 4);
            assert.ok(![...SPECIAL_IPV4, ...SPECIAL_IPV6].some((special) => special.overlaps(family.network)), `${family.network}`);
            assert.ok(family.subnetLen >= family.network.length + 2);
            assert.ok(family.subnetLen <= bits - 2);
            assert.ok(family.network.contains(family.subnetMin));
            assert.ok(family.network.contains(family.subnetMax));
            assert.equal(family.subnetMin.length, family.subnetLen);
            assert.equal(family.subnetMax.length, family.subnetLen);
            assert.ok(family.subnetMin.base <= family.subnetMax.base);
            assert.ok(subnetRangeSize(family) >= 1n);
          }
          assert.ok(SUPPORTED_BACKENDS.includes(config.backend.type));
        }),
        { numRuns: 3000 },
      );
    });

    it('accepts every valid config built from the known keys and reads it back the same, however the keys are cased', () => {
      const arb = fc
        .tuple(
          fc.integer({ min: 8, max: 26 }),
          fc.integer({ min: 0, max: 4 }),
          fc.nat(),
          fc.nat(),
          fc.constantFrom('vxlan', 'host-gw', 'udp'),
        )
        .chain(([length, extra, i, j, type]) => {
          const net = Prefix.of(IpAddress.parse('198.18.0.0'), length);
          const subnetLen = Math.min(30, net.length + 2 + extra);
          const count = net.subnetCount(subnetLen);
          const a = BigInt(i) % count;
          const b = BigInt(j) % count;
          const min = net.nthSubnet(subnetLen, a < b ? a : b);
          const max = net.nthSubnet(subnetLen, a < b ? b : a);
          const entries: [string, unknown][] = [
            ['Network', net.toString()],
            ['SubnetLen', subnetLen],
            ['SubnetMin', min.network.toString()],
            ['SubnetMax', max.network.toString()],
          ];
          return fc
            .tuple(
              ...entries.map(([name]) => fc.mixedCase(fc.constant(name))),
              fc.mixedCase(fc.constant('Backend')),
              fc.mixedCase(fc.constant('Type')),
            )
            .map((names) => {
              const obj: Record<string, unknown> = {};
              entries.forEach(([, value], k) => (obj[names[k]] = value));
              obj[names[4]] = { [names[5]]: type };
              return { obj, net, subnetLen, min, max, type };
            });
        });
      fc.assert(
        fc.property(arb, ({ obj, net, subnetLen, min, max, type }) => {
          const config = parseNetworkConfig(JSON.stringify(obj));
          const family = ipv4(config);
          assert.ok(family.network.equals(net));
          assert.equal(family.subnetLen, subnetLen);
          assert.ok(family.subnetMin.equals(min));
          assert.ok(family.subnetMax.equals(max));
          assert.equal(config.backend.type, type);
        }),
        { numRuns: 500 },
      );
    });
  });

  describe('bounds on what is read (the config key may hold anything)', () => {
    const nested = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;
    const MAX_CONFIG_DEPTH = 32;

    it('drops a field it does not know that nests deeper than MAX_CONFIG_DEPTH, with a warning, and keeps the rest', () => {
      const config = parseNetworkConfig(
        `{"Network":"198.18.0.0/16","Junk":${nested(5000)},"Backend":{"Type":"vxlan"},"Kept":${nested(MAX_CONFIG_DEPTH)}}`,
      );
      assert.deepEqual(Object.keys(config.raw), ['Network', 'Backend', 'Kept']);
      assert.deepEqual(config.warnings, ['ignoring the config field "Junk": it nests deeper than 32 levels']);
      assert.doesNotThrow(() => JSON.stringify(config.raw));
    });

    it('rejects a field it reads that nests too deep, a config that is too deep itself, and one over MAX_CONFIG_BYTES', () => {
      const rejects = (text: string, field: string, message: string) =>
        assert.throws(
          () => parseNetworkConfig(text),
          (err: unknown) => {
            assert.ok(err instanceof InvalidConfigError);
            assert.equal(err.field, field);
            assert.equal(err.message, message);
            return true;
          },
        );
      rejects(
        `{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan","X":${nested(5000)}}}`,
        'Backend',
        'Backend nests deeper than 32 levels',
      );
      rejects(`{"Network":"198.18.0.0/16","backend":${nested(40)}}`, 'backend', 'backend nests deeper than 32 levels');
      rejects(nested(5000), 'config', 'config nested deeper than 32 levels is not a JSON object');
      const big = JSON.stringify({ Network: '198.18.0.0/16', Backend: { Type: 'vxlan' }, Pad: 'x'.repeat(MAX_CONFIG_BYTES) });
      rejects(big, 'config', `config is ${big.length} bytes, more than the 65536 weft reads`);
    });

    it('never throws anything but InvalidConfigError, and what it accepts can be written out again', () => {
      fc.assert(
        fc.property(fc.jsonValue(), fc.string(), (value, field) => {
          try {
            const config = parseNetworkConfig(JSON.stringify({ Network: '198.18.0.0/16', [field]: value }));
            JSON.stringify(config.raw);
            return true;
          } catch (err) {
            return err instanceof InvalidConfigError;
          }
        }),
      );
    });
  });
});
