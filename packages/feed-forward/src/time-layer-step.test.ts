import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '@peer/backend';
import { timeLayerStep, type BenchableLayer } from './time-layer-step.js';

beforeAll(async () => {
  await initBackend({ backend: 'wasm', log: false });
});

/** y = x W with an auxiliary loss sum(W^2); the sparse step only counts its calls. */
function linearLayer(dim: number): BenchableLayer & { w: tf.Variable; sparseSteps: number; zeroed: number } {
  const w = tf.variable(tf.mul(tf.eye(dim), 0.5), true, `time_layer_step_w_${Math.random()}`);
  const layer = {
    kind: 'linear',
    dim,
    w,
    sparseSteps: 0,
    zeroed: 0,
    apply: (x: tf.Tensor3D) => ({ y: tf.reshape(tf.matMul(tf.reshape(x, [-1, dim]), w), x.shape) as tf.Tensor3D, auxLoss: tf.sum(tf.square(w)) as tf.Scalar }),
    trainableVariables: () => [w],
    sparseStep: () => void layer.sparseSteps++,
    zeroSparseGrads: () => void layer.zeroed++,
    flopsPerToken: () => 2 * dim * dim,
    activeParamsPerToken: () => dim * dim,
    totalParams: () => dim * dim,
  };
  return layer;
}

describe('timeLayerStep', () => {
  it('runs warm-up and timed training steps, moves the dense variables, reports per step, leaks nothing', async () => {
    const layer = linearLayer(6);
    const before = Float32Array.from(layer.w.dataSync());
    const tensors = tf.memory().numTensors;
    const seen: number[] = [];
    const r = await timeLayerStep(layer, { tokens: 10, steps: 3, warmup: 2, onStep: (i) => seen.push(i) });
    expect(tf.memory().numTensors).toBe(tensors);
    expect(layer.sparseSteps).toBe(5);
    expect(layer.zeroed).toBe(1);
    expect(seen).toEqual([0, 1, 2]);
    expect(Array.from(layer.w.dataSync())).not.toEqual(Array.from(before));
    expect(r).toMatchObject({ layer: 'linear', dim: 6, tokens: 10, steps: 3, flops_per_token: 72, active_params_per_token: 36, total_params: 36 });
    expect(r.step_ms).toHaveLength(3);
    const sorted = [...r.step_ms].sort((a, b) => a - b);
    expect(r.ms_per_step_median).toBeCloseTo(sorted[1]!, 1);
    layer.w.dispose();
  });

  it('refuses bad counts with one clear error', async () => {
    const layer = linearLayer(2);
    await expect(timeLayerStep(layer, { tokens: 1 })).rejects.toThrow('timeLayerStep: tokens must be an integer >= 2, got 1');
    await expect(timeLayerStep(layer, { steps: 0 })).rejects.toThrow('timeLayerStep: steps must be a positive integer, got 0');
    await expect(timeLayerStep(layer, { warmup: -1 })).rejects.toThrow('timeLayerStep: warmup must be an integer >= 0, got -1');
    layer.w.dispose();
  });
});
