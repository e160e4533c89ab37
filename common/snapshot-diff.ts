/** One difference between two versions of a key-value map. */
export type SnapshotChange<V> =
  | { kind: 'added'; key: string; value: V }
  | { kind: 'changed'; key: string; value: V; previous: V }
  | { kind: 'removed'; key: string; previous: V };

/**
 * The changes that turn `before` into `after`. Values are compared with `same`, so an entry that was
 * rewritten with identical content (e.g. a renewed lease) yields no change.
 */
export function diffSnapshots<V>(
  before: ReadonlyMap<string, V>,
  after: ReadonlyMap<string, V>,
  same: (a: V, b: V) => boolean,
): SnapshotChange<V>[] {
  const changes: SnapshotChange<V>[] = [];
  for (const [key, value] of after) {
    const previous = before.get(key);
    if (previous === undefined) changes.push({ kind: 'added', key, value });
    else if (!same(previous, value)) changes.push({ kind: 'changed', key, value, previous });
  }
  for (const [key, previous] of before) {
    if (!after.has(key)) changes.push({ kind: 'removed', key, previous });
  }
  return changes;
}
