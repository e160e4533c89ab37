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
      const done: Promise<void> = request
        .then(
          () => {
            result[kind]++;
            lastAck = performance.now();
          },
          () => {
            result.failed++;
          },
        )
        .finally(() => inflight.delete(done));
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
        const put = {
          key: Buffer.from(leaseKey(peer)),
          value: Buffer.from(leaseValue(peer)),
          ...(arg.leaseId === undefined ? {} : { lease: arg.leaseId }),
        };
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

export interface CollectGarbageArg {
  /** the agent's inspector port on 127.0.0.1 (node opens 9229 on SIGUSR1) */
  port: number;
  timeoutMs: number;
}

/**
 * Has the agent collect its garbage and give back what it can: the DevTools protocol's
 * `HeapProfiler.collectGarbage`, which V8 runs as a low-memory notification (a full collection that also
 * shrinks the heap, as V8's memory reducer does by itself some time after an idle agent's last collection).
 * Speaks just enough WebSocket (RFC 6455) for one request, so that no client package is needed.
 */
export async function collectGarbage(arg: CollectGarbageArg): Promise<{ ms: number }> {
  const started = performance.now();
  const deadline = Date.now() + arg.timeoutMs;
  let target: string | undefined;
  while (target === undefined) {
    try {
      const list = (await (await fetch(`http://127.0.0.1:${arg.port}/json/list`, { signal: AbortSignal.timeout(2000) })).json()) as {
        webSocketDebuggerUrl?: string;
      }[];
      target = list.find((entry) => entry.webSocketDebuggerUrl !== undefined)?.webSocketDebuggerUrl;
    } catch {
      // not listening yet
    }
    if (target === undefined) {
      if (Date.now() > deadline) throw new Error(`no inspector on 127.0.0.1:${arg.port}`);
      await sleep(100);
    }
  }
  const path = new URL(target).pathname;
  const { connect } = await import('node:net');
  const { randomBytes } = await import('node:crypto');
  const socket = connect(arg.port, '127.0.0.1');
  try {
    const reply = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error('the inspector did not answer HeapProfiler.collectGarbage')),
        Math.max(1000, deadline - Date.now()),
      );
      let buffer = Buffer.alloc(0);
      let upgraded = false;
      socket.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      socket.on('connect', () => {
        socket.write(
          `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${arg.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
            `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
        );
      });
      socket.on('data', (chunk: Buffer) => {
        buffer = Buffer.concat([buffer, chunk]);
        if (!upgraded) {
          const end = buffer.indexOf('\r\n\r\n');
          if (end < 0) return;
          if (!/^HTTP\/1\.1 101/.test(buffer.subarray(0, end).toString())) {
            clearTimeout(timer);
            reject(new Error(`inspector refused the WebSocket: ${buffer.subarray(0, end).toString()}`));
            return;
          }
          upgraded = true;
          buffer = buffer.subarray(end + 4);
          socket.write(frame(JSON.stringify({ id: 1, method: 'HeapProfiler.collectGarbage' })));
        }
        // server frames are unmasked; the answer is one text frame
        while (buffer.length >= 2) {
          let length = buffer[1] & 0x7f;
          let offset = 2;
          if (length === 126) {
            if (buffer.length < 4) return;
            length = buffer.readUInt16BE(2);
            offset = 4;
          } else if (length === 127) {
            if (buffer.length < 10) return;
            length = Number(buffer.readBigUInt64BE(2));
            offset = 10;
          }
          if (buffer.length < offset + length) return;
          const text = buffer.subarray(offset, offset + length).toString();
          buffer = buffer.subarray(offset + length);
          if (text.includes('"id":1')) {
            clearTimeout(timer);
            resolve(text);
            return;
          }
        }
      });
    });
    if (!reply.includes('"result"')) throw new Error(`HeapProfiler.collectGarbage failed: ${reply}`);
    return { ms: performance.now() - started };
  } finally {
    socket.destroy();
  }
}

/** One masked text frame (a client must mask). */
function frame(text: string): Buffer {
  const payload = Buffer.from(text);
  const mask = Buffer.from([0x5a, 0x3c, 0x96, 0xe1]);
  const header =
    payload.length < 126
      ? Buffer.from([0x81, 0x80 | payload.length])
      : Buffer.from([0x81, 0x80 | 126, payload.length >> 8, payload.length & 255]);
  const body = Buffer.from(payload.map((byte, i) => byte ^ mask[i % 4]));
  return Buffer.concat([header, mask, body]);
}
