import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { scenarioRunner, useNetns } from '../../test/netns.js';
import { SysctlError } from './errors.js';
import type * as Scenarios from './sysctl.scenarios.js';
import { enableForwarding, IPV4_FORWARD, IPV6_FORWARD, readSysctl, sysctlPath, writeSysctl } from './sysctl.js';

const run = scenarioRunner<typeof Scenarios>(new URL('./sysctl.scenarios.js', import.meta.url));

describe('sysctl', function () {
  describe('against a fake /proc/sys', function () {
    let root: string;

    async function fake(name: string, value: string): Promise<string> {
      const path = sysctlPath(name, root);
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, `${value}\n`);
      return path;
    }

    beforeEach(async function () {
      root = await mkdtemp(join(tmpdir(), 'weft-sysctl-'));
    });

    afterEach(async function () {
      await rm(root, { recursive: true, force: true });
    });

    it('maps dotted names to paths and refuses path tricks', function () {
      assert.equal(sysctlPath(IPV4_FORWARD), '/proc/sys/net/ipv4/ip_forward');
      assert.equal(sysctlPath(IPV6_FORWARD), '/proc/sys/net/ipv6/conf/all/forwarding');
      assert.equal(sysctlPath('net/ipv4/conf/weft.1/forwarding'), '/proc/sys/net/ipv4/conf/weft.1/forwarding');
      for (const bad of ['net..ipv4', '../etc/passwd', 'net/ipv4/../../x', '', 'a b']) {
        assert.throws(() => sysctlPath(bad), SysctlError, bad);
      }
    });

    it('enables only the families asked for and reports before/after', async function () {
      const v4 = await fake(IPV4_FORWARD, '0');
      const v6 = await fake(IPV6_FORWARD, '0');
      assert.deepEqual(await enableForwarding({ root }), { [IPV4_FORWARD]: { before: '0', after: '1' } });
      assert.equal(await readFile(v6, 'utf8'), '0\n');
      assert.deepEqual(await enableForwarding({ root, ipv6: true }), {
        [IPV4_FORWARD]: { before: '1', after: '1' },
        [IPV6_FORWARD]: { before: '0', after: '1' },
      });
      assert.equal(await readFile(v4, 'utf8'), '1\n');
    });

    it('fails with a typed error when the value does not stick or the file is missing', async function () {
      const path = sysctlPath(IPV4_FORWARD, root);
      await mkdir(dirname(path), { recursive: true });
      await symlink('/dev/null', path); // takes any write, reads back empty
      await assert.rejects(
        writeSysctl(IPV4_FORWARD, '1', root),
        (err: unknown) =>
          err instanceof SysctlError &&
          err.code === 'WEFT_SYSCTL' &&
          /net\.ipv4\.ip_forward: wrote 1 but it reads back as/.test(err.message),
      );
      await assert.rejects(
        readSysctl(IPV6_FORWARD, root),
        (err: unknown) => err instanceof SysctlError && err.sysctl === IPV6_FORWARD && /cannot read/.test(err.message),
      );
      await assert.rejects(enableForwarding({ root, ipv4: false, ipv6: true }), SysctlError);
    });
  });

  describe('in a fresh network namespace', function () {
    const ns = useNetns();

    // A new namespace copies net.ipv4.ip_forward from the root one: start from off, whatever the machine has.
    beforeEach(function () {
      ns().exec('sh', ['-c', 'echo 0 > /proc/sys/net/ipv4/ip_forward && echo 0 > /proc/sys/net/ipv6/conf/all/forwarding']);
    });

    it('turns on IPv4 and IPv6 forwarding there and leaves the host alone', async function () {
      const host = { v4: await readSysctl(IPV4_FORWARD), v6: await readSysctl(IPV6_FORWARD) };
      const first = await run(ns(), 'forwarding', { ipv4: true, ipv6: true });
      assert.deepEqual(first.before, { [IPV4_FORWARD]: '0', [IPV6_FORWARD]: '0' });
      assert.deepEqual(first.result, { [IPV4_FORWARD]: { before: '0', after: '1' }, [IPV6_FORWARD]: { before: '0', after: '1' } });
      // seen independently of weft's code
      assert.equal(ns().exec('cat', ['/proc/sys/net/ipv4/ip_forward']).trim(), '1');
      assert.equal(ns().exec('cat', ['/proc/sys/net/ipv6/conf/all/forwarding']).trim(), '1');
      const second = await run(ns(), 'forwarding', { ipv4: true, ipv6: false });
      assert.deepEqual(second.result, { [IPV4_FORWARD]: { before: '1', after: '1' } });
      assert.deepEqual({ v4: await readSysctl(IPV4_FORWARD), v6: await readSysctl(IPV6_FORWARD) }, host);
    });

    it('enables only IPv4 by default', async function () {
      const { before, result } = await run(ns(), 'forwarding', null);
      assert.deepEqual(before, { [IPV4_FORWARD]: '0', [IPV6_FORWARD]: '0' });
      assert.deepEqual(result, { [IPV4_FORWARD]: { before: '0', after: '1' } });
      assert.equal(ns().exec('cat', ['/proc/sys/net/ipv4/ip_forward']).trim(), '1');
      assert.equal(ns().exec('cat', ['/proc/sys/net/ipv6/conf/all/forwarding']).trim(), '0');
    });
  });
});
