/**
 * What weftd's peer prober reports on /peers, and how `weftctl status` joins every host's report into the
 * reachability of each direction between two hosts.
 *
 * A probe is a round trip: when host A gets no answer from B, either A→B or B→A loses the packets. The
 * reports say which: every host also records the probes it receives from each peer (`heard`), so B saying
 * it heard A's probes sent after A's answers stopped means A→B carries and the replies B→A are lost; B
 * hearing none of them means A→B loses them. The same holds for the full-size probes (an MTU black hole
 * passes the small ones only).
 */

export const PEER_STATES = ['unknown', 'ok', 'mtu', 'unreachable'] as const;
/**
 * unknown: no answer yet (just added); ok: small and full-size probes are answered; mtu: only the small
 * ones are; unreachable: not even the small ones are.
 */
export type PeerState = (typeof PEER_STATES)[number];

/** One peer as the prober of one host sees it. */
export interface PeerReport {
  /** The peer's lease name, e.g. "198.18.6.0-24". */
  lease: string;
  publicIP: string;
  /** Where the probes go: the peer's subnet's network address (.0). */
  address: string;
  state: PeerState;
  /** ISO time the state was entered. */
  since: string;
  /** Round trip of the last answered small probe. */
  rttSeconds: number | null;
  /** ISO time of the last answer of any size. */
  lastReply: string | null;
  /** Probe rounds sent to this peer (one small and one full-size probe each). */
  round: number;
  /** The first round of the current run of unanswered small (full-size) probes; null while they are answered. */
  smallLostSince: number | null;
  fullLostSince: number | null;
  /** The probes this host received from the peer: the peer's prober run and the last round of each size. */
  heard: { instance: number; small: number | null; full: number | null; at: string } | null;
}

/** The /peers body. */
export interface PeersReport {
  /** The agent's clock when it answered (ISO). */
  now: string;
  /** This prober run; a peer's `heard.instance` names the run whose probes it heard. */
  instance: number;
  /** The address this host probes from (its subnet's .0); null before it has a lease. */
  source: string | null;
  /** Seconds between two probes of one peer (the interval, or longer when the rate cap stretches it). */
  roundSeconds: number;
  /** Packet sizes of the small and the full-size probe (the overlay MTU). */
  sizes: { small: number; full: number };
  /** Peers in each state. */
  counts: Record<PeerState, number>;
  /** The peers asked for (all, those not ok, or those named). */
  peers: PeerReport[];
}

export type PathState = 'ok' | 'lost' | 'mtu' | 'unknown';

/** One direction between two hosts: whether packets sent from `from` arrive at `to`. */
export interface PathVerdict {
  /** Lease names. */
  from: string;
  to: string;
  state: PathState;
  /** Why, in words; empty for ok. */
  detail: string;
  /** Since when a probe record has said so (ISO), when one does. */
  since: string | null;
}

/** One host's prober report, as `weftctl status` got it. */
export interface HostProbes {
  lease: string;
  publicIP: string;
  /** Undefined when the agent could not be asked, or does not probe. */
  report: PeersReport | undefined;
  /**
   * The host's records of every peer that is not ok, and of any other peer asked for, by lease name. With a
   * report, a peer missing here answers this host's probes.
   */
  records: ReadonlyMap<string, PeerReport>;
}

type Size = 'small' | 'full';

/** `host`'s record of `peer`: the record, 'ok' when its report leaves the peer out, undefined without a report. */
function recordOf(host: HostProbes, peer: HostProbes): PeerReport | 'ok' | undefined {
  return host.records.get(peer.lease) ?? (host.report === undefined ? undefined : 'ok');
}

/** Whether the record's round trips of this size are answered. */
function answered(record: PeerReport | 'ok' | undefined, size: Size): boolean {
  if (record === undefined) return false;
  if (record === 'ok') return true;
  return size === 'small' ? record.state === 'ok' || record.state === 'mtu' : record.state === 'ok';
}

/** The first round of the run of unanswered probes of this size, once the prober changed the peer's state for it. */
function lostSince(record: PeerReport | 'ok' | undefined, size: Size): number | null {
  if (record === undefined || record === 'ok') return null;
  if (size === 'small') return record.state === 'unreachable' ? record.smallLostSince : null;
  return record.state === 'mtu' || record.state === 'unreachable' ? record.fullLostSince : null;
}

