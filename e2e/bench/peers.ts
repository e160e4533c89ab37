/**
 * Synthetic peers for the benchmarks: overlay subnets are /30s of 198.18.0.0/16 from 198.18.1.0
 * up (the agent under test leases 198.18.0.4/30, see BENCH_AGENT_SUBNET_ENV), public IPs come from
 * 198.19.0.0/16 and are never contacted: a VXLAN FDB entry sends nothing unless traffic is routed to its
 * subnet, and what weftd routes there (its peer probes) is encapsulated towards 198.19.0.0/16, which every lab
 * host routes into a blackhole.
 */

/**
 * The network config the benchmarks seed: /30 subnets, so that 16 320 synthetic peers fit in 198.18.0.0/16.
 * SubnetMin..SubnetMax spans them all: agents use only leases inside the range.
 */
export const BENCH_NETWORK_CONFIG = {
  Network: '198.18.0.0/16',
  SubnetLen: 30,
  SubnetMin: '198.18.0.4',
  SubnetMax: '198.18.255.252',
  Backend: { Type: 'vxlan' },
} as const;

/**
 * The subnet.env the agent under test finds from an earlier run before it starts: it then leases that
 * subnet (still by creating the key, as on a first start), below every synthetic peer that joins later.
 */
export const BENCH_AGENT_SUBNET_ENV =
  'FLANNEL_NETWORK=198.18.0.0/16\nFLANNEL_SUBNET=198.18.0.5/30\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n';

export const BENCH_PREFIX = '/coreos.com/network';
/** Peers 0 .. MAX_PEERS-1 exist. */
export const MAX_PEERS = (65536 - 256) / 4;

export interface SyntheticPeer {
  index: number;
  /** lease name, e.g. "198.18.1.4-30" */
  name: string;
  /** "198.18.1.4/30" */
  subnet: string;
  /** the subnet's network address as a number (what route / neighbour notifications carry) */
  network: number;
  /** "198.18.1.4": the neighbour and gateway */
  gateway: string;
  publicIP: string;
  vtepMac: string;
}

function dotted(value: number): string {
  return `${value >>> 24}.${(value >>> 16) & 255}.${(value >>> 8) & 255}.${value & 255}`;
}

const hex = (n: number): string => n.toString(16).padStart(2, '0');

export function syntheticPeer(index: number): SyntheticPeer {
  if (!Number.isInteger(index) || index < 0 || index >= MAX_PEERS) throw new RangeError(`synthetic peer ${index} out of range`);
  const network = ((198 << 24) >>> 0) + (18 << 16) + 256 + index * 4;
  const gateway = dotted(network);
  const host = index + 1;
  return {
    index,
    name: `${gateway}-30`,
    subnet: `${gateway}/30`,
    network,
    gateway,
    publicIP: `198.19.${host >>> 8}.${host & 255}`,
    vtepMac: `02:19:00:${hex((index >>> 16) & 255)}:${hex((index >>> 8) & 255)}:${hex(index & 255)}`,
  };
}

/** The lease value flanneld would write for the peer. */
export function leaseValue(peer: SyntheticPeer): string {
  return JSON.stringify({
    PublicIP: peer.publicIP,
    PublicIPv6: null,
    BackendType: 'vxlan',
    BackendData: { VNI: 1, VtepMAC: peer.vtepMac },
  });
}

export function leaseKey(peer: SyntheticPeer, prefix = BENCH_PREFIX): string {
  return `${prefix}/subnets/${peer.name}`;
}
