/**
 * The baseline for the cold start: iproute2 applying the same kernel operations weft does (one neighbour,
 * one FDB entry and one route per peer, on a VXLAN device set up like weft's) with `ip -batch` and
 * `bridge -batch`, in a namespace of its own. iproute2 sends one request at a time and waits for each
 * answer, which is about as direct as user space gets; what it costs is mostly the kernel's own work, which
 * includes a notification to every listener in the namespace (hence the optional watcher, as weftd is watched).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { syntheticPeer } from './peers.js';

export type BatchForm = 'nexthop' | 'inline';

export interface BatchTiming {
  neighbourMs: number;
  fdbMs: number;
  /** nexthop objects and routes (nexthop form), or routes (inline) */
  routeMs: number;
  totalMs: number;
  /** with a watcher: the first peer object → the last, as the watcher saw them arrive */
  observedMs: number | undefined;
}

/** Watches the namespace's kernel while the batches run, as the probe watches weftd's. */
export interface BatchWatcher {
  /** the namespace is set up; resolves once watching */
  start(netns: string): Promise<void>;
  /** the batches have returned: resolves with the first peer object → the last, ms (undefined if it lost some) */
  finish(): Promise<number | undefined>;
  close(): void;
}

/** Runs argv to its end without blocking the event loop (a watcher in this process reads meanwhile). */
function run(argv: string[], input = ''): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      if (status === 0) resolve();
      else reject(new Error(`${argv.join(' ')} failed (${status}): ${stderr}`));
    });
    // a batch read from a file leaves stdin unread: the process may be gone before the write
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
}

async function timed(argv: string[]): Promise<number> {
  const started = process.hrtime.bigint();
  await run(argv);
  return Number(process.hrtime.bigint() - started) / 1e6;
}

/**
 * Creates namespace `netns` with an underlay veth and a VXLAN device `weft.1` as weft makes it, applies the
 * operations for peers 0..count-1 in `form` (with `watcher` watching, if given), and deletes the namespace
 * again (also on failure).
 */
export async function ipBatch(netns: string, count: number, form: BatchForm, watcher?: BatchWatcher): Promise<BatchTiming> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-bench-ipb-'));
  await run(['ip', 'netns', 'add', netns]);
  try {
    await run(
      ['ip', '-n', netns, '-batch', '-'],
      [
        'link set lo up',
        'link add pub0 type veth peer name pub1',
        'addr add 192.0.2.11/24 dev pub0',
        'link set pub0 up',
        'link set pub1 up',
        'link add weft.1 mtu 1450 type vxlan id 1 dstport 8472 local 192.0.2.11 dev pub0 nolearning',
        'addr add 198.18.0.4/32 dev weft.1',
        'link set weft.1 up',
      ].join('\n') + '\n',
    );
    const neighbours: string[] = [];
    const fdb: string[] = [];
    const routes: string[] = [];
    const nexthops: string[] = [];
    for (let index = 0; index < count; index++) {
      const peer = syntheticPeer(index);
      neighbours.push(`neigh replace ${peer.gateway} lladdr ${peer.vtepMac} dev weft.1 nud permanent`);
      fdb.push(`fdb replace ${peer.vtepMac} dev weft.1 dst ${peer.publicIP} self permanent`);
      if (form === 'nexthop') {
        nexthops.push(`nexthop replace id ${1_570_000_000 + index} via ${peer.gateway} dev weft.1 onlink proto 157`);
        routes.push(`route replace ${peer.subnet} nhid ${1_570_000_000 + index} proto 157`);
      } else {
        routes.push(`route replace ${peer.subnet} via ${peer.gateway} dev weft.1 onlink proto 157`);
      }
    }
    const files = { neighbours: join(dir, 'neigh'), fdb: join(dir, 'fdb'), routes: join(dir, 'routes') };
    writeFileSync(files.neighbours, `${neighbours.join('\n')}\n`);
    writeFileSync(files.fdb, `${fdb.join('\n')}\n`);
    writeFileSync(files.routes, `${[...nexthops, ...routes].join('\n')}\n`);
    await watcher?.start(netns);
    const neighbourMs = await timed(['ip', '-n', netns, '-batch', files.neighbours]);
    const fdbMs = await timed(['bridge', '-n', netns, '-batch', files.fdb]);
    const routeMs = await timed(['ip', '-n', netns, '-batch', files.routes]);
    const observedMs = await watcher?.finish();
    return { neighbourMs, fdbMs, routeMs, totalMs: neighbourMs + fdbMs + routeMs, observedMs };
  } finally {
    watcher?.close();
    spawnSync('ip', ['netns', 'del', netns], { stdio: 'ignore' });
    rmSync(dir, { recursive: true, force: true });
  }
}
