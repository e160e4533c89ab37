import assert from 'node:assert/strict';
import { ChildProcess, execFileSync } from 'node:child_process';
import fc from 'fast-check';
import { IpAddress } from '../../common/cidr.js';
import type { LeaseChange } from '../../common/lease-arbiter.js';
import type { Lease } from '../../common/lease.js';
import { Netns, requireNetns } from '../../test/netns.js';
import { waitFor } from '../../test/wait.js';
import { CommandError } from './errors.js';
import { IngressAllowList, PeerAddresses, type AddressChange } from './ingress.js';
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

/** A lease as PeerAddresses reads it: its name and public IPs. */
function lease(name: string, publicIP?: string, publicIPv6?: string): Lease {
  return {
    name,
    subnets: { ipv4: undefined, ipv6: undefined },
    attrs: {
      publicIP: publicIP === undefined ? undefined : IpAddress.parse(publicIP),
      publicIPv6: publicIPv6 === undefined ? undefined : IpAddress.parse(publicIPv6),
      backendType: 'vxlan',
      backendData: undefined,
      backendV6Data: undefined,
      extra: {},
    },
    reservation: false,
  };
}

/** The addresses an allow-list that took every change in turn allows; fails on an address added twice or removed unheld. */
class AppliedChanges {
  readonly allowed = new Set<string>();
  apply({ added, removed }: AddressChange): this {
    for (const ip of removed) assert.ok(this.allowed.delete(ip.toString()), `${String(ip)} removed while not allowed`);
    for (const ip of added) {
      assert.ok(!this.allowed.has(ip.toString()), `${String(ip)} added while allowed`);
      this.allowed.add(ip.toString());
    }
    return this;
  }
  sorted(): string[] {
    return [...this.allowed].sort();
  }
}

describe("PeerAddresses: the peers' public IPs, one lease event at a time", function () {
  it('keeps an address two leases name until neither does, follows a lease to new IPv4 and IPv6 addresses, and leaves out the own lease', function () {
    const peers = new PeerAddresses('own');
    const allowed = new AppliedChanges();
    const held = new Map<string, Lease>();
    const event = (kind: 'put' | 'removed', next: Lease): LeaseChange => {
      const previous = held.get(next.name);
      if (kind === 'removed') held.delete(next.name);
      else held.set(next.name, next);
      return kind === 'removed'
        ? { kind, lease: next }
        : previous === undefined
          ? { kind: 'added', lease: next }
          : { kind: 'changed', lease: next, previous };
    };
    allowed.apply(peers.leaseChanged(event('put', lease('own', '192.0.2.1', '2001:db8::1'))));
    assert.deepEqual(allowed.sorted(), [], 'the own lease is no peer');
    allowed.apply(peers.leaseChanged(event('put', lease('a', '192.0.2.10', '2001:db8::10'))));
    allowed.apply(peers.leaseChanged(event('put', lease('b', '192.0.2.10'))));
    assert.deepEqual(allowed.sorted(), ['192.0.2.10', '2001:db8::10']);
    allowed.apply(peers.leaseChanged(event('removed', lease('a', '192.0.2.10', '2001:db8::10'))));
    assert.deepEqual(allowed.sorted(), ['192.0.2.10'], "b still names a's old IPv4 address");
    allowed.apply(peers.leaseChanged(event('put', lease('b', '192.0.2.11', '2001:db8::11'))));
    assert.deepEqual(allowed.sorted(), ['192.0.2.11', '2001:db8::11'], 'b moved to new addresses');
    const change = peers.leaseChanged(event('put', lease('b', '192.0.2.11', '2001:db8::12')));
    assert.deepEqual(
      change.added.map(String).concat(change.removed.map(String)),
      ['2001:db8::12', '2001:db8::11'],
      'the kept IPv4 address neither goes nor comes',
    );
    allowed.apply(change);
    assert.deepEqual(allowed.sorted(), ['192.0.2.11', '2001:db8::12'], 'only its IPv6 address changed');
    allowed.apply(peers.leaseChanged(event('removed', lease('b', '192.0.2.11', '2001:db8::12'))));
    assert.deepEqual(allowed.sorted(), []);
  });

  it("takes a new own lease: the old one, still there (taken over), is a peer's; the new one is not", function () {
    const leases = new Map([lease('old', '192.0.2.1'), lease('new', '192.0.2.2'), lease('c', '192.0.2.3')].map((l) => [l.name, l]));
    const peers = new PeerAddresses('old');
    const allowed = new AppliedChanges();
    allowed.apply({ added: peers.reset(leases.values()), removed: [] });
    assert.deepEqual(allowed.sorted(), ['192.0.2.2', '192.0.2.3']);
    allowed.apply(peers.ownChanged('new', leases));
    assert.deepEqual(allowed.sorted(), ['192.0.2.1', '192.0.2.3']);
    leases.delete('old');
    allowed.apply(peers.leaseChanged({ kind: 'removed', lease: lease('old', '192.0.2.1') }));
    assert.deepEqual(allowed.sorted(), ['192.0.2.3']);
  });

  it('after any series of lease events, the changes add up to every address of every lease but the own, as a relist counts them', function () {
    const names = ['198.18.1.0-24', '198.18.2.0-24', '198.18.3.0-24', '198.18.4.0-24'];
    const step = fc.oneof(
      fc.record({
        kind: fc.constant('put' as const),
        name: fc.constantFrom(...names),
        v4: fc.option(fc.constantFrom('192.0.2.1', '192.0.2.2', '192.0.2.3'), { nil: undefined }),
        v6: fc.option(fc.constantFrom('2001:db8::1', '2001:db8::2'), { nil: undefined }),
      }),
      fc.record({ kind: fc.constant('delete' as const), name: fc.constantFrom(...names) }),
      fc.record({ kind: fc.constant('own' as const), name: fc.constantFrom(...names) }),
    );
    fc.assert(
      fc.property(fc.array(step, { maxLength: 40 }), (steps) => {
        const leases = new Map<string, Lease>();
        let own = names[0];
        const peers = new PeerAddresses(own);
        const allowed = new AppliedChanges();
        for (const next of steps) {
          if (next.kind === 'own') {
            own = next.name;
            allowed.apply(peers.ownChanged(own, leases));
          } else if (next.kind === 'delete') {
            const gone = leases.get(next.name);
            if (gone === undefined) continue;
            leases.delete(next.name);
            allowed.apply(peers.leaseChanged({ kind: 'removed', lease: gone }));
          } else {
            const previous = leases.get(next.name);
            const put = lease(next.name, next.v4, next.v6);
            leases.set(next.name, put);
            allowed.apply(
              peers.leaseChanged(previous === undefined ? { kind: 'added', lease: put } : { kind: 'changed', lease: put, previous }),
            );
          }
          const expected = [
            ...new Set(
              [...leases.values()]
                .filter((l) => l.name !== own)
                .flatMap((l) => [l.attrs.publicIP, l.attrs.publicIPv6])
                .filter((ip) => ip !== undefined)
                .map(String),
            ),
          ].sort();
          assert.deepEqual(allowed.sorted(), expected);
        }
        const relisted = new PeerAddresses(own).reset(leases.values()).map(String).sort();
        assert.deepEqual(relisted, allowed.sorted());
        assert.deepEqual(peers.reset(leases.values()).map(String).sort(), relisted);
      }),
      { numRuns: 500 },
    );
  });
});

