import assert from 'node:assert/strict';
import { decodeLine, encodeChangeLine } from './monitor-lines.js';
import type { KernelChange } from './types.js';

describe('agent/kernel: monitor line format', function () {
  const changes: KernelChange[] = [
    {
      kind: 'route',
      action: 'new',
      route: {
        family: 4,
        dst: '198.18.2.0/24',
        gateway: '198.18.2.0',
        ifindex: 5,
        onlink: true,
        flags: 4,
        protocol: 157,
        scope: 0,
        table: 254,
        type: 1,
        metric: null,
        prefsrc: null,
        multipath: false,
        nexthopId: 1570000001,
      },
    },
    {
      kind: 'route',
      action: 'del',
      route: {
        family: 6,
        dst: '2001:db8:100::/64',
        gateway: null,
        ifindex: null,
        onlink: false,
        flags: 0,
        protocol: 2,
        scope: 253,
        table: 255,
        type: 2,
        metric: 1024,
        prefsrc: '2001:db8::1',
        multipath: true,
        nexthopId: null,
      },
    },
    {
      kind: 'neighbour',
      action: 'new',
      neighbour: { index: 7, family: 4, ip: '198.18.2.0', mac: '0a:00:00:00:00:02', state: 128, flags: 0, permanent: true },
    },
    {
      kind: 'neighbour',
      action: 'del',
      neighbour: { index: 7, family: 6, ip: '2001:db8::2', mac: null, state: 32, flags: 0, permanent: false },
    },
    {
      kind: 'fdb',
      action: 'new',
      fdb: {
        index: 7,
        mac: '0a:00:00:00:00:02',
        dst: '198.19.0.2',
        vni: null,
        port: null,
        state: 128,
        flags: 2,
        permanent: true,
        self: true,
        masterIndex: null,
      },
    },
    {
      kind: 'fdb',
      action: 'del',
      fdb: {
        index: 9,
        mac: '0a:00:00:00:00:03',
        dst: null,
        vni: 42,
        port: 4789,
        state: 2,
        flags: 4,
        permanent: false,
        self: false,
        masterIndex: 3,
      },
    },
    {
      kind: 'nexthop',
      action: 'new',
      nexthop: {
        id: 1570000001,
        family: 4,
        gateway: '198.18.2.0',
        ifindex: 7,
        onlink: true,
        protocol: 157,
        blackhole: false,
        group: false,
        fdb: false,
      },
    },
    {
      kind: 'nexthop',
      action: 'del',
      nexthop: {
        id: 12,
        family: null,
        gateway: null,
        ifindex: null,
        onlink: false,
        protocol: 3,
        blackhole: true,
        group: false,
        fdb: false,
      },
    },
    {
      kind: 'address',
      action: 'new',
      address: { index: 7, family: 4, address: '198.18.1.0', prefixLen: 32, cidr: '198.18.1.0/32', scope: 0, flags: 128, label: 'weft.1' },
    },
  ];

  it('decodes every line back to the change it was made from', function () {
    for (const change of changes) {
      const line = encodeChangeLine(change);
      assert.ok(!line.includes('\n'));
      assert.deepEqual(decodeLine(line), { t: 'change', c: change });
    }
  });

  it('passes the control lines and refuses what is not a line of its own', function () {
    assert.deepEqual(decodeLine('{"t":"ready"}'), { t: 'ready' });
    assert.deepEqual(decodeLine('{"t":"overrun"}'), { t: 'overrun' });
    assert.equal(decodeLine('r\tn\t4'), undefined);
    assert.equal(decodeLine('garbage'), undefined);
    assert.equal(decodeLine('{broken'), undefined);
  });
});
