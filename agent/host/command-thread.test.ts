import assert from 'node:assert/strict';
import { createThreadedCommandRunner } from './command-thread.js';
import { CommandError } from './errors.js';

describe('agent/host/command-thread: commands started from a worker thread', function () {
  const runner = createThreadedCommandRunner({ timeoutMs: 5000 });
  after(() => runner.close());

  it('returns status, stdout and stderr as the plain runner does, stdin included', async function () {
    assert.deepEqual(await runner(['sh', '-c', 'cat; echo oops >&2; exit 3'], { stdin: 'hello\n' }), { code: 3, stdout: 'hello\n', stderr: 'oops\n' });
    const many = await Promise.all(Array.from({ length: 20 }, (_, i) => runner(['echo', String(i)])));
    assert.deepEqual(many.map((r) => r.stdout), Array.from({ length: 20 }, (_, i) => `${i}\n`));
  });

  it('rejects with CommandError when the command cannot be started, and runs on afterwards', async function () {
    await assert.rejects(runner(['/nonexistent/weft-no-such-tool']), (err: unknown) => err instanceof CommandError && /cannot run/.test(err.message));
    await assert.rejects(runner([]), CommandError);
    assert.equal((await runner(['true'])).code, 0);
  });

  it('fails what is running when closed, and starts a new thread for the next command', async function () {
    // (the command itself is not killed: it ends on its own a moment later)
    const running = assert.rejects(runner(['sleep', '1']), CommandError);
    await new Promise((resolve) => setTimeout(resolve, 100));
    await runner.close();
    await running;
    assert.equal((await runner(['echo', 'again'])).stdout, 'again\n');
  });
});
