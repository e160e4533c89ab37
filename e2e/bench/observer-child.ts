/**
 * The benchmarks' kernel-side observer, as a child of the probe (probe.ts): an rtnetlink socket subscribed to
 * route and neighbour notifications that writes one line per object of a synthetic peer,
 *
 *   <kind r|n|f> <1 added | 0 deleted> <peer index> <process.hrtime.bigint() at receipt>
 *
 * and "ready" once subscribed. hrtime is CLOCK_MONOTONIC, the clock the probe reads too. A child because
 * `netlink` 0.3.0 aborts the process when a notification socket overruns, which a loaded machine can make
 * happen; the probe then notes the loss and starts another. Exits when its stdin closes.
 */
import { Protocol, RawNetlinkSocket, parseMessages, rt } from 'netlink';
import { readU16 } from '../../agent/kernel/codec.js';
import { MAX_PEERS } from './peers.js';

const RTM_NEWROUTE = 24;
const RTM_DELROUTE = 25;
const RTM_NEWNEIGH = 28;
const RTM_DELNEIGH = 29;
const AF_INET = 2;
const AF_BRIDGE = 7;
const WEFT_PROTOCOL = 157;
const NUD_PERMANENT = 0x80;
const PEER_BASE = ((198 << 24) >>> 0) + (18 << 16) + 256;

function peerOfAddress(value: number): number {
  const offset = value - PEER_BASE;
  if (offset < 0 || offset % 4 !== 0) return -1;
  const index = offset / 4;
  return index < MAX_PEERS ? index : -1;
}

/** The value of the first attribute of `type` (IPv4 address or MAC), as the peer it names, or -1. */
function peerIn(b: Buffer, offset: number, type: number, mac: boolean): number {
  while (offset + 4 <= b.length) {
    const length = readU16(b, offset);
    if (length < 4 || offset + length > b.length) return -1;
    if ((readU16(b, offset + 2) & 0x3fff) === type) {
      const at = offset + 4;
      if (!mac) return length === 8 ? peerOfAddress(b.readUInt32BE(at)) : -1;
      if (length === 10 && b[at] === 0x02 && b[at + 1] === 0x19 && b[at + 2] === 0) return (b[at + 3] << 16) | (b[at + 4] << 8) | b[at + 5];
      return -1;
    }
    offset += (length + 3) & ~3;
  }
  return -1;
}

function decode(type: number, d: Buffer): string | undefined {
  if (type === RTM_NEWROUTE || type === RTM_DELROUTE) {
    if (d.length < 12 || d[0] !== AF_INET || d[1] !== 30 || d[5] !== WEFT_PROTOCOL) return undefined;
    const peer = peerIn(d, 12, 1 /* RTA_DST */, false);
    return peer < 0 ? undefined : `r ${type === RTM_NEWROUTE ? 1 : 0} ${peer}`;
  }
  if (type === RTM_NEWNEIGH || type === RTM_DELNEIGH) {
    if (d.length < 12) return undefined;
    const added = type === RTM_NEWNEIGH;
    // deleting a permanent neighbour notifies it as FAILED first: not an addition
    if (added && (readU16(d, 8) & NUD_PERMANENT) === 0) return undefined;
    if (d[0] === AF_INET) {
      const peer = peerIn(d, 12, 1 /* NDA_DST */, false);
      return peer < 0 ? undefined : `n ${added ? 1 : 0} ${peer}`;
    }
    if (d[0] === AF_BRIDGE) {
      const peer = peerIn(d, 12, 2 /* NDA_LLADDR */, true);
      return peer < 0 ? undefined : `f ${added ? 1 : 0} ${peer}`;
    }
  }
  return undefined;
}

const sock = new RawNetlinkSocket(Protocol.ROUTE, { recvBufferSize: 4 * 1024 * 1024, sendBufferSize: 0 });
sock.addMembership(rt.MulticastGroups.IPV4_ROUTE);
sock.addMembership(rt.MulticastGroups.NEIGH);

let pending = '';
let flushing = false;
function flush(): void {
  flushing = false;
  const lines = pending;
  pending = '';
  try {
    if (lines) process.stdout.write(lines);
  } catch {
    process.exit(1);
  }
}

sock.on('message', (buf: Buffer) => {
  const at = process.hrtime.bigint();
  try {
    for (const m of parseMessages(buf)) {
      const line = decode(m.type, m.data);
      if (line !== undefined) pending += `${line} ${at}\n`;
    }
  } catch {
    // never into the native caller
  }
  if (pending && !flushing) {
    flushing = true;
    setImmediate(flush);
  }
});
sock.on('error', () => {
  process.stdout.write('overrun\n');
});

process.stdin.resume();
process.stdin.on('close', () => {
  sock.close();
  process.exit(0);
});
process.stdout.write('ready\n');
