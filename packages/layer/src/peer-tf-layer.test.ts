// The PEER layer inside tf.layers models: model.fit with the sparse-step callback learns a toy
// regression; file:// save and load keep the outputs bit for bit (tables and sparse optimizer state
// included); gradients through the wrapper equal the plain layer's; fit steps leak no tensor.
//
// Axes: B batch, S sequence, D model width.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import type { RowSparseGrad } from '@peer/expert-store';
import { afterAll, describe, expect, it } from 'vitest';
import { expectNoLeaks, testRng, type TestRng } from '@peer/test-utils';
import { PeerLayer } from './peer-layer.js';
import { peer, sparseStep, sparseStepCallback, type PeerTfLayer } from './tf-layers.js';

const SMALL = { numExperts: 64, heads: 2, topK: 4, dimKey: 4 } as const;
/** The mean squared error the toy regression must reach (its targets have variance of about 0.4). */
const TARGET = 0.03;
const dirs: string[] = [];

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'peer-tf-layer-'));
  dirs.push(d);
  return d;
}

function randomTensor(rng: TestRng, shape: number[], std = 1): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(Float32Array.from(rng.normals(n, std)), shape);
}

/**
 * y = sin(3 x . w) for x in [-1, 1]^D: a smooth target that a linear model cannot fit. w is a random
 * direction of norm 1: with a random norm, a short w (chi-square tail) would make the target nearly
 * linear and the bar "a third of the best linear fit" out of reach for some seeds.
 */
function toyRegression(rng: TestRng, samples: number, dim: number): { xs: tf.Tensor2D; ys: tf.Tensor2D; linearLoss: number } {
  const direction = rng.normals(dim);
  const norm = Math.hypot(...direction);
  const w = direction.map((v) => v / norm);
  const x = Float32Array.from(rng.uniforms(samples * dim, -1, 1));
  const y = new Float32Array(samples);
  for (let i = 0; i < samples; i++) {
    let s = 0;
    for (let j = 0; j < dim; j++) s += x[i * dim + j]! * w[j]!;
    y[i] = Math.sin(3 * s);
  }
  const xs = tf.tensor2d(x, [samples, dim]);
  const ys = tf.tensor2d(y, [samples, 1]);
  // The best linear fit's mean squared error: what PEER must beat.
  const linearLoss = tf.tidy(() => {
    const xb = tf.concat([xs, tf.ones([samples, 1])], 1);
    const xtx = tf.matMul(xb, xb, true, false);
    const beta = tf.matMul(tf.matMul(inverse(xtx as tf.Tensor2D), xb, false, true), ys);
    return tf.mean(tf.square(tf.sub(tf.matMul(xb, beta), ys))).dataSync()[0]!;
  });
  return { xs, ys, linearLoss };
}

/** Inverse of a small symmetric positive definite matrix (Gauss-Jordan in float64). */
function inverse(m: tf.Tensor2D): tf.Tensor2D {
  const n = m.shape[0];
  const a = Array.from(m.dataSync(), Number);
  const inv = Array.from({ length: n * n }, (_, i) => (Math.floor(i / n) === i % n ? 1 : 0));
  for (let c = 0; c < n; c++) {
    const p = a[c * n + c]!;
    for (let j = 0; j < n; j++) {
      a[c * n + j]! /= p;
      inv[c * n + j]! /= p;
    }
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = a[r * n + c]!;
      for (let j = 0; j < n; j++) {
        a[r * n + j]! -= f * a[c * n + j]!;
        inv[r * n + j]! -= f * inv[c * n + j]!;
      }
    }
  }
  return tf.tensor2d(inv, [n, n]);
}

function regressionModel(dim: number, seed: number): tf.Sequential {
  const model = tf.sequential({
    layers: [
      peer({ ...SMALL, expertOptimizer: { lr: 1e-2 }, seed, inputShape: [dim] }),
      tf.layers.dense({ units: 1, kernelInitializer: tf.initializers.glorotUniform({ seed }) }),
    ],
  });
  model.compile({ optimizer: tf.train.adam(1e-2), loss: 'meanSquaredError' });
  return model;
}

