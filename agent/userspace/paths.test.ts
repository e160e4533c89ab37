import dgram from 'node:dgram';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ETHERTYPE_IPV4, ETHERTYPE_IPV6, parseMac, vxlanPrefix } from '../../common/packet.js';
import { skipOrFail } from '../../test/requirements.js';
import { encodeVxlan, formatMac, transportChecksumValid } from '../../test/wire.js';
import { RECEIVE_BATCHES_PER_EVENT, RECEIVE_SLOT_SIZE, RECEIVE_SLOTS, RxPath, TxPath, type DatagramSender } from './paths.js';
import { loadUdpNative } from './udp-native.js';
import { RX_DROP_REASONS, TX_DROP_REASONS, type PathCounters, type WirePeer, type WorkerConfig } from './protocol.js';

const OUR_MAC = '02:00:00:00:00:01';
const PEER_MAC = '02:00:00:00:00:02';
const THIRD_MAC = '02:00:00:00:00:03';
const UDP_DEVICE_MAC = '02:00:00:00:00:0a';
const OWN = { network: 0xc6120100, length: 24 }; // 198.18.1.0/24
const PEER: WirePeer = { name: '198.18.2.0-24', publicIP: '192.0.2.12', subnet: { network: 0xc6120200, length: 24 }, vtepMac: PEER_MAC };
const THIRD: WirePeer = { name: '198.18.3.0-24', publicIP: '192.0.2.13', subnet: { network: 0xc6120300, length: 24 }, vtepMac: THIRD_MAC };

function config(kind: 'vxlan' | 'udp' = 'vxlan'): WorkerConfig {
  return {
    encapsulation: kind === 'vxlan' ? { kind, vni: 1, localMac: OUR_MAC } : { kind },
    localAddress: '192.0.2.11',
    port: kind === 'vxlan' ? 8472 : 8285,
    captureDevice: 'unused',
    overlayMac: kind === 'vxlan' ? OUR_MAC : UDP_DEVICE_MAC,
    mtu: 1450,
    socketBufferBytes: 1 << 20,
    captureBufferBytes: 1 << 20,
  };
}

const ip = (text: string): number[] => text.split('.').map(Number);

