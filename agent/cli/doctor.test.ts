import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { OVERLAY, type DesiredMaps, desired, fakeKernel, fdb, neighbour, nexthop, route } from '../../test/fake-kernel.js';
import { useNetns, type Netns } from '../../test/netns.js';
import {
  KernelView,
  WEFT_NEXTHOP_ID_BASE,
  WEFT_NEXTHOP_ID_BASE_IPV6,
  type FdbEntry,
  type NeighbourInfo,
  type NexthopInfo,
  type RouteInfo,
  type ViewDevices,
} from '../kernel/index.js';
import { plan } from '../plan.js';
import { formatFindings, planFindings, type DeviceNames, type Finding } from './doctor.js';
import { parseEnvFile } from './env-file.js';
import { sumMetrics } from './status.js';

const OVERLAY_DEVICES: ViewDevices = { family: 4, overlayIndex: OVERLAY, publicIndex: 2 };
const A: [string, string, string, string] = ['198.18.2.0/24', '198.18.2.0', '0a:00:00:00:00:02', '192.0.2.12'];
const B: [string, string, string, string] = ['198.18.3.0/24', '198.18.3.0', '0a:00:00:00:00:03', '192.0.2.13'];
const NH = WEFT_NEXTHOP_ID_BASE;

type KernelState = { neighbours: NeighbourInfo[]; fdb: FdbEntry[]; nexthops: NexthopInfo[]; routes: RouteInfo[] };

/** What a kernel holding `state` and wanting `want` gives: the findings for weftd's plan. */
async function findingsFor(
  state: Parameters<typeof fakeKernel>[0],
  want: DesiredMaps,
  names: DeviceNames,
  devices = OVERLAY_DEVICES,
): Promise<Finding[]> {
  const { view, duplicates } = await KernelView.read(fakeKernel(state), devices, 'nexthop', want.routes);
  return planFindings({ ops: plan(want, view, 'all', duplicates), view, desired: want }, [], names);
}

/** The kernel as weftd leaves it for `peers`: their neighbours, FDB entries, nexthops and routes. */
function programmed(peers: [string, string, string, string][]): KernelState {
  return {
    neighbours: peers.map(([, gateway, mac]) => neighbour(gateway, mac)),
    fdb: peers.map(([, , mac, publicIP]) => fdb(mac, publicIP)),
    nexthops: peers.map(([, gateway], i) => nexthop({ id: NH + i, gateway, ifindex: OVERLAY, onlink: true })),
    routes: peers.map(([dst], i) => route({ dst, nexthopId: NH + i })),
  };
}

