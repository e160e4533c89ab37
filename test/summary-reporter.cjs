// Mocha's spec output, followed by the one summary line CI reads: "N passed, N failed". Before it, the skipped
// tests: those on the declared list (declared-skips.cjs) with why, and any other, which in CI (CI set in the
// environment) counts as failed — in the summary line and in mocha's exit status alike.
'use strict';
const Mocha = require('mocha');
const DECLARED = require('./declared-skips.cjs');
const { EVENT_RUN_END, EVENT_TEST_PENDING } = Mocha.Runner.constants;

class SummaryReporter extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options);
    const declared = [];
    const undeclared = [];
    const inCI = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false';
    // mocha's exit status is the failure count it hands to done()
    this.failedSkips = 0;
    runner.on(EVENT_TEST_PENDING, (test) => {
      const title = test.fullTitle();
      const entry = DECLARED.find((candidate) => candidate.title.test(title));
      if (entry === undefined) undeclared.push(title);
      else declared.push(`${title} (${entry.why})`);
    });
    runner.once(EVENT_RUN_END, () => {
      const { passes, failures } = this.stats;
      this.failedSkips = inCI ? undeclared.length : 0;
      const lines = [''];
      for (const title of declared) lines.push(`skipped (declared): ${title}`);
      for (const title of undeclared) lines.push(`skipped, not declared${inCI ? ' (counts as failed in CI)' : ''}: ${title}`);
      if (declared.length + undeclared.length > 0) lines.push(`${declared.length + undeclared.length} skipped`);
      lines.push(`${passes} passed, ${failures + this.failedSkips} failed`);
      process.stdout.write(`${lines.join('\n')}\n`);
    });
  }

  done(failures, exit) {
    exit(failures + this.failedSkips);
  }
}
module.exports = SummaryReporter;
