// Both MoE layers on the webgpu engine (SwiftShader in CI; device routing with tf ops only) against
// the same layers on the cpu engine (host routing): outputs, aux losses, input and variable
// gradients, with no synchronous read (dataSync throws on webgpu in Node). Tiny sizes: software
// Vulkan is slow.
// Axes: B batch, S sequence, T = B*S tokens, D model width, E experts, H expert hidden width.
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, webgpuSkipReason } from '@peer/backend';
import { expectNoLeaks, testRng } from '@peer/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MoeExpertChoice } from './moe-expert-choice.js';
import { copyState, moeTrainStep, scaledError, type MoeLayer } from './moe-device.test-util.js';
import { decisiveInputs, randomizeWeights, referenceOf } from './moe-reference.test-util.js';
import { expertChoiceCapacity } from './moe-routing.js';
import { MoeTokenChoice } from './moe-token-choice.js';

const skip = webgpuSkipReason();
if (skip) console.warn(`webgpu MoE tests skipped: ${skip}`);
const rng = testRng();
const TOL = 1e-4;
const shape: [number, number, number] = [2, 5, 8];
const make = {
  'token choice K=2, capacity binding': () => new MoeTokenChoice({ dim: 8, experts: 4, hidden: 6, topK: 2, capacityFactor: 0.6, auxLossCoef: 0.1, zLossCoef: 1e-2, seed: rng.int(1000) }),
  'expert choice': () => new MoeExpertChoice({ dim: 8, experts: 4, hidden: 6, capacityFactor: 1, zLossCoef: 1e-2, seed: rng.int(1000) }),
} satisfies Record<string, () => MoeLayer>;
// The routing each layer decides, for inputs whose decisions the two engines' rounding cannot flip.
const routing = {
  'token choice K=2, capacity binding': { topK: 2 },
  'expert choice': { capacity: expertChoiceCapacity(10, 4, 1) },
} satisfies Record<keyof typeof make, { topK: number } | { capacity: number }>;

describe.skipIf(skip !== undefined)(`MoE layers on webgpu${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let hostEngine = '';
  beforeAll(async () => {
    hostEngine = tf.getBackend();
    await initBackend({ backend: 'webgpu', allowFallbackAdapter: true, log: false });
  });
  afterAll(async () => {
    await tf.setBackend(hostEngine);
  });

  it.each(Object.keys(make) as (keyof typeof make)[])("a training step equals the cpu engine's: %s", async (kind) => {
    await tf.setBackend('cpu');
    const cpuLayer = make[kind]();
    randomizeWeights(cpuLayer, rng);
    const x = Float32Array.from(decisiveInputs(referenceOf(cpuLayer), rng, 10, routing[kind]));
    const r = Float32Array.from(rng.normals(10 * 8));
    const state = copyState(cpuLayer);
    const cpu = await moeTrainStep(cpuLayer, x, r, shape);
    cpuLayer.dispose();
    await tf.setBackend('webgpu');
    const gpuLayer = make[kind]();
    gpuLayer.loadStateEntries('', (name) => state.get(name));
    const gpu = await moeTrainStep(gpuLayer, x, r, shape);
    expect(gpuLayer.lastRoutingStats()).toBeUndefined();
    // Another step leaks nothing.
    await expectNoLeaks(() => moeTrainStep(gpuLayer, x, r, shape), { warmup: 0, repeats: 1 });
    gpuLayer.startUsage();
    expect(() => tf.tidy(() => gpuLayer.apply(tf.zeros(shape) as tf.Tensor3D, { training: false }).y)).toThrow(/usage statistics .* not available on the webgpu engine/);
    gpuLayer.stopUsage();
    gpuLayer.dispose();
    expect(gpu.length).toBe(cpu.length);
    gpu.forEach((g, i) => expect(scaledError(g, cpu[i]!), `output ${i} of ${gpu.length} (seed ${rng.seed})`).toBeLessThanOrEqual(TOL));
  });
});