describe('weftctl doctor: the operations weftd would make, as findings (no root)', function () {
  const names = { overlay: 'weft.1', public: 'eth1' };
  const want = desired([A, B]);

  it('reports nothing but one ok line when weftd would change nothing', async function () {
    assert.deepEqual(await findingsFor(programmed([A, B]), want, names), [
      {
        check: 'dataplane',
        severity: 'ok',
        message: "2 routes, 2 FDB entries and 2 neighbours match the peers' leases: weftd would change nothing",
      },
    ]);
  });

  it('names each missing, differing and left-over object with the command that does what weftd would', async function () {
    const C: [string, string, string, string] = ['198.18.9.0/24', '198.18.9.0', '0a:00:00:00:00:09', '192.0.2.19'];
    const kernel = programmed([B, C]);
    kernel.fdb = [fdb(A[2], '192.0.2.99'), fdb(B[2], B[3])];
    kernel.neighbours = [neighbour(B[1], B[2])];
    const findings = await findingsFor(kernel, want, names);
    const byCheck = (check: string): Finding[] => findings.filter((finding) => finding.check === check);
    assert.ok(findings.every((finding) => finding.severity === 'fail'));
    assert.deepEqual(
      byCheck('route').map((finding) => finding.message),
      [
        `198.18.9.0/24 via 198.18.9.0 dev weft.1 onlink nhid ${NH + 1} is left over: no lease asks for it`,
        `198.18.2.0/24 is missing: the lease wants 198.18.2.0/24 via 198.18.2.0 dev weft.1 onlink nhid ${NH + 2}`,
      ],
    );
    assert.match(byCheck('route')[0].fix!, new RegExp(`by hand: ip route del 198\\.18\\.9\\.0/24 nhid ${NH + 1} proto 157$`));
    assert.match(byCheck('route')[1].fix!, new RegExp(`by hand: ip route add 198\\.18\\.2\\.0/24 nhid ${NH + 2} proto 157$`));
    assert.deepEqual(
      byCheck('nexthop').map((finding) => finding.message),
      [
        `nexthop ${NH + 1} is left over: no route of weft's uses it`,
        `nexthop ${NH + 2} via 198.18.2.0 dev weft.1 onlink is missing: the routes through 198.18.2.0 want it`,
      ],
    );
    assert.deepEqual(
      byCheck('fdb').map((finding) => finding.message),
      ['0a:00:00:00:00:02 on weft.1 points at 192.0.2.99 but the lease says 192.0.2.12'],
    );
    assert.match(byCheck('fdb')[0].fix!, /bridge fdb replace 0a:00:00:00:00:02 dev weft\.1 dst 192\.0\.2\.12 self permanent$/);
    assert.deepEqual(
      byCheck('neighbour').map((finding) => finding.message),
      ['198.18.2.0 (peer 192.0.2.12) is missing on weft.1: the lease wants lladdr 0a:00:00:00:00:02'],
    );
    assert.match(byCheck('neighbour')[0].fix!, /ip neigh replace 198\.18\.2\.0 lladdr 0a:00:00:00:00:02 dev weft\.1 nud permanent$/);
  });

  it("reports a route through another nexthop than weftd's, which weftd would rewrite", async function () {
    // A's route goes through a second nexthop of weft's for the same gateway: same packet path, but weftd
    // keeps one nexthop per gateway (the lowest id) and moves the route to it
    const kernel = programmed([A, B]);
    kernel.nexthops.push(nexthop({ id: NH + 5, gateway: A[1], ifindex: OVERLAY, onlink: true }));
    kernel.routes[0] = route({ dst: A[0], nexthopId: NH + 5 });
    const findings = await findingsFor(kernel, want, names);
    assert.deepEqual(
      findings.map((finding) => [finding.check, finding.message]),
      [
        ['nexthop', `nexthop ${NH + 5} is left over: no route of weft's uses it`],
        [
          'route',
          `198.18.2.0/24 is 198.18.2.0/24 via 198.18.2.0 dev weft.1 onlink nhid ${NH + 5} but weftd wants 198.18.2.0/24 via 198.18.2.0 dev weft.1 onlink nhid ${NH}`,
        ],
      ],
    );
    assert.match(findings[1].fix!, new RegExp(`by hand: ip route replace 198\\.18\\.2\\.0/24 nhid ${NH} proto 157$`));
  });

  it('tells a prefix held by a route weft does not own from a missing route', async function () {
    const kernel = programmed([B]);
    kernel.neighbours.push(neighbour(A[1], A[2]));
    kernel.fdb.push(fdb(A[2], A[3]));
    kernel.routes.push(route({ dst: A[0], protocol: 4, gateway: '192.0.2.1', ifindex: 2 }));
    const findings = await findingsFor(kernel, want, names);
    assert.deepEqual(
      findings.map((finding) => [finding.severity, finding.message]),
      [['fail', "198.18.2.0/24 is held by a route weft does not own: weft leaves it alone, and the lease's host is unreachable from here"]],
    );
    assert.match(findings[0].fix!, /^ip route show 198\.18\.2\.0\/24 tells whose it is/);
  });

  it('names the family of an IPv6 plane and gives IPv6 fixes on weft-v6.<VNI>', async function () {
    const v6: [string, string, string, string] = ['2001:db8:100:2::/64', '2001:db8:100:2::', '0a:00:00:00:00:12', '2001:db8:0:1::12'];
    const want6 = desired([v6]);
    const devices = { ...OVERLAY_DEVICES, family: 6 as const };
    const names6 = { overlay: 'weft-v6.1', public: 'eth1', label: 'IPv6' };
    const six = (state: KernelState): KernelState => ({
      neighbours: state.neighbours.map((entry) => ({ ...entry, family: 6 as const })),
      fdb: state.fdb,
      nexthops: state.nexthops.map((entry) => ({ ...entry, family: 6 as const, id: WEFT_NEXTHOP_ID_BASE_IPV6 })),
      routes: state.routes.map((entry) => ({ ...entry, family: 6 as const, nexthopId: WEFT_NEXTHOP_ID_BASE_IPV6 })),
    });
    assert.deepEqual(
      (await findingsFor(six(programmed([v6])), want6, names6, devices)).map((finding) => finding.message),
      ["IPv6: 1 routes, 1 FDB entries and 1 neighbours match the peers' leases: weftd would change nothing"],
    );
    const missing = six(programmed([v6]));
    missing.routes = [];
    const [finding] = await findingsFor(missing, want6, names6, devices);
    assert.equal(
      finding?.message,
      `2001:db8:100:2::/64 is missing: the lease wants 2001:db8:100:2::/64 via 2001:db8:100:2:: dev weft-v6.1 onlink nhid ${WEFT_NEXTHOP_ID_BASE_IPV6}`,
    );
    assert.match(finding?.fix ?? '', new RegExp(`by hand: ip route add 2001:db8:100:2::/64 nhid ${WEFT_NEXTHOP_ID_BASE_IPV6} proto 157$`));
  });

  it('formats findings with the fix under each problem and a summary', function () {
    const text = formatFindings([
      { check: 'etcd', severity: 'ok', message: 'answers' },
      { check: 'route', severity: 'fail', message: '198.18.2.0/24 is missing', fix: 'ip route replace …' },
      { check: 'peer', severity: 'warn', message: 'lease skipped', fix: 'revoke it' },
      { check: 'weftd', severity: 'skip', message: 'not asked' },
    ]).split('\n');
    assert.deepEqual(text.slice(1), [
      'ok    etcd   answers',
      'FAIL  route  198.18.2.0/24 is missing',
      '             fix: ip route replace …',
      'WARN  peer   lease skipped',
      '             fix: revoke it',
      'skip  weftd  not asked',
      '',
      '1 problem found, 1 warning',
    ]);
  });

  it('keeps each finding on its line and escapes control characters quoted from etcd', function () {
    const text = formatFindings([
      {
        check: 'peer',
        severity: 'warn',
        message: 'lease 198.18.2.0-24 uses backend vxlan\u001b[31m\nok    etcd   forged',
        fix: 'revoke it\r\u009b',
      },
    ]);
    // eslint-disable-next-line no-control-regex -- the test looks for control characters
    assert.doesNotMatch(text, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
    assert.deepEqual(text.split('\n').slice(1, 3), [
      'WARN  peer   lease 198.18.2.0-24 uses backend vxlan\\u001b[31m\\u000aok    etcd   forged',
      '             fix: revoke it\\u000d\\u009b',
    ]);
  });
});

describe('weftctl helpers (no root)', function () {
  it('parses an environment file as systemd reads it', function () {
    assert.deepEqual(
      parseEnvFile(
        '# comment\n; also a comment\n\nWEFTD_IFACE=eth1\nexport FLANNELD_ETCD_PREFIX="/coreos.com/network"\nWEFTD_X=\'a b\'\nWEFTD_Y = "q\\"uote"\n',
      ),
      {
        WEFTD_IFACE: 'eth1',
        FLANNELD_ETCD_PREFIX: '/coreos.com/network',
        WEFTD_X: 'a b',
        WEFTD_Y: 'q"uote',
      },
    );
    assert.throws(
      () => parseEnvFile('WEFTD_IFACE=eth1\nnot an assignment\n', '/etc/weft/weftd.env'),
      /\/etc\/weft\/weftd\.env line 2: "not an assignment" is not a NAME=value line/,
    );
  });

  it('sums Prometheus samples per metric name', function () {
    const sums = sumMetrics(
      '# HELP weft_peers x\n# TYPE weft_peers gauge\nweft_peers{backend="vxlan"} 2\nweft_peers{backend="host-gw"} 1\nweft_etcd_reachable 1\nbad line\n',
    );
    assert.equal(sums.get('weft_peers'), 3);
    assert.equal(sums.get('weft_etcd_reachable'), 1);
    assert.equal(sums.has('bad'), false);
  });
});

describe('weftctl doctor on a host flanneld ran on (network namespace)', function () {
  this.timeout(60_000);
  const ns = useNetns();
  const WEFTCTL = fileURLToPath(new URL('./weftctl.js', import.meta.url));
  let dir: string;

  beforeEach(function () {
    dir = mkdtempSync(join(tmpdir(), 'weft-doctor-'));
  });

  afterEach(function () {
    rmSync(dir, { recursive: true, force: true });
  });

  /** Writes `lines` into `table` in one iptables-restore --noflush, as flanneld does. */
  function restore(space: Netns, command: 'iptables' | 'ip6tables', table: string, lines: readonly string[]): void {
    space.exec('sh', [
      '-c',
      `printf '%s\\n' '*${table}' ${lines.map((line) => `'${line}'`).join(' ')} COMMIT | ${command}-restore --noflush`,
    ]);
  }

  /** weftctl doctor -o json in the namespace; etcd is not there (nothing listens on its loopback's port 9). */
  function doctor(space: Netns): Promise<Finding[]> {
    return new Promise((resolve, reject) => {
      const child = spawn(
        'ip',
        [
          'netns',
          'exec',
          space.name,
          process.execPath,
          WEFTCTL,
          '--environment-file=',
          'doctor',
          '--etcd-endpoints=http://127.0.0.1:9',
          `--subnet-file=${join(dir, 'subnet.env')}`,
          '-o',
          'json',
        ],
        { env: { PATH: process.env.PATH }, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      child.on('close', () => {
        try {
          resolve(JSON.parse(stdout) as Finding[]);
        } catch {
          reject(new Error(`weftctl doctor printed no findings:\n${stdout}\n${stderr}`));
        }
      });
    });
  }

  it("finds flanneld's chains and devices, and the commands it prints remove them and nothing else", async function () {
    const space = ns();
    const c = (text: string) => `-m comment --comment "${text}"`;
    for (const [command, net, subnet, multicast] of [
      ['iptables', '198.18.0.0/16', '198.18.5.0/24', '224.0.0.0/4'],
      ['ip6tables', '2001:db8:100::/48', '2001:db8:100:5::/64', 'ff00::/8'],
    ] as const) {
      restore(space, command, 'nat', [
        ':FLANNEL-POSTRTG - [0:0]',
        `-I POSTROUTING 1 ${c('flanneld masq')} -j FLANNEL-POSTRTG`,
        `-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 ${c('flanneld masq')} -j RETURN`,
        `-A FLANNEL-POSTRTG -s ${net} -d ${net} ${c('flanneld masq')} -j RETURN`,
        `-A FLANNEL-POSTRTG -s ${net} ! -d ${multicast} ${c('flanneld masq')} -j MASQUERADE --random-fully`,
        `-A FLANNEL-POSTRTG ! -s ${net} -d ${subnet} ${c('flanneld masq')} -j RETURN`,
        `-A FLANNEL-POSTRTG ! -s ${net} -d ${net} ${c('flanneld masq')} -j MASQUERADE --random-fully`,
      ]);
    }
    restore(space, 'iptables', 'filter', [
      ':FLANNEL-FWD - [0:0]',
      `-I FORWARD 1 ${c('flanneld forward')} -j FLANNEL-FWD`,
      `-A FLANNEL-FWD -s 198.18.0.0/16 ${c('flanneld forward')} -j ACCEPT`,
      `-A FLANNEL-FWD -d 198.18.0.0/16 ${c('flanneld forward')} -j ACCEPT`,
    ]);
    // what is not flanneld's stays
    space.exec('iptables', ['-t', 'nat', '-A', 'POSTROUTING', '-d', '203.0.113.0/24', '-j', 'ACCEPT']);
    space.exec('iptables', ['-N', 'OTHER']);
    space.exec('iptables', ['-A', 'FORWARD', '-j', 'OTHER']);
    space.ip('link', 'add', 've0', 'type', 'veth', 'peer', 'name', 've1');
    space.ip('addr', 'add', '192.0.2.1/24', 'dev', 've0');
    space.ip('addr', 'add', '2001:db8:0:1::1/64', 'dev', 've0', 'nodad');
    space.ip('link', 'add', 'flannel.1', 'type', 'vxlan', 'id', '1', 'local', '192.0.2.1', 'dev', 've0', 'dstport', '8472', 'nolearning');
    space.ip(
      'link',
      'add',
      'flannel-v6.1',
      'type',
      'vxlan',
      'id',
      '1',
      'local',
      '2001:db8:0:1::1',
      'dev',
      've0',
      'dstport',
      '8472',
      'nolearning',
    );

    const leftovers = (await doctor(space)).filter((finding) => finding.check === 'flanneld');
    assert.deepEqual(
      leftovers.map((finding) => [finding.severity, finding.message]),
      [
        [
          'warn',
          "iptables nat chain FLANNEL-POSTRTG is left over from flanneld and still jumped to (1 rule): its rules apply besides weft's",
        ],
        [
          'warn',
          "iptables filter chain FLANNEL-FWD is left over from flanneld and still jumped to (1 rule): its rules apply besides weft's",
        ],
        [
          'warn',
          "ip6tables nat chain FLANNEL-POSTRTG is left over from flanneld and still jumped to (1 rule): its rules apply besides weft's",
        ],
        ['warn', 'device flannel.1 is left over from flanneld'],
        ['warn', 'device flannel-v6.1 is left over from flanneld'],
      ],
    );
    const prefix = 'if flanneld no longer runs on this host (systemctl disable --now flanneld), remove it: ';
    assert.equal(
      leftovers[0].fix,
      `${prefix}iptables -w 5 -t nat -D POSTROUTING -m comment --comment 'flanneld masq' -j FLANNEL-POSTRTG` +
        ' && iptables -w 5 -t nat -F FLANNEL-POSTRTG && iptables -w 5 -t nat -X FLANNEL-POSTRTG',
    );
    assert.equal(leftovers[3].fix, `${prefix}ip link del flannel.1`);

    // the fixes as printed
    for (const { fix = '' } of leftovers) {
      assert.ok(fix.startsWith(prefix), fix);
      space.exec('sh', ['-c', fix.slice(prefix.length)]);
    }
    const listed = (command: string, table: string) =>
      space
        .exec(command, ['-t', table, '-S'])
        .trim()
        .split('\n')
        .filter((line) => !line.startsWith('-P '));
    assert.deepEqual(listed('iptables', 'nat'), ['-A POSTROUTING -d 203.0.113.0/24 -j ACCEPT']);
    assert.deepEqual(listed('iptables', 'filter'), ['-N OTHER', '-A FORWARD -j OTHER']);
    assert.deepEqual(listed('ip6tables', 'nat'), []);
    const links = space.ipJson<{ ifname: string }[]>('link', 'show').map((link) => link.ifname);
    assert.deepEqual(
      links.filter((name) => name.startsWith('flannel')),
      [],
    );
    assert.ok(links.includes('ve0') && links.includes('ve1'), links.join(' '));
    assert.deepEqual(
      (await doctor(space)).filter((finding) => finding.check === 'flanneld'),
      [],
    );
  });
});
