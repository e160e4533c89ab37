#!/usr/bin/env node
/**
 * Bundles what ships (run by `npm run build` after tsc, from tsc's output): weftd and weftctl, and the two
 * programs weftd spawns (the kernel monitor's child, the userspace data-path worker), into dist/bin/ with
 * esbuild. Node then reads a handful of files at start instead of some 500 modules, with no package.json
 * lookups and no scan of CommonJS packages for their exports; docs/benchmarks.md has the figures.
 *
 * Code is split into shared chunks (dist/bin/lib-*.js) rather than one file per program: what a program
 * imports dynamically (weftd's agent, after its flags) stays in chunks that `--help` and `--version` never
 * read, and every module has one instance whichever program loads it.
 *
 * Paths relative to a module that must keep working from dist/bin/:
 * - weft's own (import.meta.url): dist/bin/ is as deep as dist/agent/, so ../../build/Release/weft_native.node,
 *   ../build-info.json and ../../package.json name the same files, and ./monitor-child.js and ./worker.js
 *   are entry points here.
 * - CommonJS packages' __dirname and __filename are the bundle's: netlink's native binding is looked up in its
 *   package directory (below). etcd3 would read ../proto/rpc.proto: the bundle hands it the definitions already
 *   parsed instead (below), so there is no .proto file to ship.
 * - `cap` is required at run time (agent/userspace/native.ts) from node_modules, as the addon is loaded from
 *   build/Release: native code stays where npm and node-gyp put it.
 */
import { chmodSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));
const out = join(root, 'dist', 'bin');

/** Output name → tsc's output. */
const ENTRY_POINTS = {
  weftd: 'dist/agent/cli/weftd.js',
  weftctl: 'dist/agent/cli/weftctl.js',
  'monitor-child': 'dist/agent/kernel/monitor-child.js',
  worker: 'dist/agent/userspace/worker.js',
};
const PROGRAMS = ['weftd', 'weftctl'];

// Each output file gets its own require (esbuild's CommonJS wrappers call it for node's built-in modules),
// __filename and __dirname; `define` points the packages' free __dirname/__filename at the latter.
const BANNER = [
  "import { createRequire as __weftCreateRequire } from 'node:module';",
  "import { fileURLToPath as __weftFileURLToPath } from 'node:url';",
  'const require = __weftCreateRequire(import.meta.url);',
  'const __weftFilename = __weftFileURLToPath(import.meta.url);',
  "const __weftDirname = __weftFileURLToPath(new URL('.', import.meta.url));",
].join(' ');

/** netlink 0.3.0 (pinned) finds its binding with node-gyp-build from its own __dirname: point it at the package. */
const netlinkBinding = {
  name: 'netlink-binding',
  setup(build) {
    build.onLoad({ filter: /[\\/]node_modules[\\/]netlink[\\/]dist[\\/]raw\.js$/ }, (args) => {
      const text = readFileSync(args.path, 'utf8');
      const lookup = "require('node-gyp-build')(__dirname + '/..')";
      if (!text.includes(lookup)) throw new Error(`${args.path} no longer loads its binding with ${lookup}: update deploy/bundle.mjs`);
      return {
        contents: text.replace(lookup, "require('node-gyp-build')(require('path').dirname(require.resolve('netlink/package.json')))"),
        loader: 'js',
      };
    });
  },
};

/**
 * etcd3 parses etcd's .proto files each time it is loaded (@grpc/proto-loader's loadSync, some 10 ms of every
 * start). The bundle gives it the same definitions as protobufjs JSON, parsed here by the protobufjs that etcd3's
 * proto-loader uses, with the option of its loadSync call that acts at parse time (keepCase); proto-loader's
 * fromJSON builds the package definition from them with the options etcd3 passes.
 */
const etcdDefinitions = {
  name: 'etcd-definitions',
  setup(build) {
    build.onLoad({ filter: /[\\/]node_modules[\\/]etcd3[\\/]lib[\\/]connection-pool\.js$/ }, (args) => {
      const text = readFileSync(args.path, 'utf8');
      const load = '(0, proto_loader_1.loadSync)(`${__dirname}/../proto/rpc.proto`, {\n    keepCase: true,';
      if (!text.includes(load)) throw new Error(`${args.path} no longer loads etcd's definitions with ${load}: update deploy/bundle.mjs`);
      const etcd3 = createRequire(args.path);
      const protobuf = createRequire(etcd3.resolve('@grpc/proto-loader'))('protobufjs');
      const definitions = new protobuf.Root().loadSync(join(dirname(args.path), '..', 'proto', 'rpc.proto'), { keepCase: true });
      return {
        contents: text.replace(load, `(0, proto_loader_1.fromJSON)(${JSON.stringify(definitions.toJSON())}, {\n    keepCase: true,`),
        loader: 'js',
      };
    });
  },
};

rmSync(out, { recursive: true, force: true });
const result = await esbuild.build({
  absWorkingDir: root,
  entryPoints: ENTRY_POINTS,
  outdir: out,
  chunkNames: 'lib-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  banner: { js: BANNER },
  define: { __dirname: '__weftDirname', __filename: '__weftFilename' },
  plugins: [netlinkBinding, etcdDefinitions],
  sourcemap: 'linked',
  // Node keeps each file's source in memory; without the comments and indentation it is a third smaller, and all
  // ASCII (one comment with a '±' made node hold a whole chunk as two bytes a character). Names are kept, so
  // stack traces still name the functions; the source maps point at the original lines.
  minifyWhitespace: true,
  legalComments: 'linked',
  metafile: true,
  logLevel: 'warning',
});

for (const program of PROGRAMS) chmodSync(join(out, `${program}.js`), 0o755);

const bytes = Object.entries(result.metafile.outputs)
  .filter(([file]) => file.endsWith('.js'))
  .reduce((sum, [, output]) => sum + output.bytes, 0);
console.log(`weft: bundled ${Object.keys(ENTRY_POINTS).join(', ')} into dist/bin (${(bytes / 2 ** 20).toFixed(1)} MiB of JavaScript)`);
