/**
 * The one place that maps a backend type (the config's Backend.Type) to its implementation: the backend
 * weftd runs (with its objects per peer, Backend.peerObjects), and doctor's check of its device. Each backend lives in its own folder (agent/vxlan,
 * agent/hostgw, agent/udp, agent/wireguard); the config parser accepts exactly these types.
 */
import type { Backend, BackendContext } from './backend.js';
import type { DeviceCheck, DeviceCheckInput } from './doctor-check.js';
import { checkHostGwDevice } from './hostgw/doctor.js';
import { HostGwBackend } from './hostgw/hostgw.js';
import { checkUdpDevice } from './udp/doctor.js';
import { createUdpBackend } from './udp/udp.js';
import { checkVxlanDevice } from './vxlan/doctor.js';
import { createVxlanBackend } from './vxlan/mode.js';
import { checkWireguardDevice } from './wireguard/doctor.js';
import { WireguardBackend } from './wireguard/wireguard.js';

export function createBackend(context: BackendContext): Backend {
  const backend = context.config.backend;
  switch (backend.type) {
    case 'vxlan': {
      const override = context.vxlanUserspace;
      return createVxlanBackend(
        context,
        backend,
        override ?? backend.userspace,
        override === undefined ? 'Backend.Userspace' : '--vxlan-userspace',
      );
    }
    case 'host-gw':
      return new HostGwBackend(context);
    case 'udp':
      return createUdpBackend(context, backend);
    case 'wireguard':
      return new WireguardBackend(context, backend);
  }
}

/** doctor: checks the devices of the config's backend for one family's plane (the backend's doctor.ts). */
export function checkBackendDevice(input: DeviceCheckInput): Promise<DeviceCheck> {
  const backend = input.config.backend;
  switch (backend.type) {
    case 'vxlan':
      return checkVxlanDevice(input, backend);
    case 'host-gw':
      return checkHostGwDevice(input);
    case 'udp':
      return checkUdpDevice(input, backend);
    case 'wireguard':
      return checkWireguardDevice(input, backend);
  }
}
