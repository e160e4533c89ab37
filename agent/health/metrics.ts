/**
 * The peer prober's metrics, per state by default: a cluster of thousands of hosts must not export
 * thousands of series per host. `perPeer` (weftd's --probe-metrics-per-peer) adds a `peer` label (the
 * peer's public IP) to the RTT histogram and a per-peer state gauge.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { PEER_STATES } from '../../common/reachability.js';
import type { PeerProber } from './prober.js';

export class ProbeMetrics {
  readonly unreachable: Gauge;
  readonly byState: Gauge<'state'>;
  readonly rtt: Histogram<'peer'>;
  readonly probes: Counter<'size' | 'result'>;
  private prober: PeerProber | undefined;

  constructor(
    registry: Registry,
    readonly perPeer = false,
  ) {
    const registers = [registry];
    const counts = () => this.prober?.counts();
    this.unreachable = new Gauge({
      name: 'weft_peers_unreachable',
      help: "Peers that answer none of this host's probes over the overlay (no reply to the small probe).",
      registers,
      collect() {
        this.set(counts()?.unreachable ?? 0);
      },
    });
    this.byState = new Gauge({
      name: 'weft_peers_probed',
      help: `Peers by probe state: ${PEER_STATES.join(', ')} (mtu: only the small probe is answered).`,
      labelNames: ['state'],
      registers,
      collect() {
        const current = counts();
        for (const state of PEER_STATES) this.set({ state }, current?.[state] ?? 0);
      },
    });
    this.rtt = new Histogram({
      name: 'weft_peer_probe_rtt_seconds',
      help: 'Round trip of the small probe over the overlay.',
      labelNames: perPeer ? ['peer'] : [],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2],
      registers,
    });
    this.probes = new Counter({
      name: 'weft_peer_probes_total',
      help: 'Probes sent, by size (small, full) and result (sent, or refused by the kernel).',
      labelNames: ['size', 'result'],
      registers,
    });
    const states = () => (perPeer ? this.prober?.states() : undefined) ?? [];
    new Gauge({
      name: 'weft_peer_probe_state',
      help: "Each peer's probe state (1), by peer public IP and state; only with --probe-metrics-per-peer.",
      labelNames: ['peer', 'state'],
      registers,
      collect() {
        this.reset();
        for (const [target, state] of states()) this.set({ peer: target.publicIP, state }, 1);
      },
    });
  }

  /** Reports `prober`'s peers from now on. */
  follow(prober: PeerProber): void {
    this.prober = prober;
    prober.on('probe', (size, sent) => this.probes.inc({ size, result: sent ? 'sent' : 'refused' }));
    prober.on('rtt', (target, seconds) => {
      if (this.perPeer) this.rtt.observe({ peer: target.publicIP }, seconds);
      else this.rtt.observe(seconds);
    });
    if (this.perPeer) prober.on('removed', (target) => this.rtt.remove({ peer: target.publicIP }));
  }
}
