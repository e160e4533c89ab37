import assert from 'node:assert/strict';
import { ChildProcess, execFileSync } from 'node:child_process';
import { IpAddress } from '../../common/cidr.js';
import { Netns, requireNetns } from '../../test/netns.js';
import { waitFor } from '../../test/wait.js';
import { CommandError } from './errors.js';
import { IngressAllowList } from './ingress.js';
import { NftSession, type NftChannel } from './nft-session.js';

/**
 * Counts the processes this process starts while `body` runs: every asynchronous way node has to start one
 * (spawn, exec, execFile, fork) goes through ChildProcess.prototype.spawn.
 */
async function processesStartedDuring(body: () => Promise<void>): Promise<string[]> {
  // node's own (undocumented) method, typed here for what the count needs
  const prototype = ChildProcess.prototype as unknown as {
    spawn: (this: ChildProcess, options: { file: string; args?: string[] }) => unknown;
  };
  const started: string[] = [];
  const original = prototype.spawn;
  prototype.spawn = function (options) {
    started.push([options.file, ...(options.args ?? []).slice(1)].join(' '));
    return original.call(this, options);
  };
  try {
    await body();
  } finally {
    prototype.spawn = original;
  }
  return started;
}

/** The nft processes this process runs, by pid. */
function nftChildren(): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(process.pid), '-x', 'nft'], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

/** Sends `count` UDP datagrams from inside `ns` to ip:port with node's dgram. */
function sendDatagrams(ns: Netns, ip: string, port: number, count: number): void {
  const script = `const s=require('dgram').createSocket('udp4');let n=0;const next=()=>{if(n++===${count})return s.close();s.send(Buffer.alloc(50),${port},'${ip}',next)};next();`;
  execFileSync('ip', ['netns', 'exec', ns.name, process.execPath, '-e', script], { stdio: 'ignore', timeout: 10_000 });
}

