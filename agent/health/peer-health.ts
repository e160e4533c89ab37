/**
 * The agent's side of peer probing: which peers to probe (from the leases), from which address (this
 * host's lease), and the prober's life with the agent's.
 *
 * Probes go from this host's subnet's network address (.0) to each peer's. Every weft host holds that
 * address: the vxlan backend (kernel or userspace path) and the udp backend on their overlay device, as
 * flanneld does on flannel.<VNI> and flannel0, host-gw on the loopback device. So the probe is routed by the
 * peer's overlay route (through the VXLAN device, the userspace path, or via the peer's public IP for host-gw)
 * and the answer by the peer's route back, the paths containers' packets take. IPv4 only.
 */
import type { LeaseChange } from '../../common/lease-arbiter.js';
import type { Lease } from '../../common/lease.js';
import type { PeersReport } from '../../common/reachability.js';
import type { Logger } from '../log.js';
import { openIcmpSocket } from './icmp-socket.js';
import type { ProbeMetrics } from './metrics.js';
import { PeerProber, type ProbeTarget } from './prober.js';

/**
 * Whether `lease` is a peer of `own` to probe, and how: every other lease with an IPv4 subnet and public IP;
 * only weft hosts (their lease names a WeftNodeID) unless flanneld hosts answer (Backend.flannelPeersAnswerProbes).
 */
function probeTarget(own: Lease, lease: Lease, flannelPeersAnswer: boolean): ProbeTarget | undefined {
  const subnet = lease.subnets.ipv4;
  const publicIP = lease.attrs.publicIP;
  const ownIP = own.attrs.publicIP;
  if (lease.name === own.name || subnet === undefined || publicIP === undefined || (ownIP !== undefined && publicIP.equals(ownIP)))
    return undefined;
  if (!flannelPeersAnswer && typeof lease.attrs.extra.WeftNodeID !== 'string') return undefined;
  return { lease: lease.name, publicIP: publicIP.toString(), address: subnet.network.toString() };
}

export interface PeerProbingOptions {
  intervalSeconds: number;
  maxProbesPerSecond: number;
  /** Backend.flannelPeersAnswerProbes */
  flannelPeersAnswerProbes: boolean;
  /** The IPv4 overlay MTU: the full-size probe's length. */
  mtu: number;
  /** Every lease by name, kept current by the lease watcher (read whole by refresh). */
  leases: ReadonlyMap<string, Lease>;
  log: Logger;
  metrics: ProbeMetrics;
}

/** Probes the peers of the leases it is given, from the own lease's address. */
export class PeerProbing {
  private readonly prober: PeerProber;
  private own: Lease | undefined;

  /** Opens the probe socket (throws ProbeSocketError without CAP_NET_RAW) and starts probing. */
  constructor(private readonly options: PeerProbingOptions) {
    this.prober = new PeerProber({
      transport: openIcmpSocket(),
      log: options.log,
      intervalMs: options.intervalSeconds * 1000,
      maxProbesPerSecond: options.maxProbesPerSecond,
    });
    options.metrics.follow(this.prober);
    this.prober.start();
  }

  /** This host's lease (a new one after a takeover moves the probes' source). */
  setOwn(own: Lease): void {
    this.own = own;
    this.prober.setSource(own.subnets.ipv4?.network.toString(), this.options.mtu);
    this.refresh();
  }

  /** A lease came, changed or went: O(1), whatever the number of peers (churn brings hundreds of events a second). */
  leaseChanged(event: LeaseChange): void {
    const own = this.own;
    if (own === undefined) return;
    const target = event.kind === 'removed' ? undefined : probeTarget(own, event.lease, this.options.flannelPeersAnswerProbes);
    if (target === undefined) this.prober.deletePeer(event.lease.name);
    else this.prober.setPeer(target);
  }

  /** Makes the peers again from every lease, O(peers): for rare events (a new own lease, a relist of the leases). */
  refresh(): void {
    const own = this.own;
    if (own === undefined) return;
    const targets: ProbeTarget[] = [];
    for (const lease of this.options.leases.values()) {
      const target = probeTarget(own, lease, this.options.flannelPeersAnswerProbes);
      if (target !== undefined) targets.push(target);
    }
    this.prober.setPeers(targets);
  }

  report(filter: { problems?: boolean; leases?: ReadonlySet<string> }): PeersReport {
    return this.prober.report(filter);
  }

  stop(): void {
    this.prober.stop();
  }
}
