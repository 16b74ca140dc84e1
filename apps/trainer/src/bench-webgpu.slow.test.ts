// peer-train bench layer and bench train on the webgpu engine (SwiftShader in CI: a software
// adapter, allowed by PEER_WEBGPU_ALLOW_FALLBACK), through the CLI as a user runs them; tiny sizes,
// software Vulkan is slow. The cost numbers are the engine-independent ones of the wasm engine.
import { webgpuSkipReason } from '@peer/backend';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCli, tempDir } from './cli-process.test-util.js';
import type { BenchLayerResult, BenchTrainResult } from './commands/bench.js';

const skip = webgpuSkipReason();
if (skip) console.warn(`webgpu bench tests skipped: ${skip}`);

const GPU_ENV = { PEER_WEBGPU_ALLOW_FALLBACK: '1' };
let dir: string;

async function benchLayer(backend: 'webgpu' | 'wasm'): Promise<BenchLayerResult> {
  const args = ['bench', 'layer', '--layer', 'peer', '--experts', '64', '--heads', '2', '--topk', '2', '--dim-key', '8', '--dim', '16', '--tokens', '16', '--steps', '2', '--warmup', '1', '--json'];
  const r = await runCli([...args, '--backend', backend], { cwd: dir, env: GPU_ENV });
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as BenchLayerResult;
}

describe.skipIf(skip !== undefined)(`peer-train bench on webgpu${skip ? ` (skipped: ${skip})` : ''}`, () => {
  beforeAll(() => {
    dir = tempDir('peer-bench-webgpu-');
  });

  it('bench layer times PEER training steps on webgpu with the cost numbers of the wasm engine', async () => {
    const gpu = await benchLayer('webgpu');
    const wasm = await benchLayer('wasm');
    expect(gpu.backend).toBe('webgpu');
    expect(gpu.tokens).toBe(16);
    expect(gpu.steps).toBe(2);
    const stepMs = gpu.step_ms as number[];
    expect(stepMs).toHaveLength(2);
    for (const ms of stepMs) expect(ms).toBeGreaterThan(0);
    expect(gpu.ms_per_step_median).toBeCloseTo((stepMs[0]! + stepMs[1]!) / 2, 0);
    expect(gpu.tokens_per_second).toBeCloseTo((16 * 1000) / gpu.ms_per_step_median, -1);
    expect(gpu.forward_ms_median).toBeGreaterThan(0);
    for (const key of ['flops_per_token', 'active_params_per_token', 'total_params'] as const) expect(gpu[key], key).toBe(wasm[key]);
  }, 600_000);

  it('bench train trains the tiny preset on webgpu and reports its throughput', async () => {
    const r = await runCli(['bench', 'train', '--presets', 'tiny', '--steps', '10', '--no-pytorch', '--json', '--backend', 'webgpu'], { cwd: dir, env: GPU_ENV });
    expect(r.code, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as BenchTrainResult;
    expect(result.backend).toBe('webgpu');
    const tiny = result.presets.tiny!;
    expect(tiny.backend).toBe('webgpu');
    expect(tiny.ffw).toBe('peer');
    expect(tiny.steps).toBe(10);
    expect(tiny.tokens_per_second).toBeGreaterThan(0);
    // tiny: batch 4 x 32 tokens per step
    expect(Math.abs((tiny.ms_per_step * tiny.tokens_per_second) / (128 * 1000) - 1)).toBeLessThan(0.01);
    expect(tiny.params_active_per_token).toBeLessThan(tiny.params_total);
  }, 600_000);
});
