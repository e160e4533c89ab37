/**
 * The prober's socket: a raw IPv4 ICMP socket (the `raw-socket` package) that sends whole IP packets
 * (IP_HDRINCL: weft writes the source address and don't-fragment itself) and receives only echo requests
 * and replies (ICMP_FILTER), whoever they are addressed to on this host.
 *
 * Sends go through the package's native wrap, a synchronous sendto(2) on the non-blocking socket: the
 * package's own queue writes one packet per event-loop turn, which costs a wake-up per probe.
 */
import { createRequire } from 'node:module';
import type { EventEmitter } from 'node:events';
import { WeftError } from '../../common/errors.js';

/** The socket could not be opened (no CAP_NET_RAW) or configured. */
export class ProbeSocketError extends WeftError {
  constructor(message: string, cause?: unknown) {
    super('WEFT_PROBE_SOCKET', message, { cause });
  }
}

/** Where probes go out and packets come in. */
export interface ProbeTransport {
  /** Sends a whole IPv4 packet to `destination` now; throws when the kernel refuses it (EMSGSIZE, ENETUNREACH, EAGAIN, …). */
  send(packet: Buffer, destination: string): void;
  /** Every echo request and reply that arrives; the buffer is reused after the listener returns. */
  onPacket(listener: (packet: Buffer) => void): void;
  /** A receive error; the socket is closed after it. */
  onError(listener: (err: Error) => void): void;
  close(): void;
}

interface RawSocketWrap {
  send(buffer: Buffer, offset: number, length: number, address: string, done: (bytes: number) => void): void;
}

interface RawSocket extends EventEmitter {
  readonly wrap: RawSocketWrap;
  setOption(level: number, option: number, value: number): void;
  setOption(level: number, option: number, value: Buffer, length: number): void;
  close(): void;
}

interface RawSocketModule {
  createSocket(options: { protocol: number; bufferSize?: number }): RawSocket;
}

const IPPROTO_ICMP = 1;
const IPPROTO_IP = 0;
const IP_HDRINCL = 3;
const SOL_SOCKET = 1;
const SO_RCVBUF = 8;
const SOL_RAW = 255;
const ICMP_FILTER = 1;
const ICMP_ECHO_REPLY = 0;
const ICMP_ECHO_REQUEST = 8;
/** Room for a burst of answers: a round's probes of thousands of peers come back within milliseconds. */
const RECEIVE_BUFFER_BYTES = 1 << 20;

const require = createRequire(import.meta.url);

/** Opens the raw ICMP socket; throws ProbeSocketError (saying that it needs root) when the kernel refuses. */
export function openIcmpSocket(): ProbeTransport {
  const rawSocket = require('raw-socket') as RawSocketModule;
  const socket = rawSocket.createSocket({ protocol: IPPROTO_ICMP, bufferSize: 65535 });
  const listeners: ((packet: Buffer) => void)[] = [];
  const errorListeners: ((err: Error) => void)[] = [];
  try {
    // the first option creates the socket: a missing CAP_NET_RAW shows here
    socket.setOption(IPPROTO_IP, IP_HDRINCL, 1);
    socket.setOption(SOL_SOCKET, SO_RCVBUF, RECEIVE_BUFFER_BYTES);
    // ICMP_FILTER's bits are the types to drop
    const blocked = Buffer.alloc(4);
    blocked.writeUInt32LE(~((1 << ICMP_ECHO_REPLY) | (1 << ICMP_ECHO_REQUEST)) >>> 0);
    socket.setOption(SOL_RAW, ICMP_FILTER, blocked, 4);
  } catch (err) {
    socket.close();
    const message = (err as Error).message;
    const hint = /not permitted|permission denied/i.test(message)
      ? ' (a raw socket needs CAP_NET_RAW: run weftd as root, e.g. with sudo)'
      : '';
    throw new ProbeSocketError(`cannot open a raw ICMP socket for the peer probes: ${message}${hint}`, err);
  }
  socket.on('message', (packet: Buffer) => {
    for (const listener of listeners) listener(packet);
  });
  // the package closes the socket after an error; the prober then sees its sends fail
  socket.on('error', (err: Error) => {
    for (const listener of errorListeners) listener(err);
  });
  return {
    send(packet, destination) {
      socket.wrap.send(packet, 0, packet.length, destination, () => undefined);
    },
    onPacket(listener) {
      listeners.push(listener);
    },
    onError(listener) {
      errorListeners.push(listener);
    },
    close() {
      socket.close();
    },
  };
}
