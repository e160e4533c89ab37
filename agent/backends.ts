/**
 * The one place that maps a backend type (the config's Backend.Type) to its implementation. Each backend
 * lives in its own folder (agent/vxlan, agent/hostgw, agent/udp, agent/wireguard) behind the Backend
 * interface; the config parser accepts exactly these types.
 */
import type { Backend, BackendContext } from './backend.js';
import { HostGwBackend } from './hostgw/hostgw.js';
import { createUdpBackend } from './udp/udp.js';
import { createVxlanBackend } from './vxlan/mode.js';
import { WireguardBackend } from './wireguard/wireguard.js';

export function createBackend(context: BackendContext): Backend {
  const backend = context.config.backend;
  switch (backend.type) {
    case 'vxlan': {
      const override = context.vxlanUserspace;
      return createVxlanBackend(context, backend, override ?? backend.userspace, override === undefined ? 'Backend.Userspace' : '--vxlan-userspace');
    }
    case 'host-gw':
      return new HostGwBackend(context);
    case 'udp':
      return createUdpBackend(context, backend);
    case 'wireguard':
      return new WireguardBackend(context, backend);
  }
}
