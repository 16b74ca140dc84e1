// The whole training path on the webgpu engine (SwiftShader in CI: a software adapter, allowed by
// PEER_WEBGPU_ALLOW_FALLBACK) against the wasm engine, through the CLI as a user runs it: the tiny
// preset for 10 steps with the same seed on both engines ends at the same validation loss (1e-3
// relative), for PEER, the dense model and MoE (token and expert choice); a webgpu run's checkpoint
// evaluates and resumes on wasm.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { webgpuSkipReason } from '@peer/backend';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCli, startCli, tempDir } from './cli-process.test-util.js';

const skip = webgpuSkipReason();
if (skip) console.warn(`webgpu end-to-end tests skipped: ${skip}`);

const GPU_ENV = { PEER_WEBGPU_ALLOW_FALLBACK: '1' };
const TOL = 1e-3;

let dir: string;
let cache: string;

type Ffw = 'peer' | 'dense' | 'moe' | 'moe-ec';

const trainArgs = (ffw: Ffw, out: string, extra: string[] = []) => [
  'train',
  '--preset', 'tiny',
  '--ffw', ffw,
  '--data', 'moby-dick',
  '--steps', '10',
  '--seed', '11',
  '--set', `data.cacheDir=${cache}`,
  '--set', 'train.checkpointEvery=5',
  '--set', 'train.logEvery=1',
  '--out', out,
  ...extra,
];

interface Summary {
  val_loss: number;
  steps: number;
  backend: string;
}

const summaryOf = (run: string) => JSON.parse(readFileSync(join(run, 'summary.json'), 'utf8')) as Summary;
const relErr = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

async function train(ffw: Ffw, backend: 'webgpu' | 'wasm'): Promise<Summary> {
  const out = join(dir, `${ffw}-${backend}`);
  const r = await runCli([...trainArgs(ffw, out), '--backend', backend], { cwd: dir, env: GPU_ENV });
  expect(r.code, r.stderr).toBe(0);
  return summaryOf(out);
}

describe.skipIf(skip !== undefined)(`peer-train on webgpu${skip ? ` (skipped: ${skip})` : ''}`, () => {
  beforeAll(() => {
    dir = tempDir('peer-webgpu-');
    cache = join(dir, 'cache');
  });

  for (const ffw of ['peer', 'dense', 'moe', 'moe-ec'] as const) {
    it(`trains the tiny ${ffw} model for 10 steps to the wasm engine's validation loss`, async () => {
      const wasm = await train(ffw, 'wasm');
      const gpu = await train(ffw, 'webgpu');
      expect(gpu.backend).toBe('webgpu');
      expect(wasm.backend).toBe('wasm');
      expect(gpu.steps).toBe(10);
      expect(relErr(gpu.val_loss, wasm.val_loss), `webgpu ${gpu.val_loss} vs wasm ${wasm.val_loss}`).toBeLessThanOrEqual(TOL);
    }, 600_000);
  }

  it("evaluates a webgpu run's checkpoint on wasm, and resumes an interrupted webgpu run on wasm", async () => {
    const gpuRun = join(dir, 'peer-webgpu');
    const e = await runCli(['eval', '--run', gpuRun, '--backend', 'wasm', '--json'], { cwd: dir });
    expect(e.code, e.stderr).toBe(0);
    const evaluated = JSON.parse(e.stdout) as { loss: number };
    const wasmEval = await runCli(['eval', '--run', join(dir, 'peer-wasm'), '--backend', 'wasm', '--json'], { cwd: dir });
    expect(wasmEval.code, wasmEval.stderr).toBe(0);
    expect(relErr(evaluated.loss, (JSON.parse(wasmEval.stdout) as { loss: number }).loss)).toBeLessThanOrEqual(TOL);

    // Interrupted on webgpu once its first checkpoint exists, continued on wasm.
    const run = join(dir, 'peer-switch');
    const child = startCli([...trainArgs('peer', run), '--backend', 'webgpu'], { cwd: dir, env: GPU_ENV });
    let stderr = '';
    let interrupted = false;
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (!interrupted && /step [5-9]\/10/.test(stderr)) {
        interrupted = true;
        child.kill('SIGINT');
      }
    });
    const first = await child.result;
    expect([0, 130], first.stderr).toContain(first.code);
    const resumed = await runCli(['train', '--resume', run, '--backend', 'wasm'], { cwd: dir });
    expect(resumed.code, resumed.stderr).toBe(0);
    const s = summaryOf(run);
    expect(s.steps).toBe(10);
    expect(relErr(s.val_loss, summaryOf(join(dir, 'peer-wasm')).val_loss)).toBeLessThanOrEqual(TOL);
  }, 600_000);
});