function checksum(bytes: Uint8Array, start: number, end: number, initial = 0): number {
  let sum = initial;
  for (let i = start; i < end; i += 2) sum += (bytes[i] << 8) + (i + 1 < end ? bytes[i + 1] : 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** An IPv4 packet; `transport` is the TCP or UDP header plus payload (its checksum field filled in here unless `partial`). */
function ipv4(src: string, dst: string, protocol: number, transport: Buffer, options: { ttl?: number; partial?: boolean } = {}): Buffer {
  const packet = Buffer.concat([
    Buffer.from([0x45, 0, 0, 0, 0, 7, 0x40, 0, options.ttl ?? 64, protocol, 0, 0, ...ip(src), ...ip(dst)]),
    transport,
  ]);
  packet.writeUInt16BE(packet.length, 2);
  packet.writeUInt16BE(checksum(packet, 0, 20), 10);
  if (protocol === 6 || protocol === 17) {
    const at = 20 + (protocol === 6 ? 16 : 6);
    const length = transport.length;
    const pseudo =
      packet.readUInt16BE(12) + packet.readUInt16BE(14) + packet.readUInt16BE(16) + packet.readUInt16BE(18) + protocol + length;
    packet.writeUInt16BE(0, at);
    if (options.partial === true) {
      let sum = pseudo;
      while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
      packet.writeUInt16BE(sum, at);
    } else {
      packet.writeUInt16BE(checksum(packet, 20, packet.length, pseudo), at);
    }
  }
  return packet;
}

function udp(payload = 16): Buffer {
  const out = Buffer.alloc(8 + payload, 0x61);
  out.writeUInt16BE(40000, 0);
  out.writeUInt16BE(9, 2);
  out.writeUInt16BE(out.length, 4);
  return out;
}

function tcp(payload: number, flags = 0x18): Buffer {
  const out = Buffer.alloc(20 + payload);
  for (let i = 20; i < out.length; i++) out[i] = i & 0xff;
  out.writeUInt16BE(5201, 0);
  out.writeUInt16BE(40000, 2);
  out.writeUInt32BE(1000, 4);
  out[12] = 0x50;
  out[13] = flags;
  out.writeUInt16BE(1024, 14);
  return out;
}

const vxlan = (packet: Buffer, options: { vni?: number; dstMac?: string; srcMac?: string } = {}): Buffer =>
  encodeVxlan({ vni: options.vni ?? 1, dstMac: parseMac(options.dstMac ?? OUR_MAC), srcMac: parseMac(options.srcMac ?? PEER_MAC), packet });

/** The one counter a datagram or frame moved: "forwarded" or a drop reason ("" when none did, "+n" when several). */
function moved(before: PathCounters, after: PathCounters): string {
  const changed = Object.keys(after.drops).filter((reason) => after.drops[reason] !== before.drops[reason]);
  if (after.packets !== before.packets) changed.push('forwarded');
  return changed.length === 1 ? changed[0] : changed.length === 0 ? '' : `+${changed.join('+')}`;
}

/** A frame the receive path handed to the kernel: its Ethernet header and the IP packet behind it. */
interface Delivered {
  dstMac: string;
  srcMac: string;
  etherType: number;
  packet: Buffer;
}

function receiver(
  kind: 'vxlan' | 'udp' = 'vxlan',
  options: { fail?: Error; peers?: WirePeer[] } = {},
): { rx: RxPath; delivered: Delivered[] } {
  const rx = new RxPath(config(kind), () => undefined);
  const delivered: Delivered[] = [];
  rx.attachDelivery({
    send(buffer, offset, length) {
      if (options.fail !== undefined) throw options.fail;
      const frame = buffer.subarray(offset, offset + length);
      delivered.push({
        dstMac: formatMac(frame, 0),
        srcMac: formatMac(frame, 6),
        etherType: frame.readUInt16BE(12),
        packet: Buffer.from(frame.subarray(14)),
      });
    },
  });
  rx.setPeers(OWN, options.peers ?? [PEER]);
  return { rx, delivered };
}

describe('userspace receive path', () => {
  it("delivers a peer's datagram for our subnet as a frame from the peer's VtepMAC to ours, the packet untouched", () => {
    const { rx, delivered } = receiver();
    const packet = ipv4('198.18.2.5', '198.18.1.7', 17, udp());
    rx.onDatagram(vxlan(packet), '192.0.2.12');
    assert.deepEqual(delivered, [{ dstMac: OUR_MAC, srcMac: PEER_MAC, etherType: ETHERTYPE_IPV4, packet }]);
    assert.deepEqual(rx.snapshot().packets, 1);
    assert.equal(rx.snapshot().bytes, packet.length);
  });

  it('counts every refusal under its reason', () => {
    const { rx, delivered } = receiver('vxlan', { peers: [PEER, THIRD] });
    const good = vxlan(ipv4('198.18.2.5', '198.18.1.7', 17, udp()));
    const v6 = Buffer.alloc(40 + 8);
    v6[0] = 0x60;
    v6.writeUInt16BE(8, 4);
    const cases: [string, Buffer, string][] = [
      ['unknown_peer', good, '192.0.2.99'],
      ['short', good.subarray(0, 30), '192.0.2.12'],
      ['vni_flag', Buffer.concat([Buffer.from([0]), good.subarray(1)]), '192.0.2.12'],
      ['vni', vxlan(ipv4('198.18.2.5', '198.18.1.7', 17, udp()), { vni: 7 }), '192.0.2.12'],
      ['ethertype', Buffer.concat([good.subarray(0, 20), Buffer.from([0x08, 0x06]), good.subarray(22)]), '192.0.2.12'],
      ['inner_mac', vxlan(ipv4('198.18.2.5', '198.18.1.7', 17, udp()), { dstMac: '02:00:00:00:00:09' }), '192.0.2.12'],
      ['ip_header', Buffer.concat([good.subarray(0, 22), Buffer.from([0x44]), good.subarray(23)]), '192.0.2.12'],
      ['not_ipv4', Buffer.concat([vxlanPrefix(1, parseMac(OUR_MAC), parseMac(PEER_MAC), ETHERTYPE_IPV6), v6]), '192.0.2.12'],
      ['inner_dst', vxlan(ipv4('198.18.2.5', '198.18.3.7', 17, udp())), '192.0.2.12'],
      ['inner_src', vxlan(ipv4('198.18.9.5', '198.18.1.7', 17, udp())), '192.0.2.12'],
      // from one peer's PublicIP with another peer's inner source (and its VtepMAC): spoofed
      ['inner_src', vxlan(ipv4('198.18.3.5', '198.18.1.7', 17, udp()), { srcMac: THIRD_MAC }), '192.0.2.12'],
      // the right inner source, but not from the sending peer's VtepMAC
      ['inner_src_mac', vxlan(ipv4('198.18.2.5', '198.18.1.7', 17, udp()), { srcMac: THIRD_MAC }), '192.0.2.12'],
      ['oversize', vxlan(ipv4('198.18.2.5', '198.18.1.7', 17, udp(3000))), '192.0.2.12'],
    ];
    for (const [reason, datagram, source] of cases) {
      const before = rx.snapshot();
      rx.onDatagram(datagram, source);
      assert.equal(moved(before, rx.snapshot()), reason, reason);
    }
    assert.equal(delivered.length, 0);
    assert.deepEqual(Object.keys(rx.snapshot().drops), [...RX_DROP_REASONS]);
  });

  it("takes an inner source from a peer only if that peer's subnet is the most specific one holding it (an oversized lease cannot vouch for another host's subnet)", () => {
    // a second lease of PEER's host that covers THIRD's subnet as well as its own
    const oversized: WirePeer = {
      name: '198.18.2.0-23',
      publicIP: PEER.publicIP,
      subnet: { network: 0xc6120200, length: 23 },
      vtepMac: PEER_MAC,
    };
    for (const peers of [
      [PEER, THIRD, oversized],
      [oversized, THIRD, PEER],
      [THIRD, oversized],
    ]) {
      const { rx, delivered } = receiver('vxlan', { peers });
      const spoofed = vxlan(ipv4('198.18.3.5', '198.18.1.7', 17, udp()));
      let before = rx.snapshot();
      rx.onDatagram(spoofed, PEER.publicIP);
      assert.equal(moved(before, rx.snapshot()), 'inner_src', peers.map((peer) => peer.name).join(' '));
      before = rx.snapshot();
      rx.onDatagram(vxlan(ipv4('198.18.3.5', '198.18.1.7', 17, udp()), { srcMac: THIRD_MAC }), THIRD.publicIP);
      assert.equal(moved(before, rx.snapshot()), 'forwarded', 'the owner itself is let through');
      before = rx.snapshot();
      rx.onDatagram(vxlan(ipv4('198.18.2.5', '198.18.1.7', 17, udp())), PEER.publicIP);
      assert.equal(moved(before, rx.snapshot()), 'forwarded');
      assert.equal(delivered.length, 2);
    }
  });

  it('takes nothing from a VXLAN peer without a usable VtepMAC', () => {
    const { rx } = receiver('vxlan', {
      peers: [
        { ...PEER, vtepMac: 'not a mac' },
        { ...THIRD, vtepMac: undefined },
      ],
    });
    rx.onDatagram(vxlan(ipv4('198.18.2.5', '198.18.1.7', 17, udp())), PEER.publicIP);
    rx.onDatagram(vxlan(ipv4('198.18.3.5', '198.18.1.7', 17, udp()), { srcMac: THIRD_MAC }), THIRD.publicIP);
    assert.equal(rx.snapshot().drops.unknown_peer, 2);
  });

  it('leaves TTL expiry to the kernel, which forwards the frame (and answers time exceeded)', () => {
    const { rx, delivered } = receiver();
    const packet = ipv4('198.18.2.5', '198.18.1.7', 17, udp(), { ttl: 1 });
    rx.onDatagram(vxlan(packet), '192.0.2.12');
    assert.deepEqual(
      delivered.map((frame) => frame.packet),
      [packet],
    );
  });

  it('counts a refused delivery and goes on', () => {
    const { rx } = receiver('vxlan', { fail: Object.assign(new Error('ENOBUFS'), { code: 'ENOBUFS' }) });
    rx.onDatagram(vxlan(ipv4('198.18.2.5', '198.18.1.7', 17, udp())), '192.0.2.12');
    assert.equal(rx.snapshot().drops.deliver_error, 1);
    assert.equal(rx.snapshot().packets, 0);
  });

  it('finishes a checksum left partial by an offloading sender', () => {
    const { rx, delivered } = receiver();
    rx.onDatagram(vxlan(ipv4('198.18.2.5', '198.18.1.7', 6, tcp(100), { partial: true })), '192.0.2.12');
    assert.equal(delivered.length, 1);
    assert.ok(transportChecksumValid(delivered[0].packet, 0, delivered[0].packet.length));
  });

  it('splits a TSO frame into segments of at most the MTU, each in a frame to the overlay device', () => {
    const { rx, delivered } = receiver();
    const packet = ipv4('198.18.2.5', '198.18.1.7', 6, tcp(5000, 0x19), { partial: true });
    rx.onDatagram(vxlan(packet), '192.0.2.12');
    assert.equal(delivered.length, Math.ceil(5000 / (1450 - 40)));
    let payload = Buffer.alloc(0);
    for (const [i, { packet: segment, dstMac, etherType }] of delivered.entries()) {
      assert.equal(dstMac, OUR_MAC);
      assert.equal(etherType, ETHERTYPE_IPV4);
      assert.ok(segment.length <= 1450);
      assert.ok(transportChecksumValid(segment, 0, segment.length), `segment ${i}`);
      assert.equal(segment[33], i === delivered.length - 1 ? 0x19 : 0x10, 'FIN and PSH on the last segment only');
      payload = Buffer.concat([payload, segment.subarray(40)]);
    }
    assert.deepEqual(payload, packet.subarray(40));
    assert.equal(rx.snapshot().packets, delivered.length);
  });

  it("flannel's udp format: the datagram is the packet, delivered behind a header to the overlay device's MAC", () => {
    const { rx, delivered } = receiver('udp', {
      peers: [
        { ...PEER, vtepMac: undefined },
        { ...THIRD, vtepMac: undefined },
      ],
    });
    const packet = ipv4('198.18.2.5', '198.18.1.7', 17, udp());
    rx.onDatagram(packet, '192.0.2.12');
    assert.deepEqual(delivered, [{ dstMac: UDP_DEVICE_MAC, srcMac: UDP_DEVICE_MAC, etherType: ETHERTYPE_IPV4, packet }]);
    let before = rx.snapshot();
    rx.onDatagram(vxlan(packet), '192.0.2.12');
    assert.equal(moved(before, rx.snapshot()), 'ip_header');
    before = rx.snapshot();
    rx.onDatagram(ipv4('198.18.3.5', '198.18.1.7', 17, udp()), '192.0.2.12');
    assert.equal(moved(before, rx.snapshot()), 'inner_src');
  });

  it('never throws, and every datagram moves exactly one counter', () => {
    const { rx } = receiver();
    const good = vxlan(ipv4('198.18.2.5', '198.18.1.7', 6, tcp(200)));
    const datagram = fc.oneof(
      fc.uint8Array({ maxLength: 200 }).map((bytes) => Buffer.from(bytes)),
      fc.tuple(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }), fc.nat()).map(([edits, cut]) => {
        const copy = Buffer.from(good);
        for (const [at, value] of edits) copy[at % copy.length] = value;
        return copy.subarray(0, copy.length - (cut % 3 === 0 ? cut % copy.length : 0));
      }),
    );
    fc.assert(
      fc.property(datagram, fc.constantFrom('192.0.2.12', '192.0.2.99'), (bytes, source) => {
        const before = rx.snapshot();
        rx.onDatagram(bytes, source);
        assert.doesNotMatch(moved(before, rx.snapshot()), /^(\+.*)?$/);
      }),
      { numRuns: 3000 },
    );
  });
});

