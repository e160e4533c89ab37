/** weft's logger when whoever reads its stderr is gone (a journald restart, a closed `| head`): lines are lost, the process is not. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';

const LOG_MODULE = new URL('./log.js', import.meta.url).href;

describe('log', function () {
  this.timeout(30_000);

  it('a process that logs after its stderr reader closed still exits', async function () {
    // logs a few lines once told to on stdin, then exits: they cannot be written (EPIPE) when the exit comes
    const program = [
      `import { createLogger } from ${JSON.stringify(LOG_MODULE)};`,
      'const log = createLogger();',
      "log.info('ready');",
      "process.stdin.once('data', () => { for (let i = 0; i < 5; i++) log.info('after the reader left'); process.exit(0); });",
    ].join('\n');
    const child = spawn(process.execPath, ['--input-type=module', '-e', program], { stdio: ['pipe', 'ignore', 'pipe'] });
    try {
      const [first] = (await once(child.stderr, 'data')) as [Buffer];
      assert.match(first.toString(), /"msg":"ready"/);
      child.stderr.destroy();
      const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
      child.stdin.end('go\n');
      const outcome = await Promise.race([
        exited,
        new Promise<'still running'>((resolve) => setTimeout(() => resolve('still running'), 20_000).unref()),
      ]);
      assert.deepEqual(outcome, [0, null], 'it exits, with the code it asked for');
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });
});
