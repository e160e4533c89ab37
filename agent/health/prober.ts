/**
 * Peer health probing: every peer gets a small and a full-size (overlay MTU) don't-fragment ICMP echo
 * request once per round, from this host's overlay address to the peer's, so that the probe takes the
 * overlay path the containers' packets take (see docs/operations.md, "Peer health"). Rounds are spread
 * evenly over the interval; a cap on probes per second stretches the round when there are many peers.
 *
 * A peer is `unreachable` after LOST_AFTER unanswered small probes in a row, `mtu` after as many
 * unanswered full-size probes while the small ones are answered, `ok` once answered. The prober also
 * records the probes each peer sends this host (`heard`), which tells `weftctl status` which direction of
 * a failing round trip loses the packets.
 */
import { randomInt } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { ipv4Value } from '../../common/cidr.js';
import { formatIpv4 } from '../../common/packet.js';
import { decodeProbe, encodeProbe, MIN_PROBE_BYTES, SMALL_PROBE_BYTES, type ProbeSize } from '../../common/probe-packet.js';
import { PEER_STATES, type PeerReport, type PeersReport, type PeerState } from '../../common/reachability.js';
import type { Logger } from '../log.js';
import type { ProbeTransport } from './icmp-socket.js';

/** A peer to probe. */
export interface ProbeTarget {
  /** Its lease name. */
  lease: string;
  publicIP: string;
  /** Its overlay address (its subnet's .0). */
  address: string;
}

export interface ProberOptions {
  transport: ProbeTransport;
  log: Logger;
  /** Time between two probe rounds of one peer. */
  intervalMs: number;
  /** At most this many probe packets per second, all peers together (the round stretches to fit). */
  maxProbesPerSecond: number;
  /** A probe unanswered after this long is lost (default: 2 s, at most half the interval). */
  timeoutMs?: number;
  /** How often the prober wakes to send what is due and expire what is lost (default 250 ms). */
  tickMs?: number;
}

/** Unanswered probes in a row that change a peer's state. */
export const LOST_AFTER = 2;
/** The log sums up failing peers at most this often, naming this many. */
const SUMMARY_EVERY_MS = 10_000;
const SUMMARY_PEERS = 10;

interface Outstanding {
  round: number;
  sentAt: number;
}

class PeerHealth {
  readonly value: number;
  state: PeerState = 'unknown';
  since = Date.now();
  round = 0;
  rttSeconds: number | null = null;
  lastReply: number | null = null;
  smallMisses = 0;
  fullMisses = 0;
  smallLostSince: number | null = null;
  fullLostSince: number | null = null;
  pending: Record<ProbeSize, Outstanding | undefined> = { small: undefined, full: undefined };
  heard: { instance: number; small: number | null; full: number | null; at: number } | null = null;
  /** its neighbours in the round-robin ring */
  next: PeerHealth = this;
  previous: PeerHealth = this;

  constructor(readonly target: ProbeTarget) {
    this.value = ipv4Value(target.address);
  }
}

interface Deadline {
  peer: PeerHealth;
  size: ProbeSize;
  round: number;
  at: number;
}

export interface ProberEvents {
  /** A probe was sent (or the kernel refused it: `sent` false). */
  probe: [size: ProbeSize, sent: boolean];
  /** A small probe was answered after `seconds`. */
  rtt: [target: ProbeTarget, seconds: number];
  /** A peer changed state. */
  state: [target: ProbeTarget, state: PeerState, previous: PeerState];
  /** A peer is no longer probed. */
  removed: [target: ProbeTarget];
}

export class PeerProber extends EventEmitter<ProberEvents> {
  /** This prober run, carried in every probe. */
  readonly instance = randomInt(1, 2 ** 32 - 1);
  private readonly identifier = randomInt(0, 0x10000);
  private readonly peers = new Map<string, PeerHealth>();
  private readonly byAddress = new Map<number, PeerHealth>();
  /**
   * The peers in round-robin order, a ring: `first` is the first of a round (peers that come are added before it,
   * at the end of the round) and `cursor` the next to probe. A peer comes or goes in O(1) and the others keep their
   * place.
   */
  private first: PeerHealth | undefined;
  private cursor: PeerHealth | undefined;
  /** Peers owed a probe round (fractions carry over from tick to tick). */
  private credit = 0;
  private readonly deadlines: Deadline[] = [];
  private deadlineHead = 0;
  private source: number | undefined;
  private fullSize = SMALL_PROBE_BYTES;
  private timer: NodeJS.Timeout | undefined;
  private lastTick = 0;
  private readonly timeoutMs: number;
  private readonly tickMs: number;
  private lastSendError = '';
  /** Peers entered or left a failing state since the last summary in the log. */
  private summaryDue = false;
  private lastSummary = -Infinity;

  constructor(private readonly options: ProberOptions) {
    super();
    this.timeoutMs = options.timeoutMs ?? Math.min(2000, options.intervalMs / 2);
    this.tickMs = options.tickMs ?? 250;
    options.transport.onPacket((packet) => this.receive(packet));
    options.transport.onError((err) =>
      options.log.error({ err }, "the peer probes' socket failed; probes go unanswered until weftd restarts"),
    );
  }

