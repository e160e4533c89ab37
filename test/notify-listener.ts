/**
 * The receiving end of systemd's notification socket, as systemd reads it: an AF_UNIX datagram socket with
 * SO_PASSCRED, so that each message comes with the sender's pid (what NotifyAccess=main checks). Node has no
 * AF_UNIX datagram sockets; a small python3 program (python3 is on every machine weft builds on: node-gyp
 * needs it) binds the socket and reports each datagram as a JSON line.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { waitFor } from './wait.js';

const LISTENER = String.raw`
import json, os, socket, struct, sys, time
address, watched = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
s.bind('\0' + address[1:] if address.startswith('@') else address)
print(json.dumps({'listening': True}), flush=True)
while True:
    data, ancillary, flags, _ = s.recvmsg(65536, socket.CMSG_SPACE(12))
    pid = None
    for level, kind, cdata in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack('iII', cdata[:12])[0]
    print(json.dumps({'pid': pid, 'text': data.decode('utf-8', 'replace'), 'watchedExists': watched != '' and os.path.exists(watched), 'at': time.monotonic()}), flush=True)
`;

export interface Notification {
  /** The sender's pid, from its credentials. */
  pid: number;
  /** KEY=value lines as sent. */
  text: string;
  fields: Record<string, string>;
  /** Whether the watched file existed when the datagram was read. */
  watchedExists: boolean;
  /** CLOCK_MONOTONIC seconds when it was read. */
  at: number;
}

export class NotifyListener {
  readonly messages: Notification[] = [];

  private constructor(
    private readonly child: ChildProcess,
    readonly address: string,
  ) {}

  /** Binds `address` (a path, or @name in the abstract namespace); `watched` is a file checked on each message. */
  static async start(address: string, watched = ''): Promise<NotifyListener> {
    const child = spawn('python3', ['-c', LISTENER, address, watched], { stdio: ['ignore', 'pipe', 'pipe'] });
    const listener = new NotifyListener(child, address);
    let stderr = '';
    let listening = false;
    let buffered = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const line of lines) {
        const parsed = JSON.parse(line) as { listening?: boolean; pid: number; text: string; watchedExists: boolean; at: number };
        if (parsed.listening === true) {
          listening = true;
          continue;
        }
        const fields = Object.fromEntries(
          parsed.text
            .split('\n')
            .filter((field) => field !== '')
            .map((field) => {
              const equals = field.indexOf('=');
              return [field.slice(0, equals), field.slice(equals + 1)];
            }),
        );
        listener.messages.push({ pid: parsed.pid, text: parsed.text, fields, watchedExists: parsed.watchedExists, at: parsed.at });
      }
    });
    try {
      await waitFor(() => listening || child.exitCode !== null, `the notification listener on ${address}`, 10_000);
    } catch (err) {
      listener.close();
      throw err;
    }
    if (!listening) throw new Error(`the notification listener on ${address} exited: ${stderr}`);
    return listener;
  }

  /** Waits for a message for which `match` holds; resolves with it. */
  waitFor(match: (message: Notification) => boolean, what: string, timeoutMs = 20_000): Promise<Notification> {
    return waitFor(() => this.messages.find(match), what, timeoutMs, 20);
  }

  close(): void {
    this.child.kill('SIGKILL');
  }
}
