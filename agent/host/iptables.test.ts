import assert from 'node:assert/strict';
import { Prefix } from '../../common/cidr.js';
import { captureLogger, warnings } from '../../test/log-capture.js';
import { Netns, requireNetns, useNetns } from '../../test/netns.js';
import { waitFor } from '../../test/wait.js';
import { createCommandRunner, type CommandResult, type CommandRunner } from './command.js';
import { CommandError, IptablesError } from './errors.js';
import {
  FORWARD_CHAIN,
  IptablesRules,
  masqChainSpec,
  MASQ_CHAIN,
  parseIptablesVersion,
  parseTableListing,
  tokenizeRule,
  type IptablesOptions,
} from './iptables.js';

const NETWORK = Prefix.parse('198.18.0.0/16');
const SUBNET = Prefix.parse('198.18.5.0/24');
const NETWORK6 = Prefix.parse('2001:db8:100::/48');
const SUBNET6 = Prefix.parse('2001:db8:100:5::/64');

/**
 * flanneld's --ip-masq rules for Network 198.18.0.0/16 and lease 198.18.5.0/24 (IPv6: 2001:db8:100::/48,
 * 2001:db8:100:5::/64) on an iptables with --random-fully, written out by hand from flannel's code: the jump
 * inserted first in POSTROUTING, then its chain in order.
 */
function flanneldMasqRules(net: string, subnet: string, multicast: string): string[] {
  const c = '-m comment --comment "flanneld masq"';
  return [
    `-I POSTROUTING 1 ${c} -j FLANNEL-POSTRTG`,
    `-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 ${c} -j RETURN`,
    `-A FLANNEL-POSTRTG -s ${net} -d ${net} ${c} -j RETURN`,
    `-A FLANNEL-POSTRTG -s ${net} ! -d ${multicast} ${c} -j MASQUERADE --random-fully`,
    `-A FLANNEL-POSTRTG ! -s ${net} -d ${subnet} ${c} -j RETURN`,
    `-A FLANNEL-POSTRTG ! -s ${net} -d ${net} ${c} -j MASQUERADE --random-fully`,
  ];
}
const FLANNELD_MASQ = flanneldMasqRules('198.18.0.0/16', '198.18.5.0/24', '224.0.0.0/4');
const FLANNELD_MASQ6 = flanneldMasqRules('2001:db8:100::/48', '2001:db8:100:5::/64', 'ff00::/8');

/** weft's rules in flanneld's names, to compare with flanneld's as the kernel lists them. */
function asFlanneld(line: string): string {
  return line.replaceAll('WEFT-POSTRTG', 'FLANNEL-POSTRTG').replaceAll('"weft masq"', '"flanneld masq"');
}

