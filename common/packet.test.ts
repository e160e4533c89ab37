import assert from 'node:assert/strict';
import fc from 'fast-check';
import { IpAddress, Prefix } from './cidr.js';
import { WeftError } from './errors.js';
import {
  DECODE_PROBLEMS,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  Ipv4Net,
  MAX_VNI,
  VXLAN_ENCAP_LENGTH,
  completePartialChecksum,
  formatIpv4,
  ipv4Destination,
  ipv4HeaderChecksum,
  ipv4Source,
  tcpSegmentCount,
  writeTcpSegment,
  parseMac,
  udpProblem,
  vxlanPrefix,
  vxlanProblem,
  type DecodeProblem,
} from './packet.js';
import { PacketDecodeError, decodeUdp, decodeVxlan, encodeUdp, encodeVxlan, formatMac, transportChecksumValid } from '../test/wire.js';

// ---- reference implementations, written independently of packet.ts ----

/** RFC 1071 the slow way: 16-bit words, folding after every addition. */
function referenceChecksum(bytes: readonly number[]): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i += 2) {
    sum += (bytes[i] << 8) + (i + 1 < bytes.length ? bytes[i + 1] : 0);
    sum = (sum & 0xffff) + (sum >> 16);
  }
  return ~sum & 0xffff;
}

function transportChecksum(packet: Buffer): number {
  const headerLength = (packet[0] & 0x0f) * 4;
  const segment = [...packet.subarray(headerLength)];
  const protocol = packet[9];
  const checksumAt = protocol === 6 ? 16 : 6;
  segment[checksumAt] = 0;
  segment[checksumAt + 1] = 0;
  const pseudo = [...packet.subarray(12, 20), 0, protocol, segment.length >> 8, segment.length & 0xff];
  const checksum = referenceChecksum([...pseudo, ...segment]);
  return protocol === 17 && checksum === 0 ? 0xffff : checksum;
}

/** What a sender with checksum offload leaves in the field: the folded pseudo-header sum, not complemented. */
function partialChecksum(packet: Buffer): number {
  const headerLength = (packet[0] & 0x0f) * 4;
  const length = packet.length - headerLength;
  const pseudo = [...packet.subarray(12, 20), 0, packet[9], length >> 8, length & 0xff];
  return ~referenceChecksum(pseudo) & 0xffff;
}

interface Ipv4Spec {
  options: number[];
  protocol: number;
  src: number;
  dst: number;
  payload: number[];
  ttl: number;
  id: number;
}

function buildIpv4(spec: Ipv4Spec): Buffer {
  const headerLength = 20 + spec.options.length;
  const packet = Buffer.alloc(headerLength + spec.payload.length);
  packet[0] = 0x40 | (headerLength / 4);
  packet.writeUInt16BE(packet.length, 2);
  packet.writeUInt16BE(spec.id, 4);
  packet[6] = 0x40; // DF
  packet[8] = spec.ttl;
  packet[9] = spec.protocol;
  packet.writeUInt32BE(spec.src, 12);
  packet.writeUInt32BE(spec.dst, 16);
  Buffer.from(spec.options).copy(packet, 20);
  Buffer.from(spec.payload).copy(packet, headerLength);
  packet.writeUInt16BE(referenceChecksum([...packet.subarray(0, headerLength)]), 10);
  return packet;
}

const u32 = fc.integer({ min: 0, max: 0xffffffff });
const ipv4Spec = (protocols: fc.Arbitrary<number>, minPayload = 0): fc.Arbitrary<Ipv4Spec> =>
  fc.record({
    options: fc
      .integer({ min: 0, max: 10 })
      .chain((words) => fc.array(fc.integer({ min: 0, max: 255 }), { minLength: words * 4, maxLength: words * 4 })),
    protocol: protocols,
    src: u32,
    dst: u32,
    payload: fc.array(fc.integer({ min: 0, max: 255 }), { minLength: minPayload, maxLength: 300 }),
    ttl: fc.integer({ min: 1, max: 255 }),
    id: fc.integer({ min: 0, max: 0xffff }),
  });