describe('ingress allow-list (nftables) in namespaces', function () {
  this.timeout(30_000);
  let host: Netns;
  let peer: Netns;
  let stranger: Netns;

  beforeEach(function () {
    requireNetns(this);
    host = Netns.create('weft-ig');
    peer = Netns.create('weft-ig');
    stranger = Netns.create('weft-ig');
    host.ip('link', 'add', 'to-peer', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', peer.name);
    host.ip('link', 'add', 'to-stranger', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', stranger.name);
    host.ip('addr', 'add', '192.0.2.11/24', 'dev', 'to-peer');
    host.ip('addr', 'add', '198.51.100.11/24', 'dev', 'to-stranger');
    peer.ip('addr', 'add', '192.0.2.12/24', 'dev', 'eth0');
    stranger.ip('addr', 'add', '198.51.100.13/24', 'dev', 'eth0');
    for (const [ns, dev] of [
      [host, 'to-peer'],
      [host, 'to-stranger'],
      [peer, 'eth0'],
      [stranger, 'eth0'],
    ] as const)
      ns.ip('link', 'set', dev, 'up');
  });

  afterEach(function () {
    for (const ns of [host, peer, stranger]) ns?.destroy();
  });

  it('drops datagrams to the tunnel port from non-peers only, follows the peer set, and repairs itself', async function () {
    const allowList = new IngressAllowList({ ports: [8472], nft: new NftSession({ netns: host.name }), resyncSeconds: 1 });
    await allowList.apply([IpAddress.parse('192.0.2.12')]);
    assert.equal(await allowList.check(), true);

    sendDatagrams(stranger, '198.51.100.11', 8472, 7);
    sendDatagrams(peer, '192.0.2.11', 8472, 5);
    sendDatagrams(stranger, '198.51.100.11', 8473, 3);
    assert.deepEqual(await allowList.counters(), { ipv4: 7, ipv6: 0 }, "only the stranger's datagrams to the tunnel port are dropped");

    await allowList.setPeers([]);
    sendDatagrams(peer, '192.0.2.11', 8472, 4);
    assert.equal((await allowList.counters()).ipv4, 11, 'a peer that left is refused too');
    await allowList.setPeers([IpAddress.parse('198.51.100.13'), IpAddress.parse('192.0.2.12')]);
    sendDatagrams(stranger, '198.51.100.11', 8472, 2);
    assert.equal((await allowList.counters()).ipv4, 11, 'a peer that joined is let in');

    host.exec('nft', ['delete', 'table', 'inet', 'weft']);
    assert.equal(await allowList.check(), false);
    allowList.start();
    try {
      await new Promise((resolve) => setTimeout(resolve, 1500));
      assert.equal(await allowList.check(), true, 'the resync put the table back');
    } finally {
      allowList.stop();
    }
    await allowList.remove();
    assert.equal(host.exec('nft', ['list', 'tables']).includes('weft'), false);
  });

  it('lets in a peer whose lease arrives while the table is being written', async function () {
    const session = new NftSession({ netns: host.name });
    let pending: Promise<void> | undefined;
    const nft: NftChannel = {
      run: (line) => {
        // the peer arrives once nft is already writing the table without it
        pending ??= allowList.setPeers([IpAddress.parse('192.0.2.12')]);
        return session.run(line);
      },
      close: () => session.close(),
    };
    const allowList: IngressAllowList = new IngressAllowList({ ports: [8472], nft });
    await allowList.apply([]);
    await pending;
    assert.match(host.exec('nft', ['list', 'set', 'inet', 'weft', 'peers4']), /elements = \{ 192\.0\.2\.12 \}/);
    assert.equal(await allowList.check(), true);
    await allowList.remove();
  });

  it('follows a series of lease events through one nft process, starting none; replaces a dead one; reports a failed update', async function () {
    const allowList = new IngressAllowList({ ports: [8472], nft: new NftSession({ netns: host.name }) });
    try {
      await allowList.apply([]);
      const peers = (count: number) => Array.from({ length: count }, (_, i) => IpAddress.parse(`198.19.0.${i + 1}`));
      /** The addresses in the kernel's peers4 set, read with a separate nft (not through the session). */
      const inKernel = () =>
        [...host.exec('nft', ['list', 'set', 'inet', 'weft', 'peers4']).matchAll(/198\.19\.0\.\d+/g)].map((m) => m[0]).sort();
      const expected = (count: number) => peers(count).map(String).sort();
      const [session] = nftChildren();
      assert.ok(session !== undefined, 'an nft process runs');
      const seen: string[][] = [];
      const started = await processesStartedDuring(async () => {
        // peers join one at a time, then some leave: what the daemon asks for on each lease event
        for (const count of [1, 2, 3, 4, 5, 6, 4, 5, 2]) {
          await allowList.setPeers(peers(count));
          seen.push(inKernel());
        }
        assert.equal(await allowList.check(), true);
        assert.deepEqual(await allowList.counters(), { ipv4: 0, ipv6: 0 });
      });
      // (inKernel's own nft is started with execFileSync, which the count does not see)
      assert.deepEqual(started, [], 'no process started for the lease events');
      assert.deepEqual(seen, [1, 2, 3, 4, 5, 6, 4, 5, 2].map(expected), 'each update is in the kernel when setPeers resolves');
      assert.deepEqual(nftChildren(), [session], 'the same nft process carried every update');

      const [nft] = nftChildren();
      assert.ok(nft !== undefined, 'an nft process runs');
      process.kill(nft, 'SIGKILL');
      await allowList.setPeers(peers(3));
      assert.match(
        host.exec('nft', ['list', 'set', 'inet', 'weft', 'peers4']),
        /elements = \{ 198\.19\.0\.1, 198\.19\.0\.2,\s+198\.19\.0\.3 \}/,
      );
      assert.ok(!nftChildren().includes(nft), 'another nft process took over');

      host.exec('nft', ['delete', 'table', 'inet', 'weft']);
      await assert.rejects(
        allowList.setPeers(peers(1)),
        (err: unknown) => err instanceof CommandError && /No such file or directory/.test(err.message),
      );
      assert.equal(await allowList.check(), false);
    } finally {
      await allowList.remove();
    }
    await waitFor(() => nftChildren().length === 0, 'remove() to let the nft process go', 5000, 20);
  });
});
