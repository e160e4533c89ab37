export * from './driver.js';
export * from './helpers.js';
export { shippedProgram } from './shipped.js';
export { NetnsLab, SEGMENTS, ETCD_IP, ETCD_CLIENT_PORT, ETCD_PEER_PORT, IPV6_UNDERLAY, NAMESPACE_PREFIX } from './netns-lab.js';
export type { HostSpec, NetnsLabOptions, SegmentName } from './netns-lab.js';
