/**
 * Child side of test/netns.ts: `node netns-child.js <module path> <export name>`, JSON argument on stdin.
 * Imports the module, awaits the export called with the argument, prints one result line and lets the
 * process end on its own (no process.exit: a leaked handle must show up as a hang).
 */
import { pathToFileURL } from 'node:url';

const RESULT_MARKER = '@@WEFT_NETNS_RESULT@@';

async function readStdin(): Promise<string> {
  let text = '';
  process.stdin.setEncoding('utf8');
  for await (const chunk of process.stdin) text += chunk as string;
  return text;
}

function report(payload: unknown): void {
  process.stdout.write(`\n${RESULT_MARKER}${JSON.stringify(payload)}\n`);
}

async function main(): Promise<void> {
  const [modulePath, fnName] = process.argv.slice(2);
  if (!modulePath || !fnName) throw new Error('usage: netns-child.js <module> <export>');
  const input = await readStdin();
  const arg: unknown = input.trim() === '' ? null : JSON.parse(input);
  const mod = (await import(pathToFileURL(modulePath).href)) as Record<string, unknown>;
  const fn = mod[fnName];
  if (typeof fn !== 'function') throw new Error(`${modulePath} has no exported function ${fnName}`);
  const value: unknown = await (fn as (a: unknown) => unknown)(arg);
  report({ ok: true, value: value ?? null });
}

main().catch((err: unknown) => {
  const e = err as { name?: string; message?: string; code?: unknown; errnoName?: unknown; stack?: string };
  report({
    ok: false,
    error: {
      name: e?.name,
      message: e?.message ?? String(err),
      code: typeof e?.code === 'string' ? e.code : undefined,
      errnoName: typeof e?.errnoName === 'string' ? e.errnoName : undefined,
      stack: e?.stack,
    },
  });
  process.exitCode = 1;
});
