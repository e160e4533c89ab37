/**
 * A smoke run of `npm run bench` at toy sizes: every benchmark module loads, builds its namespaces, runs,
 * cleans up and reports well-formed figures; the markdown and JSON render. Speed is never asserted here
 * (benchmarks print figures, tests check behaviour); the one behavioural check is the churn benchmark's
 * own verdict that the kernel ends up exactly as the leases say.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireNetns } from '../../test/netns.js';
import { execFileSync } from 'node:child_process';
import { NAMESPACE_PREFIX } from '../lab/index.js';
import { BENCHMARK_MODULES, renderMarkdown, runBenchmarks, writeReport } from './runner.js';
import { percentile } from './stats.js';

describe('e2e/bench: benchmark smoke run (toy sizes, no timing assertions)', function () {
  this.timeout(300_000);

  before(function () {
    requireNetns(this);
  });

  it('computes percentiles by nearest rank', function () {
    assert.equal(percentile([5, 1, 3, 2, 4], 50), 3);
    assert.equal(percentile([1, 2, 3, 4], 99), 4);
    assert.equal(percentile([7], 1), 7);
    assert.ok(Number.isNaN(percentile([], 50)));
  });

  it('runs every benchmark module end to end and writes the report', async function () {
    const lines: string[] = [];
    const report = await runBenchmarks({ quick: true, log: (line) => lines.push(line) });
    assert.deepEqual(report.failures, [], lines.join('\n'));
    // every lab a benchmark announced (withBenchLab does) is gone again
    const labs = lines.map((line) => /^\s*lab ([a-z0-9]+)/.exec(line)?.[1]).filter((id): id is string => id !== undefined);
    assert.ok(labs.length >= 3, lines.join('\n'));
    const namespaces = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
    for (const id of labs) assert.ok(!namespaces.includes(`${NAMESPACE_PREFIX}-${id}-`), `lab ${id} left namespaces behind`);
    assert.equal(report.results.length, BENCHMARK_MODULES.length);
    assert.ok(report.machine.cores > 0 && report.machine.kernel !== '' && report.machine.node.startsWith('v'));
    for (const result of report.results) {
      assert.ok(result.figures.length > 0, `${result.name} reports figures`);
      for (const f of result.figures) {
        assert.ok(f.samples.length > 0, `${f.id} has samples`);
        if (f.samples.every(Number.isFinite)) assert.ok(f.min <= f.median && f.median <= f.max, `${f.id}: min ≤ median ≤ max`);
      }
    }
    const churn = report.results.find((result) => result.name === 'churn');
    assert.ok(churn !== undefined);
    assert.equal(churn.figures.find((f) => f.id === 'churn.final-equal')?.median, 1, 'the kernel ends up exactly as the leases say');

    const dir = mkdtempSync(join(tmpdir(), 'weft-bench-test-'));
    try {
      const written = writeReport(report, dir);
      const json = JSON.parse(readFileSync(written.json, 'utf8')) as { results: unknown[]; machine: { cpuModel: string } };
      assert.equal(json.results.length, report.results.length);
      assert.equal(typeof json.machine.cpuModel, 'string');
      const markdown = readFileSync(written.markdown, 'utf8');
      assert.equal(markdown, renderMarkdown(report));
      assert.match(markdown, /^# weft benchmarks/);
      for (const result of report.results) assert.ok(markdown.includes(`## ${result.title}`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
