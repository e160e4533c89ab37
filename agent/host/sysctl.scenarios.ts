/** Run inside a network namespace by sysctl.test.ts (through test/netns.ts). */
import { enableForwarding, IPV4_FORWARD, IPV6_FORWARD, readSysctl, type ForwardingResult } from './sysctl.js';

/** enableForwarding with these options, or with none at all (its defaults) when `arg` is null. */
export async function forwarding(
  arg: { ipv4: boolean; ipv6: boolean } | null,
): Promise<{ before: Record<string, string>; result: ForwardingResult }> {
  const before = { [IPV4_FORWARD]: await readSysctl(IPV4_FORWARD), [IPV6_FORWARD]: await readSysctl(IPV6_FORWARD) };
  const result = arg === null ? await enableForwarding() : await enableForwarding(arg);
  return { before, result };
}
