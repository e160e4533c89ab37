/**
 * The data-path worker: a child process of weftd running both halves of the userspace data path
 * (paths.ts). It takes its config and the peer tables over the IPC channel (protocol.ts), answers counter
 * requests, pushes its counters twice a second, and exits when the channel closes.
 *
 * Why a process of its own: libpcap's poll callback in `cap` asserts on a socket error, which aborts the
 * process (deleting the capture device does it), and a native addon's fault must not take the agent down;
 * a worker that dies is restarted by the agent. Why one process for both directions: the receive path
 * delivers through the transmit path's capture (a frame sent out of the capture end), and delivering a
 * packet to a container runs the container's stack inside that send(2), so its answer (an echo reply, a
 * TCP ACK) is in the capture ring when the send returns, and the same event-loop turn sends it on, with no
 * process to wake up in between.
 */
import type { ParentMessage, WorkerMessage } from './protocol.js';
import { RxPath, TxPath, type Report } from './paths.js';
import { loadUdpNative } from './udp-native.js';

type PeersMessage = Extract<ParentMessage, { t: 'peers' }>;

process.title = 'weftd-dataplane';

function send(message: WorkerMessage): void {
  if (process.connected) process.send?.(message);
}

const report: Report = (level, message, fields = {}) => send({ t: 'log', level, message, fields });
let paths: { tx: TxPath; rx: RxPath } | undefined;
let starting = false;
let peers: PeersMessage | undefined;

function applyPeers(): void {
  if (paths === undefined || peers === undefined) return;
  paths.tx.setPeers(peers.peers);
  paths.rx.setPeers(peers.own, peers.peers);
}

function pushCounters(id: number | null): void {
  if (paths !== undefined) send({ t: 'stats', id, counters: { tx: paths.tx.snapshot(), rx: paths.rx.snapshot() } });
}

process.on('message', (message: ParentMessage) => {
  switch (message.t) {
    case 'start': {
      if (starting) return;
      starting = true;
      const created = { tx: new TxPath(message.config, report), rx: new RxPath(message.config, report) };
      // Receive first: a port that is taken is the likeliest failure, and the capture has nothing to set up on failure.
      created.rx
        .start()
        .then(() =>
          created.tx.start().catch((err: unknown) => {
            created.rx.close();
            throw err;
          }),
        )
        .then(
          () => {
            created.rx.attachDelivery(created.tx.deliverySink());
            paths = created;
            applyPeers();
            const loaded = loadUdpNative();
            report(
              'info',
              `data-path UDP I/O: send ${created.tx.io}, receive ${created.rx.io}`,
              'error' in loaded ? { nativeAddon: loaded.error } : {},
            );
            send({ t: 'ready' });
          },
          (err: Error & { code?: string }) => {
            send({ t: 'failed', code: err.code ?? 'WEFT_USERSPACE_START', message: err.message });
            process.exitCode = 1;
            process.disconnect();
          },
        );
      return;
    }
    case 'peers':
      peers = message;
      applyPeers();
      return;
    case 'stats':
      pushCounters(message.id);
      return;
  }
});

setInterval(() => pushCounters(null), 500).unref();

process.on('disconnect', () => {
  paths?.tx.close();
  paths?.rx.close();
  process.exit(process.exitCode ?? 0);
});
