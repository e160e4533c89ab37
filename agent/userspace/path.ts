/** What a backend forwarding through the userspace data path offers the agent. */
import type { Lease } from '../../common/lease.js';
import type { PathCounters } from './protocol.js';

/** What a userspace data path has carried and dropped, per direction. */
export interface UserspaceCounters {
  tx: PathCounters;
  rx: PathCounters;
  /** Times a data-path worker died and was restarted. */
  restarts: number;
}

export interface UserspacePath {
  /**
   * The peers the reconcile loop programs (the leases it did not skip), after every computation of the
   * desired state. The path encapsulates for and accepts from these only.
   */
  updatePeers(own: Lease, peers: readonly Lease[]): void;
  /** Packets and drops so far, for /metrics. */
  counters(): Promise<UserspaceCounters>;
}