describe('PEER as a tf.layers layer', () => {
  it('model.fit with sparseStepCallback learns a toy regression below the best linear fit, then file:// save and load give identical outputs', async () => {
    const rng = testRng();
    const dim = 8;
    const { xs, ys, linearLoss } = toyRegression(rng, 256, dim);
    const model = regressionModel(dim, rng.int(1000));
    const peerLayer = model.layers[0] as PeerTfLayer;
    const tablesBefore = peerLayer.stateEntries().find((e) => e.name === 'weight_down_embed.weight')!.data.slice();
    // Train until the loss falls below TARGET (at most 60 epochs).
    const stopAtTarget = new tf.CustomCallback({
      onEpochEnd: async (_epoch, logs) => {
        if (logs && logs.loss! < TARGET) model.stopTraining = true;
      },
    });
    const history = await model.fit(xs, ys, { epochs: 60, batchSize: 32, shuffle: false, verbose: 0, callbacks: [sparseStepCallback(model), stopAtTarget] });
    const losses = history.history.loss as number[];
    const final = losses[losses.length - 1]!;
    const trace = `seed ${rng.seed}: losses ${losses.map((l) => l.toFixed(4)).join(' ')}; best linear fit ${linearLoss}`;
    expect(final, trace).toBeLessThan(TARGET);
    expect(final, trace).toBeLessThan(linearLoss / 3);
    // The expert tables were trained (by the callback), not only the dense weights.
    const tablesAfter = peerLayer.stateEntries().find((e) => e.name === 'weight_down_embed.weight')!.data;
    let changed = 0;
    for (let i = 0; i < tablesAfter.length; i++) if (tablesAfter[i] !== tablesBefore[i]) changed++;
    expect(changed).toBeGreaterThan(0);

    const dir = tempDir();
    await model.save(`file://${dir}`, { includeOptimizer: true });
    const files = readdirSync(dir).sort();
    expect(files.length).toBe(3);
    expect(files.filter((f) => f.endsWith('.safetensors')).length).toBe(1);
    const loaded = await tf.loadLayersModel(`file://${dir}/model.json`);
    const expected = tf.tidy(() => model.predict(xs) as tf.Tensor);
    const actual = tf.tidy(() => loaded.predict(xs) as tf.Tensor);
    expect(Array.from(actual.dataSync())).toEqual(Array.from(expected.dataSync()));
    // Every piece of state came back: tables, sparse Adam moments and step counts, dropout stream.
    const original = (model.layers[0] as PeerTfLayer).stateEntries();
    const restored = new Map((loaded.layers[0] as PeerTfLayer).stateEntries().map((e) => [e.name, e]));
    for (const e of original) expect(restored.get(e.name)!.data, e.name).toEqual(e.data);
    // With the dense Adam state (includeOptimizer) too, training resumes where it stopped. Up to
    // float32 rounding only: tfjs's Adam restores beta^t as pow(beta, t), not as the running product.
    for (const m of [model, loaded]) await m.fit(xs, ys, { epochs: 1, batchSize: 32, shuffle: false, verbose: 0, callbacks: [sparseStepCallback(m)] });
    const [resumedOriginal, resumedLoaded] = tf.tidy(() => [model.predict(xs) as tf.Tensor, loaded.predict(xs) as tf.Tensor]);
    const a = resumedOriginal!.dataSync();
    const b = resumedLoaded!.dataSync();
    let maxDiff = 0;
    let maxMove = 0;
    const before = actual.dataSync();
    for (let i = 0; i < a.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(a[i]! - b[i]!));
      maxMove = Math.max(maxMove, Math.abs(a[i]! - before[i]!));
    }
    expect(maxDiff).toBeLessThan(1e-5);
    expect(maxMove).toBeGreaterThan(1e-3);
    tf.dispose([resumedOriginal!, resumedLoaded!]);

    // Saving again replaces the files of the previous generation.
    await model.save(`file://${dir}`);
    expect(readdirSync(dir).length).toBe(3);
    expect(readdirSync(dir).sort()).not.toEqual(files);
    tf.dispose([xs, ys, expected, actual]);
    model.dispose();
    loaded.dispose();
  });

  it('fitDataset trains with the callback; a model.fit step leaks no tensor', async () => {
    const rng = testRng();
    const dim = 8;
    const { xs, ys } = toyRegression(rng, 64, dim);
    const model = regressionModel(dim, rng.int(1000));
    const data = tf.data.zip({ xs: tf.data.array(tf.unstack(xs)), ys: tf.data.array(tf.unstack(ys)) }).batch(16);
    const history = await model.fitDataset(data as tf.data.Dataset<tf.TensorContainer>, { epochs: 6, verbose: 0, callbacks: [sparseStepCallback(model)] });
    const losses = history.history.loss as number[];
    expect(losses[losses.length - 1]!, `seed ${rng.seed}`).toBeLessThan(losses[0]!);
    const callback = sparseStepCallback(model);
    await expectNoLeaks(() => model.fit(xs, ys, { epochs: 1, batchSize: 16, verbose: 0, callbacks: [callback] }), { warmup: 1, repeats: 2, label: 'model.fit' });
    tf.dispose([xs, ys]);
    model.dispose();
  });

  it('model.fit without the sparse step fails with an error that names the callback', async () => {
    const rng = testRng();
    const { xs, ys } = toyRegression(rng, 32, 8);
    const model = regressionModel(8, rng.int(1000));
    await expect(model.fit(xs, ys, { epochs: 1, batchSize: 16, verbose: 0 })).rejects.toThrow(/sparseStepCallback\(model\)/);
    tf.dispose([xs, ys]);
    model.dispose();
  });

  it('gradients through the tf.layers layer equal the plain layer\'s, for [B, D] and [B, S, D] inputs', () => {
    const rng = testRng();
    const dim = 12;
    const config = { ...SMALL, dim, seed: rng.int(1000) };
    for (const shape of [[10, dim], [2, 5, dim]]) {
      const plain = new PeerLayer(config);
      const wrapped = peer(config);
      const input = tf.input({ shape: shape.slice(1) });
      const model = tf.model({ inputs: input, outputs: wrapped.apply(input) as tf.SymbolicTensor });
      const x = randomTensor(rng, shape);
      const r = randomTensor(rng, shape);
      const viaModel = tf.variableGrads(() => tf.sum(tf.mul(model.apply(x, { training: true }) as tf.Tensor, r)) as tf.Scalar, model.trainableWeights.map((w) => w.read() as tf.Variable));
      const viaPlain = tf.variableGrads(() => {
        const x3 = (shape.length === 2 ? tf.expandDims(x, 1) : x) as tf.Tensor3D;
        return tf.sum(tf.mul(tf.reshape(plain.apply(x3, { training: true }).y, shape), r)) as tf.Scalar;
      }, plain.trainableVariables());
      expect(viaModel.value.dataSync()[0]).toBe(viaPlain.value.dataSync()[0]);
      // The wrapper's weights are the wrapped layer's variables, in the same order as the plain layer's.
      const wrappedVars = wrapped.layer.trainableVariables();
      const plainVars = plain.trainableVariables();
      expect(model.trainableWeights.map((w) => w.read())).toEqual(wrappedVars);
      for (let i = 0; i < plainVars.length; i++) {
        expect(Array.from(viaModel.grads[wrappedVars[i]!.name]!.dataSync()), `shape [${shape}] variable ${i}`).toEqual(Array.from(viaPlain.grads[plainVars[i]!.name]!.dataSync()));
      }
      for (const table of ['downGrad', 'upGrad'] as const) {
        const [w, q] = [wrapped.layer[table] as RowSparseGrad, plain[table] as RowSparseGrad];
        expect(Array.from(w.uniqueRows())).toEqual(Array.from(q.uniqueRows()));
        expect(Array.from(w.rowGrads())).toEqual(Array.from(q.rowGrads()));
        expect(wrapped.layer[table].size).toBeGreaterThan(0);
      }
      sparseStep(model);
      expect(wrapped.layer.downGrad.size).toBe(0);
      tf.dispose([x, r, viaModel.value, viaPlain.value, ...Object.values(viaModel.grads), ...Object.values(viaPlain.grads)]);
      plain.dispose();
      model.dispose();
    }
  });

  it('works in the functional API on [B, S, D], infers dim, validates the config and the input', () => {
    const rng = testRng();
    const tensorsBefore = tf.memory().numTensors;
    const input = tf.input({ shape: [5, 16] });
    const layer = peer({ ...SMALL, name: 'ffw' });
    const out = layer.apply(input) as tf.SymbolicTensor;
    expect(out.shape).toEqual([null, 5, 16]);
    expect(layer.layer.dim).toBe(16);
    expect(layer.weights.map((w) => w.originalName)).toEqual([
      'ffw/query_weight',
      'ffw/query_norm_gamma',
      'ffw/query_norm_beta',
      'ffw/sub_keys1',
      'ffw/sub_keys2',
      'ffw/query_norm_running_mean',
      'ffw/query_norm_running_var',
    ]);
    const model = tf.model({ inputs: input, outputs: out });
    const x = randomTensor(rng, [3, 5, 16]);
    const y = tf.tidy(() => model.predict(x) as tf.Tensor);
    const direct = tf.tidy(() => layer.layer.apply(x as tf.Tensor3D, { training: false }).y);
    expect(Array.from(y.dataSync())).toEqual(Array.from(direct.dataSync()));
    expect(() => peer({ ...SMALL, dim: 8, numExperts: 60 })).toThrow(/numExperts = 60/);
    expect(() => peer({ ...SMALL, dim: 8 }).apply(tf.input({ shape: [6] }))).toThrow(/dim = 8 but the input's last axis is 6/);
    tf.dispose([x, y, direct]);
    model.dispose();
    // Building, predicting and disposing leaves nothing behind (the layer's variables went with it).
    expect(tf.memory().numTensors).toBe(tensorsBefore);
    expect(() => layer.layer.apply(x as tf.Tensor3D, { training: false })).toThrow(/used after dispose/);
  });
});