/** The last round of this size `record`'s host heard from the peer's prober run `instance`. */
function heardRound(record: PeerReport | 'ok' | undefined, instance: number | undefined, size: Size): number | null {
  if (record === undefined || record === 'ok' || record.heard === null || record.heard.instance !== instance) return null;
  return size === 'small' ? record.heard.small : record.heard.full;
}

/** Whether packets of one size from A arrive at B, from both hosts' records (undefined: cannot tell). */
function carries(a: HostProbes, b: HostProbes, size: Size): { carries: boolean | undefined; why: string } {
  const ofB = recordOf(a, b);
  const ofA = recordOf(b, a);
  if (answered(ofB, size) || answered(ofA, size)) return { carries: true, why: '' };
  // A's probes of B go unanswered: did B hear the ones A sent since?
  const aLost = lostSince(ofB, size);
  if (aLost !== null && b.report !== undefined) {
    const heard = heardRound(ofA, a.report?.instance, size);
    if (heard !== null && heard >= aLost) return { carries: true, why: '' };
    return { carries: false, why: `${b.publicIP} hears none of the probes ${a.publicIP} sent since its answers stopped` };
  }
  // B's probes of A go unanswered: if A heard them, what is lost are A's answers to B
  const bLost = lostSince(ofA, size);
  if (bLost !== null && a.report !== undefined) {
    const heard = heardRound(ofB, b.report?.instance, size);
    if (heard !== null && heard >= bLost)
      return { carries: false, why: `${a.publicIP} hears ${b.publicIP}'s probes but ${b.publicIP} gets none of its answers` };
  }
  return { carries: undefined, why: '' };
}

/** The earliest `since` of the two hosts' records of each other that are not ok. */
function sinceOf(...records: (PeerReport | 'ok' | undefined)[]): string | null {
  const times = records
    .filter((record): record is PeerReport => record !== undefined && record !== 'ok' && record.state !== 'ok')
    .map((record) => record.since);
  return times.length === 0 ? null : times.sort()[0];
}

/** The state of the path from `a` to `b`. */
export function pathVerdict(a: HostProbes, b: HostProbes): PathVerdict {
  const ofB = recordOf(a, b);
  const ofA = recordOf(b, a);
  const since = sinceOf(ofB, ofA);
  const verdict = (state: PathState, detail: string): PathVerdict => ({
    from: a.lease,
    to: b.lease,
    state,
    detail,
    since: state === 'ok' ? null : since,
  });
  if (ofB === undefined && ofA === undefined) return verdict('unknown', 'neither host reports probes');
  const small = carries(a, b, 'small');
  if (small.carries === false)
    return verdict('lost', `no packets from ${a.publicIP} arrive at ${b.publicIP} over the overlay: ${small.why}`);
  const full = carries(a, b, 'full');
  const fullBytes = a.report?.sizes.full ?? b.report?.sizes.full;
  const sizeText = fullBytes === undefined ? 'full-size packets' : `${fullBytes}-byte packets`;
  if (small.carries === true && full.carries === false) {
    return verdict(
      'mtu',
      `only small packets from ${a.publicIP} arrive at ${b.publicIP} over the overlay, ${sizeText} are lost (an MTU black hole): ${full.why}`,
    );
  }
  if (small.carries === true && full.carries === true) return verdict('ok', '');
  // A gets no answer from B, and B's records cannot say which way is lost
  const missing =
    b.report === undefined ? `${b.publicIP}'s /peers could not be read` : `${b.publicIP} has no record of ${a.publicIP}'s probes`;
  const state = ofB === undefined || ofB === 'ok' ? undefined : ofB.state;
  if (small.carries === undefined && state === 'unreachable') {
    return verdict('lost', `${a.publicIP} gets no answer from ${b.publicIP} over the overlay; which way is lost is unknown (${missing})`);
  }
  if (full.carries === undefined && state === 'mtu') {
    return verdict(
      'mtu',
      `${a.publicIP} gets no answer to ${sizeText} from ${b.publicIP} over the overlay; which way is lost is unknown (${missing})`,
    );
  }
  return verdict('unknown', 'not probed long enough to tell');
}

