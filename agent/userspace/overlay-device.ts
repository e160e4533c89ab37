/** How the userspace path sets up its overlay device (the near end of its veth pair). */
import type { FeatureProfile } from '../kernel/index.js';

/**
 * Largest GSO frame the kernel may hand the overlay device: with the 14-byte Ethernet header it stays below
 * libpcap's 65535-byte snapshot length (cap's, fixed), which would otherwise cut the largest TSO frames.
 */
export const OVERLAY_GSO_MAX_SIZE = 60_000;

/**
 * The overlay device (near end): checksum offload and TCP segmentation offload stay on, so that a TCP
 * sender's 64 KiB GSO frames cross the kernel's forwarding path once and reach libpcap whole — the
 * transmit worker splits them into MTU-sized segments itself (and finishes checksums, which offload leaves
 * to it). Every other segmentation offload is off: the kernel then segments those frames in software
 * before the device, since the worker splits TCP over IPv4 only.
 */
export const OVERLAY_FEATURES: FeatureProfile = {
  on: ['tx-scatter-gather', 'tx-checksum-ip-generic', 'tx-tcp-segmentation', 'tx-tcp-ecn-segmentation', 'tx-tcp-mangleid-segmentation'],
  off: [
    'tx-tcp6-segmentation',
    'tx-udp-segmentation',
    'tx-gso-list',
    'tx-gso-partial',
    'tx-udp_tnl-segmentation',
    'tx-udp_tnl-csum-segmentation',
    'tx-gre-segmentation',
    'tx-gre-csum-segmentation',
    'tx-ipxip4-segmentation',
    'tx-ipxip6-segmentation',
    'tx-sctp-segmentation',
    'tx-esp-segmentation',
  ],
};
