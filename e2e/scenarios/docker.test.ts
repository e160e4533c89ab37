import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { waitFor } from '../../test/wait.js';
import { NetnsDocker } from '../lab/docker.js';
import { NetnsLab, seedNetworkConfig } from '../lab/index.js';
import { dockerScenarios } from './docker.scenarios.js';
import { netnsDockerFactory, skipUnlessAvailable } from './suite.js';

dockerScenarios(netnsDockerFactory);

/** Every process with its start time (which tells a reused PID apart), cgroups and network namespace. */
function processes(): { pid: number; started: string; cgroups: string; net: string }[] {
  const out: { pid: number; started: string; cgroups: string; net: string }[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      out.push({
        pid: Number(entry),
        started: startTime(Number(entry)) ?? '',
        cgroups: readFileSync(`/proc/${entry}/cgroup`, 'utf8'),
        net: readlinkSync(`/proc/${entry}/ns/net`),
      });
    } catch {
      // exited meanwhile, or a kernel thread
    }
  }
  return out;
}

/** Field 22 of /proc/<pid>/stat (after the command name, which may hold spaces), or undefined once the process is gone. */
function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** The run's cgroups left in any hierarchy. */
function cgroupsOfRun(runId: string): string[] {
  const found: string[] = [];
  for (const hierarchy of ['', ...readdirSync('/sys/fs/cgroup')]) {
    const dir = join('/sys/fs/cgroup', hierarchy);
    try {
      if (!statSync(dir).isDirectory()) continue;
      found.push(
        ...readdirSync(dir)
          .filter((entry) => entry.startsWith(`weft-lab-${runId}-`))
          .map((entry) => join(dir, entry)),
      );
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

  it('destroy() ends every daemon and container of the docker hosts and removes their cgroups and files', async function () {
    const lab = await NetnsLab.create({ hosts: 1 });
    try {
      const h1 = lab.hosts[0];
      const docker = new NetnsDocker(lab);
      await seedNetworkConfig(lab);
      await lab.startAgent(h1);
      await docker.startDocker(h1);
      const run = await docker.docker(h1, ['run', '--detach', '--name=c1', docker.image, 'sleep', '1d']);
      assert.equal(run.code, 0, run.stderr);
      const hostNet = `net:[${statSync(`/run/netns/${lab.namespaceOf(h1)}`).ino}]`;
      // The docker host's processes: in the host's network namespace (the machine's PID 1 and service manager,
      // dockerd, containerd, the shims) or in the run's cgroups (the containers, which have namespaces of their own).
      const machine = processes().filter((proc) => proc.net === hostNet || proc.cgroups.includes(`/weft-lab-${lab.runId}-`));
      const names = machine.map((proc) => readFileSync(`/proc/${proc.pid}/comm`, 'utf8').trim());
      for (const name of ['docker-init', 'systemd', 'dockerd', 'containerd', 'containerd-shim', 'sleep'])
        assert.ok(names.includes(name), `${name} runs: ${names.join(' ')}`);
      assert.ok(cgroupsOfRun(lab.runId).length > 0);

      await lab.destroy();
      // Their mounts were in mount namespaces of their own, which end with their last process.
      await waitFor(
        () => machine.every((proc) => startTime(proc.pid) !== proc.started),
        'every process of the docker host to be gone',
        5_000,
        50,
      );
      assert.deepEqual(cgroupsOfRun(lab.runId), []);
      assert.ok(!existsSync(lab.tempDir));
      assert.equal(readFileSync('/proc/self/mountinfo', 'utf8').includes(lab.tempDir), false);
    } finally {
      await lab.destroy();
    }
  });
});