/** Every direction between two of the hosts that some record says is not ok, with its verdict (ok ones left out). */
export function brokenPaths(hosts: readonly HostProbes[]): PathVerdict[] {
  const byLease = new Map(hosts.map((host) => [host.lease, host]));
  const pairs = new Set<string>();
  for (const host of hosts) {
    for (const record of host.records.values()) {
      if (record.state === 'ok' || !byLease.has(record.lease)) continue;
      pairs.add(JSON.stringify([host.lease, record.lease]));
      pairs.add(JSON.stringify([record.lease, host.lease]));
    }
  }
  const out: PathVerdict[] = [];
  for (const pair of [...pairs].sort()) {
    const [from, to] = JSON.parse(pair) as [string, string];
    const verdict = pathVerdict(byLease.get(from)!, byLease.get(to)!);
    if (verdict.state !== 'ok') out.push(verdict);
  }
  return out;
}

/** At most this many peer records are read from one /peers answer. */
export const MAX_REPORTED_PEERS = 100_000;

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
const isRound = (value: unknown): value is number | null =>
  value === null || (Number.isInteger(value) && (value as number) >= 0 && (value as number) <= 0xffffffff);
/** The only texts a report holds: ISO times, lease names and addresses (nothing to escape when printed). */
const isTime = (value: unknown): value is string =>
  typeof value === 'string' && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$/.test(value);
const isName = (value: unknown): value is string => typeof value === 'string' && value.length <= 100 && /^[0-9A-Za-z:.&-]+$/.test(value);

function peerRecord(value: unknown): PeerReport | undefined {
  if (!isObject(value)) return undefined;
  const { lease, publicIP, address, state, since, rttSeconds, lastReply, round, smallLostSince, fullLostSince, heard } = value;
  if (!isName(lease) || !isName(publicIP) || !isName(address) || !isTime(since) || !(PEER_STATES as readonly unknown[]).includes(state))
    return undefined;
  if (
    !(rttSeconds === null || (typeof rttSeconds === 'number' && Number.isFinite(rttSeconds))) ||
    !(lastReply === null || isTime(lastReply))
  )
    return undefined;
  if (!isRound(round) || round === null || !isRound(smallLostSince) || !isRound(fullLostSince)) return undefined;
  let heardRecord: PeerReport['heard'] = null;
  if (heard !== null) {
    if (
      !isObject(heard) ||
      !isRound(heard.instance) ||
      heard.instance === null ||
      !isRound(heard.small) ||
      !isRound(heard.full) ||
      !isTime(heard.at)
    )
      return undefined;
    heardRecord = { instance: heard.instance, small: heard.small, full: heard.full, at: heard.at };
  }
  return {
    lease,
    publicIP,
    address,
    state: state as PeerState,
    since,
    rttSeconds,
    lastReply,
    round,
    smallLostSince,
    fullLostSince,
    heard: heardRecord,
  };
}

/** Reads a /peers body an agent sent (untrusted): the report, or what is wrong with it. */
export function parsePeersReport(text: string): PeersReport | string {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return '/peers did not answer JSON';
  }
  if (!isObject(body)) return '/peers did not answer a JSON object';
  const { now, instance, source, roundSeconds, sizes, counts, peers } = body;
  if (
    !isTime(now) ||
    !isRound(instance) ||
    instance === null ||
    !(source === null || isName(source)) ||
    typeof roundSeconds !== 'number' ||
    !Number.isFinite(roundSeconds)
  ) {
    return '/peers: now, instance, source or roundSeconds is missing or malformed';
  }
  if (!isObject(sizes) || !Number.isInteger(sizes.small) || !Number.isInteger(sizes.full)) return '/peers: sizes is malformed';
  if (!isObject(counts) || !PEER_STATES.every((state) => Number.isInteger(counts[state]))) return '/peers: counts is malformed';
  if (!Array.isArray(peers) || peers.length > MAX_REPORTED_PEERS) return `/peers: peers is not a list of at most ${MAX_REPORTED_PEERS}`;
  const records: PeerReport[] = [];
  for (const [index, value] of peers.entries()) {
    const record = peerRecord(value);
    if (record === undefined) return `/peers: peers[${index}] is malformed`;
    records.push(record);
  }
  return {
    now,
    instance,
    source,
    roundSeconds,
    sizes: { small: sizes.small as number, full: sizes.full as number },
    counts: Object.fromEntries(PEER_STATES.map((state) => [state, counts[state] as number])) as Record<PeerState, number>,
    peers: records,
  };
}
