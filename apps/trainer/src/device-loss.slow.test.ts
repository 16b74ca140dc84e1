// A GPU device lost in the middle of training (simulated: PEER_TEST_LOSE_DEVICE_AFTER_STEP destroys
// it, as a driver reset would) stops the run like a crash: one line, exit 1, the last checkpoint
// intact; `--resume` continues it on wasm and ends where a run on wasm alone ends (1e-3 relative).
// SwiftShader in CI: keep it to a few steps of the tiny dense model.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { webgpuSkipReason } from '@peer/backend';
import { beforeAll, describe, expect, it } from 'vitest';
import { errorLines, runCli, tempDir } from './cli-process.test-util.js';

const skip = webgpuSkipReason();
if (skip) console.warn(`device-loss tests skipped: ${skip}`);

let dir: string;
let cache: string;

const trainArgs = (out: string) => [
  'train',
  '--preset', 'tiny',
  '--ffw', 'dense',
  '--data', 'moby-dick',
  '--steps', '6',
  '--seed', '5',
  '--set', `data.cacheDir=${cache}`,
  '--set', 'train.checkpointEvery=2',
  '--set', 'train.logEvery=1',
  '--out', out,
];

const checkpointStep = (run: string): number =>
  (JSON.parse((JSON.parse(readFileSync(join(run, 'checkpoint', 'manifest.json'), 'utf8')) as { metadata: Record<string, string> }).metadata['peer-trainer']!) as { step: number }).step;
const summaryOf = (run: string) => JSON.parse(readFileSync(join(run, 'summary.json'), 'utf8')) as { val_loss: number; steps: number; backend: string };

beforeAll(() => {
  dir = tempDir();
  cache = join(dir, 'cache');
});

describe.skipIf(skip !== undefined)('a GPU device lost during training', () => {
  it('stops with one line and exit 1, keeps the last checkpoint, and resumes on wasm to the wasm-only result', async () => {
    const reference = join(dir, 'wasm');
    const r0 = await runCli([...trainArgs(reference), '--backend', 'wasm'], { cwd: dir });
    expect(r0.code, r0.stderr).toBe(0);

    const run = join(dir, 'lost');
    const r1 = await runCli([...trainArgs(run), '--backend', 'webgpu'], {
      cwd: dir,
      env: { PEER_WEBGPU_ALLOW_FALLBACK: '1', PEER_TEST_LOSE_DEVICE_AFTER_STEP: '3' },
    });
    expect(r1.code, r1.stderr).toBe(1);
    const failures = errorLines(r1.stderr).filter((l) => l.startsWith('peer-train:'));
    expect(failures, r1.stderr).toHaveLength(1);
    expect(failures[0]).toMatch(/^peer-train: the GPU device was lost during training \(.+\): the checkpoint of step 2 in .* is kept; continue with: peer-train train --resume /);
    expect(r1.stderr).not.toMatch(/^\s+at /m);
    expect(checkpointStep(run)).toBe(2);
    expect(existsSync(join(run, 'summary.json'))).toBe(false);

    const r2 = await runCli(['train', '--resume', run, '--backend', 'wasm'], { cwd: dir });
    expect(r2.code, r2.stderr).toBe(0);
    const resumed = summaryOf(run);
    expect(resumed).toMatchObject({ steps: 6, backend: 'wasm' });
    const expected = summaryOf(reference).val_loss;
    expect(Math.abs(resumed.val_loss - expected) / expected).toBeLessThan(1e-3);
  });
});
