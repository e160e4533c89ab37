/**
 * The operator docs against the code they describe: the flags, environment variables and metrics they name
 * exist, and operations.md's table of weftd flags lists every flag and no other.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WeftMetrics } from '../metrics.js';
import { ETCD_OPTIONS, FLANNELD_ONLY_FLAGS } from './env.js';
import { WEFTD_OPTIONS } from './weftd-options.js';

const REPO = fileURLToPath(new URL('../../..', import.meta.url));
const DOCS = ['README.md', 'docs/README.md', 'docs/architecture.md', 'docs/etcd-schema.md', 'docs/operations.md'];

/**
 * Flags of other programs the docs show in commands (iptables, iptables-restore, systemctl, dockerd, etcdctl, kube-*,
 * npm run demo), and flanneld's flags weftd ignores (and names when it does).
 */
const OTHER_TOOLS = new Set([
  'noflush',
  'comment',
  'mark',
  'now',
  'bip',
  'mtu',
  'ipv6',
  'fixed-cidr-v6',
  'lease',
  'allocate-node-cidrs',
  'cluster-cidr',
  'random-fully',
  'docker',
  'iptables',
  ...FLANNELD_ONLY_FLAGS.keys(),
]);

function read(path: string): string {
  return readFileSync(join(REPO, path), 'utf8');
}

/** Every `--flag` in the text (not `---` rules, not the middle of a word). */
function flagsIn(text: string): string[] {
  return [...text.matchAll(/(?:^|[^A-Za-z0-9-])--([a-z][a-z0-9-]*)/g)].map((match) => match[1]);
}

/** weftctl's flags, read from its source: the global etcd ones and every command's `.option(...)`. */
function weftctlFlags(): Set<string> {
  const source = read('agent/cli/weftctl.ts');
  return new Set([
    ...Object.keys(ETCD_OPTIONS),
    'environment-file',
    'help',
    'version',
    ...[...source.matchAll(/\.option\('([a-z0-9-]+)'/g)].map((match) => match[1]),
  ]);
}

/** deploy/install.sh's flags, from its option parser (`--prefix) …`). */
function installFlags(): Set<string> {
  return new Set([...read('deploy/install.sh').matchAll(/^\s+(?:-\w \| )?--([a-z-]+)\)/gm)].map((match) => match[1]));
}

describe('docs: what the operator docs name exists in the code (no root)', function () {
  it('every --flag in the docs is a flag of weftd, weftctl, install.sh or a named other tool', function () {
    const known = new Set([...Object.keys(WEFTD_OPTIONS), ...weftctlFlags(), ...installFlags(), ...OTHER_TOOLS]);
    assert.ok(installFlags().has('destdir'), 'install.sh flags are found');
    for (const doc of DOCS) {
      for (const flag of flagsIn(read(doc))) assert.ok(known.has(flag), `${doc}: --${flag} is no flag of weftd, weftctl or install.sh`);
    }
  });

  it('every WEFTD_* / FLANNELD_* variable in the docs sets a weftd flag or is a flanneld one weftd warns about', function () {
    const flags = new Set([...Object.keys(WEFTD_OPTIONS), ...FLANNELD_ONLY_FLAGS.keys()]);
    for (const doc of DOCS) {
      for (const [, variable] of read(doc).matchAll(/\b((?:WEFTD|FLANNELD)_[A-Z0-9_]+)\b/g)) {
        if (variable === 'WEFTD_' || variable === 'FLANNELD_' || variable.endsWith('_FLAG')) continue;
        const flag = variable
          .replace(/^(WEFTD|FLANNELD)_/, '')
          .toLowerCase()
          .replace(/_/g, '-');
        assert.ok(flags.has(flag), `${doc}: ${variable} is no weftd flag`);
      }
    }
  });

  it("operations.md's table of weftd flags lists every flag and no other", function () {
    const text = read('docs/operations.md');
    const rows = text.split('\n').filter((line) => /^\| `--[a-z]/.test(line));
    const listed = rows.flatMap((row) => [...row.split('|')[1].matchAll(/`--([a-z0-9-]+)`/g)].map((match) => match[1]));
    assert.deepEqual([...listed].sort(), Object.keys(WEFTD_OPTIONS).sort());
    // the defaults column says what the code defaults to, where it is a plain value
    for (const row of rows) {
      const [, flagCell, defaultCell] = row.split('|').map((cell) => cell.trim());
      const flag = /`--([a-z0-9-]+)`/.exec(flagCell)![1] as keyof typeof WEFTD_OPTIONS;
      const option = WEFTD_OPTIONS[flag] as { default?: unknown };
      if (option.default === undefined || Array.isArray(option.default)) continue;
      const value = option.default as string | number | boolean;
      const shown = String(value);
      assert.ok(defaultCell.includes(shown), `--${flag}: the table says "${defaultCell}", the code defaults to ${shown}`);
    }
  });

  it('every weft_* metric in the docs is one weftd exports', function () {
    const defined = new Set(new WeftMetrics({ defaultMetrics: false }).registry.getMetricsAsArray().map((metric) => metric.name));
    assert.ok(defined.has('weft_peers'));
    for (const doc of DOCS) {
      for (const [, metric] of read(doc).matchAll(/\b(weft_[a-z_]+)\b/g))
        assert.ok(defined.has(metric), `${doc}: ${metric} is no metric of weftd`);
    }
  });
});

describe('docs/architecture.md: the two trips through the code', function () {
  it('names, at every step, a file that exists and defines the function or method named beside it', function () {
    const text = read('docs/architecture.md');
    const trips = text.slice(text.indexOf('## Two trips through the code'), text.indexOf('## The reconcile loop'));
    const steps = [...trips.matchAll(/^\d+\. `([\w/.-]+\.ts)` `(\w+)(?:\.(\w+))?`/gm)];
    assert.equal(steps.length, 12, 'six steps for the lease, six for the route');
    for (const [, file, name, member] of steps) {
      const source = read(file);
      const defines = (word: string, kinds: string) =>
        new RegExp(`(?:${kinds})\\s+${word}\\b|^\\s+(?:private |async |static |readonly )*${word}\\s*[(<]`, 'm').test(source);
      assert.ok(defines(name, 'function|class|const|interface'), `${file} defines ${name}`);
      if (member !== undefined) assert.ok(defines(member, 'function'), `${file} defines ${name}.${member}`);
    }
  });
});
