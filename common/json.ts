/**
 * Limits for JSON read from etcd. Any host can write there, so a value may be huge or nested thousands of
 * levels deep: JSON.parse copes, but JSON.stringify and every other recursive walk of such a value overflow
 * the stack. What weft keeps of a value is checked against these limits first.
 */

/**
 * How deep `value` nests (a scalar is 0, `{}` and `[]` are 1, `{"a":[1]}` is 2), counted without recursion
 * and only up to `limit`: anything deeper returns `limit + 1`.
 */
export function jsonDepth(value: unknown, limit: number): number {
  let deepest = 0;
  const stack: { value: unknown; depth: number }[] = [{ value, depth: 0 }];
  for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
    if (typeof item.value !== 'object' || item.value === null) continue;
    const depth = item.depth + 1;
    if (depth > limit) return limit + 1;
    if (depth > deepest) deepest = depth;
    for (const child of Object.values(item.value)) if (typeof child === 'object' && child !== null) stack.push({ value: child, depth });
  }
  return deepest;
}

/** `text` as it would appear in a message: cut to `max` characters, so that a hostile key or value cannot flood a log line. */
export function excerpt(text: string, max = 120): string {
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length} characters)`;
}
