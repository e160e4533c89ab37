/** doctor's check of the udp backend's device: the userspace path's veth `weft.udp` as weftd makes it. */
import type { UdpBackendConfig } from '../../common/config.js';
import type { DeviceCheck, DeviceCheckInput } from '../doctor-check.js';
import { createLogger } from '../log.js';
import { checkUserspaceDevice, reportIpv4Only } from '../userspace/doctor.js';
import { createUdpBackend, UDP_ENCAP_OVERHEAD } from './udp.js';

export async function checkUdpDevice(input: DeviceCheckInput, options: UdpBackendConfig): Promise<DeviceCheck> {
  const context = { kernel: input.kernel, log: createLogger('silent'), config: input.config, publicInterface: input.view };
  let backend: ReturnType<typeof createUdpBackend>;
  try {
    backend = createUdpBackend(context, options);
  } catch (err) {
    if (!reportIpv4Only(input, err)) throw err;
    return { backend: undefined, overlay: null, routesOnly: true, overhead: UDP_ENCAP_OVERHEAD };
  }
  const overlay = await checkUserspaceDevice(input, backend.deviceName, backend.mtu, undefined);
  return { backend, overlay, routesOnly: true, overhead: UDP_ENCAP_OVERHEAD };
}
