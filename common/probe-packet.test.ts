import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ipv4Value } from './cidr.js';
import { ipv4HeaderChecksum } from './packet.js';
import { decodeProbe, encodeProbe, MIN_PROBE_BYTES, SMALL_PROBE_BYTES, type ProbeFields } from './probe-packet.js';

const fields: ProbeFields = {
  source: ipv4Value('198.18.5.0'),
  destination: ipv4Value('198.18.6.0'),
  identifier: 0x1234,
  instance: 0xdeadbeef,
  round: 70_000,
  size: 'small',
  length: SMALL_PROBE_BYTES,
};

/** What the receiving kernel sends back: addresses swapped, type 0, checksum adjusted by the type's difference. */
function echoReply(request: Buffer): Buffer {
  const reply = Buffer.from(request);
  reply.writeUInt32BE(request.readUInt32BE(16), 12);
  reply.writeUInt32BE(request.readUInt32BE(12), 16);
  reply.writeUInt16BE(0, 10);
  reply.writeUInt16BE(ipv4HeaderChecksum(reply, 0), 10);
  reply[20] = 0;
  const sum = reply.readUInt16BE(22) + 0x0800;
  reply.writeUInt16BE((sum & 0xffff) + (sum >>> 16), 22);
  return reply;
}

describe("common/probe-packet: weft's ICMP probes", function () {
  it("writes an IPv4 echo request with don't-fragment set, valid checksums and the length asked for", function () {
    const packet = encodeProbe({ ...fields, size: 'full', length: 1450 });
    assert.equal(packet.length, 1450);
    assert.equal(packet[0], 0x45);
    assert.equal(packet.readUInt16BE(2), 1450);
    assert.equal(packet.readUInt16BE(6), 0x4000, 'DF, no fragment offset');
    assert.equal(packet[9], 1, 'ICMP');
    assert.equal(ipv4HeaderChecksum(packet, 0), packet.readUInt16BE(10));
    assert.equal(packet[20], 8, 'echo request');
    assert.deepEqual(decodeProbe(packet), {
      kind: 'request',
      source: fields.source,
      destination: fields.destination,
      identifier: 0x1234,
      instance: 0xdeadbeef,
      round: 70_000,
      size: 'full',
      length: 1450,
    });
  });

  it("reads the kernel's echo reply as the answer to the probe", function () {
    const reply = decodeProbe(echoReply(encodeProbe(fields)));
    assert.deepEqual(reply, {
      kind: 'reply',
      source: fields.destination,
      destination: fields.source,
      identifier: 0x1234,
      instance: 0xdeadbeef,
      round: 70_000,
      size: 'small',
      length: SMALL_PROBE_BYTES,
    });
  });

  it('round-trips every field', function () {
    fc.assert(
      fc.property(
        fc.record({
          source: fc.nat(0xffffffff),
          destination: fc.nat(0xffffffff),
          identifier: fc.nat(0xffff),
          instance: fc.nat(0xffffffff),
          round: fc.nat(0xffffffff),
          size: fc.constantFrom('small' as const, 'full' as const),
          length: fc.integer({ min: MIN_PROBE_BYTES, max: 9000 }),
        }),
        (probe) => {
          assert.deepEqual(decodeProbe(encodeProbe(probe)), { kind: 'request', ...probe });
        },
      ),
    );
  });

  it('refuses what is not a well-formed weft probe, without throwing', function () {
    const packet = encodeProbe(fields);
    const broken = (edit: (copy: Buffer) => void): Buffer => {
      const copy = Buffer.from(packet);
      edit(copy);
      return copy;
    };
    assert.equal(decodeProbe(packet.subarray(0, 40)), undefined, 'short');
    assert.equal(decodeProbe(broken((copy) => (copy[30] = 0))), undefined, 'another payload (an ordinary ping)');
    assert.equal(decodeProbe(broken((copy) => (copy[40] ^= 1))), undefined, 'bad ICMP checksum');
    assert.equal(decodeProbe(broken((copy) => copy.writeUInt16BE(0x2001, 6))), undefined, 'a fragment');
    assert.equal(decodeProbe(broken((copy) => (copy[9] = 17))), undefined, 'UDP');
    assert.equal(decodeProbe(broken((copy) => copy.writeUInt16BE(2000, 2))), undefined, 'longer than received');
    assert.equal(decodeProbe(broken((copy) => (copy[0] = 0x65))), undefined, 'IPv6 version');
    assert.throws(() => encodeProbe({ ...fields, length: MIN_PROBE_BYTES - 1 }), RangeError);
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 200 }), (bytes) => {
        decodeProbe(bytes);
      }),
    );
    fc.assert(
      fc.property(fc.nat(SMALL_PROBE_BYTES - 1), fc.nat(255), (at, value) => {
        const copy = Buffer.from(packet);
        copy[at] = value;
        const decoded = decodeProbe(copy);
        // a shorter total length can still check out: the padding it cuts off is zeros
        if (decoded !== undefined) assert.ok(decoded.length >= MIN_PROBE_BYTES && decoded.length <= SMALL_PROBE_BYTES);
      }),
    );
  });
});
