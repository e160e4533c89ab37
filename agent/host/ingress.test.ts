import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { IpAddress } from '../../common/cidr.js';
import { Netns, requireNetns } from '../../test/netns.js';
import { createCommandRunner } from './command.js';
import { IngressAllowList } from './ingress.js';

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
    const allowList = new IngressAllowList({ ports: [8472], runner: createCommandRunner({ netns: host.name }), resyncSeconds: 1 });
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
    const inNamespace = createCommandRunner({ netns: host.name });
    let pending: Promise<void> | undefined;
    const allowList: IngressAllowList = new IngressAllowList({
      ports: [8472],
      runner: (argv, options) => {
        // the peer arrives once nft is already writing the table without it
        pending ??= allowList.setPeers([IpAddress.parse('192.0.2.12')]);
        return inNamespace(argv, options);
      },
    });
    await allowList.apply([]);
    await pending;
    assert.match(host.exec('nft', ['list', 'set', 'inet', 'weft', 'peers4']), /elements = \{ 192\.0\.2\.12 \}/);
    assert.equal(await allowList.check(), true);
    await allowList.remove();
  });
});
