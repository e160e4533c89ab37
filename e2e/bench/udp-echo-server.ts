/**
 * The Node UDP echo servers of the wake-up benchmark (wakeup.ts), one process each:
 *
 *   node udp-echo-server.js addon PORT REPLY_PORT
 *       weft's addon as the userspace data path uses it: one JavaScript callback per recvmmsg batch, a
 *       synchronous send per datagram. The addon reports a datagram's source address but not its port, so
 *       every answer goes to REPLY_PORT (the client binds it).
 *   node udp-echo-server.js dgram PORT
 *       node:dgram, answering to the sender's address and port.
 *
 * Prints "ready" once bound; runs until killed.
 */
import dgram from 'node:dgram';
import { RECEIVE_BATCHES_PER_EVENT } from '../../agent/userspace/paths.js';
import { loadUdpNative } from '../../agent/userspace/udp-native.js';

const SLOT_BYTES = 2048;
const SLOTS = 8;

function port(text: string | undefined, what: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1 || value > 65535)
    throw new Error(`udp-echo-server: ${what} must be a port number, got ${text}`);
  return value;
}

function serveAddon(listenPort: number, replyPort: number): void {
  const loaded = loadUdpNative();
  if ('error' in loaded) throw new Error(`udp-echo-server: weft's UDP addon: ${loaded.error}`);
  const udp = loaded.native;
  const fd = udp.open(0, listenPort, 0, 0, 0);
  if (fd < 0) throw new Error(`udp-echo-server: open port ${listenPort}: errno ${-fd}`);
  const buffer = Buffer.alloc(SLOT_BYTES * SLOTS);
  const meta = new Int32Array(SLOTS * 4);
  const receiver = udp.receive(
    fd,
    buffer,
    SLOT_BYTES,
    SLOTS,
    meta,
    (count) => {
      if (count < 0) throw new Error(`udp-echo-server: receive: errno ${-count}`);
      for (let i = 0; i < count; i++) udp.send(fd, buffer, i * SLOT_BYTES, meta[i * 4], 0, meta[i * 4 + 1] >>> 0, replyPort);
    },
    RECEIVE_BATCHES_PER_EVENT,
  );
  if (typeof receiver === 'number') throw new Error(`udp-echo-server: receive: errno ${-receiver}`);
  process.stdout.write('ready\n');
}

function serveDgram(listenPort: number): void {
  const socket = dgram.createSocket('udp4');
  socket.on('message', (message, sender) => socket.send(message, sender.port, sender.address));
  socket.bind(listenPort, () => process.stdout.write('ready\n'));
}

const [kind, listen, reply] = process.argv.slice(2);
if (kind === 'addon') serveAddon(port(listen, 'PORT'), port(reply, 'REPLY_PORT'));
else if (kind === 'dgram') serveDgram(port(listen, 'PORT'));
else throw new Error(`usage: udp-echo-server.js addon PORT REPLY_PORT | dgram PORT (got ${process.argv.slice(2).join(' ')})`);
