/**
 * CI's contract: .ci/run installs everything `npm test` needs (so that no test is skipped for want of a tool)
 * and runs in CI mode, where the build fails without weft's native addon, and the summary reporter lists
 * skipped tests, counting in CI those not on the declared list as failed.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('../..', import.meta.url));

describe('CI: .ci/run and the summary line', function () {
  this.timeout(60_000);

  it('.ci/run installs every Debian package deploy/ensure-deps.sh installs for the tests', function () {
    const ensure = readFileSync(join(REPO, 'deploy', 'ensure-deps.sh'), 'utf8');
    const packages = new Set(
      [...ensure.matchAll(/\[[\w-]+\]=([\w.-]+)/g), ...ensure.matchAll(/package_of\[[\w-]+\]=([\w.-]+)/g)].map((match) => match[1]),
    );
    packages.add('libpcap-dev');
    for (const wanted of ['systemd', 'prometheus', 'vagrant', 'python3'])
      assert.ok(packages.has(wanted), `ensure-deps.sh installs ${wanted} for the tests`);
    const ci = readFileSync(join(REPO, '.ci', 'run'), 'utf8');
    const install = /apt-get install[^\n]*\\\n((?:[^\n]*\\\n)*[^\n]*)/.exec(ci)?.[1] ?? '';
    const installed = new Set(install.split(/\s+/).filter((word) => /^[a-z][\w.-]+$/.test(word)));
    for (const name of packages) assert.ok(installed.has(name), `.ci/run installs ${name}`);
  });

  it('.ci/run runs in CI mode whatever the caller set (no fallback for the native addon, undeclared skips fail)', function () {
    const ci = readFileSync(join(REPO, '.ci', 'run'), 'utf8');
    const exported = ci.indexOf('\nexport CI=true\n');
    assert.ok(exported > 0, '.ci/run exports CI=true');
    assert.ok(exported < ci.indexOf('npm test'), 'before npm test');
  });

  describe('deploy/build-native.mjs when the addon does not build', function () {
    let dir: string;

    before(function () {
      dir = mkdtempSync(join(tmpdir(), 'weft-native-'));
      // stands in for npm's node-gyp and fails as a missing compiler would, touching nothing
      writeFileSync(join(dir, 'node-gyp.js'), "console.error('gyp ERR! stack Error: not found: make'); process.exit(1);\n");
    });

    after(function () {
      rmSync(dir, { recursive: true, force: true });
    });

    function build(env: Record<string, string>): { code: number | null; stderr: string } {
      const result = spawnSync(process.execPath, [join(REPO, 'deploy', 'build-native.mjs')], {
        encoding: 'utf8',
        env: { ...process.env, CI: '', WEFT_NATIVE_REQUIRED: '', npm_config_node_gyp: join(dir, 'node-gyp.js'), ...env },
        timeout: 30_000,
      });
      return { code: result.status, stderr: result.stderr };
    }

    it('fails the build in CI, saying why', function () {
      const failed = build({ CI: 'true' });
      assert.equal(failed.code, 1, failed.stderr);
      assert.match(failed.stderr, /gyp ERR! stack Error: not found: make/, "node-gyp's own output is shown");
      assert.match(failed.stderr, /^weft: error: native addon not built \(node-gyp exited with 1\); CI requires it, so the build fails$/m);
      assert.equal(build({ WEFT_NATIVE_REQUIRED: '1' }).code, 1);
    });

    it('falls back elsewhere, and says so in the build output', function () {
      for (const CI of ['', 'false']) {
        const fallback = build({ CI });
        assert.equal(fallback.code, 0, fallback.stderr);
        assert.match(
          fallback.stderr,
          /^weft: warning: native addon not built \(node-gyp exited with 1\); falling back: the userspace data path will use dgram, the kernel monitor a child process$/m,
        );
      }
    });
  });

  describe('the summary reporter', function () {
    let dir: string;

    before(function () {
      dir = mkdtempSync(join(tmpdir(), 'weft-summary-'));
      writeFileSync(
        join(dir, 'spec.mjs'),
        [
          "describe('suite', function () {",
          "  it('passes', function () {});",
          "  it('needs something absent', function () { this.skip(); });",
          "  it('is pending, without a function');",
          "  it.skip('is skipped with it.skip', function () {});",
          "  describe.skip('skipped with describe.skip', function () { it('one', function () {}); });",
          "  describe('skipped by its before hook', function () { before(function () { this.skip(); }); it('one', function () {}); it('two', function () {}); });",
          "  describe('skipped by its beforeEach hook', function () { beforeEach(function () { this.skip(); }); it('one', function () {}); });",
          "  it('also ends like the declared one; not run here: PID 1 is not systemd', function () { this.skip(); });",
          '});',
          "describe('deploy/: weftd.service under systemd', function () {",
          "  it('starts for real: as the declared one; not run here: PID 1 is not systemd', function () { this.skip(); });",
          '});',
          '',
        ].join('\n'),
      );
      writeFileSync(
        join(dir, 'declared.mjs'),
        [
          "describe('deploy/: weftd.service under systemd', function () {",
          "  it('passes', function () {});",
          "  it('fails', function () { throw new Error('no'); });",
          "  it('starts for real: as the declared one; not run here: PID 1 is not systemd', function () { this.skip(); });",
          '});',
          '',
        ].join('\n'),
      );
    });

    after(function () {
      rmSync(dir, { recursive: true, force: true });
    });

    function mocha(spec: string, env: Record<string, string>): { code: number | null; lines: string[] } {
      const result = spawnSync(
        process.execPath,
        [
          join(REPO, 'node_modules', 'mocha', 'bin', 'mocha.js'),
          '--no-config',
          '--exit',
          '--reporter',
          join(REPO, 'test', 'summary-reporter.cjs'),
          join(dir, spec),
        ],
        {
          encoding: 'utf8',
          env: { ...process.env, CI: '', ...env },
          timeout: 30_000,
        },
      );
      return { code: result.status, lines: result.stdout.trimEnd().split('\n') };
    }

    const undeclared = [
      'suite needs something absent',
      'suite is pending, without a function',
      'suite is skipped with it.skip',
      'suite skipped with describe.skip one',
      'suite skipped by its before hook one',
      'suite skipped by its before hook two',
      'suite skipped by its beforeEach hook one',
      'suite also ends like the declared one; not run here: PID 1 is not systemd',
    ];

    it('in CI, counts every kind of skip that is not declared as failed, in the summary line and the exit status, and lists both kinds', function () {
      const { code, lines } = mocha('spec.mjs', { CI: 'true' });
      assert.equal(lines.at(-1), '1 passed, 8 failed');
      assert.equal(code, 8, 'mocha exits with the failures the summary counts');
      for (const title of undeclared)
        assert.ok(lines.includes(`skipped, not declared (counts as failed in CI): ${title}`), `${title}\n${lines.join('\n')}`);
      assert.ok(
        lines.some((line) =>
          line.startsWith(
            'skipped (declared): deploy/: weftd.service under systemd starts for real: as the declared one; not run here: PID 1 is not systemd (starting weftd.service for real needs systemd',
          ),
        ),
        lines.join('\n'),
      );
      assert.equal(lines.at(-2), '9 skipped');
    });

    it('outside CI, lists the skips without failing them', function () {
      const { code, lines } = mocha('spec.mjs', {});
      assert.equal(lines.at(-1), '1 passed, 0 failed');
      assert.equal(code, 0);
      for (const title of undeclared) assert.ok(lines.includes(`skipped, not declared: ${title}`), `${title}\n${lines.join('\n')}`);
    });

    it('in CI, lets a declared skip pass and counts a failed test, ending with exactly "N passed, N failed"', function () {
      const { code, lines } = mocha('declared.mjs', { CI: 'true' });
      assert.deepEqual(lines.slice(-3), [
        'skipped (declared): deploy/: weftd.service under systemd starts for real: as the declared one; not run here: PID 1 is not systemd (starting weftd.service for real needs systemd as PID 1; the unit is still checked with systemd-analyze verify and the notifications end to end without systemd)',
        '1 skipped',
        '1 passed, 1 failed',
      ]);
      assert.equal(code, 1);
    });
  });
});
