import assert from 'node:assert/strict';
import fc from 'fast-check';
import { IpAddress, Prefix } from './cidr.js';
import { InvalidCidrError, InvalidLeaseError, WeftError } from './errors.js';
import {
  decodeLease,
  formatLeaseAttrs,
  formatLeaseKey,
  leaseBackend,
  leaseBackendTypeFor,
  parseLeaseAttrs,
  parseLeaseKey,
  parseVxlanBackendData,
  parseWireguardBackendData,
  sameLeaseAttrs,
  type LeaseAttrs,
} from './lease.js';

/** Asserts an InvalidLeaseError for `key` whose message (after the "key: " prefix) matches `message`. */
function throwsLease(fn: () => unknown, key: string, message?: RegExp | string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof InvalidLeaseError, `expected InvalidLeaseError, got ${String(err)}`);
    assert.ok(err instanceof WeftError);
    assert.equal(err.code, 'WEFT_INVALID_LEASE');
    assert.equal(err.key, key);
    assert.ok(err.message.startsWith(`${key}: `), err.message);
    const rest = err.message.slice(key.length + 2);
    if (typeof message === 'string') assert.equal(rest, message);
    else if (message) assert.match(rest, message);
    return true;
  });
}

/** flanneld's own lease value for a vxlan host (the format weft must read and write byte for byte). */
const FLANNELD_VXLAN =
  '{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}';
/** flanneld's udp backend sets only PublicIP, and BackendType is omitempty: its lease value, exactly. */
const FLANNELD_UDP = '{"PublicIP":"192.168.64.4","PublicIPv6":null}';
const KEY = '/coreos.com/network/subnets/10.5.52.0-24';
const KNOWN = ['PublicIP', 'PublicIPv6', 'BackendType', 'BackendData', 'BackendV6Data'];

const v4Subnet = fc
  .tuple(fc.bigInt({ min: 0n, max: (1n << 32n) - 1n }), fc.integer({ min: 0, max: 32 }))
  .map(([value, length]) => Prefix.of(IpAddress.fromValue(4, value), length));
const v6Subnet = fc
  .tuple(
    fc.array(fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xffff })), { minLength: 8, maxLength: 8 }),
    fc.integer({ min: 0, max: 128 }),
  )
  .map(([groups, length]) =>
    Prefix.of(
      IpAddress.fromValue(
        6,
        groups.reduce((acc, g) => (acc << 16n) | BigInt(g), 0n),
      ),
      length,
    ),
  );

/** JSON object keys that are neither lease fields nor integer-like (JS puts those first, so order would change). */
const extraKey = fc.string({ maxLength: 12 }).filter((k) => !KNOWN.includes(k) && !/^(0|[1-9]\d*)$/.test(k));
const jsonObject = fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 });

