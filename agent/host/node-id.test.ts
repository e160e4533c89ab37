import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadNodeId, NodeIdError } from './node-id.js';

const MODULE = fileURLToPath(new URL('./node-id.js', import.meta.url));

/** loadNodeId(path) in a process of its own; resolves with what it returned. */
function loadInChild(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const script = `import(${JSON.stringify(MODULE)}).then((m) => m.loadNodeId(${JSON.stringify(path)})).then((id) => process.stdout.write(id))`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`exit ${code}`))));
  });
}

describe('node identity file', function () {
  let dir: string;

  beforeEach(async function () {
    dir = await mkdtemp(join(tmpdir(), 'weft-node-id-'));
  });

  afterEach(async function () {
    await rm(dir, { recursive: true, force: true });
  });

  it('creates a UUID on first use, in a directory it makes, and returns the same one afterwards', async function () {
    const path = join(dir, 'var', 'lib', 'weft', 'node-id');
    const id = await loadNodeId(path);
    assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(await readFile(path, 'utf8'), `${id}\n`);
    assert.equal(await loadNodeId(path), id);
    assert.deepEqual(await readdir(join(dir, 'var', 'lib', 'weft')), ['node-id'], 'no temporary file left behind');
  });

  it('gives concurrent first starts one id: in one process and in many', async function () {
    const inProcess = join(dir, 'one');
    const ids = await Promise.all(Array.from({ length: 20 }, () => loadNodeId(inProcess)));
    assert.equal(new Set(ids).size, 1, ids.join(' '));
    assert.equal((await readFile(inProcess, 'utf8')).trim(), ids[0]);

    for (let round = 0; round < 3; round++) {
      const path = join(dir, `many-${round}`);
      const fromChildren = await Promise.all(Array.from({ length: 6 }, () => loadInChild(path)));
      assert.equal(new Set(fromChildren).size, 1, fromChildren.join(' '));
      assert.equal((await readFile(path, 'utf8')).trim(), fromChildren[0]);
    }
    assert.deepEqual((await readdir(dir)).sort(), ['many-0', 'many-1', 'many-2', 'one']);
  });

  it('refuses a file that holds no node ID, naming it', async function () {
    const path = join(dir, 'node-id');
    await writeFile(path, 'not an id\n');
    await assert.rejects(
      loadNodeId(path),
      (err: unknown) => err instanceof NodeIdError && err.code === 'WEFT_NODE_ID' && err.message.includes(path),
    );
    assert.equal(await readFile(path, 'utf8'), 'not an id\n', 'left alone');
  });
});
