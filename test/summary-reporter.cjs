// Mocha's spec output, followed by the one summary line CI reads: "N passed, N failed" (skipped tests, if
// any, are counted on the line before it).
'use strict';
const Mocha = require('mocha');
const { EVENT_RUN_END } = Mocha.Runner.constants;

class SummaryReporter extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options);
    runner.once(EVENT_RUN_END, () => {
      const { passes, failures, pending } = this.stats;
      process.stdout.write(`\n${pending > 0 ? `${pending} skipped\n` : ''}${passes} passed, ${failures} failed\n`);
    });
  }
}
module.exports = SummaryReporter;
