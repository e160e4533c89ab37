/**
 * WireGuard's cross-platform userspace API (the text protocol wireguard-go serves on its unix socket,
 * /var/run/wireguard/<device>.sock): `get=1` reads the device, `set=1` changes it in one transaction.
 * Keys are hex there; weft keeps them in base64 as the lease has them. The device's private key, which
 * `get=1` returns, is reduced to its public key as it is read and never kept.
 */
import { createConnection } from 'node:net';
import { Prefix } from '../../common/cidr.js';
import { WeftError } from '../../common/errors.js';
import { keyFromHex, keyToHex, publicKeyOfHex } from './keys.js';

/** A peer as the device reports it. */
export interface DevicePeer {
  /** base64 */
  publicKey: string;
  /** whether a pre-shared key is set, and which (hex): compared with the network's, never logged */
  presharedKeyHex: string | undefined;
  /** "192.0.2.11:51820", "[2001:db8:0:1::11]:51821", or undefined */
  endpoint: string | undefined;
  persistentKeepalive: number;
  /** canonical prefixes, sorted */
  allowedIPs: string[];
  /** seconds since the epoch of the last handshake, 0 for none */
  lastHandshake: number;
}

export interface DeviceState {
  /** the public key of the device's private key; undefined when it has none */
  publicKey: string | undefined;
  listenPort: number;
  peers: Map<string, DevicePeer>;
}

/** One peer to add, change or remove in a set. */
export type PeerChange =
  | { kind: 'remove'; publicKey: string }
  | {
      kind: 'set';
      publicKey: string;
      endpoint: string;
      allowedIPs: readonly string[];
      presharedKeyHex: string | undefined;
      persistentKeepalive: number;
    };

export interface DeviceChange {
  /** the private key, hex (from WireguardKeys.privateKeyHex) */
  privateKeyHex?: string;
  listenPort?: number;
  peers: readonly PeerChange[];
}

/** The UAPI socket could not be reached or answered with an error. Messages never hold a key. */
export class UapiError extends WeftError {
  /** the errno the device answered with, when it did */
  readonly errno: number | undefined;
  constructor(message: string, errno?: number, cause?: unknown) {
    super('WEFT_WIREGUARD_UAPI', message, { cause });
    this.errno = errno;
  }
}

const ZERO_KEY = '0'.repeat(64);
/** A device with tens of thousands of peers answers in a few MB; anything bigger is not a device's answer. */
const MAX_RESPONSE = 64 * 1024 * 1024;
const TIMEOUT_MS = 15_000;

/** Canonical form of an allowed IP or endpoint address as weft compares them. */
export function canonicalPrefix(text: string): string {
  return Prefix.parse(text).toString();
}

/** Parses the answer to `get=1` (without its final errno line check, done by the caller). */
function parseGet(text: string): DeviceState {
  const state: DeviceState = { publicKey: undefined, listenPort: 0, peers: new Map() };
  let peer: DevicePeer | undefined;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const at = line.indexOf('=');
    if (at < 0) throw new UapiError(`the device answered a line without "=" to get=1`);
    const key = line.slice(0, at);
    const value = line.slice(at + 1);
    switch (key) {
      case 'private_key':
        state.publicKey = value === ZERO_KEY ? undefined : publicKeyOfHex(value);
        break;
      case 'listen_port':
        state.listenPort = Number(value);
        break;
      case 'public_key':
        peer = {
          publicKey: keyFromHex(value),
          presharedKeyHex: undefined,
          endpoint: undefined,
          persistentKeepalive: 0,
          allowedIPs: [],
          lastHandshake: 0,
        };
        state.peers.set(peer.publicKey, peer);
        break;
      case 'preshared_key':
        if (peer !== undefined) peer.presharedKeyHex = value === ZERO_KEY ? undefined : value;
        break;
      case 'endpoint':
        if (peer !== undefined) peer.endpoint = value;
        break;
      case 'persistent_keepalive_interval':
        if (peer !== undefined) peer.persistentKeepalive = Number(value);
        break;
      case 'allowed_ip':
        if (peer !== undefined) peer.allowedIPs.push(canonicalPrefix(value));
        break;
      case 'last_handshake_time_sec':
        if (peer !== undefined) peer.lastHandshake = Number(value);
        break;
      default:
        break; // fwmark, protocol_version, last_handshake_time_nsec, rx_bytes, tx_bytes, errno, and whatever comes next
    }
  }
  for (const each of state.peers.values()) each.allowedIPs.sort();
  return state;
}

