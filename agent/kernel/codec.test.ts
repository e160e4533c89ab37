import assert from 'node:assert/strict';
import { IpAddress } from '../../common/cidr.js';
import { WeftError } from '../../common/errors.js';
import { bytesToIp, fdbPayload, ipToBytes, neighbourPayload, prefixToBytes } from './codec.js';

describe('agent/kernel: address codec', function () {
  it('decodes IPv6 exactly as common/cidr formats it, also where two zero runs tie (RFC 5952)', function () {
    for (const text of ['::1:0:0:1:2:3', '2001:db8:0:0:1:0:0:1', '2001:db8::', '::', '::ffff:198.18.0.1', 'fd00:0:0:1::', '198.18.1.0']) {
      const address = IpAddress.parse(text);
      const { family, bytes } = ipToBytes(text);
      assert.equal(family, address.family, text);
      assert.deepEqual(bytes, address.toBytes(), text);
      assert.equal(bytesToIp(bytes), address.toString(), text);
    }
    assert.equal(bytesToIp(ipToBytes('::1:0:0:1:2:3').bytes), '::1:0:0:1:2:3');
  });
});

describe('agent/kernel: request payloads', function () {
  it('encodes neighbour and FDB requests byte for byte, the address and the MAC parsed into place', function () {
    const ndmsg = (family: number, index: number, state: number, flags: number): Buffer => {
      const b = Buffer.alloc(12);
      b[0] = family;
      b.writeInt32LE(index, 4);
      b.writeUInt16LE(state, 8);
      b[10] = flags;
      return b;
    };
    const attr = (type: number, data: Buffer): Buffer => {
      const b = Buffer.alloc((4 + data.length + 3) & ~3);
      b.writeUInt16LE(4 + data.length, 0);
      b.writeUInt16LE(type, 2);
      data.copy(b, 4);
      return b;
    };
    const mac = Buffer.from([0x0a, 0xbc, 0x00, 0xff, 0x12, 0x9f]);
    assert.deepEqual(
      neighbourPayload(3, '198.18.2.0', '0A:bc:00:FF:12:9f'),
      Buffer.concat([ndmsg(2, 3, 0x80, 0), attr(1, Buffer.from([198, 18, 2, 0])), attr(2, mac)]),
    );
    assert.deepEqual(
      neighbourPayload(3, '2001:db8:100::', null),
      Buffer.concat([ndmsg(10, 3, 0, 0), attr(1, IpAddress.parse('2001:db8:100::').toBytes())]),
    );
    assert.deepEqual(
      fdbPayload(7, '0a:bc:00:ff:12:9f', '198.19.4.1', true),
      Buffer.concat([ndmsg(7, 7, 0x80, 2), attr(2, mac), attr(1, Buffer.from([198, 19, 4, 1]))]),
    );
    assert.deepEqual(fdbPayload(7, '0a:bc:00:ff:12:9f', null, false), Buffer.concat([ndmsg(7, 7, 0, 2), attr(2, mac)]));
  });

  it('refuses a MAC or an address that is not one, naming it', function () {
    for (const mac of ['0a:bc:00:ff:12', '0a:bc:00:ff:12:9g', '0a-bc-00-ff-12-9f', '0a:bc:00:ff:12:9f:', ' 0a:bc:00:ff:12:9']) {
      assert.throws(
        () => fdbPayload(1, mac, '198.19.0.1', true),
        (err: WeftError) => err.code === 'WEFT_INVALID_MAC' && err.message.includes(mac),
      );
      assert.throws(
        () => neighbourPayload(1, '198.18.0.0', mac),
        (err: WeftError) => err.code === 'WEFT_INVALID_MAC',
      );
    }
    assert.throws(() => neighbourPayload(1, '198.18.0.256', '0a:bc:00:ff:12:9f'));
    assert.throws(() => fdbPayload(1, '0a:bc:00:ff:12:9f', '198.19.0', true));
    assert.throws(() => prefixToBytes('198.18.0.0/33'), /invalid prefix length/);
    assert.throws(() => prefixToBytes('198.18.0.0/'), /invalid prefix length/);
    assert.throws(() => prefixToBytes('198.18.0.0/2a'), /invalid prefix length/);
    assert.throws(() => prefixToBytes('198.18.0.0/0024'), /invalid prefix length/);
    assert.deepEqual(prefixToBytes('198.18.0.0/024'), { family: 4, bytes: Buffer.from([198, 18, 0, 0]), len: 24 });
    assert.equal(prefixToBytes('2001:db8:100::/48').len, 48);
    assert.equal(prefixToBytes('198.18.0.1').len, 32);
  });
});
