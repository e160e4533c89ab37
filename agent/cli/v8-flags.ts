/** V8 settings for weftd (its heap, its compiler), applied when this module runs (weftd.ts imports it first). */
import { setFlagsFromString } from 'node:v8';

/**
 * weftd keeps little alive (some 25 MB for 10 000 peers) but allocates in bursts: thousands of leases from
 * etcd at start, tens of thousands of netlink requests and notifications while it programs them. With V8's
 * default heap growth the garbage of a burst pushes the heap far past what is live before a full collection
 * runs (about 190 MB RSS at 10 000 peers); growing the old generation by 15% at a time keeps it near the
 * live size (docs/benchmarks.md has the figures) at no measurable cost in time. The heap controller reads this at every
 * collection.
 */
setFlagsFromString('--heap-growing-percent=15');
/**
 * The young generation: V8 doubles it, up to 2 × 16 MB, whenever many objects survive a scavenge, and a
 * burst (the initial listing, the first full reconcile) makes it grow to the maximum, which stays resident.
 * Keeping it at its initial size (2 × 1 MB) keeps some 25 MB off weftd's RSS at 10 000 peers;
 * the extra scavenges cost no measurable time. Both flags are read when V8 decides, so setting them
 * at run time works; weftd.ts imports this module first and the agent's modules only after its flags, so it
 * applies to loading those too (in the bundle, dist/bin, the chunks weftd's flags need load before it).
 */
setFlagsFromString('--semi-space-growth-factor=1');
/**
 * No optimising compiler (TurboFan) while weftd starts. The start is a burst of code that runs for a fraction of a
 * second: V8 optimises the functions that just got hot, on a second thread, and the result is hardly used. With
 * 2000 peers that compiling took 0.2 s of CPU and some 10 MB of peak RSS (compiler zones, the compiler's own code
 * paged in) and made the start slower, not faster. What runs for as long as weftd does (probing, lease events)
 * is worth optimising: optimiseFromNowOn turns the compiler on once weftd is ready. V8 reads the flag each time it
 * decides whether to optimise, so setting it at run time works.
 */
setFlagsFromString('--no-turbofan');

/** weftd is ready: hot code is optimised from now on. */
export function optimiseFromNowOn(): void {
  setFlagsFromString('--turbofan');
}
