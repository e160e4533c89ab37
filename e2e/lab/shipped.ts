/**
 * The programs as they ship: package.json's "bin" (the bundles in dist/bin/ that `npm run build` makes and
 * deploy/install.sh installs), so that what the lab runs is what users run, not tsc's per-module output.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('../../..', import.meta.url));

/** The file package.json's "bin" names for `program`, absolute, in the checkout at `repoRoot`. */
export function shippedProgram(program: 'weftd' | 'weftctl', repoRoot: string = REPO): string {
  const bin = (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { bin?: Record<string, string> }).bin?.[program];
  if (bin === undefined) throw new Error(`package.json in ${repoRoot} has no "bin" entry for ${program}`);
  return join(repoRoot, bin);
}
