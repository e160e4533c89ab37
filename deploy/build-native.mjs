#!/usr/bin/env node
/**
 * Builds weft's one native addon, build/Release/weft_native.node (native/weft_native.c, binding.gyp): batched
 * and segmented UDP I/O for the userspace data path, and the kernel monitor's netlink socket
 * (agent/native-addon.ts). Run by `npm run build` after tsc. Uses the node-gyp that npm bundles and the
 * headers of the running Node (no download).
 *
 * In CI (CI set in the environment, as .ci/run sets it) or with WEFT_NATIVE_REQUIRED=1, a failure fails the
 * build (exit 1): CI tests the addon, never the fallback. Elsewhere a failure (no C compiler, say) is reported
 * and the build goes on (exit 0): the data path then uses Node's dgram, slower (docs/userspace.md), and the
 * kernel monitor a child process.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

function nodeGyp() {
  const candidates = [];
  if (process.env.npm_config_node_gyp) candidates.push(process.env.npm_config_node_gyp);
  const npmRoot = spawnSync('npm', ['root', '-g'], { encoding: 'utf8' });
  if (npmRoot.status === 0) candidates.push(join(npmRoot.stdout.trim(), 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  candidates.push(join(dirname(dirname(process.execPath)), 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  return candidates.find((path) => existsSync(path));
}

const ci = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false';
const required = ci ? 'CI' : process.env.WEFT_NATIVE_REQUIRED === '1' ? 'WEFT_NATIVE_REQUIRED=1' : undefined;

function fail(message) {
  if (required !== undefined) {
    console.error(`weft: error: native addon not built (${message}); ${required} requires it, so the build fails`);
    process.exit(1);
  }
  console.error(
    `weft: warning: native addon not built (${message}); falling back: the userspace data path will use dgram, the kernel monitor a child process`,
  );
  process.exit(0);
}

if (process.platform !== 'linux') fail(`${process.platform} is not Linux`);
const gyp = nodeGyp();
if (gyp === undefined) fail('node-gyp not found');
const args = [gyp, 'rebuild', '--silent'];
// The headers of the Node that runs this, when installed next to it (Debian's nodejs, official tarballs).
const nodedir = process.env.npm_config_nodedir ?? dirname(dirname(process.execPath));
if (existsSync(join(nodedir, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${nodedir}`);
const run = spawnSync(process.execPath, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
if (run.status !== 0) fail(`node-gyp exited with ${run.status ?? run.signal}`);
if (!existsSync(join(root, 'build', 'Release', 'weft_native.node'))) fail('node-gyp made no build/Release/weft_native.node');