  /** This host's overlay address (probes go from it) and MTU (the full-size probe); undefined pauses probing. */
  setSource(address: string | undefined, mtu: number): void {
    this.source = address === undefined ? undefined : ipv4Value(address);
    this.fullSize = Math.max(MIN_PROBE_BYTES, Math.min(mtu, 65535));
  }

  /** The peers to probe from now on, O(peers); peers kept keep their state and place. */
  setPeers(targets: readonly ProbeTarget[]): void {
    const wanted = new Map(targets.map((target) => [target.lease, target]));
    for (const peer of this.peers.values()) if (wanted.get(peer.target.lease)?.address !== peer.target.address) this.drop(peer);
    for (const target of wanted.values()) this.setPeer(target);
  }

  /** Probes `target` from now on, in O(1); a peer of its lease with the same address keeps its state and place. */
  setPeer(target: ProbeTarget): void {
    const known = this.peers.get(target.lease);
    if (known !== undefined) {
      if (known.target.address === target.address) return;
      this.drop(known);
    }
    const peer = new PeerHealth(target);
    this.peers.set(target.lease, peer);
    this.byAddress.set(peer.value, peer);
    if (this.first === undefined) {
      this.first = this.cursor = peer;
    } else {
      const last = this.first.previous;
      peer.previous = last;
      peer.next = this.first;
      last.next = peer;
      this.first.previous = peer;
    }
  }

  /** Stops probing the peer of `lease` (if any), in O(1). */
  deletePeer(lease: string): void {
    const known = this.peers.get(lease);
    if (known !== undefined) this.drop(known);
  }

  /** Takes `peer` out of the maps and the ring; the probe it was due goes to the one after it. */
  private drop(peer: PeerHealth): void {
    this.peers.delete(peer.target.lease);
    if (this.byAddress.get(peer.value) === peer) this.byAddress.delete(peer.value);
    if (peer.next === peer) {
      this.first = this.cursor = undefined;
    } else {
      peer.previous.next = peer.next;
      peer.next.previous = peer.previous;
      if (this.first === peer) this.first = peer.next;
      if (this.cursor === peer) this.cursor = peer.next;
    }
    this.emit('removed', peer.target);
  }

