/**
 * What this weft is: its version, and the commit and source fingerprint `npm run build` recorded in
 * dist/build-info.json (deploy/build-info.mjs). Exported as weft_build_info; the Vagrant driver compares the
 * fingerprint of the weft installed in its VMs with the checkout's.
 */
import { readFileSync } from 'node:fs';

export interface BuildInfo {
  /** package.json's version. */
  version: string;
  /** The git commit built (with "-dirty" when the tree had changes), or "unknown" outside a git checkout. */
  revision: string;
  /** SHA-256 over the sources that make the agent (deploy/build-info.mjs lists them), or "unknown". */
  source: string;
}

/** dist/build-info.json beside dist/agent/ (in a checkout and as deploy/install.sh installs it). */
const BUILD_INFO_PATH = new URL('../build-info.json', import.meta.url);
const PACKAGE_JSON = new URL('../../package.json', import.meta.url);

let cached: BuildInfo | undefined;

function text(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' && value.length <= 200 ? value : undefined;
}

function readJson(url: URL): Record<string, unknown> | undefined {
  try {
    const parsed: unknown = JSON.parse(readFileSync(url, 'utf8'));
    return typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** The build's facts; without dist/build-info.json (a build by tsc alone) the version from package.json and "unknown". */
export function buildInfo(): BuildInfo {
  if (cached !== undefined) return cached;
  const recorded = readJson(BUILD_INFO_PATH);
  cached = {
    version: text(recorded?.version) ?? text(readJson(PACKAGE_JSON)?.version) ?? 'unknown',
    revision: text(recorded?.revision) ?? 'unknown',
    source: text(recorded?.source) ?? 'unknown',
  };
  return cached;
}
