/**
 * What a kernel monitor keeps while its consumer has paused it (KernelMonitor.pause): items in arrival
 * order, all handed over by the last resume. Pauses nest.
 */
export class PauseBacklog<T> {
  private depth = 0;
  private items: T[] = [];

  get paused(): boolean {
    return this.depth > 0;
  }

  pause(): void {
    this.depth++;
  }

  keep(item: T): void {
    this.items.push(item);
  }

  /** Ends one pause; the last hands every item kept to `deliver`, in order, until it returns false. */
  resume(deliver: (item: T) => boolean): void {
    if (this.depth === 0 || --this.depth > 0) return;
    const items = this.items;
    this.items = [];
    for (const item of items) if (!deliver(item)) return;
  }

  clear(): void {
    this.items = [];
  }
}
