#!/usr/bin/env node
/**
 * Records what is being built in dist/build-info.json (run by `npm run build` after tsc): the version from
 * package.json, the git commit ("-dirty" when tracked files differ from it; "unknown" outside a git checkout,
 * e.g. in the Vagrant VMs, whose copy has no .git) and `source`, a SHA-256 over the files that make the
 * installed agent, which needs no git: the Vagrant driver compares it between the checkout and its VMs.
 * weftd exports the first two as weft_build_info (agent/build-info.ts).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
/** What deploy/install.sh installs or builds from, and what provisions a Vagrant VM; tests excluded. */
const SOURCES = [
  'agent',
  'common',
  'native',
  'deploy',
  'e2e/vagrant/provision.sh',
  'package.json',
  'package-lock.json',
  'binding.gyp',
  'tsconfig.json',
];
const EXCLUDED = /\.(test|scenarios)\.ts$/;

function files(path) {
  const full = join(root, path);
  if (!statSync(full, { throwIfNoEntry: false })) return [];
  if (!statSync(full).isDirectory()) return [path];
  return readdirSync(full, { withFileTypes: true }).flatMap((entry) => {
    const child = relative(root, join(full, entry.name)).split(sep).join('/');
    if (entry.isDirectory()) return files(child);
    return entry.isFile() && !EXCLUDED.test(entry.name) ? [child] : [];
  });
}

function sourceHash() {
  const hash = createHash('sha256');
  for (const file of SOURCES.flatMap(files).sort()) {
    hash.update(
      `${file}\0${createHash('sha256')
        .update(readFileSync(join(root, file)))
        .digest('hex')}\n`,
    );
  }
  return hash.digest('hex');
}

function revision() {
  const git = (...args) => spawnSync('git', ['-C', root, ...args], { encoding: 'utf8' });
  const head = git('rev-parse', '--verify', 'HEAD');
  if (head.status !== 0) return 'unknown';
  const dirty = git('diff', '--quiet', 'HEAD', '--').status !== 0;
  return `${head.stdout.trim()}${dirty ? '-dirty' : ''}`;
}

const version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version;
const info = { version, revision: process.env.WEFT_REVISION || revision(), source: sourceHash() };
mkdirSync(join(root, 'dist'), { recursive: true });
const target = join(root, 'dist', 'build-info.json');
writeFileSync(`${target}.tmp`, `${JSON.stringify(info, null, 2)}\n`);
renameSync(`${target}.tmp`, target);