describe('userspace receive path, its socket', () => {
  it('names the errno when the tunnel port is taken (EADDRINUSE, not its number)', async function () {
    const taken = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => taken.bind(0, '127.0.0.1', resolve));
    try {
      const rx = new RxPath({ ...config('vxlan'), localAddress: '127.0.0.1', port: taken.address().port }, () => undefined);
      await assert.rejects(rx.start(), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'WEFT_USERSPACE_BIND');
        assert.match(err.message, new RegExp(`^cannot bind UDP 127\\.0\\.0\\.1:${taken.address().port}: .*EADDRINUSE`));
        assert.doesNotMatch(err.message, /errno 98/);
        return true;
      });
    } finally {
      taken.close();
    }
  });
});

describe('userspace receive path, batches from recvmmsg', () => {
  /** Puts `datagrams` in slot `slot` of rx's batch as recvmmsg would (laid end to end: a GRO train when several). */
  function put(rx: RxPath, slot: number, datagrams: Buffer[], source: string, options: { truncated?: boolean } = {}): void {
    const at = slot * RECEIVE_SLOT_SIZE;
    const joined = Buffer.concat(datagrams);
    joined.copy(rx.batch, at);
    rx.batchMeta[slot * 4] = joined.length;
    rx.batchMeta[slot * 4 + 1] = source.split('.').reduce((value, part) => value * 256 + Number(part), 0) | 0;
    rx.batchMeta[slot * 4 + 2] = datagrams.length > 1 ? datagrams[0].length : 0;
    rx.batchMeta[slot * 4 + 3] = options.truncated === true ? 1 : 0;
  }

  function batchReceiver(): { rx: RxPath; delivered: Delivered[] } {
    const made = receiver();
    made.rx.batch = Buffer.alloc(RECEIVE_SLOTS * RECEIVE_SLOT_SIZE);
    return made;
  }

  it('splits a GRO train into its datagrams and checks each on its own', () => {
    const { rx, delivered } = batchReceiver();
    const segment = (i: number, source = '198.18.2.5'): Buffer => vxlan(ipv4(source, '198.18.1.7', 6, tcp(1410 - (i === 2 ? 500 : 0))));
    // slot 0: a train of three (the last shorter); slot 1: one datagram; slot 2: a train whose middle one is spoofed
    put(rx, 0, [segment(0), segment(1), segment(2)], '192.0.2.12');
    put(rx, 1, [vxlan(ipv4('198.18.2.5', '198.18.1.7', 17, udp()))], '192.0.2.12');
    put(rx, 2, [segment(0), segment(1, '198.18.9.9'), segment(2)], '192.0.2.12');
    rx.onBatch(3);
    assert.equal(delivered.length, 6);
    assert.equal(rx.snapshot().packets, 6);
    assert.equal(rx.snapshot().drops.inner_src, 1);
    assert.equal(delivered[2].packet.length, 40 + 910);
    for (const { packet, dstMac } of delivered) {
      assert.equal(dstMac, OUR_MAC);
      assert.equal(packet.readUInt32BE(16), 0xc6120107);
      assert.equal(packet[8], 64);
    }
  });

  it('counts a train from a non-peer, a truncated slot and a socket error, datagram by datagram', () => {
    const { rx, delivered } = batchReceiver();
    const one = vxlan(ipv4('198.18.2.5', '198.18.1.7', 17, udp(1000)));
    put(rx, 0, [one, one, one, one], '192.0.2.99');
    put(rx, 1, [one, one], '192.0.2.12', { truncated: true });
    rx.onBatch(2);
    rx.onBatch(-104);
    assert.equal(delivered.length, 0);
    assert.equal(rx.snapshot().drops.unknown_peer, 4);
    assert.equal(rx.snapshot().drops.oversize, 2);
  });

  it('never throws, and every datagram of a batch moves exactly one counter', () => {
    const { rx } = batchReceiver();
    const good = vxlan(ipv4('198.18.2.5', '198.18.1.7', 6, tcp(200)));
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: -3, max: 3 }),
        (edits, count, lengthSkew) => {
          const copy = Buffer.from(good);
          for (const [at, value] of edits) copy[at % copy.length] = value;
          put(rx, 0, new Array<Buffer>(count).fill(copy), '192.0.2.12');
          // a length that does not divide into segments of the announced size
          rx.batchMeta[0] = Math.max(0, rx.batchMeta[0] + lengthSkew);
          const before = rx.snapshot();
          rx.onBatch(1);
          const after = rx.snapshot();
          const movedBy =
            after.packets - before.packets + RX_DROP_REASONS.reduce((sum, reason) => sum + after.drops[reason] - before.drops[reason], 0);
          const segment = rx.batchMeta[2];
          const length = rx.batchMeta[0];
          assert.equal(movedBy, segment > 0 && length > segment ? Math.ceil(length / segment) : 1);
        },
      ),
      { numRuns: 2000 },
    );
  });
});