/** The `set=1` request for a change. */
function formatSet(change: DeviceChange): string {
  const lines = ['set=1'];
  if (change.privateKeyHex !== undefined) lines.push(`private_key=${change.privateKeyHex}`);
  if (change.listenPort !== undefined) lines.push(`listen_port=${change.listenPort}`);
  for (const peer of change.peers) {
    lines.push(`public_key=${keyToHex(peer.publicKey)}`);
    if (peer.kind === 'remove') {
      lines.push('remove=true');
      continue;
    }
    lines.push(`preshared_key=${peer.presharedKeyHex ?? ZERO_KEY}`);
    lines.push(`endpoint=${peer.endpoint}`);
    lines.push(`persistent_keepalive_interval=${peer.persistentKeepalive}`);
    lines.push('replace_allowed_ips=true');
    for (const ip of peer.allowedIPs) lines.push(`allowed_ip=${ip}`);
  }
  return `${lines.join('\n')}\n\n`;
}

/** The errno of a UAPI answer's last line (`errno=0` is success); throws when there is none. */
function errnoOf(answer: string): number {
  const match = /(?:^|\n)errno=(-?\d+)\n\n$/.exec(answer);
  if (match === null) throw new UapiError('the device answered without an errno line');
  return Number(match[1]);
}

/** Sends one request over the socket and resolves with the whole answer (up to the blank line ending it). */
function exchange(socketPath: string, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(socketPath);
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (err: Error | undefined, answer?: string): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      if (err !== undefined) reject(err);
      else resolve(answer!);
    };
    const timer = setTimeout(
      () => finish(new UapiError(`the WireGuard device at ${socketPath} did not answer within ${TIMEOUT_MS / 1000} s`)),
      TIMEOUT_MS,
    );
    socket.on('connect', () => socket.write(request));
    socket.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_RESPONSE) {
        finish(new UapiError(`the WireGuard device at ${socketPath} answered more than ${MAX_RESPONSE} bytes`));
        return;
      }
      chunks.push(chunk);
      // the answer ends with an empty line; a chunk boundary may fall between its two newlines
      const tail = Buffer.concat(chunks.slice(-2)).subarray(-2).toString('latin1');
      if (tail === '\n\n') finish(undefined, Buffer.concat(chunks).toString('utf8'));
    });
    socket.on('end', () => finish(new UapiError(`the WireGuard device at ${socketPath} closed the connection before answering`)));
    socket.on('error', (err: NodeJS.ErrnoException) =>
      finish(new UapiError(`cannot reach the WireGuard device at ${socketPath}: ${err.code ?? err.message}`, undefined, err)),
    );
  });
}

/** A WireGuard device behind a UAPI socket (wireguard-go's). */
export class UapiClient {
  constructor(readonly socketPath: string) {}

  async get(): Promise<DeviceState> {
    const answer = await exchange(this.socketPath, 'get=1\n\n');
    const errno = errnoOf(answer);
    if (errno !== 0) throw new UapiError(`the WireGuard device at ${this.socketPath} refused get=1 (errno ${errno})`, errno);
    return parseGet(answer);
  }

  async set(change: DeviceChange): Promise<void> {
    const answer = await exchange(this.socketPath, formatSet(change));
    const errno = errnoOf(answer);
    // the request holds keys: the message names what was asked, not the text
    if (errno !== 0)
      throw new UapiError(
        `the WireGuard device at ${this.socketPath} refused a change of ${change.peers.length} peer(s) (errno ${errno})`,
        errno,
      );
  }
}
