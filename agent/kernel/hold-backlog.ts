/**
 * What a kernel monitor keeps while its consumer holds it (KernelMonitor.hold): items in arrival order, all
 * handed over by the last release. Holds nest.
 */
export class HoldBacklog<T> {
  private depth = 0;
  private items: T[] = [];

  get holding(): boolean {
    return this.depth > 0;
  }

  hold(): void {
    this.depth++;
  }

  keep(item: T): void {
    this.items.push(item);
  }

  /** Ends one hold; the last hands every item kept to `deliver`, in order, until it returns false. */
  release(deliver: (item: T) => boolean): void {
    if (this.depth === 0 || --this.depth > 0) return;
    const items = this.items;
    this.items = [];
    for (const item of items) if (!deliver(item)) return;
  }

  clear(): void {
    this.items = [];
  }
}