describe('ingress allow-list: what reaches nft', function () {
  /** An nft that takes every line and answers nothing, keeping the lines. */
  function recordingNft(): NftChannel & { lines: string[] } {
    const lines: string[] = [];
    return { lines, run: (line) => (lines.push(line), Promise.resolve({ code: 0, stdout: '', stderr: '' })), close: () => undefined };
  }
  const ips = (...texts: string[]) => texts.map((text) => IpAddress.parse(text));

  it('writes only the addresses that changed, IPv4 and IPv6, coalescing the changes that wait', async function () {
    const nft = recordingNft();
    const allowList = new IngressAllowList({ ports: [8472], nft });
    await allowList.apply(ips('192.0.2.1', '192.0.2.2', '192.0.2.3', '2001:db8::1', '2001:db8::2'));
    assert.match(
      nft.lines[0] ?? '',
      /elements = \{ 192\.0\.2\.1, 192\.0\.2\.2, 192\.0\.2\.3 \}.*elements = \{ 2001:db8::1, 2001:db8::2 \}/,
    );

    await allowList.changePeers({ added: ips('192.0.2.4', '2001:db8::3'), removed: ips('192.0.2.1', '2001:db8::1') });
    assert.deepEqual(nft.lines.slice(1), [
      'delete element inet weft peers4 { 192.0.2.1 }; add element inet weft peers4 { 192.0.2.4 }; ' +
        'delete element inet weft peers6 { 2001:db8::1 }; add element inet weft peers6 { 2001:db8::3 }',
    ]);

    // while one update waits for its turn, the next changes join it; an address that came and went is not written
    const first = allowList.changePeers({ added: ips('192.0.2.5'), removed: [] });
    const second = allowList.changePeers({ added: ips('192.0.2.6'), removed: ips('192.0.2.5', '192.0.2.2') });
    assert.equal(first, second, 'one update for both');
    await second;
    assert.deepEqual(nft.lines.slice(2), ['delete element inet weft peers4 { 192.0.2.2 }; add element inet weft peers4 { 192.0.2.6 }']);

    await allowList.changePeers({ added: ips('192.0.2.3'), removed: ips('192.0.2.9') });
    assert.equal(nft.lines.length, 3, 'no change, no write');
    await allowList.setPeers(ips('192.0.2.3', '192.0.2.4', '192.0.2.6', '192.0.2.7', '2001:db8::2', '2001:db8::3'));
    assert.deepEqual(nft.lines.slice(3), ['add element inet weft peers4 { 192.0.2.7 }'], 'setPeers writes the difference too');
  });
});