  start(): void {
    if (this.timer !== undefined) return;
    this.lastTick = performance.now();
    this.timer = setInterval(() => this.tick(), this.tickMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.options.transport.close();
  }

  /** Seconds between two rounds of one peer: the interval, or longer when the rate cap says so. */
  get roundMs(): number {
    const probesPerRound = this.peers.size * (this.fullSize > SMALL_PROBE_BYTES ? 2 : 1);
    return Math.max(this.options.intervalMs, (probesPerRound * 1000) / this.options.maxProbesPerSecond);
  }

  counts(): Record<PeerState, number> {
    const counts = Object.fromEntries(PEER_STATES.map((state) => [state, 0])) as Record<PeerState, number>;
    for (const peer of this.peers.values()) counts[peer.state]++;
    return counts;
  }

  /** Each peer's state, for per-peer metrics. */
  *states(): Generator<[ProbeTarget, PeerState]> {
    for (const peer of this.peers.values()) yield [peer.target, peer.state];
  }

  /** The /peers body: every peer, those not ok (`problems`), or those named (`leases`). */
  report(filter: { problems?: boolean; leases?: ReadonlySet<string> } = {}): PeersReport {
    const chosen = [...this.peers.values()].filter(
      (peer) => (filter.problems !== true || peer.state !== 'ok') && (filter.leases === undefined || filter.leases.has(peer.target.lease)),
    );
    const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
    return {
      now: new Date().toISOString(),
      instance: this.instance,
      source: this.source === undefined ? null : formatIpv4(this.source),
      roundSeconds: this.roundMs / 1000,
      sizes: { small: SMALL_PROBE_BYTES, full: this.fullSize },
      counts: this.counts(),
      peers: chosen.map((peer): PeerReport => ({
        lease: peer.target.lease,
        publicIP: peer.target.publicIP,
        address: peer.target.address,
        state: peer.state,
        since: new Date(peer.since).toISOString(),
        rttSeconds: peer.rttSeconds,
        lastReply: iso(peer.lastReply),
        round: peer.round,
        smallLostSince: peer.smallLostSince,
        fullLostSince: peer.fullLostSince,
        heard: peer.heard === null ? null : { ...peer.heard, at: new Date(peer.heard.at).toISOString() },
      })),
    };
  }

  private tick(): void {
    const now = performance.now();
    const elapsed = now - this.lastTick;
    this.lastTick = now;
    this.expire(now);
    if (this.summaryDue && now - this.lastSummary >= SUMMARY_EVERY_MS) this.logSummary(now);
    if (this.source === undefined || this.peers.size === 0) {
      this.credit = 0;
      return;
    }
    // never more than one round's worth at once (after a stall, say)
    this.credit = Math.min(this.credit + (this.peers.size * elapsed) / this.roundMs, this.peers.size);
    for (; this.credit >= 1 && this.cursor !== undefined; this.credit--) {
      const peer = this.cursor;
      this.cursor = peer.next;
      this.probe(peer, now);
    }
  }

  /** One line for all peers that changed (thousands may at once): how many fail, and some of them. */
  private logSummary(now: number): void {
    this.summaryDue = false;
    this.lastSummary = now;
    const failing = [...this.peers.values()].filter((peer) => peer.state === 'unreachable' || peer.state === 'mtu');
    if (failing.length === 0) {
      this.options.log.info('every peer answers probes over the overlay');
      return;
    }
    const counts = this.counts();
    this.options.log.warn(
      {
        unreachable: counts.unreachable,
        mtu: counts.mtu,
        peers: failing.slice(0, SUMMARY_PEERS).map((peer) => `${peer.target.publicIP} ${peer.state}`),
      },
      'peers do not answer probes over the overlay (mtu: only small probes are answered); weftctl status says which way',
    );
  }

  private probe(peer: PeerHealth, now: number): void {
    peer.round = (peer.round + 1) >>> 0;
    this.send(peer, 'small', SMALL_PROBE_BYTES, now);
    if (this.fullSize > SMALL_PROBE_BYTES) this.send(peer, 'full', this.fullSize, now);
  }

  private send(peer: PeerHealth, size: ProbeSize, length: number, now: number): void {
    const previous = peer.pending[size];
    if (previous !== undefined) this.lost(peer, size, previous.round);
    const packet = encodeProbe({
      source: this.source!,
      destination: peer.value,
      identifier: this.identifier,
      instance: this.instance,
      round: peer.round,
      size,
      length,
    });
    try {
      this.options.transport.send(packet, peer.target.address);
    } catch (err) {
      // the kernel refused it (no route, a full socket buffer, …): the probe is lost
      const message = (err as Error).message;
      if (message !== this.lastSendError) this.options.log.warn({ err, peer: peer.target.address, size }, 'could not send a peer probe');
      this.lastSendError = message;
      this.emit('probe', size, false);
      this.lost(peer, size, peer.round);
      return;
    }
    this.emit('probe', size, true);
    peer.pending[size] = { round: peer.round, sentAt: now };
    this.deadlines.push({ peer, size, round: peer.round, at: now + this.timeoutMs });
  }

  private expire(now: number): void {
    while (this.deadlineHead < this.deadlines.length && this.deadlines[this.deadlineHead].at <= now) {
      const { peer, size, round } = this.deadlines[this.deadlineHead++];
      if (peer.pending[size]?.round === round && this.peers.get(peer.target.lease) === peer) this.lost(peer, size, round);
    }
    if (this.deadlineHead > 1024 && this.deadlineHead * 2 > this.deadlines.length) {
      this.deadlines.splice(0, this.deadlineHead);
      this.deadlineHead = 0;
    }
  }

  private lost(peer: PeerHealth, size: ProbeSize, round: number): void {
    peer.pending[size] = undefined;
    if (size === 'small') {
      peer.smallMisses++;
      peer.smallLostSince ??= round;
    } else {
      peer.fullMisses++;
      peer.fullLostSince ??= round;
    }
    this.update(peer);
  }

  private receive(packet: Buffer): void {
    const message = decodeProbe(packet);
    if (message === undefined) return;
    const peer = this.byAddress.get(message.source);
    if (peer === undefined) return;
    if (message.kind === 'request') {
      if (peer.heard === null || peer.heard.instance !== message.instance)
        peer.heard = { instance: message.instance, small: null, full: null, at: 0 };
      peer.heard[message.size] = message.round;
      peer.heard.at = Date.now();
      return;
    }
    if (message.identifier !== this.identifier || message.instance !== this.instance) return;
    const pending = peer.pending[message.size];
    if (pending === undefined || pending.round !== message.round) return;
    peer.pending[message.size] = undefined;
    peer.lastReply = Date.now();
    if (message.size === 'small') {
      peer.smallMisses = 0;
      peer.smallLostSince = null;
      peer.rttSeconds = (performance.now() - pending.sentAt) / 1000;
      this.emit('rtt', peer.target, peer.rttSeconds);
    } else {
      peer.fullMisses = 0;
      peer.fullLostSince = null;
    }
    this.update(peer);
  }

  private update(peer: PeerHealth): void {
    const answered = peer.lastReply !== null;
    const state: PeerState =
      peer.smallMisses >= LOST_AFTER ? 'unreachable' : peer.fullMisses >= LOST_AFTER ? 'mtu' : answered ? 'ok' : 'unknown';
    if (state === peer.state) return;
    const previous = peer.state;
    peer.state = state;
    peer.since = Date.now();
    this.options.log.debug({ peer: peer.target.publicIP, lease: peer.target.lease, state, previous }, 'peer probe state');
    if (state === 'unreachable' || state === 'mtu' || previous === 'unreachable' || previous === 'mtu') this.summaryDue = true;
    this.emit('state', peer.target, state, previous);
  }
}
