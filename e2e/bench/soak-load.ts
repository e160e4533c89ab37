/**
 * The load side of the soak (soak-driver.ts): functions that run inside a lab host's network namespace
 * (through test/netns.ts's runInNamespace), where etcd is reachable. They only talk to etcd; the agent, its
 * memory and the kernel are watched from outside by the driver.
 *
 * The population moves as a window over the synthetic peers of peers.ts: peers `first .. first+population-1`
 * are live at the start; every join adds the peer just after the window, every leave removes the oldest
 * live peer. Indices wrap around MAX_PEERS, so a long soak reuses peers that left long ago (population must
 * stay below MAX_PEERS, which it does by far).
 */
import { Etcd3 } from 'etcd3';
import { BENCH_PREFIX, MAX_PEERS, leaseKey, leaseValue, syntheticPeer } from './peers.js';

export interface SoakLoadArg {
  etcd: string;
  /** the oldest live synthetic peer when the load starts */
  first: number;
  /** live synthetic peers, before and after (joins and leaves alternate) */
  population: number;
  /** events per second: joins and leaves together, alternating */
  rate: number;
  durationMs: number;
  /** etcd lease the joins are attached to (a decimal id); none: keys without an etcd lease */
  leaseId?: string;
}

export interface SoakLoadResult {
  /** events scheduled: rate × duration */
  scheduled: number;
  /** puts (joins) and deletes (leaves) etcd acknowledged */
  joins: number;
  leaves: number;
  /** requests etcd failed */
  failed: number;
  /** first request sent → last acknowledgement, ms */
  elapsedMs: number;
  /** acknowledged events per second over elapsedMs */
  achievedRate: number;
  /** how far behind its schedule the generator was at its worst, ms */
  maxSlipMs: number;
  /** the oldest live peer afterwards (the next load's `first`) */
  nextFirst: number;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Sends `rate` events per second for `durationMs`, alternating a join (put of a new lease) and a leave
 * (delete of the oldest live one), without waiting for the agent. An event is sent when it is due, or at
 * once when the generator is behind; requests are pipelined (at most 512 unanswered). What counts is what
 * etcd acknowledged.
 */
export async function soakLoad(arg: SoakLoadArg): Promise<SoakLoadResult> {
  if (arg.population <= 0 || arg.population >= MAX_PEERS / 2) throw new RangeError(`population ${arg.population} out of range`);
  const client = new Etcd3({ hosts: arg.etcd });
  try {
    const scheduled = Math.round((arg.durationMs / 1000) * arg.rate);
    const interval = 1000 / arg.rate;
    let head = arg.first; // oldest live
    let tail = (arg.first + arg.population) % MAX_PEERS; // next to join
    const result = { joins: 0, leaves: 0, failed: 0 };
    const inflight = new Set<Promise<void>>();
    let maxSlip = 0;
    const start = performance.now();
    let lastAck = start;
    const track = (request: Promise<unknown>, kind: 'joins' | 'leaves'): void => {
      const done: Promise<void> = request.then(
        () => {
          result[kind]++;
          lastAck = performance.now();
        },
        () => {
          result.failed++;
        },
      ).finally(() => inflight.delete(done));
      inflight.add(done);
    };
    for (let k = 0; k < scheduled; k++) {
      const due = start + k * interval;
      const wait = due - performance.now();
      if (wait > 1) await sleep(wait);
      maxSlip = Math.max(maxSlip, performance.now() - due);
      if (k % 2 === 0) {
        const peer = syntheticPeer(tail);
        tail = (tail + 1) % MAX_PEERS;
        const put = { key: Buffer.from(leaseKey(peer)), value: Buffer.from(leaseValue(peer)), ...(arg.leaseId === undefined ? {} : { lease: arg.leaseId }) };
        track(client.kv.put(put), 'joins');
      } else {
        const peer = syntheticPeer(head);
        head = (head + 1) % MAX_PEERS;
        track(client.kv.deleteRange({ key: Buffer.from(leaseKey(peer)) }), 'leaves');
      }
      while (inflight.size >= 512) await Promise.race(inflight);
    }
    await Promise.all(inflight);
    const elapsedMs = lastAck - start;
    return {
      scheduled,
      ...result,
      elapsedMs,
      achievedRate: ((result.joins + result.leaves) * 1000) / Math.max(1, elapsedMs),
      maxSlipMs: maxSlip,
      nextFirst: head,
    };
  } finally {
    client.close();
  }
}

export interface SoakLeasesArg {
  etcd: string;
}

/** Every lease key under the bench prefix with its value, as etcd has it now. */
export async function soakLeases(arg: SoakLeasesArg): Promise<{ key: string; value: string }[]> {
  const client = new Etcd3({ hosts: arg.etcd });
  try {
    const all = await client.getAll().prefix(`${BENCH_PREFIX}/subnets/`).strings();
    return Object.entries(all).map(([key, value]) => ({ key, value }));
  } finally {
    client.close();
  }
}

/** An etcd lease for the soak's keys (so that one revoke removes what is left). */
export async function soakGrant(arg: { etcd: string; ttlSeconds: number }): Promise<string> {
  const client = new Etcd3({ hosts: arg.etcd });
  try {
    return String((await client.leaseClient.leaseGrant({ TTL: arg.ttlSeconds })).ID);
  } finally {
    client.close();
  }
}