const ipv4Packet = ipv4Spec(fc.integer({ min: 0, max: 255 })).map(buildIpv4);
const ipv6Packet = fc.tuple(fc.uint8Array({ minLength: 36, maxLength: 36 }), fc.uint8Array({ maxLength: 300 })).map(([rest, payload]) => {
  const packet = Buffer.alloc(40 + payload.length);
  Buffer.from(rest).copy(packet, 4);
  packet[0] = 0x60 | (packet[0] & 0x0f);
  packet.writeUInt16BE(payload.length, 4);
  Buffer.from(payload).copy(packet, 40);
  return packet;
});
const ipPacket = fc.oneof(ipv4Packet, ipv6Packet);
const mac = fc.uint8Array({ minLength: 6, maxLength: 6 }).map((bytes) => Buffer.from(bytes));
const vni = fc.integer({ min: 0, max: MAX_VNI });

/** Asserts that fn throws a PacketDecodeError with `reason`. */
function rejects(fn: () => unknown, reason: DecodeProblem): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof PacketDecodeError, `expected PacketDecodeError, got ${String(err)}`);
    assert.ok(err instanceof WeftError);
    assert.equal(err.code, 'WEFT_PACKET_DECODE');
    assert.equal(err.reason, reason, err.message);
    return true;
  });
}

const OURS = parseMac('02:00:00:00:00:01');
const THEIRS = parseMac('02:00:00:00:00:02');
const PING = buildIpv4({ options: [], protocol: 1, src: 0xc6120202, dst: 0xc6120102, payload: [8, 0, 0, 0, 0, 1, 0, 1], ttl: 64, id: 7 });

