// The device forward passes of both MoE layers (tfjs ops only, what webgpu runs) against the host
// forward passes (JavaScript routing, hand-written backward) on the default engine: same routing,
// outputs, aux losses and gradients, on fresh random inputs with capacity binding and not.
// Axes: B batch, S sequence, T = B*S tokens, D model width, E experts.
import { expectNoLeaks, testRng } from '@peer/test-utils';
import { describe, expect, it } from 'vitest';
import type { MoeExpertChoiceOptions, MoeTokenChoiceOptions } from './moe-config.js';
import { MoeExpertChoice, moeExpertChoiceDeviceForward, moeExpertChoiceForward } from './moe-expert-choice.js';
import { moeTrainStep, scaledError, type MoeLayer } from './moe-device.test-util.js';
import { decisiveInputs, randomizeWeights, referenceOf } from './moe-reference.test-util.js';
import { expertChoiceCapacity } from './moe-routing.js';
import { MoeTokenChoice, moeTokenChoiceDeviceForward, moeTokenChoiceForward } from './moe-token-choice.js';

const rng = testRng();
const TOL = 1e-5;
const shape: [number, number, number] = [3, 7, 8];

function compare(layer: MoeLayer, host: Float32Array[], device: Float32Array[]): void {
  expect(device.length).toBe(host.length);
  device.forEach((d, i) => expect(scaledError(d, host[i]!), `output ${i} of ${host.length} (seed ${rng.seed}, ${JSON.stringify(layer.config)})`).toBeLessThanOrEqual(TOL));
}

describe('MoE device routing (tf ops only) equals the host routing', () => {
  it.each([
    { label: 'Switch K=1, capacity binding, z-loss', options: { topK: 1, capacityFactor: 0.75, zLossCoef: 1e-2, auxLossCoef: 0.1 } },
    { label: 'GShard K=2, relu, no bias, capacity binding', options: { topK: 2, activation: 'relu', bias: false, capacityFactor: 0.6, auxLossCoef: 0.05 } },
    { label: 'K=2 unnormalized, ample capacity', options: { topK: 2, normalizeGates: false, capacityFactor: 2 } },
    { label: 'K=3 of 4, gelu-tanh', options: { topK: 3, activation: 'gelu-tanh', capacityFactor: 1, auxLossCoef: 0.1 } },
  ] as { label: string; options: Partial<MoeTokenChoiceOptions> }[])('token choice: $label', async ({ options }) => {
    const layer = new MoeTokenChoice({ dim: 8, experts: 4, hidden: 6, seed: rng.int(1000), ...options });
    randomizeWeights(layer, rng);
    // The host and device paths round the ReLU pre-activations differently: keep them off the kink.
    const x = Float32Array.from(decisiveInputs(referenceOf(layer), rng, 21, layer.config, { reluKinks: true }));
    const r = Float32Array.from(rng.normals(21 * 8));
    const host = await moeTrainStep(layer, x, r, shape, (x2) => moeTokenChoiceForward(x2, layer.tensors(), layer.config, true));
    const device = await moeTrainStep(layer, x, r, shape, (x2) => moeTokenChoiceDeviceForward(x2, layer.tensors(), layer.config, true));
    compare(layer, host, device);
    layer.dispose();
  });

  it.each([
    { label: 'capacity 1, gelu', options: {} },
    { label: 'capacity 2, relu, no bias, z-loss', options: { capacityFactor: 2, activation: 'relu', bias: false, zLossCoef: 1e-2 } },
    { label: 'capacity 0.5, gelu-tanh', options: { capacityFactor: 0.5, activation: 'gelu-tanh' } },
  ] as { label: string; options: Partial<MoeExpertChoiceOptions> }[])('expert choice: $label', async ({ options }) => {
    const layer = new MoeExpertChoice({ dim: 8, experts: 4, hidden: 6, seed: rng.int(1000), ...options });
    randomizeWeights(layer, rng);
    const x = Float32Array.from(decisiveInputs(referenceOf(layer), rng, 21, { capacity: expertChoiceCapacity(21, 4, layer.config.capacityFactor) }, { reluKinks: true }));
    const r = Float32Array.from(rng.normals(21 * 8));
    const host = await moeTrainStep(layer, x, r, shape, (x2) => moeExpertChoiceForward(x2, layer.tensors(), layer.config, true));
    const device = await moeTrainStep(layer, x, r, shape, (x2) => moeExpertChoiceDeviceForward(x2, layer.tensors(), layer.config, true));
    compare(layer, host, device);
    layer.dispose();
  });

  it('leaks no tensor per step', async () => {
    const tc = new MoeTokenChoice({ dim: 8, experts: 4, hidden: 6, topK: 2, capacityFactor: 0.6, auxLossCoef: 0.1, seed: rng.int(1000) });
    const ec = new MoeExpertChoice({ dim: 8, experts: 4, hidden: 6, zLossCoef: 1e-2, seed: rng.int(1000) });
    const x = Float32Array.from(rng.normals(21 * 8));
    await moeTrainStep(tc, x, x, shape, (x2) => moeTokenChoiceDeviceForward(x2, tc.tensors(), tc.config, true));
    await moeTrainStep(ec, x, x, shape, (x2) => moeExpertChoiceDeviceForward(x2, ec.tensors(), ec.config, true));
    await expectNoLeaks(async () => {
      await moeTrainStep(tc, x, x, shape, (x2) => moeTokenChoiceDeviceForward(x2, tc.tensors(), tc.config, true));
      await moeTrainStep(ec, x, x, shape, (x2) => moeExpertChoiceDeviceForward(x2, ec.tensors(), ec.config, true));
    });
    tc.dispose();
    ec.dispose();
  });
});
