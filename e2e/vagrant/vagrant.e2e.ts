/**
 * `npm run e2e:vagrant`: the scenario suites of the namespace lab, run on the Vagrant VMs of
 * e2e/vagrant/Vagrantfile (which must be up: see README.md beside this file). Not part of `npm test`.
 */
import { dataplaneScenarios } from '../scenarios/dataplane.scenarios.js';
import type { DriverFactory } from '../scenarios/suite.js';
import { weftctlScenarios } from '../scenarios/weftctl.scenarios.js';
import { runningMachines, VagrantDriver } from './driver.js';

let machines: string[] = [];
let unavailable: string | undefined;
try {
  machines = await runningMachines();
  if (machines.length === 0) unavailable = 'have no running VM: cd e2e/vagrant && vagrant up';
} catch (err) {
  unavailable = `cannot be listed: ${(err as Error).message}`;
}

const factory: DriverFactory = {
  name: 'Vagrant VMs',
  maxHosts: machines.length,
  unavailable: () => unavailable,
  create: ({ hosts }) => VagrantDriver.create({ hosts }),
};

dataplaneScenarios(factory);
weftctlScenarios(factory);
