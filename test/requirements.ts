/**
 * What a test needs from the machine. Outside CI a test (or, from a `before` hook, a suite) whose needs are
 * not met is skipped, saying why; in CI it fails instead: .ci/run installs everything `npm test` needs, and the
 * only skips CI accepts are those on test/declared-skips.cjs (test/summary-reporter.cjs enforces that too).
 */

/** CI is set in the environment (.ci/run sets CI=true), read as test/summary-reporter.cjs reads it. */
export function inCI(): boolean {
  const value = process.env.CI;
  return value !== undefined && value !== '' && value !== 'false';
}

/** Skips the running test or suite outside CI and fails it in CI; `unmet` says what it needs and lacks. */
export function skipOrFail(context: Mocha.Context, unmet: string): never {
  if (inCI())
    throw new Error(
      `${unmet}: CI must provide it (.ci/run installs what npm test needs); a skip in CI is a failure unless declared in test/declared-skips.cjs`,
    );
  process.stderr.write(`      (skipped: ${unmet})\n`);
  context.skip();
}

/** skipOrFail when `unmet` says what the test lacks; nothing when it is undefined. */
export function requireOrSkip(context: Mocha.Context, unmet: string | undefined): void {
  if (unmet !== undefined) skipOrFail(context, unmet);
}
