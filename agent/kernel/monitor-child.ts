/**
 * Child process of KernelMonitor (monitor.ts): owns the multicast rtnetlink socket, decodes notifications
 * and writes one line per event to stdout (monitor-lines.ts): {"t":"ready"} once subscribed, a change, or
 * {"t":"overrun"} when recvmsg reports ENOBUFS (notifications were dropped).
 * It exits when its stdin closes (the parent closed the monitor or died).
 *
 * Why a separate process: `netlink` 0.3.0 aborts the process (std::terminate from its poll handler) when
 * a netlink socket overruns, and a notification socket overruns whenever the kernel changes state faster
 * than the reader drains it, e.g. while weft itself programs thousands of peers. Here the abort only ends
 * this child; the parent reports an overrun and starts a new one.
 */
import { Protocol, RawNetlinkSocket, parseMessages } from './netlink-parts.js';
import { decodeChange } from './codec.js';
import { encodeChangeLine } from './monitor-lines.js';

interface ChildOptions {
  groups: number[];
  /** groups an older kernel may lack: skipped when joining fails */
  optional?: number[];
  recvBufferSize: number;
  /** the port whose requests' notifications are skipped (MonitorOptions.ignoreRequestsOf) */
  ignoreRequestsOf?: number;
}

const options = JSON.parse(process.argv[2] ?? '{}') as ChildOptions;
const sock = new RawNetlinkSocket(Protocol.ROUTE, { recvBufferSize: options.recvBufferSize, sendBufferSize: 0 });
for (const g of options.groups) {
  try {
    sock.addMembership(g);
  } catch (err) {
    if (!(options.optional ?? []).includes(g)) throw err;
  }
}

function out(lines: string): void {
  process.stdout.write(lines);
}

// Lines are collected and written once per turn of the event loop: a burst of notifications (thousands a
// second while weft programs many peers) then costs a few writes instead of one each.
let pending = '';
let flushing = false;
function flush(): void {
  flushing = false;
  const lines = pending;
  pending = '';
  try {
    if (lines) out(lines);
  } catch {
    process.exit(1); // the parent is gone
  }
}

sock.on('message', (buf) => {
  try {
    for (const m of parseMessages(buf)) {
      if (m.port === options.ignoreRequestsOf) continue;
      const c = decodeChange(m.type, m.data);
      if (c) pending += `${encodeChangeLine(c)}\n`;
    }
  } catch {
    // an undecodable notification is skipped; the consumer's periodic resync covers it
  }
  if (pending && !flushing) {
    flushing = true;
    setImmediate(flush);
  }
});

sock.on('error', (err: Error & { code?: string }) => {
  if (err.code === 'ENOBUFS') {
    pending += `${JSON.stringify({ t: 'overrun' })}\n`;
    flush();
    return;
  }
  process.stderr.write(`netlink monitor socket failed: ${err.message}\n`);
  process.exit(1);
});

process.stdin.resume();
process.stdin.on('close', () => {
  sock.close();
  process.exit(0);
});

out(`${JSON.stringify({ t: 'ready' })}\n`);
