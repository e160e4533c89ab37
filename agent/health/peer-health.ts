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
import type { Lease } from '../../common/lease.js';
import type { PeersReport } from '../../common/reachability.js';
import type { Logger } from '../log.js';
import { openIcmpSocket } from './icmp-socket.js';
import type { ProbeMetrics } from './metrics.js';
import { PeerProber, type ProbeTarget } from './prober.js';

/**
 * The peers of `own` to probe: every other lease with an IPv4 subnet and public IP; only weft hosts (their
 * lease names a WeftNodeID) unless flanneld hosts answer (Backend.flannelPeersAnswerProbes).
 */
function probeTargets(own: Lease, leases: Iterable<Lease>, flannelPeersAnswer: boolean): ProbeTarget[] {
  const targets: ProbeTarget[] = [];
  const ownIP = own.attrs.publicIP;
  for (const lease of leases) {
    const subnet = lease.subnets.ipv4;
    const publicIP = lease.attrs.publicIP;
    if (lease.name === own.name || subnet === undefined || publicIP === undefined || (ownIP !== undefined && publicIP.equals(ownIP)))
      continue;
    if (!flannelPeersAnswer && typeof lease.attrs.extra.WeftNodeID !== 'string') continue;
    targets.push({ lease: lease.name, publicIP: publicIP.toString(), address: subnet.network.toString() });
  }
  return targets;
}

export interface PeerProbingOptions {
  intervalSeconds: number;
  maxProbesPerSecond: number;
  /** Backend.flannelPeersAnswerProbes */
  flannelPeersAnswerProbes: boolean;
  /** The IPv4 overlay MTU: the full-size probe's length. */
  mtu: number;
  /** Every lease by name, kept current by the lease watcher (read again on each change). */
  leases: ReadonlyMap<string, Lease>;
  log: Logger;
  metrics: ProbeMetrics;
}

/** Probes the peers of the leases it is given, from the own lease's address. */
export class PeerProbing {
  private readonly prober: PeerProber;
  private own: Lease | undefined;
  private scheduled = false;

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

  /**
   * The leases changed. Changes are gathered for a moment: making the list is O(peers), and churn brings
   * hundreds of lease events a second.
   */
  leasesChanged(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setTimeout(() => {
      this.scheduled = false;
      this.refresh();
    }, 100).unref();
  }

  report(filter: { problems?: boolean; leases?: ReadonlySet<string> }): PeersReport {
    return this.prober.report(filter);
  }

  stop(): void {
    this.prober.stop();
  }

  private refresh(): void {
    if (this.own === undefined) return;
    this.prober.setPeers(probeTargets(this.own, this.options.leases.values(), this.options.flannelPeersAnswerProbes));
  }
}
