// A PEER-style mixture trained through the ExpertTable interface only, once on host tables (wasm
// engine) and once on device tables from the factories (webgpu engine; SwiftShader in CI, tiny):
// the same seeds and inputs give the same tables and Adam state after a few steps. What the layer
// does with the tables, in miniature: scores = u . x, c = tanh(scores) * router, y = sum_r c v,
// loss = sum(y * target); backward through the same primitives, one sparse Adam step per table.
// Axes: N table rows, D row width, T tokens, R rows per token.
import { initBackend, webgpuSkipReason } from '@peer/backend';
import { expectClose, testRng } from '@peer/test-utils';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, describe, expect, it } from 'vitest';
import type { ExpertTable, RowGradient } from './expert-table.js';
import type { NamedArray } from './named-array.js';
import { createExpertTable, createSparseOptimizer } from './table-factory.js';

const skip = webgpuSkipReason();
const rng = testRng();
const [N, D, T, R] = [48, 8, 6, 4];
const STEPS = 3;

interface Batch {
  indices: Int32Array;
  x: Float32Array;
  router: Float32Array;
  target: Float32Array;
}

const batches: Batch[] = Array.from({ length: STEPS }, () => ({
  indices: Int32Array.from({ length: T * R }, () => rng.int(N / 2)),
  x: Float32Array.from(rng.normals(T * D)),
  router: Float32Array.from(rng.uniforms(T * R, 0, 1)),
  target: Float32Array.from(rng.normals(T * D)),
}));

/** One training step of the miniature mixture; returns the loss. */
async function step(u: ExpertTable, v: ExpertTable, uGrad: RowGradient, vGrad: RowGradient, b: Batch, onDevice: boolean): Promise<number> {
  const indices = tf.tensor1d(b.indices, 'int32');
  const loss = tf.tidy(() => {
    const x = tf.tensor2d(b.x, [T, D]);
    const router = tf.tensor2d(b.router, [T, R]);
    const target = tf.tensor2d(b.target, [T, D]);
    const uSel = u.select(onDevice ? indices : b.indices, R);
    const vSel = v.select(onDevice ? indices : b.indices, R);
    const scores = u.rowDots(uSel, x);
    const act = tf.tanh(scores);
    const c = tf.mul(act, router) as tf.Tensor2D;
    const y = v.weightedRowSum(vSel, c);
    // d loss / d y = target; d c = v . target; d scores = d c * router * (1 - tanh^2).
    const dc = v.rowDots(vSel, target);
    const dScores = tf.mul(tf.mul(dc, router), tf.sub(1, tf.square(act))) as tf.Tensor2D;
    v.accumulateRowGradients(vSel, c, target, vGrad);
    u.accumulateRowGradients(uSel, dScores, x, uGrad);
    return tf.sum(tf.mul(y, target));
  });
  indices.dispose();
  const value = (await loss.data())[0]!;
  loss.dispose();
  return value;
}

async function train(engine: 'wasm' | 'webgpu'): Promise<{ losses: number[]; state: Map<string, NamedArray> }> {
  await initBackend({ backend: engine, allowFallbackAdapter: true, log: false });
  const u = createExpertTable({ rows: N, dim: D, seed: 21, name: 'u' });
  const v = createExpertTable({ rows: N, dim: D, seed: 22, name: 'v' });
  expect(u.placement).toBe(engine === 'webgpu' ? 'device' : 'host');
  const adam = createSparseOptimizer({ kind: 'adam', lr: 0.05, weightDecay: 0.1, clipNorm: 2 }, [u, v]);
  const [uGrad, vGrad] = [u.createGradient(), v.createGradient()];
  const losses: number[] = [];
  let afterFirst = 0;
  for (const b of batches) {
    losses.push(await step(u, v, uGrad, vGrad, b, engine === 'webgpu'));
    adam.step(u, uGrad, 0.9);
    adam.step(v, vGrad, 0.9);
    // The first step allocates the optimizer state; later ones allocate nothing that stays.
    afterFirst ||= tf.memory().numTensors;
  }
  expect(tf.memory().numTensors, `${engine}: tensors after ${STEPS} steps`).toBe(afterFirst);
  await Promise.all([u.prepareState(), v.prepareState(), adam.prepareState()]);
  const entries = [...u.stateEntries(), ...v.stateEntries(), ...adam.stateEntries()];
  const state = new Map(entries.map((e) => [e.name, { ...e, data: e.data.slice() }]));
  adam.dispose();
  u.dispose();
  v.dispose();
  return { losses, state };
}

describe.skipIf(skip !== undefined)(`a mixture trained on device tables${skip ? ` (skipped: ${skip})` : ''}`, () => {
  afterAll(async () => {
    await initBackend({ backend: 'wasm', log: false });
  });

  it('matches the same mixture on host tables: losses, rows, Adam moments and step counts', async () => {
    const host = await train('wasm');
    const device = await train('webgpu');
    expectClose(device.losses, host.losses, { rtol: 1e-4, atol: 1e-5, label: `losses (seed ${rng.seed})` });
    expect([...device.state.keys()].sort()).toEqual([...host.state.keys()].sort());
    for (const [name, h] of host.state) {
      const d = device.state.get(name)!;
      if (h.dtype === 'I32') expect(Array.from(d.data as Int32Array), name).toEqual(Array.from(h.data as Int32Array));
      else expectClose(d.data as Float32Array, h.data as Float32Array, { rtol: 1e-4, atol: 1e-6, label: `${name} (seed ${rng.seed})` });
    }
  });
});
