/**
 * `npm run e2e:vagrant`: the scenario suites of the namespace lab, run on the Vagrant VMs of
 * e2e/vagrant/Vagrantfile (which must be up: see README.md beside this file). Not part of `npm test`.
 *
 * Before the suites, prepareVagrantCluster() checks that the VMs run (etcd's among them) and run the weft this
 * checkout builds, re-provisioning them when not. When that fails, the run is one failed test saying why.
 */
import { dataplaneScenarios } from '../scenarios/dataplane.scenarios.js';
import type { DriverFactory } from '../scenarios/suite.js';
import { userspaceScenarios } from '../scenarios/userspace.scenarios.js';
import { weftctlScenarios } from '../scenarios/weftctl.scenarios.js';
import { prepareVagrantCluster, VagrantDriver } from './driver.js';

let machines: string[] = [];
let problem: string | undefined;
try {
  machines = await prepareVagrantCluster();
} catch (err) {
  problem = (err as Error).message;
}

if (problem !== undefined) {
  const why = problem;
  describe('e2e on the Vagrant VMs', function () {
    it("has a running Vagrant cluster with this checkout's weft", function () {
      throw new Error(why);
    });
  });
} else {
  const factory: DriverFactory = {
    name: 'Vagrant VMs',
    maxHosts: machines.length,
    unavailable: () => undefined,
    create: ({ hosts }) => VagrantDriver.create({ hosts }),
  };
  dataplaneScenarios(factory);
  weftctlScenarios(factory);
  userspaceScenarios(factory);
}
