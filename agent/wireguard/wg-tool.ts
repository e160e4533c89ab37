/**
 * Kernel WireGuard has no UAPI socket: its device is configured over generic netlink, which weft's kernel
 * shim does not speak. weft drives it with `wg` from wireguard-tools instead: `wg show <dev> dump` reads it,
 * one `wg set` sends every change that holds no secret, and the private key and pre-shared keys go through
 * `wg addconf <dev> /dev/stdin`, never on a command line. (`wg` speaks the UAPI too: pointed at a
 * wireguard-go socket directory it drives wireguard-go the same way.)
 */
import { runChecked, type CommandRunner } from '../host/command.js';
import { canonicalPrefix, UapiError, type DeviceChange, type DevicePeer, type DeviceState } from './uapi.js';
import { keyFromHex, keyToHex } from './keys.js';
import { inSocketDir } from './wireguard-go.js';
import type { WireguardControl } from './peers.js';

/** Parses `wg show <dev> dump`: the device line, then one line per peer, fields separated by tabs. */
function parseDump(text: string): DeviceState {
  const lines = text.split('\n').filter((line) => line !== '');
  const device = lines.shift()?.split('\t') ?? [];
  const state: DeviceState = {
    publicKey: device[1] === undefined || device[1] === '(none)' ? undefined : device[1],
    listenPort: Number(device[2] ?? 0),
    peers: new Map(),
  };
  for (const line of lines) {
    const [publicKey, psk, endpoint, allowed, handshake, , , keepalive] = line.split('\t');
    if (publicKey === undefined) continue;
    const peer: DevicePeer = {
      publicKey,
      presharedKeyHex: psk === undefined || psk === '(none)' ? undefined : keyToHex(psk),
      endpoint: endpoint === undefined || endpoint === '(none)' ? undefined : endpoint,
      persistentKeepalive: keepalive === undefined || keepalive === 'off' ? 0 : Number(keepalive),
      allowedIPs: allowed === undefined || allowed === '(none)' ? [] : allowed.split(',').map(canonicalPrefix).sort(),
      lastHandshake: Number(handshake ?? 0),
    };
    state.peers.set(publicKey, peer);
  }
  return state;
}

export class WgToolControl implements WireguardControl {
  constructor(
    private readonly device: string,
    private readonly run: CommandRunner,
    /** where `wg` finds UAPI sockets (kernel devices need none) */
    private readonly socketDir: string,
  ) {}

  private wg(args: readonly string[]): string[] {
    return inSocketDir(this.socketDir, ['wg', ...args]);
  }

  async get(): Promise<DeviceState> {
    return parseDump(await runChecked(this.run, this.wg(['show', this.device, 'dump'])));
  }

  async set(change: DeviceChange): Promise<void> {
    const args: string[] = [];
    if (change.listenPort !== undefined) args.push('listen-port', String(change.listenPort));
    const secrets: string[] = [];
    for (const peer of change.peers) {
      args.push('peer', peer.publicKey);
      if (peer.kind === 'remove') {
        args.push('remove');
        continue;
      }
      args.push(
        'endpoint',
        peer.endpoint,
        'persistent-keepalive',
        peer.persistentKeepalive === 0 ? 'off' : String(peer.persistentKeepalive),
      );
      args.push('allowed-ips', peer.allowedIPs.join(','));
      if (peer.presharedKeyHex === undefined) args.push('preshared-key', '/dev/null');
      // a [Peer] of addconf sets its AllowedIPs too: without the line they would be emptied
      else
        secrets.push(
          '[Peer]',
          `PublicKey = ${peer.publicKey}`,
          `PresharedKey = ${keyFromHex(peer.presharedKeyHex)}`,
          `AllowedIPs = ${peer.allowedIPs.join(', ')}`,
        );
    }
    if (args.length > 0) await runChecked(this.run, this.wg(['set', this.device, ...args]));
    if (change.privateKeyHex !== undefined) secrets.unshift('[Interface]', `PrivateKey = ${keyFromHex(change.privateKeyHex)}`);
    if (secrets.length === 0) return;
    // Node hands a child's stdin over as a socket, which wg cannot open as /dev/stdin: cat makes it a pipe
    const addconf = inSocketDir(this.socketDir, ['sh', '-c', 'cat | wg addconf "$0" /dev/stdin', this.device]);
    const result = await this.run(addconf, { stdin: `${secrets.join('\n')}\n` });
    // wg quotes the line it could not take, which may hold a key: its output is not passed on
    if (result.code !== 0) throw new UapiError(`wg addconf ${this.device} (the keys) failed with exit ${result.code}`);
  }
}