describe('iptables rules', function () {
  describe('pure parts', function () {
    it('tokenizes iptables -S lines with quoted comments', function () {
      assert.deepEqual(tokenizeRule('-A POSTROUTING -m comment --comment "weft masq" -j WEFT-POSTRTG'), [
        '-A',
        'POSTROUTING',
        '-m',
        'comment',
        '--comment',
        'weft masq',
        '-j',
        'WEFT-POSTRTG',
      ]);
      assert.deepEqual(tokenizeRule('-A X -m comment --comment "a \\"b\\" \\\\c" -j RETURN'), [
        '-A',
        'X',
        '-m',
        'comment',
        '--comment',
        'a "b" \\c',
        '-j',
        'RETURN',
      ]);
      assert.deepEqual(tokenizeRule('  '), []);
    });

    it('parses a table listing', function () {
      const state = parseTableListing(
        '-P POSTROUTING ACCEPT\n-N WEFT-POSTRTG\n-N EMPTY\n-A POSTROUTING -j WEFT-POSTRTG\n-A WEFT-POSTRTG -s 198.18.0.0/16 -j RETURN\n',
      );
      assert.deepEqual([...state.chains].sort(), ['EMPTY', 'POSTROUTING', 'WEFT-POSTRTG']);
      assert.deepEqual(state.rules.get('WEFT-POSTRTG'), [['-s', '198.18.0.0/16', '-j', 'RETURN']]);
      assert.equal(state.rules.get('EMPTY'), undefined);
    });

    it("builds flanneld's five masquerade rules, kube-proxy's mark first, with ff00::/8 as multicast for IPv6", function () {
      const spec = masqChainSpec(NETWORK, SUBNET, true);
      assert.deepEqual(
        spec.rules.map((rule) => rule.join(' ')),
        [
          '-m mark --mark 0x4000/0x4000 -m comment --comment weft masq -j RETURN',
          '-s 198.18.0.0/16 -d 198.18.0.0/16 -m comment --comment weft masq -j RETURN',
          '-s 198.18.0.0/16 ! -d 224.0.0.0/4 -m comment --comment weft masq -j MASQUERADE --random-fully',
          '! -s 198.18.0.0/16 -d 198.18.5.0/24 -m comment --comment weft masq -j RETURN',
          '! -s 198.18.0.0/16 -d 198.18.0.0/16 -m comment --comment weft masq -j MASQUERADE --random-fully',
        ],
      );
      assert.ok(masqChainSpec(NETWORK6, SUBNET6, false).rules[2].join(' ').includes('! -d ff00::/8'));
      assert.ok(!masqChainSpec(NETWORK, SUBNET, false).rules.some((rule) => rule.includes('--random-fully')));
    });

    it('reads the iptables version', function () {
      assert.deepEqual(parseIptablesVersion('iptables v1.8.9 (nf_tables)\n'), [1, 8, 9]);
      assert.equal(parseIptablesVersion('nothing'), undefined);
    });
  });

  describe('with a fake runner', function () {
    function fakeRunner(answer: (argv: readonly string[], stdin: string | undefined) => CommandResult): {
      runner: CommandRunner;
      calls: { argv: readonly string[]; stdin: string | undefined }[];
    } {
      const calls: { argv: readonly string[]; stdin: string | undefined }[] = [];
      return {
        calls,
        runner: async (argv, options) => {
          calls.push({ argv, stdin: options?.stdin });
          return answer(argv, options?.stdin);
        },
      };
    }

    it('leaves out --random-fully before iptables 1.6.2', async function () {
      const { runner, calls } = fakeRunner((argv) =>
        argv[1] === '--version'
          ? { code: 0, stdout: 'iptables v1.6.1\n', stderr: '' }
          : { code: 0, stdout: '-P POSTROUTING ACCEPT\n', stderr: '' },
      );
      const rules = new IptablesRules({ family: 4, network: NETWORK, subnet: SUBNET, ipMasq: true, forwardRules: false, runner });
      await rules.apply();
      const restore = calls.find((call) => call.argv[0] === 'iptables-restore');
      assert.deepEqual(restore?.argv, ['iptables-restore', '-w', '5', '--noflush']);
      assert.ok(restore?.stdin?.startsWith('*nat\n:WEFT-POSTRTG - [0:0]\n'));
      assert.ok(restore?.stdin?.includes('-I POSTROUTING 1 -m comment --comment "weft masq" -j WEFT-POSTRTG\nCOMMIT\n'));
      assert.ok(!restore?.stdin?.includes('random-fully'));
    });

    it('fails with a typed error naming the command, stderr and the offending input line', async function () {
      const { runner } = fakeRunner((argv) => {
        if (argv[0] === 'iptables-restore') return { code: 2, stdout: '', stderr: 'iptables-restore: line 3 failed\n' };
        return { code: 0, stdout: '', stderr: '' };
      });
      const rules = new IptablesRules({ family: 4, network: NETWORK, subnet: SUBNET, forwardRules: true, randomFully: true, runner });
      await assert.rejects(rules.apply(), (err: unknown) => {
        assert.ok(err instanceof IptablesError && err instanceof CommandError);
        assert.equal(err.code, 'WEFT_IPTABLES');
        assert.equal(err.command, 'iptables-restore -w 5 --noflush');
        assert.equal(err.exitCode, 2);
        assert.match(
          err.message,
          /^iptables-restore -w 5 --noflush: exit 2: iptables-restore: line 3 failed \[input line 3: -A WEFT-FORWARD -s 198.18.0.0\/16/,
        );
        return true;
      });
      const { runner: listFails } = fakeRunner(() => ({ code: 4, stdout: '', stderr: "can't initialize ip6tables table `nat'" }));
      const v6 = new IptablesRules({ family: 6, network: NETWORK6, subnet: SUBNET6, randomFully: true, runner: listFails });
      await assert.rejects(
        v6.check(),
        (err: unknown) =>
          err instanceof IptablesError && err.message === "ip6tables -w 5 -t filter -S: exit 4: can't initialize ip6tables table `nat'",
      );
    });

    it('refuses prefixes of the wrong family', function () {
      assert.throws(() => new IptablesRules({ family: 6, network: NETWORK, subnet: SUBNET }), RangeError);
    });
  });

  describe('in a network namespace', function () {
    const ns = useNetns();
    const started: IptablesRules[] = [];

    afterEach(async function () {
      for (const rules of started.splice(0)) await rules.stop();
    });

    function make(options: Partial<IptablesOptions> = {}): IptablesRules {
      const rules = new IptablesRules({
        family: 4,
        network: NETWORK,
        subnet: SUBNET,
        ipMasq: true,
        runner: createCommandRunner({ netns: ns().name }),
        ...options,
      });
      started.push(rules);
      return rules;
    }

    function save(cmd = 'iptables', table = 'nat'): string[] {
      return ns()
        .exec(cmd, ['-t', table, '-S'])
        .trim()
        .split('\n')
        .filter((line) => !line.startsWith('-P '));
    }

    it('installs both chains with one jump each, idempotently, and check() agrees', async function () {
      const rules = make();
      await rules.apply();
      await rules.apply();
      assert.deepEqual(save('iptables', 'nat'), [
        '-N WEFT-POSTRTG',
        '-A POSTROUTING -m comment --comment "weft masq" -j WEFT-POSTRTG',
        '-A WEFT-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "weft masq" -j RETURN',
        '-A WEFT-POSTRTG -s 198.18.0.0/16 -d 198.18.0.0/16 -m comment --comment "weft masq" -j RETURN',
        '-A WEFT-POSTRTG -s 198.18.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "weft masq" -j MASQUERADE --random-fully',
        '-A WEFT-POSTRTG ! -s 198.18.0.0/16 -d 198.18.5.0/24 -m comment --comment "weft masq" -j RETURN',
        '-A WEFT-POSTRTG ! -s 198.18.0.0/16 -d 198.18.0.0/16 -m comment --comment "weft masq" -j MASQUERADE --random-fully',
      ]);
      assert.deepEqual(save('iptables', 'filter'), [
        '-N WEFT-FORWARD',
        '-A FORWARD -m comment --comment "weft forward" -j WEFT-FORWARD',
        '-A WEFT-FORWARD -s 198.18.0.0/16 -m comment --comment "weft forward" -j ACCEPT',
        '-A WEFT-FORWARD -d 198.18.0.0/16 -m comment --comment "weft forward" -j ACCEPT',
      ]);
      assert.deepEqual(await rules.check(), { ok: true, problems: [] });
    });

    it("writes flanneld's masquerade rules in flanneld's order, its jump inserted first, for IPv4 and IPv6", async function () {
      for (const [family, command, flanneld, network, subnet] of [
        [4, 'iptables', FLANNELD_MASQ, NETWORK, SUBNET],
        [6, 'ip6tables', FLANNELD_MASQ6, NETWORK6, SUBNET6],
      ] as const) {
        // flanneld's rules as flanneld writes them (iptables-restore --noflush), then weft's beside them
        ns().exec('sh', [
          '-c',
          `printf '%s\\n' '*nat' ':FLANNEL-POSTRTG - [0:0]' ${flanneld.map((line) => `'${line}'`).join(' ')} COMMIT | ${command}-restore --noflush`,
        ]);
        await make({ family, network, subnet, forwardRules: false }).apply();
        const listed = save(command, 'nat');
        const chain = (name: string) => listed.filter((line) => line.startsWith(`-A ${name} `));
        assert.deepEqual(chain('WEFT-POSTRTG').map(asFlanneld), chain('FLANNEL-POSTRTG'), `${command}: weft's rules are flanneld's`);
        assert.equal(chain('FLANNEL-POSTRTG').length, 5);
        assert.deepEqual(
          chain('POSTROUTING'),
          [
            '-A POSTROUTING -m comment --comment "weft masq" -j WEFT-POSTRTG',
            '-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG',
          ],
          `${command}: weft's jump inserted before the rules already there`,
        );
      }
    });

    it('puts its jump first and keeps rules that are not its own, also through remove()', async function () {
      ns().exec('iptables', ['-t', 'nat', '-A', 'POSTROUTING', '-d', '203.0.113.0/24', '-j', 'ACCEPT']);
      ns().exec('iptables', ['-N', 'OTHER']);
      ns().exec('iptables', ['-A', 'OTHER', '-s', '192.0.2.0/24', '-j', 'DROP']);
      ns().exec('iptables', ['-A', 'FORWARD', '-j', 'OTHER']);
      const rules = make();
      await rules.apply();
      assert.equal(save('iptables', 'nat')[1], '-A POSTROUTING -m comment --comment "weft masq" -j WEFT-POSTRTG');
      assert.equal(
        save('iptables', 'filter').filter((line) => line.startsWith('-A FORWARD'))[0],
        '-A FORWARD -m comment --comment "weft forward" -j WEFT-FORWARD',
      );
      await rules.remove();
      await rules.remove(); // idempotent
      assert.deepEqual(save('iptables', 'nat'), ['-A POSTROUTING -d 203.0.113.0/24 -j ACCEPT']);
      assert.deepEqual(save('iptables', 'filter'), ['-N OTHER', '-A FORWARD -j OTHER', '-A OTHER -s 192.0.2.0/24 -j DROP']);
    });

    it('check() names what was changed by hand; apply() repairs it, replacing the chain as a whole', async function () {
      const rules = make();
      await rules.apply();
      const x = (...args: string[]): string => ns().exec('iptables', args);
      x('-t', 'nat', '-D', MASQ_CHAIN, '3');
      x('-t', 'nat', '-A', MASQ_CHAIN, '-s', '192.0.2.0/24', '-j', 'RETURN');
      x('-t', 'nat', '-A', 'POSTROUTING', '-j', MASQ_CHAIN);
      x('-D', 'FORWARD', '1');
      const { ok, problems } = await rules.check();
      assert.equal(ok, false);
      assert.deepEqual(problems, [
        'filter FORWARD: no jump to WEFT-FORWARD',
        'nat WEFT-POSTRTG: missing rule: -A WEFT-POSTRTG -s 198.18.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "weft masq" -j MASQUERADE --random-fully',
        'nat WEFT-POSTRTG: unexpected rule: -A WEFT-POSTRTG -s 192.0.2.0/24 -j RETURN',
        'nat POSTROUTING: 2 jumps to WEFT-POSTRTG (want 1)',
      ]);
      await rules.apply();
      assert.deepEqual(await rules.check(), { ok: true, problems: [] });
      assert.equal(save('iptables', 'nat').filter((line) => line.endsWith(`-j ${MASQ_CHAIN}`)).length, 1);
    });

    it('moves the rules when the lease changes, and removes a chain whose feature is turned off', async function () {
      const rules = make();
      await rules.apply();
      await rules.update({ subnet: Prefix.parse('198.18.77.0/24') });
      assert.ok(save().includes('-A WEFT-POSTRTG ! -s 198.18.0.0/16 -d 198.18.77.0/24 -m comment --comment "weft masq" -j RETURN'));
      assert.ok(!save().some((line) => line.includes('198.18.5.0/24')));
      await rules.update({ ipMasq: false });
      assert.deepEqual(save(), []);
      assert.equal(save('iptables', 'filter').length, 4);
      assert.deepEqual(await rules.check(), { ok: true, problems: [] });
      // a chain left by an earlier run with masquerading on is reported, then cleaned up
      await make({ ipMasq: true }).apply();
      assert.deepEqual((await rules.check()).problems, ['nat WEFT-POSTRTG: present although disabled']);
      await rules.apply();
      assert.deepEqual(save(), []);
      await rules.update({ forwardRules: false });
      assert.deepEqual(save('iptables', 'filter'), []);
    });

    it('resyncs periodically: restores rules deleted by hand and logs it', async function () {
      const { logger, records } = captureLogger();
      const restored: string[][] = [];
      const rules = make({ logger, resyncSeconds: 0.1, onRestore: (problems) => restored.push(problems) });
      await rules.apply();
      rules.start();
      // each hand edit in one transaction, so that a resync sees all of it or none
      const byHand = (table: string, ...lines: string[]): string =>
        ns().exec('sh', [
          '-c',
          `printf '%s\\n' '*${table}' ${lines.map((line) => `'${line}'`).join(' ')} COMMIT | iptables-restore --noflush`,
        ]);
      byHand('nat', '-D POSTROUTING 1', `-F ${MASQ_CHAIN}`);
      await waitFor(() => restored.length > 0, 'a resync');
      assert.deepEqual(await rules.check(), { ok: true, problems: [] });
      assert.ok(restored[0].includes('nat POSTROUTING: no jump to WEFT-POSTRTG'));
      const warning = warnings(records).find((record) => record.msg.includes('restoring'));
      assert.ok(warning, 'a warning about the restore');
      assert.ok((warning.problems as string[]).some((problem) => problem.startsWith('nat WEFT-POSTRTG: missing rule')));
      // the whole chain deleted by hand comes back too
      byHand('filter', '-D FORWARD 1', `-F ${FORWARD_CHAIN}`, `-X ${FORWARD_CHAIN}`);
      await waitFor(() => restored.length > 1, 'a second resync');
      assert.ok(restored[1].includes('filter WEFT-FORWARD: chain missing'));
      await rules.stop();
      const count = restored.length;
      ns().exec('iptables', ['-t', 'nat', '-D', 'POSTROUTING', '1']);
      await new Promise((resolve) => setTimeout(resolve, 400));
      assert.equal(restored.length, count, 'no resync after stop()');
    });

    it('does the same for IPv6 with ip6tables', async function () {
      const rules = make({ family: 6, network: NETWORK6, subnet: SUBNET6 });
      await rules.apply();
      assert.deepEqual(save('ip6tables', 'nat').slice(2), [
        '-A WEFT-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "weft masq" -j RETURN',
        '-A WEFT-POSTRTG -s 2001:db8:100::/48 -d 2001:db8:100::/48 -m comment --comment "weft masq" -j RETURN',
        '-A WEFT-POSTRTG -s 2001:db8:100::/48 ! -d ff00::/8 -m comment --comment "weft masq" -j MASQUERADE --random-fully',
        '-A WEFT-POSTRTG ! -s 2001:db8:100::/48 -d 2001:db8:100:5::/64 -m comment --comment "weft masq" -j RETURN',
        '-A WEFT-POSTRTG ! -s 2001:db8:100::/48 -d 2001:db8:100::/48 -m comment --comment "weft masq" -j MASQUERADE --random-fully',
      ]);
      assert.equal(save('ip6tables', 'filter').length, 4);
      assert.deepEqual(save('iptables', 'nat'), [], 'IPv4 untouched');
      assert.deepEqual(await rules.check(), { ok: true, problems: [] });
      await rules.remove();
      assert.deepEqual(save('ip6tables', 'nat'), []);
      assert.deepEqual(save('ip6tables', 'filter'), []);
    });
  });

  describe('on real traffic (host, container and outside namespaces)', function () {
    /** host between container (198.18.5.2, in the overlay) and outside (192.0.2.2); forwarding on, FORWARD DROP. */
    function topology(): { host: Netns; container: Netns; outside: Netns } {
      const host = Netns.create();
      spaces.push(host);
      const container = Netns.create();
      spaces.push(container);
      const outside = Netns.create();
      spaces.push(outside);
      host.ip('link', 'add', 'hc0', 'type', 'veth', 'peer', 'name', 'c0', 'netns', container.name);
      host.ip('link', 'add', 'ho0', 'type', 'veth', 'peer', 'name', 'o0', 'netns', outside.name);
      host.ip('addr', 'add', '198.18.5.1/24', 'dev', 'hc0');
      host.ip('addr', 'add', '192.0.2.1/24', 'dev', 'ho0');
      host.ip('link', 'set', 'hc0', 'up');
      host.ip('link', 'set', 'ho0', 'up');
      container.ip('addr', 'add', '198.18.5.2/24', 'dev', 'c0');
      container.ip('link', 'set', 'c0', 'up');
      container.ip('route', 'add', 'default', 'via', '198.18.5.1');
      outside.ip('addr', 'add', '192.0.2.2/24', 'dev', 'o0');
      outside.ip('link', 'set', 'o0', 'up');
      host.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
      host.exec('iptables', ['-P', 'FORWARD', 'DROP']);
      return { host, container, outside };
    }

    const spaces: Netns[] = [];

    beforeEach(function () {
      requireNetns(this);
    });

    afterEach(function () {
      for (const space of spaces.splice(0)) space.destroy();
    });

    it('forwards and masquerades a container leaving the overlay, and stops when removed', async function () {
      // outside has no route back to 198.18.0.0/16: only masqueraded packets get answers
      const { host, container } = topology();
      const ping = (): boolean => {
        try {
          container.exec('ping', ['-c', '1', '-W', '1', '192.0.2.2']);
          return true;
        } catch {
          return false;
        }
      };
      assert.equal(ping(), false, 'dropped before the rules exist');
      const rules = new IptablesRules({
        family: 4,
        network: NETWORK,
        subnet: SUBNET,
        ipMasq: true,
        runner: createCommandRunner({ netns: host.name }),
      });
      await rules.apply();
      assert.equal(await waitFor(() => ping(), 'ping through forward + masquerade', 5000), true);
      const counters = host.exec('iptables', ['-t', 'nat', '-L', MASQ_CHAIN, '-v', '-n', '-x']);
      assert.match(counters, /^\s+[1-9]\d*\s+\d+\s+MASQUERADE\s+.*198\.18\.0\.0\/16\s+!224\.0\.0\.0\/4/m);
      await rules.remove();
      assert.equal(ping(), false, 'dropped again once removed (a new ping is a new flow)');
    });

    it("leaves a packet carrying kube-proxy's mark 0x4000 to kube-proxy: not masqueraded", async function () {
      const { host, container, outside } = topology();
      outside.ip('route', 'add', '198.18.0.0/16', 'via', '192.0.2.1'); // answers reach the container either way
      // outside counts the echo requests it gets by source address
      outside.exec('iptables', ['-A', 'INPUT', '-p', 'icmp', '--icmp-type', 'echo-request', '-s', '198.18.5.2']);
      outside.exec('iptables', ['-A', 'INPUT', '-p', 'icmp', '--icmp-type', 'echo-request', '-s', '192.0.2.1']);
      const seenFrom = (): Record<string, number> => {
        const counts: Record<string, number> = {};
        for (const line of outside.exec('iptables', ['-S', 'INPUT', '-v']).split('\n')) {
          const match = /^-A INPUT -s ([\d.]+)\/32 .* -c (\d+) \d+$/.exec(line);
          if (match) counts[match[1]] = Number(match[2]);
        }
        return counts;
      };
      const rules = new IptablesRules({
        family: 4,
        network: NETWORK,
        subnet: SUBNET,
        ipMasq: true,
        runner: createCommandRunner({ netns: host.name }),
      });
      await rules.apply();
      // each ping is a flow of its own (its own ICMP id), so conntrack decides anew whether to masquerade it
      container.exec('ping', ['-c', '1', '-W', '2', '192.0.2.2']);
      assert.deepEqual(seenFrom(), { '198.18.5.2': 0, '192.0.2.1': 1 }, 'an unmarked packet is masqueraded');
      // what kube-proxy does for a packet it will masquerade itself (KUBE-MARK-MASQ)
      host.exec('iptables', [
        '-t',
        'mangle',
        '-A',
        'PREROUTING',
        '-s',
        '198.18.5.2',
        '-p',
        'icmp',
        '-j',
        'MARK',
        '--set-xmark',
        '0x4000/0x4000',
      ]);
      container.exec('ping', ['-c', '1', '-W', '2', '192.0.2.2']);
      assert.deepEqual(seenFrom(), { '198.18.5.2': 1, '192.0.2.1': 1 }, 'the marked packet keeps its source address');
      const counters = host.exec('iptables', ['-t', 'nat', '-L', MASQ_CHAIN, '-v', '-n', '-x']);
      assert.match(counters, /^\s+1\s+\d+\s+RETURN\s+.*mark match 0x4000\/0x4000/m, counters);
    });
  });
});