describe('common/packet: VXLAN', () => {
  it('lays out the header as RFC 7348 says', () => {
    const frame = encodeVxlan({ vni: 0x123456, dstMac: OURS, srcMac: THEIRS, packet: PING });
    assert.equal(frame.length, VXLAN_ENCAP_LENGTH + PING.length);
    assert.deepEqual([...frame.subarray(0, 8)], [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0]);
    assert.equal(formatMac(frame, 8), '02:00:00:00:00:01');
    assert.equal(formatMac(frame, 14), '02:00:00:00:00:02');
    assert.equal(frame.readUInt16BE(20), ETHERTYPE_IPV4);
    assert.deepEqual(frame.subarray(22), PING);
    assert.deepEqual(vxlanPrefix(0x123456, OURS, THEIRS, ETHERTYPE_IPV4), frame.subarray(0, 22));
  });

  it('round-trips any IPv4 or IPv6 packet, VNI and MAC pair', () => {
    fc.assert(
      fc.property(vni, mac, mac, ipPacket, (id, dst, src, packet) => {
        const frame = decodeVxlan(encodeVxlan({ vni: id, dstMac: dst, srcMac: src, packet }), { vni: id, localMac: dst });
        assert.equal(frame.vni, id);
        assert.equal(frame.dstMac, formatMac(dst));
        assert.equal(frame.srcMac, formatMac(src));
        assert.equal(frame.etherType, packet[0] >> 4 === 4 ? ETHERTYPE_IPV4 : ETHERTYPE_IPV6);
        assert.deepEqual(frame.packet, packet);
      }),
    );
  });

  it('drops link-layer padding after the IP packet', () => {
    const frame = Buffer.concat([encodeVxlan({ vni: 1, dstMac: OURS, srcMac: THEIRS, packet: PING }), Buffer.alloc(18)]);
    assert.deepEqual(decodeVxlan(frame, { vni: 1 }).packet, PING);
  });

  it('rejects short buffers, a clear VNI flag, a wrong VNI, non-IP EtherTypes, other MACs and bad IP headers', () => {
    const good = encodeVxlan({ vni: 1, dstMac: OURS, srcMac: THEIRS, packet: PING });
    for (let length = 0; length < VXLAN_ENCAP_LENGTH + 20; length++)
      rejects(() => decodeVxlan(good.subarray(0, length), { vni: 1 }), 'short');
    const flags = Buffer.from(good);
    flags[0] = 0xf7;
    rejects(() => decodeVxlan(flags, { vni: 1 }), 'vni_flag');
    rejects(() => decodeVxlan(good, { vni: 2 }), 'vni');
    const arp = Buffer.from(good);
    arp.writeUInt16BE(0x0806, 20);
    rejects(() => decodeVxlan(arp, { vni: 1 }), 'ethertype');
    rejects(() => decodeVxlan(good, { vni: 1, localMac: THEIRS }), 'inner_mac');
    const v6type = Buffer.from(good);
    v6type.writeUInt16BE(ETHERTYPE_IPV6, 20);
    rejects(() => decodeVxlan(Buffer.concat([v6type, Buffer.alloc(40)]), { vni: 1 }), 'ip_header');
    const overrun = Buffer.from(good);
    overrun.writeUInt16BE(PING.length + 1, 24);
    rejects(() => decodeVxlan(overrun, { vni: 1 }), 'ip_header');
    const ihl = Buffer.from(good);
    ihl[22] = 0x44;
    rejects(() => decodeVxlan(ihl, { vni: 1 }), 'ip_header');
    assert.throws(() => decodeVxlan(flags, { vni: 1 }), /VNI valid\) is clear \(flags 0xf7\)/);
  });

  it('throws nothing but PacketDecodeError on any input, and agrees with vxlanProblem', () => {
    const valid = fc.tuple(vni, mac, ipPacket).map(([id, src, packet]) => encodeVxlan({ vni: id, dstMac: OURS, srcMac: src, packet }));
    const mutated = fc
      .tuple(valid, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }), fc.nat())
      .map(([frame, edits, cut]) => {
        const copy = Buffer.from(frame);
        for (const [at, value] of edits) copy[at % copy.length] = value;
        return copy.subarray(0, copy.length - (cut % 8 === 0 ? cut % copy.length : 0));
      });
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 120 }), mutated), vni, fc.boolean(), (input, id, checkMac) => {
        const options = checkMac ? { vni: id, localMac: OURS } : { vni: id };
        const problem = vxlanProblem(input, input.length, id, options.localMac);
        // The same datagram inside a larger buffer (a GRO batch), with bytes of the next one after it.
        const embedded = Buffer.concat([Buffer.alloc(7, 0xff), input, Buffer.alloc(40, 0x45)]);
        assert.equal(vxlanProblem(embedded, input.length, id, options.localMac, 7), problem);
        try {
          const frame = decodeVxlan(input, options);
          assert.equal(problem, undefined);
          assert.ok(frame.packet.length >= 20);
        } catch (err) {
          assert.ok(err instanceof PacketDecodeError, `threw ${String(err)}`);
          assert.ok(DECODE_PROBLEMS.includes(err.reason));
          assert.equal(err.reason, problem);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('refuses to build a frame for a VNI, MAC or packet that cannot be sent', () => {
    assert.throws(() => vxlanPrefix(MAX_VNI + 1, OURS, THEIRS, ETHERTYPE_IPV4), { code: 'WEFT_INVALID_VNI' });
    assert.throws(() => vxlanPrefix(1, OURS.subarray(0, 5), THEIRS, ETHERTYPE_IPV4), { code: 'WEFT_INVALID_MAC' });
    assert.throws(() => encodeVxlan({ vni: 1, dstMac: OURS, srcMac: THEIRS, packet: Buffer.from([0x50]) }), {
      code: 'WEFT_INVALID_PACKET',
    });
    assert.throws(() => parseMac('02:00:00:00:00'), { code: 'WEFT_INVALID_MAC' });
  });
});