describe('lease', () => {
  describe('parseLeaseKey', () => {
    it('parses an IPv4 lease key', () => {
      const { ipv4, ipv6 } = parseLeaseKey('10.5.52.0-24');
      assert.ok(ipv4 && ipv4.equals(Prefix.parse('10.5.52.0/24')));
      assert.equal(ipv6, undefined);
    });

    it('parses a dual-stack lease key', () => {
      const { ipv4, ipv6 } = parseLeaseKey('10.5.52.0-24&fc00::-64');
      assert.ok(ipv4 && ipv4.equals(Prefix.parse('10.5.52.0/24')));
      assert.ok(ipv6 && ipv6.equals(Prefix.parse('fc00::/64')));
    });

    it('reads flannel\'s "0.0.0.0-0" placeholder as no IPv4 subnet', () => {
      const { ipv4, ipv6 } = parseLeaseKey('0.0.0.0-0&2001:db8:100:34::-64');
      assert.equal(ipv4, undefined);
      assert.ok(ipv6 && ipv6.equals(Prefix.parse('2001:db8:100:34::/64')));
    });

    it('accepts non-canonical IPv6 text and the longest lengths', () => {
      assert.equal(parseLeaseKey('198.18.0.0-30&2001:DB8:0100:0::-126').ipv6?.toString(), '2001:db8:100::/126');
      assert.equal(parseLeaseKey('198.18.0.4-32').ipv4?.toString(), '198.18.0.4/32');
    });

    const bad: [string, RegExp][] = [
      ['', /"" is not an IPv4 subnet in "<address>-<length>" form/],
      ['10.5.52.0/24', /is not an IPv4 subnet/],
      ['10.5.52.0-', /is not an IPv4 subnet/],
      ['-24', /is not an IPv4 subnet/],
      ['10.5.52-24', /is not an IPv4 subnet/],
      [' 10.5.52.0-24', /is not an IPv4 subnet/],
      ['10.5.52.0-24 ', /is not an IPv4 subnet/],
      ['10.5.52.0-024', /is not an IPv4 subnet/],
      ['10.5.52.0-33', /prefix length 33 is longer than 32/],
      ['10.5.52.1-24', /host bits set/],
      ['10.5.520.0-24', /is not an IPv4 or IPv6 address/],
      ['fc00::-64', /"fc00::-64" is not an IPv4 subnet/],
      ['10.5.52.0-24&', /"" is not an IPv6 subnet/],
      ['10.5.52.0-24&fc00::', /is not an IPv6 subnet/],
      ['10.5.52.0-24&fc00::1-64', /host bits set/],
      ['10.5.52.0-24&fc00::-129', /longer than 128/],
      ['10.5.52.0-24&10.5.53.0-24', /is not IPv6/],
      ['10.5.52.0-24&fe80::%eth0-64', /is not an IPv6 subnet/],
      ['10.5.52.0-24&fc00::-64&fc01::-64', /^is not a lease key$/],
      ['&fc00::-64', /"" is not an IPv4 subnet/],
      ['subnets/10.5.52.0-24', /is not an IPv4 subnet/],
    ];
    for (const [name, message] of bad) {
      it(`rejects ${JSON.stringify(name)}`, () => throwsLease(() => parseLeaseKey(name), name, message));
    }
  });

  describe('formatLeaseKey', () => {
    it('formats IPv4, dual-stack and IPv6-only keys as flannel does', () => {
      const v4 = Prefix.parse('10.5.52.0/24');
      const v6 = Prefix.parse('2001:DB8:100:34:0::/64');
      assert.equal(formatLeaseKey({ ipv4: v4, ipv6: undefined }), '10.5.52.0-24');
      assert.equal(formatLeaseKey({ ipv4: v4, ipv6: v6 }), '10.5.52.0-24&2001:db8:100:34::-64');
      assert.equal(formatLeaseKey({ ipv4: undefined, ipv6: v6 }), '0.0.0.0-0&2001:db8:100:34::-64');
    });

    it('prints IPv6 with the first longest zero run compressed, as Go does', () => {
      assert.equal(formatLeaseKey({ ipv4: undefined, ipv6: Prefix.parse('0:0:1:0:0:1::/96') }), '0.0.0.0-0&::1:0:0:1:0:0-96');
    });

    it('refuses a lease with no subnet', () => {
      assert.throws(() => formatLeaseKey({ ipv4: undefined, ipv6: undefined }), InvalidCidrError);
    });
  });

  describe('lease key properties', () => {
    const subnets = fc.oneof(
      fc.record({ ipv4: v4Subnet, ipv6: fc.constant(undefined) }),
      fc.record({ ipv4: fc.option(v4Subnet, { nil: undefined }), ipv6: v6Subnet }),
    );

    it('parseLeaseKey(formatLeaseKey(s)) gives back s', () => {
      fc.assert(
        fc.property(subnets, (s) => {
          // flannel's IPv6-only placeholder "0.0.0.0-0" is also the text of 0.0.0.0/0: that subnet cannot round trip
          fc.pre(!(s.ipv6 !== undefined && s.ipv4?.length === 0));
          const key = formatLeaseKey(s);
          const back = parseLeaseKey(key);
          assert.equal(back.ipv4?.toString(), s.ipv4?.toString(), key);
          assert.equal(back.ipv6?.toString(), s.ipv6?.toString(), key);
          assert.ok(back.ipv4 === undefined || back.ipv4.equals(s.ipv4!));
          assert.ok(back.ipv6 === undefined || back.ipv6.equals(s.ipv6!));
        }),
        { numRuns: 1000 },
      );
    });

    it('formatLeaseKey(parseLeaseKey(k)) gives back a canonical key', () => {
      fc.assert(
        fc.property(subnets, (s) => {
          const key = formatLeaseKey(s);
          assert.equal(formatLeaseKey(parseLeaseKey(key)), key);
          assert.equal(key.includes('/'), false);
        }),
        { numRuns: 1000 },
      );
    });

    it('throws nothing but InvalidLeaseError on arbitrary names', () => {
      const unit = fc.constantFrom(...'0123456789abcdefABCDEF:.-&/%x '.split(''));
      fc.assert(
        fc.property(fc.oneof(fc.string(), fc.string({ unit, maxLength: 40 })), (name) => {
          try {
            const { ipv4, ipv6 } = parseLeaseKey(name);
            assert.ok(ipv4 !== undefined || ipv6 !== undefined);
            assert.ok(ipv4 === undefined || ipv4.family === 4);
            assert.ok(ipv6 === undefined || ipv6.family === 6);
          } catch (err) {
            assert.ok(err instanceof InvalidLeaseError, `${JSON.stringify(name)} threw ${String(err)}`);
            assert.equal(err.key, name);
          }
        }),
        { numRuns: 3000 },
      );
    });
  });

  describe('parseLeaseAttrs', () => {
    it("decodes flanneld's vxlan value", () => {
      const attrs = parseLeaseAttrs(FLANNELD_VXLAN, KEY);
      assert.equal(attrs.publicIP?.toString(), '192.168.64.3');
      assert.equal(attrs.publicIP?.family, 4);
      assert.equal(attrs.publicIPv6, undefined);
      assert.equal(attrs.backendType, 'vxlan');
      assert.deepEqual(attrs.backendData, { VNI: 1, VtepMAC: 'c6:d2:32:6f:8f:44' });
      assert.equal(attrs.backendV6Data, undefined);
      assert.deepEqual(attrs.extra, {});
    });

    it("re-encodes flanneld's vxlan value byte for byte", () => {
      assert.equal(formatLeaseAttrs(parseLeaseAttrs(FLANNELD_VXLAN, KEY)), FLANNELD_VXLAN);
    });

    it("reads flanneld's udp value (no BackendType) and writes it back byte for byte", () => {
      const attrs = parseLeaseAttrs(FLANNELD_UDP, KEY);
      assert.equal(attrs.publicIP?.toString(), '192.168.64.4');
      assert.equal(attrs.backendType, '');
      assert.equal(formatLeaseAttrs(attrs), FLANNELD_UDP);
      assert.deepEqual(decodeLease('10.5.52.0-24', FLANNELD_UDP, false).subnets.ipv4?.toString(), '10.5.52.0/24');
    });

    it("writes a udp host's lease as flanneld does: no BackendType, no BackendData", () => {
      const attrs: LeaseAttrs = {
        publicIP: IpAddress.parse('192.168.64.4'),
        publicIPv6: undefined,
        backendType: leaseBackendTypeFor('udp'),
        backendData: undefined,
        backendV6Data: undefined,
        extra: {},
      };
      assert.equal(formatLeaseAttrs(attrs), FLANNELD_UDP);
      assert.equal(leaseBackendTypeFor('vxlan'), 'vxlan');
      assert.equal(leaseBackendTypeFor('host-gw'), 'host-gw');
    });

    it('takes an absent, null or empty BackendType as "" (Go\'s zero value), which reads as udp in a udp network only', () => {
      for (const text of [FLANNELD_UDP, '{"PublicIP":"192.0.2.3","BackendType":null}', '{"PublicIP":"192.0.2.3","BackendType":""}']) {
        const attrs = parseLeaseAttrs(text, KEY);
        assert.equal(attrs.backendType, '');
        assert.equal(leaseBackend(attrs, 'udp'), 'udp');
        assert.equal(leaseBackend(attrs, 'vxlan'), '');
        assert.equal(leaseBackend(attrs, undefined), '');
      }
      assert.equal(leaseBackend(parseLeaseAttrs(FLANNELD_VXLAN, KEY), 'udp'), 'vxlan');
      assert.equal(leaseBackend(parseLeaseAttrs('{"PublicIP":"192.0.2.3","BackendType":"udp"}', KEY), 'vxlan'), 'udp');
    });

    for (const text of [
      FLANNELD_UDP,
      '{"PublicIP":"192.0.2.10","PublicIPv6":null,"BackendType":"host-gw"}',
      '{"PublicIP":"192.0.2.11","PublicIPv6":null,"BackendType":"udp"}',
      '{"PublicIP":"192.0.2.12","PublicIPv6":"2001:db8:0:1::12","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"},"BackendV6Data":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:45"}}',
      '{"PublicIP":"0.0.0.0","PublicIPv6":"2001:db8:0:1::13","BackendType":"vxlan","BackendV6Data":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:46"}}',
    ]) {
      it(`round trips ${text}`, () => assert.equal(formatLeaseAttrs(parseLeaseAttrs(text, KEY)), text));
    }

    it('reads an IPv6-only value: PublicIP "0.0.0.0", "" or absent is no address', () => {
      for (const publicIP of ['"0.0.0.0"', '""', 'null']) {
        const attrs = parseLeaseAttrs(`{"PublicIP":${publicIP},"PublicIPv6":"2001:db8:0:1::13","BackendType":"host-gw"}`, KEY);
        assert.equal(attrs.publicIP, undefined);
        assert.equal(attrs.publicIPv6?.toString(), '2001:db8:0:1::13');
      }
      assert.equal(parseLeaseAttrs('{"BackendType":"host-gw"}', KEY).publicIP, undefined);
    });

    it('keeps unknown fields, in order, also inside BackendData, and writes them back', () => {
      const text =
        '{"PublicIP":"192.0.2.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44","Future":true},' +
        '"Owner":"rack-7","Nested":{"b":[1,{"c":null}],"a":"x"},"Empty":{},"Zero":0,"Null":null}';
      const attrs = parseLeaseAttrs(text, KEY);
      assert.deepEqual(Object.keys(attrs.extra), ['Owner', 'Nested', 'Empty', 'Zero', 'Null']);
      assert.deepEqual(attrs.extra.Nested, { b: [1, { c: null }], a: 'x' });
      assert.equal(formatLeaseAttrs(attrs), text);
    });

    it('keeps unknown fields whose names are special in JavaScript', () => {
      const text =
        '{"PublicIP":"192.0.2.3","PublicIPv6":null,"BackendType":"vxlan","__proto__":{"polluted":true},"constructor":1,"toString":"x"}';
      const attrs = parseLeaseAttrs(text, KEY);
      assert.deepEqual(Object.keys(attrs.extra), ['__proto__', 'constructor', 'toString']);
      assert.equal(formatLeaseAttrs(attrs), text);
      assert.equal(({} as Record<string, unknown>).polluted, undefined);
    });

    it('moves unknown fields after the known ones, in flanneld field order', () => {
      const text = '{"Owner":"x","BackendType":"host-gw","PublicIP":"192.0.2.3"}';
      assert.equal(
        formatLeaseAttrs(parseLeaseAttrs(text, KEY)),
        '{"PublicIP":"192.0.2.3","PublicIPv6":null,"BackendType":"host-gw","Owner":"x"}',
      );
    });

    it('treats null BackendData as absent', () => {
      const attrs = parseLeaseAttrs('{"PublicIP":"192.0.2.3","BackendType":"host-gw","BackendData":null}', KEY);
      assert.equal(attrs.backendData, undefined);
    });

    const bad: [string, string | RegExp][] = [
      ['', 'value is not valid JSON'],
      ['{', 'value is not valid JSON'],
      ['null', 'value is not a JSON object'],
      ['[]', 'value is not a JSON object'],
      ['"vxlan"', 'value is not a JSON object'],
      ['42', 'value is not a JSON object'],
      ['{"PublicIP":"192.0.2.3","BackendType":7}', 'BackendType 7 is not a backend name'],
      ['{"PublicIP":"192.0.2.3","BackendType":{}}', 'BackendType {} is not a backend name'],
      ['{"PublicIP":3221225987,"BackendType":"vxlan"}', 'PublicIP 3221225987 is not a string'],
      ['{"PublicIP":"192.0.2.256","BackendType":"vxlan"}', 'PublicIP "192.0.2.256" is not an IP address'],
      ['{"PublicIP":"2001:db8::3","BackendType":"vxlan"}', 'PublicIP "2001:db8::3" is not an IPv4 address'],
      ['{"PublicIP":"192.0.2.3","PublicIPv6":"192.0.2.4","BackendType":"vxlan"}', 'PublicIPv6 "192.0.2.4" is not an IPv6 address'],
      ['{"PublicIP":"192.0.2.3","PublicIPv6":["::1"],"BackendType":"vxlan"}', 'PublicIPv6 ["::1"] is not a string'],
      ['{"PublicIP":"192.0.2.3","BackendType":"vxlan","BackendData":"x"}', 'BackendData "x" is not an object'],
      ['{"PublicIP":"192.0.2.3","BackendType":"vxlan","BackendData":[1]}', 'BackendData [1] is not an object'],
      ['{"PublicIP":"192.0.2.3","BackendType":"vxlan","BackendV6Data":5}', 'BackendV6Data 5 is not an object'],
    ];
    for (const [text, message] of bad) {
      it(`rejects ${text === '' ? 'an empty value' : text}`, () => throwsLease(() => parseLeaseAttrs(text, KEY), KEY, message));
    }
  });

  describe('sameLeaseAttrs', () => {
    const a = () => parseLeaseAttrs(FLANNELD_VXLAN, KEY);
    it('is true for the same content decoded twice', () => assert.ok(sameLeaseAttrs(a(), a())));
    it('sees a different VtepMAC', () => {
      const b = parseLeaseAttrs(FLANNELD_VXLAN.replace('8f:44', '8f:45'), KEY);
      assert.ok(!sameLeaseAttrs(a(), b));
    });
    it('sees a different PublicIP and an added unknown field', () => {
      assert.ok(!sameLeaseAttrs(a(), parseLeaseAttrs(FLANNELD_VXLAN.replace('64.3', '64.4'), KEY)));
      assert.ok(!sameLeaseAttrs(a(), { ...a(), extra: { Owner: 'x' } }));
    });
    it('ignores the order of top-level known fields', () => {
      const reordered = '{"BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"},"BackendType":"vxlan","PublicIP":"192.168.64.3"}';
      assert.ok(sameLeaseAttrs(a(), parseLeaseAttrs(reordered, KEY)));
    });
  });

  describe('parseWireguardBackendData', () => {
    const KEY_B64 = 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=';
    it("reads flanneld's BackendData; a missing or zero Port means the network's ListenPort", () => {
      const flanneld = parseLeaseAttrs(
        `{"PublicIP":"192.0.2.12","PublicIPv6":null,"BackendType":"wireguard","BackendData":{"PublicKey":"${KEY_B64}","Port":51820}}`,
        KEY,
      );
      assert.deepEqual(parseWireguardBackendData(flanneld.backendData, KEY), { publicKey: KEY_B64, port: 51820 });
      assert.deepEqual(parseWireguardBackendData({ PublicKey: KEY_B64 }, KEY), { publicKey: KEY_B64, port: undefined });
      assert.deepEqual(parseWireguardBackendData({ PublicKey: KEY_B64, Port: 0 }, KEY), { publicKey: KEY_B64, port: undefined });
    });

    it('rejects missing data, a key that is not one and a port outside 16 bits, naming the field', () => {
      throwsLease(() => parseWireguardBackendData(undefined, KEY, 'BackendV6Data'), KEY, 'BackendV6Data is missing');
      throwsLease(
        () => parseWireguardBackendData({ PublicKey: 'abc' }, KEY),
        KEY,
        'BackendData.PublicKey "abc" is not a WireGuard public key',
      );
      throwsLease(() => parseWireguardBackendData({}, KEY), KEY, 'BackendData.PublicKey undefined is not a WireGuard public key');
      throwsLease(
        () => parseWireguardBackendData({ PublicKey: KEY_B64, Port: 65536 }, KEY),
        KEY,
        'BackendData.Port 65536 is not a UDP port',
      );
      throwsLease(() => parseWireguardBackendData({ PublicKey: KEY_B64, Port: -1 }, KEY), KEY, 'BackendData.Port -1 is not a UDP port');
      throwsLease(() => parseWireguardBackendData({ PublicKey: 'x'.repeat(10_000) }, KEY), KEY, /^.{0,200}$/s);
    });
  });

  describe('parseVxlanBackendData', () => {
    it("reads flanneld's BackendData", () => {
      assert.deepEqual(parseVxlanBackendData({ VNI: 1, VtepMAC: 'c6:d2:32:6f:8f:44' }, KEY), { vni: 1, vtepMac: 'c6:d2:32:6f:8f:44' });
      assert.deepEqual(parseVxlanBackendData(parseLeaseAttrs(FLANNELD_VXLAN, KEY).backendData, KEY), {
        vni: 1,
        vtepMac: 'c6:d2:32:6f:8f:44',
      });
    });

    it('defaults VNI to 1, keeps VNI 0 and the largest VNI, lower-cases the MAC', () => {
      assert.deepEqual(parseVxlanBackendData({ VtepMAC: 'C6:D2:32:6F:8F:44' }, KEY), { vni: 1, vtepMac: 'c6:d2:32:6f:8f:44' });
      assert.equal(parseVxlanBackendData({ VNI: 0, VtepMAC: 'c6:d2:32:6f:8f:44' }, KEY).vni, 0);
      assert.equal(parseVxlanBackendData({ VNI: 0xffffff, VtepMAC: 'c6:d2:32:6f:8f:44' }, KEY).vni, 0xffffff);
      assert.equal(parseVxlanBackendData({ VNI: null, VtepMAC: 'c6:d2:32:6f:8f:44' }, KEY).vni, 1);
    });

    it('rejects missing data, naming the field', () => {
      throwsLease(() => parseVxlanBackendData(undefined, KEY), KEY, 'BackendData is missing');
      throwsLease(() => parseVxlanBackendData(undefined, KEY, 'BackendV6Data'), KEY, 'BackendV6Data is missing');
    });

    for (const vni of [-1, 1.5, '1', 0x1000000, true]) {
      it(`rejects VNI ${JSON.stringify(vni)}`, () => {
        throwsLease(
          () => parseVxlanBackendData({ VNI: vni, VtepMAC: 'c6:d2:32:6f:8f:44' }, KEY),
          KEY,
          `BackendData.VNI ${JSON.stringify(vni)} is not a VNI`,
        );
      });
    }

    for (const mac of [
      undefined,
      '',
      'c6:d2:32:6f:8f',
      'c6:d2:32:6f:8f:44:00',
      'c6-d2-32-6f-8f-44',
      'c6d2.326f.8f44',
      'g6:d2:32:6f:8f:44',
      'c6:d2:32:6f:8f:4',
      7,
    ]) {
      it(`rejects VtepMAC ${JSON.stringify(mac)}`, () => {
        throwsLease(
          () => parseVxlanBackendData({ VNI: 1, VtepMAC: mac }, KEY, 'BackendV6Data'),
          KEY,
          `BackendV6Data.VtepMAC ${JSON.stringify(mac)} is not a MAC address`,
        );
      });
    }
  });

  describe('lease value properties', () => {
    const attrsArb: fc.Arbitrary<LeaseAttrs> = fc.record({
      publicIP: fc.option(
        fc.bigInt({ min: 1n, max: (1n << 32n) - 1n }).map((v) => IpAddress.fromValue(4, v)),
        { nil: undefined },
      ),
      publicIPv6: fc.option(
        v6Subnet.map((p) => p.network),
        { nil: undefined },
      ),
      backendType: fc.oneof(fc.constantFrom('vxlan', 'host-gw', 'udp', 'wireguard', ''), fc.string()),
      backendData: fc.option(jsonObject, { nil: undefined }),
      backendV6Data: fc.option(jsonObject, { nil: undefined }),
      extra: fc.dictionary(extraKey, fc.jsonValue({ maxDepth: 2 }), { maxKeys: 5 }),
    });

    it('encode then decode gives back the same attributes', () => {
      fc.assert(
        fc.property(attrsArb, (attrs) => {
          const text = formatLeaseAttrs(attrs);
          const back = parseLeaseAttrs(text, KEY);
          assert.equal(back.publicIP?.toString(), attrs.publicIP?.toString());
          assert.equal(back.publicIPv6?.toString(), attrs.publicIPv6?.toString());
          assert.equal(back.backendType, attrs.backendType);
          assert.deepEqual(back.backendData, attrs.backendData === undefined ? undefined : JSON.parse(JSON.stringify(attrs.backendData)));
          assert.deepEqual(
            back.backendV6Data,
            attrs.backendV6Data === undefined ? undefined : JSON.parse(JSON.stringify(attrs.backendV6Data)),
          );
          assert.deepEqual(Object.keys(back.extra), Object.keys(attrs.extra));
          assert.equal(JSON.stringify(back.extra), JSON.stringify(attrs.extra));
          assert.equal(formatLeaseAttrs(back), text);
          assert.ok(sameLeaseAttrs(back, attrs));
        }),
        { numRuns: 1000 },
      );
    });

    it('decode then encode of a value in flanneld field order gives back the same text, unknown fields included', () => {
      const textArb = attrsArb.map((attrs) => {
        const entries: [string, unknown][] = [
          ['PublicIP', attrs.publicIP?.toString() ?? '0.0.0.0'],
          ['PublicIPv6', attrs.publicIPv6?.toString() ?? null],
        ];
        if (attrs.backendType !== '') entries.push(['BackendType', attrs.backendType]);
        if (attrs.backendData) entries.push(['BackendData', attrs.backendData]);
        if (attrs.backendV6Data) entries.push(['BackendV6Data', attrs.backendV6Data]);
        entries.push(...Object.entries(attrs.extra));
        return JSON.stringify(Object.fromEntries(entries));
      });
      fc.assert(
        fc.property(textArb, (text) => assert.equal(formatLeaseAttrs(parseLeaseAttrs(text, KEY)), text)),
        { numRuns: 1000 },
      );
    });

    it('throws nothing but InvalidLeaseError on arbitrary text', () => {
      fc.assert(
        fc.property(fc.oneof(fc.string(), fc.json()), (text) => {
          try {
            parseLeaseAttrs(text, KEY);
          } catch (err) {
            assert.ok(err instanceof InvalidLeaseError, `${JSON.stringify(text)} threw ${String(err)}`);
          }
        }),
        { numRuns: 2000 },
      );
    });

    it('throws nothing but InvalidLeaseError on objects with the known keys and random values', () => {
      const value = fc.oneof(
        fc.jsonValue({ maxDepth: 2 }),
        fc.ipV4(),
        fc.ipV6(),
        fc.constantFrom('0.0.0.0', '', 'vxlan', 'host-gw', null),
        jsonObject,
      );
      const objArb = fc.dictionary(fc.oneof(fc.constantFrom(...KNOWN), fc.string({ maxLength: 6 })), value, { maxKeys: 7 });
      fc.assert(
        fc.property(objArb, (obj) => {
          const text = JSON.stringify(obj);
          let attrs: LeaseAttrs;
          try {
            attrs = parseLeaseAttrs(text, KEY);
          } catch (err) {
            assert.ok(err instanceof InvalidLeaseError, `${text} threw ${String(err)}`);
            return;
          }
          // what it accepts, it can write back and read again unchanged
          assert.equal(formatLeaseAttrs(parseLeaseAttrs(formatLeaseAttrs(attrs), KEY)), formatLeaseAttrs(attrs));
          for (const name of Object.keys(obj)) if (!KNOWN.includes(name)) assert.ok(Object.hasOwn(attrs.extra, name), name);
        }),
        { numRuns: 3000 },
      );
    });

    it('parseVxlanBackendData throws nothing but InvalidLeaseError on random BackendData', () => {
      const data = fc.dictionary(
        fc.oneof(fc.constantFrom('VNI', 'VtepMAC'), fc.string({ maxLength: 6 })),
        fc.oneof(fc.jsonValue({ maxDepth: 1 }), fc.mixedCase(fc.constant('c6:d2:32:6f:8f:44')), fc.integer({ min: -1, max: 0x1000001 })),
        { maxKeys: 3 },
      );
      fc.assert(
        fc.property(fc.option(data, { nil: undefined }), (d) => {
          try {
            const { vni, vtepMac } = parseVxlanBackendData(d, KEY);
            assert.ok(Number.isInteger(vni) && vni >= 0 && vni <= 0xffffff);
            assert.match(vtepMac, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
          } catch (err) {
            assert.ok(err instanceof InvalidLeaseError, `${JSON.stringify(d)} threw ${String(err)}`);
          }
        }),
        { numRuns: 1000 },
      );
    });
  });

  describe('bounds on what is read (a value in etcd may be anything)', () => {
    const MAX_LEASE_VALUE_BYTES = 4096;
    const MAX_LEASE_DEPTH = 16;
    it('rejects a value over MAX_LEASE_VALUE_BYTES, naming its size', () => {
      const big = JSON.stringify({ PublicIP: '192.0.2.1', BackendType: 'vxlan', Pad: 'x'.repeat(MAX_LEASE_VALUE_BYTES) });
      throwsLease(() => parseLeaseAttrs(big, KEY), KEY, `value is ${Buffer.byteLength(big)} bytes, more than the 4096 a lease may have`);
      const multibyte = JSON.stringify({ PublicIP: '192.0.2.1', BackendType: 'vxlan', Pad: 'é'.repeat(MAX_LEASE_VALUE_BYTES / 2) });
      throwsLease(() => parseLeaseAttrs(multibyte, KEY), KEY, /bytes, more than the 4096/);
    });

    it('rejects a value nested deeper than MAX_LEASE_DEPTH, and everything it accepts can be written out again', () => {
      const nest = (depth: number) => `{"PublicIP":"192.0.2.1","BackendType":"vxlan","X":${'['.repeat(depth - 1)}${']'.repeat(depth - 1)}}`;
      assert.equal(parseLeaseAttrs(nest(MAX_LEASE_DEPTH), KEY).extra.X !== undefined, true);
      throwsLease(() => parseLeaseAttrs(nest(MAX_LEASE_DEPTH + 1), KEY), KEY, 'value nests deeper than 16 levels');
      throwsLease(() => parseLeaseAttrs(nest(1500), KEY), KEY, 'value nests deeper than 16 levels');
      fc.assert(
        fc.property(fc.jsonValue(), fc.string(), (value, field) => {
          const text = JSON.stringify({ PublicIP: '192.0.2.1', BackendType: 'vxlan', [field]: value });
          let attrs: LeaseAttrs;
          try {
            attrs = parseLeaseAttrs(text, KEY);
          } catch (err) {
            return err instanceof InvalidLeaseError;
          }
          formatLeaseAttrs(attrs);
          return true;
        }),
      );
    });

    it('names an over-long key by its beginning only', () => {
      const key = `10.5.52.0-24${'x'.repeat(100_000)}`;
      assert.throws(
        () => parseLeaseKey(key),
        (err: unknown) => err instanceof InvalidLeaseError && err.key === key && err.message.length < 400,
      );
    });
  });
});
