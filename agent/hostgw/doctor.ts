/** doctor's check of the host-gw backend's device: it has none; routes go over the public interface. */
import type { DeviceCheck, DeviceCheckInput } from '../doctor-check.js';
import { createLogger } from '../log.js';
import { HostGwBackend } from './hostgw.js';

export async function checkHostGwDevice(input: DeviceCheckInput): Promise<DeviceCheck> {
  const backend = new HostGwBackend({
    kernel: input.kernel,
    log: createLogger('silent'),
    config: input.config,
    publicInterface: input.view,
  });
  return { backend, overlay: undefined, routesOnly: false, overhead: 0 };
}