interface Sent {
  datagram: Buffer;
  port: number;
  address: string;
}

function transmitter(
  kind: 'vxlan' | 'udp' = 'vxlan',
  options: { queued?: number; fail?: 'throw' | 'callback' } = {},
): { tx: TxPath; sent: Sent[] } {
  const tx = new TxPath(config(kind), () => undefined);
  const sent: Sent[] = [];
  const sender: DatagramSender = {
    send(buffer, offset, length, port, address, callback) {
      if (options.fail === 'throw') throw new Error('EPERM');
      sent.push({ datagram: Buffer.from(buffer.subarray(offset, offset + length)), port, address });
      callback(options.fail === 'callback' ? new Error('ENETUNREACH') : null);
    },
    getSendQueueCount: () => options.queued ?? 0,
  };
  tx.attachSender(sender);
  tx.setPeers([PEER]);
  return { tx, sent };
}

/** Writes an Ethernet frame carrying `packet` to the capture buffer, as libpcap does, and hands it over. */
function capture(tx: TxPath, packet: Buffer, etherType = ETHERTYPE_IPV4, truncated = false): void {
  const frame = Buffer.concat([parseMac(OUR_MAC), parseMac(OUR_MAC), Buffer.from([etherType >> 8, etherType & 0xff]), packet]);
  frame.copy(tx.captureBuffer);
  tx.handleFrame(frame.length, truncated);
}

