import assert from 'node:assert/strict';
import { SMALL_PROBE_BYTES } from '../../common/probe-packet.js';
import { createLogger } from '../log.js';
import type { ProbeTransport } from './icmp-socket.js';
import { PeerProber, type ProbeTarget } from './prober.js';

/** A transport that sends nothing and gets no answer; it keeps each probe's destination and lets a test act on the n-th. */
class RecordingTransport implements ProbeTransport {
  readonly sent: string[] = [];
  constructor(private readonly onSend: (count: number) => void) {}
  send(_packet: Buffer, destination: string): void {
    this.sent.push(destination);
    this.onSend(this.sent.length);
  }
  onPacket(): void {}
  onError(): void {}
  close(): void {}
}

const target = (lease: string, address: string, publicIP = '192.0.2.1'): ProbeTarget => ({ lease, publicIP, address });
const A = target('a', '198.18.1.0');
const B = target('b', '198.18.2.0');
const C = target('c', '198.18.3.0');
const D = target('d', '198.18.4.0');
const E = target('e', '198.18.5.0');
const F = target('f', '198.18.6.0');

/**
 * Probes A to E round-robin; `change` runs just as the second probe (B's) goes out, in the middle of a tick, and
 * the run ends at the tenth probe. The destinations of the ten probes, the targets removed and each peer's round
 * (how often it was probed: a peer that kept its state counts the probes before the change too).
 */
async function probeAround(change: (prober: PeerProber) => void) {
  const removed: ProbeTarget[] = [];
  let done!: (rounds: Map<string, number>) => void;
  const finished = new Promise<Map<string, number>>((resolve) => (done = resolve));
  const transport = new RecordingTransport((count) => {
    if (count === 2) change(prober);
    if (count === 10) done(new Map(prober.report().peers.map((peer) => [peer.lease, peer.round])));
  });
  const prober: PeerProber = new PeerProber({
    transport,
    log: createLogger('silent'),
    intervalMs: 100,
    maxProbesPerSecond: 10_000,
    tickMs: 5,
  });
  prober.on('removed', (gone) => removed.push(gone));
  prober.setSource('198.18.0.0', SMALL_PROBE_BYTES);
  prober.setPeers([A, B, C, D, E]);
  prober.start();
  try {
    const rounds = await finished;
    return { sent: transport.sent.slice(0, 10), removed, rounds };
  } finally {
    prober.stop();
  }
}

describe('PeerProber: peers come and go one at a time', function () {
  it('keeps the round-robin place and the state of the peers kept; a peer that moves is a new one, at the end of the round', async function () {
    const E2 = target('e', '198.18.15.0');
    const { sent, removed, rounds } = await probeAround((prober) => {
      prober.deletePeer('d');
      prober.setPeer({ ...A, publicIP: '192.0.2.2' }); // same overlay address: the same peer
      prober.setPeer(E2);
      prober.setPeer(F);
      prober.deletePeer('nobody');
    });
    const order = [A, B, C, E2, F].map((peer) => peer.address);
    assert.deepEqual(sent, [A.address, B.address, ...order.slice(2), ...order]);
    assert.deepEqual(removed, [D, E]);
    assert.deepEqual(Object.fromEntries(rounds), { a: 2, b: 2, c: 2, e: 2, f: 2 }, 'A counts its probe from before the change');
  });

  it('gives the probe due to a peer that leaves to the one after it', async function () {
    const { sent, removed } = await probeAround((prober) => {
      prober.deletePeer('c'); // the next one due
      prober.deletePeer('a'); // the first of the round
      prober.setPeer(F);
    });
    const order = [B, D, E, F].map((peer) => peer.address);
    assert.deepEqual(sent, [A.address, B.address, ...order.slice(1), ...order, order[0]]);
    assert.deepEqual(removed, [C, A]);
  });

  it('setPeers keeps the place and state of the peers it keeps too', async function () {
    const { sent, removed, rounds } = await probeAround((prober) => prober.setPeers([C, F, A, B]));
    const order = [A, B, C, F].map((peer) => peer.address);
    assert.deepEqual(sent, [A.address, B.address, ...order.slice(2), ...order, ...order.slice(0, 2)]);
    assert.deepEqual(removed, [D, E]);
    assert.deepEqual(Object.fromEntries(rounds), { a: 3, b: 3, c: 2, f: 2 });
  });
});