describe("common/packet: flannel's udp format", () => {
  it('round-trips any IP packet: the payload is the packet', () => {
    fc.assert(
      fc.property(ipPacket, fc.uint8Array({ maxLength: 20 }), (packet, padding) => {
        const payload = encodeUdp(packet);
        assert.deepEqual(payload, packet);
        assert.deepEqual(decodeUdp(Buffer.concat([payload, padding])), packet);
      }),
    );
  });

  it('rejects short buffers and what is not IP', () => {
    for (let length = 0; length < 20; length++) rejects(() => decodeUdp(PING.subarray(0, length)), 'short');
    rejects(() => decodeUdp(Buffer.alloc(30)), 'ip_header');
    rejects(() => decodeUdp(Buffer.concat([Buffer.from([0x60]), Buffer.alloc(20)])), 'short');
    assert.throws(() => encodeUdp(Buffer.alloc(30)), { code: 'WEFT_INVALID_PACKET' });
  });

  it('throws nothing but PacketDecodeError on any input, and agrees with udpProblem', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 80 }),
          ipPacket.map((p) => p.subarray(0, p.length - 1)),
        ),
        (input) => {
          const problem = udpProblem(input, input.length);
          assert.equal(udpProblem(Buffer.concat([Buffer.alloc(3), input, Buffer.alloc(40, 0x45)]), input.length, 3), problem);
          try {
            decodeUdp(input);
            assert.equal(problem, undefined);
          } catch (err) {
            assert.ok(err instanceof PacketDecodeError, `threw ${String(err)}`);
            assert.equal(err.reason, problem);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe('common/packet: IPv4 fields and checksums', () => {
  it('reads source and destination as unsigned integers', () => {
    fc.assert(
      fc.property(ipv4Spec(fc.constant(6)), (spec) => {
        const packet = buildIpv4(spec);
        assert.equal(ipv4Source(packet, 0), spec.src);
        assert.equal(ipv4Destination(packet, 0), spec.dst);
        assert.equal(formatIpv4(spec.src), IpAddress.fromValue(4, BigInt(spec.src)).toString());
      }),
    );
  });

  it('Ipv4Net agrees with Prefix.contains', () => {
    fc.assert(
      fc.property(u32, fc.integer({ min: 0, max: 32 }), u32, (base, length, probe) => {
        const prefix = Prefix.of(IpAddress.fromValue(4, BigInt(base)), length);
        const net = Ipv4Net.fromPrefix(prefix);
        assert.equal(net.contains(probe), prefix.contains(IpAddress.fromValue(4, BigInt(probe))));
        assert.equal(net.toString(), prefix.toString());
      }),
    );
    assert.throws(() => Ipv4Net.fromPrefix(Prefix.parse('2001:db8::/32')), { code: 'WEFT_INVALID_CIDR' });
  });

  it('computes the IPv4 header checksum', () => {
    fc.assert(
      fc.property(ipv4Packet, (packet) => {
        assert.equal(ipv4HeaderChecksum(packet, 0), packet.readUInt16BE(10));
      }),
    );
  });

  it('completes a partial (offloaded) TCP or UDP checksum and leaves complete ones alone', () => {
    fc.assert(
      fc.property(ipv4Spec(fc.constantFrom(6, 17), 20), fc.nat({ max: 30 }), (spec, padding) => {
        const packet = buildIpv4(spec);
        const at = (packet[0] & 0x0f) * 4 + (spec.protocol === 6 ? 16 : 6);
        const full = transportChecksum(packet);
        packet.writeUInt16BE(full, at);
        assert.ok(transportChecksumValid(packet, 0, packet.length));
        const framed = Buffer.concat([Buffer.alloc(padding), packet]);
        const wrote = completePartialChecksum(framed, padding, packet.length);
        assert.equal(framed.readUInt16BE(padding + at), full, 'a complete checksum stays');
        const p = partialChecksum(packet);
        assert.equal(wrote, full === p || (full === 0 && p === 0xffff) || (full === 0xffff && p === 0));
        packet.writeUInt16BE(partialChecksum(packet), at);
        if (spec.protocol === 17 && partialChecksum(packet) === 0) return;
        assert.equal(completePartialChecksum(packet, 0, packet.length), true);
        assert.equal(packet.readUInt16BE(at), full);
        assert.ok(transportChecksumValid(packet, 0, packet.length));
      }),
      { numRuns: 500 },
    );
  });

  it('leaves fragments, other protocols and UDP without a checksum alone', () => {
    const udp = buildIpv4({ options: [], protocol: 17, src: 1, dst: 2, payload: [0, 1, 0, 2, 0, 8, 0, 0], ttl: 9, id: 1 });
    assert.equal(completePartialChecksum(udp, 0, udp.length), false);
    const fragment = buildIpv4({ options: [], protocol: 6, src: 1, dst: 2, payload: new Array<number>(20).fill(0), ttl: 9, id: 1 });
    fragment[6] = 0x20;
    fragment.writeUInt16BE(partialChecksum(fragment), 36);
    assert.equal(completePartialChecksum(fragment, 0, fragment.length), false);
    assert.equal(completePartialChecksum(PING, 0, PING.length), false);
  });
});

describe('common/packet: TCP segmentation', () => {
  const tcpPacket = fc
    .record({
      options: fc
        .integer({ min: 0, max: 10 })
        .chain((words) => fc.array(fc.integer({ min: 0, max: 255 }), { minLength: words * 4, maxLength: words * 4 })),
      ipOptions: fc
        .integer({ min: 0, max: 4 })
        .chain((words) => fc.array(fc.integer({ min: 0, max: 255 }), { minLength: words * 4, maxLength: words * 4 })),
      payload: fc.uint8Array({ maxLength: 6000 }),
      seq: u32,
      flags: fc.integer({ min: 0, max: 255 }),
      id: fc.integer({ min: 0, max: 0xffff }),
      src: u32,
      dst: u32,
    })
    .map((spec) => {
      const tcp = Buffer.alloc(20 + spec.options.length + spec.payload.length);
      tcp.writeUInt16BE(5201, 0);
      tcp.writeUInt16BE(40000, 2);
      tcp.writeUInt32BE(spec.seq, 4);
      tcp.writeUInt32BE(7, 8);
      tcp[12] = ((20 + spec.options.length) / 4) << 4;
      tcp[13] = spec.flags;
      tcp.writeUInt16BE(512, 14);
      Buffer.from(spec.options).copy(tcp, 20);
      Buffer.from(spec.payload).copy(tcp, 20 + spec.options.length);
      return {
        spec,
        packet: buildIpv4({ options: spec.ipOptions, protocol: 6, src: spec.src, dst: spec.dst, payload: [...tcp], ttl: 63, id: spec.id }),
      };
    });

  it('splits like TSO: payload kept in order, headers and checksums right, flags on the right segments', () => {
    fc.assert(
      fc.property(tcpPacket, fc.integer({ min: 1, max: 1500 }), ({ spec, packet }, room) => {
        const headers = 20 + spec.ipOptions.length + 20 + spec.options.length;
        const maxLength = headers + room;
        const count = tcpSegmentCount(packet, 0, packet.length, maxLength);
        assert.equal(count, Math.max(1, Math.ceil(spec.payload.length / room)));
        const out = Buffer.alloc(maxLength + 7);
        const payloads: Buffer[] = [];
        for (let i = 0; i < count; i++) {
          const length = writeTcpSegment(packet, 0, packet.length, maxLength, i, out, 7);
          const segment = Buffer.from(out.subarray(7, 7 + length));
          assert.ok(length <= maxLength);
          assert.equal(segment.readUInt16BE(2), length);
          assert.equal(segment.readUInt16BE(4), (spec.id + i) & 0xffff);
          assert.equal(ipv4HeaderChecksum(segment, 0), segment.readUInt16BE(10));
          assert.ok(transportChecksumValid(segment, 0, length), `segment ${i} checksum`);
          const tcp = 20 + spec.ipOptions.length;
          assert.equal(segment.readUInt32BE(tcp + 4), (spec.seq + i * room) >>> 0);
          let flags = spec.flags;
          if (i > 0) flags &= ~0x80;
          if (i < count - 1) flags &= ~0x09;
          assert.equal(segment[tcp + 13], flags);
          assert.deepEqual(segment.subarray(12, 20), packet.subarray(12, 20));
          assert.deepEqual(segment.subarray(tcp + 20, headers), packet.subarray(tcp + 20, headers), 'TCP options copied');
          payloads.push(segment.subarray(headers));
        }
        assert.deepEqual(Buffer.concat(payloads), Buffer.from(spec.payload));
      }),
      { numRuns: 300 },
    );
  });

  it('refuses what TSO would not split', () => {
    const udp = buildIpv4({ options: [], protocol: 17, src: 1, dst: 2, payload: new Array<number>(3000).fill(1), ttl: 9, id: 1 });
    assert.equal(tcpSegmentCount(udp, 0, udp.length, 1400), 0);
    const tcp = buildIpv4({
      options: [],
      protocol: 6,
      src: 1,
      dst: 2,
      payload: [...Buffer.alloc(20, 0)].map((_, i) => (i === 12 ? 0x50 : 0)),
      ttl: 9,
      id: 1,
    });
    assert.equal(tcpSegmentCount(tcp, 0, tcp.length, 40), 0, 'no room for payload');
    assert.equal(tcpSegmentCount(tcp, 0, tcp.length, 41), 1);
    tcp[6] = 0x20;
    assert.equal(tcpSegmentCount(tcp, 0, tcp.length, 1400), 0, 'a fragment');
  });
});