describe('userspace transmit path', () => {
  it("prefixes the peer's VXLAN header and inner Ethernet header and sends to its PublicIP", () => {
    const { tx, sent } = transmitter();
    const packet = ipv4('198.18.1.7', '198.18.2.5', 17, udp());
    capture(tx, packet);
    assert.equal(sent.length, 1);
    assert.deepEqual(sent[0], {
      datagram: Buffer.concat([vxlanPrefix(1, parseMac(PEER_MAC), parseMac(OUR_MAC), ETHERTYPE_IPV4), packet]),
      port: 8472,
      address: '192.0.2.12',
    });
    assert.equal(tx.snapshot().packets, 1);
  });

  it("flannel's udp format: sends the bare packet to port 8285", () => {
    const { tx, sent } = transmitter('udp');
    const packet = ipv4('198.18.1.7', '198.18.2.5', 17, udp());
    capture(tx, packet);
    assert.deepEqual(sent, [{ datagram: packet, port: 8285, address: '192.0.2.12' }]);
  });

  it('finishes partial checksums and splits TSO frames', () => {
    const { tx, sent } = transmitter();
    capture(tx, ipv4('198.18.1.7', '198.18.2.5', 6, tcp(10), { partial: true }));
    assert.ok(transportChecksumValid(sent[0].datagram, 22, sent[0].datagram.length - 22));
    capture(tx, ipv4('198.18.1.7', '198.18.2.5', 6, tcp(4000), { partial: true }));
    const segments = sent.slice(1);
    assert.equal(segments.length, 3);
    for (const { datagram } of segments) {
      assert.ok(datagram.length - 22 <= 1450);
      assert.ok(transportChecksumValid(datagram, 22, datagram.length - 22));
    }
    assert.equal(tx.snapshot().packets, 4);
  });

  it('counts every frame it does not send under its reason', () => {
    const cases: [string, () => void][] = [];
    const { tx, sent } = transmitter();
    cases.push(['no_peer', () => capture(tx, ipv4('198.18.1.7', '198.18.9.5', 17, udp()))]);
    cases.push(['not_ipv4', () => capture(tx, Buffer.alloc(40), ETHERTYPE_IPV6)]);
    cases.push(['malformed', () => capture(tx, Buffer.from([0x45, 0, 0, 90, ...new Array<number>(30).fill(0)]))]);
    cases.push(['oversize', () => capture(tx, ipv4('198.18.1.7', '198.18.2.5', 17, udp(2000)))]);
    cases.push(['oversize', () => capture(tx, ipv4('198.18.1.7', '198.18.2.5', 17, udp()), ETHERTYPE_IPV4, true)]);
    // A TSO frame longer than libpcap's 65535-byte snapshot: cut there, and cap does not say so.
    cases.push([
      'oversize',
      () => {
        const packet = ipv4('198.18.1.7', '198.18.2.5', 6, tcp(65_535 - 40), { partial: true });
        Buffer.concat([parseMac(OUR_MAC), parseMac(OUR_MAC), Buffer.from([8, 0]), packet]).copy(tx.captureBuffer, 0, 0, 65_535);
        tx.handleFrame(65_535, false);
      },
    ]);
    for (const [reason, run] of cases) {
      const before = tx.snapshot();
      run();
      assert.equal(moved(before, tx.snapshot()), reason);
    }
    assert.equal(sent.length, 0);
    assert.deepEqual(Object.keys(tx.snapshot().drops), [...TX_DROP_REASONS]);
    const full = transmitter('vxlan', { queued: 512 });
    capture(full.tx, ipv4('198.18.1.7', '198.18.2.5', 17, udp()));
    assert.equal(full.tx.snapshot().drops.queue_full, 1);
    const refused = transmitter('vxlan', { fail: 'throw' });
    capture(refused.tx, ipv4('198.18.1.7', '198.18.2.5', 17, udp()));
    assert.equal(refused.tx.snapshot().drops.send_error, 1);
    const failed = transmitter('vxlan', { fail: 'callback' });
    capture(failed.tx, ipv4('198.18.1.7', '198.18.2.5', 17, udp()));
    assert.equal(failed.tx.snapshot().drops.send_error, 1);
  });

  it('native addon: sends a TSO frame as one UDP GSO train that arrives as the same datagrams dgram would send', async function () {
    const loaded = loadUdpNative();
    if ('error' in loaded) skipOrFail(this, `needs weft's native addon for UDP (${loaded.error})`);
    const addon = loaded.native;
    const loopback = 0x7f000001;
    let port = 0;
    let receiving = -98;
    for (let attempt = 0; attempt < 20 && receiving === -98; attempt++) {
      port = 20_000 + Math.floor(Math.random() * 40_000);
      receiving = addon.open(loopback, port, 0, 1 << 20, 1);
    }
    assert.ok(receiving >= 0, `open: errno ${-receiving}`);
    const sending = addon.open(loopback, 0, 1 << 20, 0, 0);
    assert.ok(sending >= 0, `open: errno ${-sending}`);
    const buffer = Buffer.alloc(RECEIVE_SLOTS * RECEIVE_SLOT_SIZE);
    const meta = new Int32Array(RECEIVE_SLOTS * 4);
    const got: Buffer[] = [];
    const handle = addon.receive(
      receiving,
      buffer,
      RECEIVE_SLOT_SIZE,
      RECEIVE_SLOTS,
      meta,
      (count) => {
        for (let i = 0; i < count; i++) {
          const length = meta[i * 4];
          const segment = meta[i * 4 + 2] || length;
          for (let offset = 0; offset < length; offset += segment) {
            got.push(
              Buffer.from(buffer.subarray(i * RECEIVE_SLOT_SIZE + offset, i * RECEIVE_SLOT_SIZE + Math.min(length, offset + segment))),
            );
          }
        }
      },
      RECEIVE_BATCHES_PER_EVENT,
    );
    assert.equal(typeof handle, 'object');
    try {
      const expected = transmitter();
      const packet = ipv4('198.18.1.7', '198.18.2.5', 6, tcp(60_000 - 40), { partial: true });
      capture(expected.tx, packet);
      assert.equal(expected.sent.length, Math.ceil((60_000 - 40) / 1410));
      const segments = expected.sent.length;
      const native = new TxPath({ ...config(), port }, () => undefined);
      native.attachNative(addon, sending);
      native.setPeers([{ ...PEER, publicIP: '127.0.0.1' }]);
      capture(native, packet);
      // a burst of small packets to the same peer: one more train (sent once the event loop turns)
      for (let i = 0; i < 5; i++) capture(native, ipv4('198.18.1.7', '198.18.2.5', 17, udp(100)));
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(native.snapshot().packets, expected.sent.length + 5);
      for (let i = 0; i < 5; i++) capture(expected.tx, ipv4('198.18.1.7', '198.18.2.5', 17, udp(100)));
      assert.equal(native.io, 'native (UDP GSO)');
      assert.equal(segments + 5, expected.sent.length);
      for (let i = 0; i < 100 && got.length < expected.sent.length; i++) await new Promise((resolve) => setTimeout(resolve, 10));
      assert.deepEqual(
        got,
        expected.sent.map(({ datagram }) => datagram),
      );
    } finally {
      addon.stop(handle as Exclude<typeof handle, number>);
      addon.close(receiving);
      addon.close(sending);
    }
  });

  it('takes any captured bytes: each frame is sent (every datagram counted) or moves exactly one drop counter, never by an error', () => {
    const { tx, sent } = transmitter();
    const ethernet = (packet: Buffer) => Buffer.concat([parseMac(OUR_MAC), parseMac(OUR_MAC), Buffer.from([0x08, 0x00]), packet]);
    const good = [
      ethernet(ipv4('198.18.1.7', '198.18.2.5', 17, udp())),
      ethernet(ipv4('198.18.1.7', '198.18.2.5', 6, tcp(4000), { partial: true })),
    ];
    const frame = fc.oneof(
      fc.uint8Array({ maxLength: 300 }).map((bytes) => Buffer.from(bytes)),
      fc
        .tuple(fc.constantFrom(...good), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }), fc.nat())
        .map(([original, edits, cut]) => {
          const copy = Buffer.from(original);
          for (const [at, value] of edits) copy[at % 60] = value;
          return copy.subarray(0, copy.length - (cut % 3 === 0 ? cut % copy.length : 0));
        }),
    );
    let forwarded = 0;
    fc.assert(
      fc.property(frame, fc.boolean(), (bytes, truncated) => {
        bytes.copy(tx.captureBuffer);
        const before = tx.snapshot();
        const sentBefore = sent.length;
        tx.handleFrame(bytes.length, truncated);
        const after = tx.snapshot();
        const outcome = moved(before, after);
        const datagrams = sent.length - sentBefore;
        if (outcome === 'forwarded') {
          forwarded++;
          assert.ok(datagrams >= 1);
          assert.equal(after.packets - before.packets, datagrams);
        } else {
          // the fake socket never fails: a send_error here is an exception the path caught
          assert.ok((TX_DROP_REASONS as readonly string[]).includes(outcome) && outcome !== 'send_error', `moved "${outcome}"`);
          assert.equal(after.drops[outcome] - before.drops[outcome], 1);
          assert.equal(datagrams, 0);
        }
      }),
      { numRuns: 3000 },
    );
    assert.ok(forwarded > 0, 'some frames were good enough to send');
  });
});
