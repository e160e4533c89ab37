/**
 * The scenario suites take a DriverFactory, so that one suite runs on every driver: the namespace lab
 * (e2e/scenarios/*.test.ts, part of `npm test`) and the Vagrant VMs (e2e/vagrant/vagrant.e2e.ts, `npm run e2e:vagrant`).
 */
import type { ClusterDriver } from '../lab/index.js';
import { netnsUnavailable } from '../../test/netns.js';
import { requireOrSkip } from '../../test/requirements.js';
import { NetnsLab } from '../lab/index.js';
import { dockerUnavailable, NetnsDocker, type DockerHosts } from '../lab/docker.js';

export interface DriverFactory {
  /** Shown in the suite titles, e.g. "namespace lab". */
  readonly name: string;
  /** The most hosts one cluster can have (a scenario that needs more is skipped). */
  readonly maxHosts: number;
  /** Undefined when the driver can run here, else why not (the suites are then skipped). */
  unavailable(): string | undefined;
  /** A fresh cluster of `hosts` hosts with etcd running and empty; the scenario destroy()s it. */
  create(options: { hosts: number }): Promise<ClusterDriver>;
}

/** The namespace lab on this machine (root needed). */
export const netnsFactory: DriverFactory = {
  name: 'namespace lab',
  maxHosts: 99,
  unavailable: netnsUnavailable,
  create: ({ hosts }) => NetnsLab.create({ hosts }),
};

/** Skips the running test (fails it in CI) when the factory cannot give `hosts` hosts. */
export function requireHosts(context: Mocha.Context, factory: Pick<DriverFactory, 'name' | 'maxHosts'>, hosts: number): void {
  requireOrSkip(context, hosts > factory.maxHosts ? `needs ${hosts} hosts, the ${factory.name} has ${factory.maxHosts}` : undefined);
}

/** A `before` hook that skips the whole suite (fails it in CI), saying why, when the driver cannot run here. */
export function skipUnlessAvailable(context: Mocha.Context, factory: Pick<DriverFactory, 'name' | 'unavailable'>): void {
  const why = factory.unavailable();
  requireOrSkip(context, why === undefined ? undefined : `the ${factory.name} ${why}`);
}

/**
 * The hooks every scenario suite needs, registered in the calling describe(): skip the suite (saying why; in CI, fail it) when
 * the driver cannot run here, and destroy every lab a test made once the test is over, also when it failed.
 * Returns what tests pass their lab's creation through.
 */
export function useLabs(
  factory: Pick<DriverFactory, 'name' | 'unavailable'>,
): <Lab extends { destroy(): Promise<void> }>(creating: Promise<Lab>) => Promise<Lab> {
  const labs: { destroy(): Promise<void> }[] = [];
  before(function () {
    skipUnlessAvailable(this, factory);
  });
  afterEach(async function () {
    await Promise.all(labs.splice(0).map((lab) => lab.destroy()));
  });
  return async (creating) => {
    const lab = await creating;
    labs.push(lab);
    return lab;
  };
}

/** A cluster whose hosts can run docker (see e2e/lab/docker.ts). */
export interface DockerCluster {
  readonly driver: ClusterDriver;
  readonly docker: DockerHosts;
  destroy(): Promise<void>;
}

export interface DockerClusterFactory {
  readonly name: string;
  readonly maxHosts: number;
  unavailable(): string | undefined;
  create(options: { hosts: number }): Promise<DockerCluster>;
}

/** The namespace lab with a docker machine per host (root, Debian's docker.io, systemd and busybox-static needed). */
export const netnsDockerFactory: DockerClusterFactory = {
  name: 'namespace lab',
  maxHosts: 99,
  unavailable: () => netnsFactory.unavailable() ?? dockerUnavailable(),
  async create({ hosts }) {
    const lab = await NetnsLab.create({ hosts });
    return { driver: lab, docker: new NetnsDocker(lab), destroy: () => lab.destroy() };
  },
};
