// Training on the threaded wasm engine (and our kernels' worker pool) through the built CLI: two
// threads give the metrics one thread gives, and a two-thread run killed with SIGKILL resumes and
// ends where the uninterrupted run ends.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCli, tempDir } from './cli-process.test-util.js';
import { killAfterCheckpoint, numbersOf, readJson, tinyTrainArgs } from './cli-run.test-util.js';

let dir: string;
let cache: string;

const STEPS = 60;
const trainArgs = () => tinyTrainArgs(STEPS, 20, cache);

let runOne: string;
let runTwo: string;

beforeAll(async () => {
  dir = tempDir();
  cache = join(dir, 'cache');
  runOne = join(dir, 'one');
  runTwo = join(dir, 'two');
  const one = await runCli(['train', ...trainArgs(), '--threads', '1', '--out', runOne], { cwd: dir });
  expect(one.code, one.stderr).toBe(0);
  expect(one.stderr).toContain('[peer] backend: wasm via @tensorflow/tfjs-backend-wasm, 1 thread\n');
  const two = await runCli(['train', ...trainArgs(), '--threads', '2', '--out', runTwo], { cwd: dir });
  expect(two.code, two.stderr).toBe(0);
  expect(two.stderr).toContain('[peer] backend: wasm via @tensorflow/tfjs-backend-wasm, 2 threads\n');
}, 600_000);

describe('peer-train on two threads', () => {
  it('gives the metrics of one thread, to the last bit', () => {
    expect(numbersOf(runTwo)).toEqual(numbersOf(runOne));
    expect(readJson<{ val_loss: number }>(join(runTwo, 'summary.json')).val_loss).toBe(readJson<{ val_loss: number }>(join(runOne, 'summary.json')).val_loss);
  });

  it('a two-thread run killed with SIGKILL and resumed ends where the uninterrupted run ends', async () => {
    const runK = join(dir, 'k');
    const at = await killAfterCheckpoint([...trainArgs(), '--threads', '2'], runK, 20, { cwd: dir, timeoutMs: 120_000 });
    expect(at).toBeLessThan(STEPS);
    const r = await runCli(['train', '--resume', runK, '--threads', '2'], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`resuming ${runK} at step ${at} of ${STEPS}`);
    expect(numbersOf(runK)).toEqual(numbersOf(runTwo));
  });

  it('starts the kernel pool that the packages built on @peer/backend/wasm see (ESM and CJS builds)', () => {
    // initBackend lives in the root entry and kernelPool() in the wasm entry: bundled as two
    // self-contained files, each had its own pool variable and our kernels never left one thread.
    const probe = (lang: 'esm' | 'cjs') => {
      const body =
        lang === 'esm'
          ? "const { initBackend } = await import('@peer/backend'); const w = await import('@peer/backend/wasm');"
          : "const { initBackend } = require('@peer/backend'); const w = require('@peer/backend/wasm');";
      const code = `(async () => { ${body} await initBackend({ backend: 'wasm', threads: 2 }); console.log('pool=' + w.kernelPool()?.threads); process.exit(0); })();`;
      const r = spawnSync(process.execPath, lang === 'esm' ? ['--input-type=module', '-e', code] : ['-e', code], { cwd: join(import.meta.dirname, '..'), encoding: 'utf8', timeout: 60_000 });
      expect(r.status, r.stderr).toBe(0);
      return r.stdout.trim().split('\n').at(-1);
    };
    expect(probe('esm')).toBe('pool=2');
    expect(probe('cjs')).toBe('pool=2');
  });
});
