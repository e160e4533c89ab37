/**
 * doctor's check of the vxlan backend's device: kernel VXLAN as weftd makes it (VNI, port, local address,
 * parent, learning, MTU, VtepMAC, up, the lease's address), or the userspace path's veth where weftd runs
 * that (Backend.Userspace / --vxlan-userspace), and no other device on the same VNI and port.
 */
import type { VxlanBackendConfig } from '../../common/config.js';
import { vxlanOverhead } from '../../common/dataplane.js';
import { checkOverlayAddress, HEALS, RESTART, type DeviceCheck, type DeviceCheckInput } from '../doctor-check.js';
import { vxlanMismatches } from '../kernel/index.js';
import { createLogger } from '../log.js';
import { checkUserspaceDevice, reportIpv4Only } from '../userspace/doctor.js';
import { userspaceVxlanBackend } from './mode.js';
import { VxlanBackend } from './vxlan.js';

export async function checkVxlanDevice(input: DeviceCheckInput, vxlan: VxlanBackendConfig): Promise<DeviceCheck> {
  const { family, view, own, links } = input;
  const context = { kernel: input.kernel, log: createLogger('silent'), config: input.config, publicInterface: view };
  const backend = new VxlanBackend(context, vxlan);
  const result: DeviceCheck = { backend, overlay: undefined, routesOnly: false, overhead: vxlanOverhead(view.address.family) };
  const name = backend.deviceName;
  const vtepMac = typeof backend.backendData.VtepMAC === 'string' ? backend.backendData.VtepMAC : undefined;
  const mode = input.vxlanUserspace ?? vxlan.userspace;
  if (family === 6 && mode === 'always') {
    try {
      userspaceVxlanBackend(context, vxlan);
    } catch (err) {
      if (!reportIpv4Only(input, err)) throw err;
      return { ...result, overlay: null };
    }
  }
  const link = links.find((candidate) => candidate.name === name) ?? null;
  if (link !== null && link.kind === 'veth') {
    // the userspace data path (Backend.Userspace always, or auto without kernel VXLAN)
    if (mode === 'never') {
      input.add(
        'device',
        'fail',
        `${name} is the userspace path's veth but Userspace is "never" (kernel VXLAN wanted)`,
        `ip link del ${name}, then ${RESTART}`,
      );
    }
    return { ...result, routesOnly: true, overlay: await checkUserspaceDevice(input, name, backend.mtu, vtepMac) };
  }
  if (mode === 'always') {
    if (link === null) {
      input.add(
        'device',
        'fail',
        `${name} does not exist (the userspace data path's veth: Userspace is "always")`,
        `weftd creates it: ${RESTART}`,
      );
      return { ...result, overlay: null };
    }
    input.add(
      'device',
      'fail',
      `Userspace is "always" but ${name} is a ${link.kind ?? 'plain'} device, not the userspace path's veth`,
      `ip link del ${name}, then ${RESTART}`,
    );
  }
  // weft.<VNI> and weft-v6.<VNI> share VNI and port: the kernel tells them apart by the local address's family
  const sameUnderlay = (local: string | null | undefined): boolean =>
    local === null || local === undefined || local.includes(':') === (family === 6);
  const clash = links.filter(
    (candidate) =>
      candidate.name !== name &&
      candidate.vxlan !== null &&
      candidate.vxlan.vni === vxlan.vni &&
      candidate.vxlan.port === vxlan.port &&
      sameUnderlay(candidate.vxlan.local),
  );
  for (const other of clash) {
    input.add(
      'device',
      'fail',
      `${other.name} also uses VNI ${vxlan.vni} on UDP port ${vxlan.port}: the kernel delivers the port's packets to one device only`,
      `delete it if it is a leftover of flanneld (ip link del ${other.name}), then ${RESTART}`,
    );
  }
  if (link === null) {
    input.add('device', 'fail', `${name} does not exist`, `weftd creates it: ${RESTART}`);
    return { ...result, overlay: null };
  }
  let problems = 0;
  const fail = (message: string, fix: string): void => {
    problems++;
    input.add('device', 'fail', message, fix);
  };
  const spec = backend.spec;
  const actual: Record<string, unknown> = {
    kind: link.kind,
    vni: link.vxlan?.vni,
    port: link.vxlan?.port,
    local: link.vxlan?.local,
    parentIndex: link.vxlan?.parentIndex,
    learning: link.vxlan?.learning,
    gbp: link.vxlan?.gbp,
    mtu: link.mtu,
    mac: link.mac,
  };
  const wanted: Record<string, unknown> = { ...spec, kind: 'vxlan', parentIndex: `${view.index} (${view.name})` };
  for (const field of vxlanMismatches(link, spec)) {
    const fix =
      field === 'mtu' || field === 'mac'
        ? `${HEALS}; by hand: ip link set ${name} ${field === 'mtu' ? `mtu ${backend.mtu}` : `address ${vtepMac}`}`
        : `weftd recreates a device that does not match the config: ${RESTART} (or ip link del ${name} and let weftd create it)`;
    fail(`${name} ${field} is ${JSON.stringify(actual[field])}, want ${JSON.stringify(wanted[field])}`, fix);
  }
  if (!link.up) fail(`${name} is down`, `${HEALS}; by hand: ip link set ${name} up`);
  const leaseData = family === 4 ? own?.attrs.backendData : own?.attrs.backendV6Data;
  const leaseMac = leaseData?.VtepMAC;
  if (typeof leaseMac === 'string' && link.mac !== null && leaseMac.toLowerCase() !== link.mac) {
    fail(
      `the lease announces ${family === 4 ? 'VtepMAC' : 'BackendV6Data.VtepMAC'} ${leaseMac} but ${name} has ${link.mac}: peers' frames are addressed to the wrong MAC`,
      `weftd re-announces its VtepMAC when it starts: ${RESTART}`,
    );
  }
  await checkOverlayAddress(input, link, fail);
  if (problems === 0) {
    input.add(
      'device',
      'ok',
      `${name}: VNI ${vxlan.vni}, port ${vxlan.port}, local ${view.address} on ${view.name}, MTU ${link.mtu}, VtepMAC ${link.mac}, up`,
    );
  }
  return { ...result, overlay: link };
}
