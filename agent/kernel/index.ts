export * from './types.js';
export { NetlinkClosedError, NetlinkError, errnoName, isNetlinkErrno } from './errors.js';
export { NetlinkKernel, openKernel, vxlanMismatches, type Kernel, type KernelOptions } from './kernel.js';
export { openMonitor, type KernelMonitor, type MonitorEvents, type MonitorGroup, type MonitorOptions } from './monitor.js';
export { canonicalIp, canonicalPrefix, decodeChange } from './codec.js';
export type { RtnlSocketOptions, RtnlStats } from './socket.js';
