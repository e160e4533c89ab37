import assert from 'node:assert/strict';
import { IpAddress } from '../../common/cidr.js';
import { bytesToIp, ipToBytes } from './codec.js';

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
