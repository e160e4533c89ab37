import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { waitFor } from '../../test/wait.js';
import { NetnsDocker } from '../lab/docker.js';
import { NetnsLab, seedNetworkConfig } from '../lab/index.js';
import { dockerScenarios } from './docker.scenarios.js';
import { netnsDockerFactory, skipUnlessAvailable } from './suite.js';

dockerScenarios(netnsDockerFactory);

/** Every process, with its cgroups, network namespace and mount namespace (unreadable ones left out). */
function processes(): { pid: number; cgroups: string; net: string; mnt: string }[] {
  const out: { pid: number; cgroups: string; net: string; mnt: string }[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      out.push({
        pid: Number(entry),
        cgroups: readFileSync(`/proc/${entry}/cgroup`, 'utf8'),
        net: readlinkSync(`/proc/${entry}/ns/net`),
        mnt: readlinkSync(`/proc/${entry}/ns/mnt`),
      });
    } catch {
      // exited meanwhile, or a kernel thread
    }
  }
  return out;
}

/** The run's cgroups left in any hierarchy. */
function cgroupsOfRun(runId: string): string[] {
  const found: string[] = [];
  for (const hierarchy of ['', ...readdirSync('/sys/fs/cgroup')]) {
    const dir = join('/sys/fs/cgroup', hierarchy);
    try {
      if (!statSync(dir).isDirectory()) continue;
      found.push(...readdirSync(dir).filter((entry) => entry.startsWith(`weft-lab-${runId}-`)).map((entry) => join(dir, entry)));
    } catch {
      // not a hierarchy
    }
  }
  return found;
}

describe('e2e: docker hosts in the namespace lab leave nothing behind', function () {
  this.timeout(120_000);

  before(function () {
    skipUnlessAvailable(this, netnsDockerFactory);
  });

  it("destroy() ends every daemon and container of the docker hosts, their mount namespaces, cgroups and files", async function () {
    const lab = await NetnsLab.create({ hosts: 1 });
    try {
      const h1 = lab.hosts[0]!;
      const docker = new NetnsDocker(lab);
      await seedNetworkConfig(lab);
      await lab.startAgent(h1);
      await docker.startDocker(h1);
      const run = await docker.docker(h1, ['run', '--detach', '--name=c1', docker.image, 'sleep', '1d']);
      assert.equal(run.code, 0, run.stderr);
      const hostNet = `net:[${statSync(`/run/netns/${lab.namespaceOf(h1)}`).ino}]`;
      const ownMnt = readlinkSync('/proc/self/ns/mnt');
      const machine = processes().filter((proc) => proc.net === hostNet || proc.cgroups.includes(`/weft-lab-${lab.runId}-`));
      const names = machine.map((proc) => readFileSync(`/proc/${proc.pid}/comm`, 'utf8').trim());
      for (const name of ['systemd', 'dockerd', 'containerd', 'containerd-shim', 'sleep']) assert.ok(names.includes(name), `${name} runs: ${names.join(' ')}`);
      const mountNamespaces = new Set(machine.map((proc) => proc.mnt).filter((mnt) => mnt !== ownMnt));
      assert.ok(mountNamespaces.size >= 2, 'the machine and its container have mount namespaces of their own');
      assert.ok(cgroupsOfRun(lab.runId).length > 0);

      await lab.destroy();
      await waitFor(() => machine.every((proc) => !existsSync(`/proc/${proc.pid}`)), 'every process of the docker host to be gone', 5_000, 50);
      assert.deepEqual(processes().filter((proc) => mountNamespaces.has(proc.mnt)).map((proc) => proc.pid), [], 'no process keeps a mount namespace of the docker host');
      assert.deepEqual(cgroupsOfRun(lab.runId), []);
      assert.ok(!existsSync(lab.tempDir));
      assert.equal(readFileSync('/proc/self/mountinfo', 'utf8').includes(lab.tempDir), false);
    } finally {
      await lab.destroy();
    }
  });
});
