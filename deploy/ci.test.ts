/**
 * CI's contract: .ci/run installs everything `npm test` needs (so that no test is skipped for want of a tool),
 * and the summary reporter lists skipped tests, counting in CI those not on the declared list as failed.
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
    const packages = new Set([...ensure.matchAll(/\[[\w-]+\]=([\w.-]+)/g), ...ensure.matchAll(/package_of\[[\w-]+\]=([\w.-]+)/g)].map((match) => match[1]));
    packages.add('libpcap-dev');
    for (const wanted of ['systemd', 'prometheus', 'vagrant', 'python3']) assert.ok(packages.has(wanted), `ensure-deps.sh installs ${wanted} for the tests`);
    const ci = readFileSync(join(REPO, '.ci', 'run'), 'utf8');
    const install = /apt-get install[^\n]*\\\n((?:[^\n]*\\\n)*[^\n]*)/.exec(ci)?.[1] ?? '';
    const installed = new Set(install.split(/\s+/).filter((word) => /^[a-z][\w.-]+$/.test(word)));
    for (const name of packages) assert.ok(installed.has(name), `.ci/run installs ${name}`);
  });

  describe('the summary reporter', function () {
    let dir: string;

    before(function () {
      dir = mkdtempSync(join(tmpdir(), 'weft-summary-'));
      writeFileSync(join(dir, 'spec.mjs'), [
        "describe('suite', function () {",
        "  it('passes', function () {});",
        "  it('needs something absent', function () { this.skip(); });",
        "  it('starts under systemd; not run here: PID 1 is not systemd', function () { this.skip(); });",
        '});',
        '',
      ].join('\n'));
    });

    after(function () {
      rmSync(dir, { recursive: true, force: true });
    });

    function mocha(env: Record<string, string>): string[] {
      const result = spawnSync(process.execPath, [join(REPO, 'node_modules', 'mocha', 'bin', 'mocha.js'), '--no-config', '--reporter', join(REPO, 'test', 'summary-reporter.cjs'), join(dir, 'spec.mjs')], {
        encoding: 'utf8',
        env: { ...process.env, CI: '', ...env },
        timeout: 30_000,
      });
      return result.stdout.trim().split('\n');
    }

    it('in CI, counts a skip that is not declared as failed, and lists both kinds', function () {
      const lines = mocha({ CI: 'true' });
      assert.equal(lines.at(-1), '1 passed, 1 failed');
      assert.ok(lines.includes('skipped, not declared (counts as failed in CI): suite needs something absent'), lines.join('\n'));
      assert.ok(lines.some((line) => line.startsWith('skipped (declared): suite starts under systemd; not run here: PID 1 is not systemd (starting weftd.service for real needs systemd')), lines.join('\n'));
      assert.equal(lines.at(-2), '2 skipped');
    });

    it('outside CI, lists the skips without failing them', function () {
      const lines = mocha({});
      assert.equal(lines.at(-1), '1 passed, 0 failed');
      assert.ok(lines.includes('skipped, not declared: suite needs something absent'), lines.join('\n'));
    });
  });
});
