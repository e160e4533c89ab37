import { WeftError } from '../../common/errors.js';

/** Every subnet between SubnetMin and SubnetMax is leased or reserved. */
export class NoFreeSubnetError extends WeftError {
  constructor(range: string, leased: number, reserved: number) {
    super(
      'WEFT_NO_FREE_SUBNET',
      `no free subnet in ${range}: ${leased} leased and ${reserved} reserved; widen SubnetMin/SubnetMax or revoke stale leases`,
    );
  }
}

/** Creating a lease kept losing races to other hosts; each attempt had re-read the leases first. */
export class LeaseContentionError extends WeftError {
  constructor(attempts: number) {
    super('WEFT_LEASE_CONTENTION', `could not create a lease after ${attempts} attempts: other hosts kept taking the chosen subnets`);
  }
}

/** The agent was stopped while it was waiting for etcd or for a valid config. */
export class RegistryStoppedError extends WeftError {
  constructor() {
    super('WEFT_REGISTRY_STOPPED', 'the registry was stopped');
  }
}
