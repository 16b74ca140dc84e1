// PEER-pytorch interop: the feature permutation, the export/import round trip, files, and a forward
// pass written against the exported PyTorch tensors (the way PEER-pytorch computes it) that must
// equal our layer.
import * as tf from '@tensorflow/tfjs-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { expectClose, testRng } from '@peer/test-utils';
import { PeerLayer } from './peer-layer.js';
import { exportPeerPytorch, peerConfigFromPytorch } from './pytorch-layout.js';
import { importPeerPytorch, loadPeerPytorch, savePeerPytorch } from './pytorch-files.js';
import { pytorchToInternalFeature, queryWeightFromPytorch, queryWeightToPytorch, featuresFromPytorch, featuresToPytorch } from './query-layout.js';
import { pytorchReference } from './peer-reference.test-util.js';
import { perturbNorm, randomTensor } from './layer-params.test-util.js';

const dir = mkdtempSync(join(tmpdir(), 'peer-layer-pt-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('query feature layout', () => {
  it('maps PyTorch feature (half, head, j) to internal feature (head, half, j)', () => {
    const [h, dk] = [3, 4];
    const perm = pytorchToInternalFeature(h, dk);
    for (let half = 0; half < 2; half++) {
      for (let head = 0; head < h; head++) {
        for (let j = 0; j < dk; j++) expect(perm[half * h * dk + head * dk + j]).toBe(head * 2 * dk + half * dk + j);
      }
    }
    expect(new Set(perm).size).toBe(2 * h * dk);
  });

  it('transposes Wq to [out, in] and permutes its output features; the inverse restores it', () => {
    const [d, h, dk] = [5, 2, 3];
    const f = 2 * h * dk;
    // Each internal entry encodes (input i, head, half, j).
    const wq = new Float32Array(d * f);
    for (let i = 0; i < d; i++) for (let head = 0; head < h; head++) for (let half = 0; half < 2; half++) for (let j = 0; j < dk; j++) {
      wq[i * f + head * 2 * dk + half * dk + j] = 1000 * i + 100 * head + 10 * half + j;
    }
    const pt = queryWeightToPytorch(wq, d, h, dk);
    for (let half = 0; half < 2; half++) for (let head = 0; head < h; head++) for (let j = 0; j < dk; j++) for (let i = 0; i < d; i++) {
      expect(pt[(half * h * dk + head * dk + j) * d + i]).toBe(1000 * i + 100 * head + 10 * half + j);
    }
    expect(Array.from(queryWeightFromPytorch(pt, d, h, dk))).toEqual(Array.from(wq));
    const v = Float32Array.from({ length: f }, (_, i) => i);
    expect(Array.from(featuresFromPytorch(featuresToPytorch(v, h, dk), h, dk))).toEqual(Array.from(v));
  });
});

describe('PEER-pytorch weights', () => {
  for (const [label, separate] of [['one shared pool', false], ['a pool per head', true]] as const) {
    it(`our layer equals PEER-pytorch's forward on the exported tensors (${label}, BN train and eval)`, () => {
      const rng = testRng();
      const layer = new PeerLayer({ dim: 16, numExperts: 36, heads: 2, topK: 3, dimKey: 4, separateExpertsPerHead: separate, seed: rng.int(1000) });
      perturbNorm(layer, rng);
      const arrays = new Map(exportPeerPytorch(layer).map((a) => [a.name, { shape: a.shape, data: a.data as Float32Array }]));
      expect(arrays.get('to_queries.0.weight')!.shape).toEqual([16, 16]);
      expect(arrays.get('keys')!.shape).toEqual([2, 6, 2, 4]);
      expect(arrays.get('weight_down_embed.weight')!.shape).toEqual([separate ? 72 : 36, 16]);
      expect(arrays.get('query_norm.running_var')!.shape).toEqual([16]);
      // An input without a near-tie at any top-k boundary (train or eval), where float32 may pick
      // another k-th expert (float32 scores here are accurate to ~1e-6; 2e-5 leaves a 20x margin).
      let x = randomTensor<tf.Rank.R3>(rng, [1, 6, 16]);
      const gap = (t: tf.Tensor) => Math.min(...[false, true].map((training) => pytorchReference(arrays, Float64Array.from(t.dataSync()), 6, 3, training).boundaryGap));
      for (let attempt = 0; gap(x) <= 2e-5; attempt++) {
        if (attempt === 100) throw new Error(`no input without a top-k near-tie found (seed ${rng.seed})`);
        x.dispose();
        x = randomTensor<tf.Rank.R3>(rng, [1, 6, 16]);
      }
      const x64 = Float64Array.from(x.dataSync());
      const yEval = tf.tidy(() => layer.apply(x, { training: false }).y.dataSync());
      expectClose(yEval, pytorchReference(arrays, x64, 6, 3, false).y, { rtol: 1e-3, atol: 1e-5, label: `eval seed ${rng.seed}` });
      const yTrain = tf.tidy(() => layer.apply(x, { training: true }).y.dataSync());
      expectClose(yTrain, pytorchReference(arrays, x64, 6, 3, true).y, { rtol: 1e-3, atol: 1e-5, label: `train seed ${rng.seed}` });
      x.dispose();
      layer.dispose();
    });
  }

  it('round-trips through export and import (and through a file), keeping every output', () => {
    const rng = testRng();
    const config = { dim: 16, numExperts: 49, heads: 3, topK: 4, dimKey: 5, activation: 'gelu-tanh', scores: 'relu', seed: rng.int(1000) } as const;
    const layer = new PeerLayer(config);
    perturbNorm(layer, rng);
    const x = randomTensor<tf.Rank.R3>(rng, [2, 3, 16]);
    const expected = tf.tidy(() => layer.apply(x, { training: false }).y.dataSync());
    const copy = importPeerPytorch(exportPeerPytorch(layer), { topK: 4, activation: 'gelu-tanh', scores: 'relu' });
    expect(copy.config).toMatchObject({ dim: 16, numExperts: 49, heads: 3, dimKey: 5, queryNorm: 'batch', separateExpertsPerHead: false });
    expect(Array.from(tf.tidy(() => copy.apply(x, { training: false }).y.dataSync()))).toEqual(Array.from(expected));
    const path = join(dir, 'layer.safetensors');
    savePeerPytorch(layer, path);
    // topK, activation and scores come back from the file's metadata.
    const fromFile = loadPeerPytorch(path);
    expect(fromFile.config).toMatchObject({ topK: 4, activation: 'gelu-tanh', scores: 'relu' });
    expect(Array.from(tf.tidy(() => fromFile.apply(x, { training: false }).y.dataSync()))).toEqual(Array.from(expected));
    for (const l of [layer, copy, fromFile]) l.dispose();
    x.dispose();
  });

  it('infers the config from the shapes: layer norm, no norm, separate pools', () => {
    for (const queryNorm of ['layer', 'none'] as const) {
      const layer = new PeerLayer({ dim: 8, numExperts: 16, heads: 2, topK: 2, dimKey: 3, queryNorm, separateExpertsPerHead: true });
      const arrays = new Map(exportPeerPytorch(layer).map((a) => [a.name, a]));
      expect(arrays.has('query_norm.running_mean')).toBe(false);
      expect(arrays.has('query_norm.weight')).toBe(queryNorm === 'layer');
      expect(peerConfigFromPytorch((n) => arrays.get(n))).toEqual({ dim: 8, numExperts: 16, heads: 2, dimKey: 3, queryNorm, separateExpertsPerHead: true });
      layer.dispose();
    }
  });

  it('names the tensor, its shape and the expected shape on bad input', () => {
    const layer = new PeerLayer({ dim: 8, numExperts: 16, heads: 2, topK: 2, dimKey: 3 });
    const arrays = exportPeerPytorch(layer).map((a) => ({ ...a }));
    const q = arrays.find((a) => a.name === 'to_queries.0.weight')!;
    q.shape = [8, 12];
    q.data = new Float32Array(96);
    expect(() => importPeerPytorch(arrays, { topK: 2 })).toThrow("tensor 'to_queries.0.weight' has shape [8, 12], expected [12, 8]");
    expect(() => importPeerPytorch(arrays.filter((a) => a.name !== 'keys'))).toThrow("tensor 'keys' is missing");
    const down = arrays.find((a) => a.name === 'weight_down_embed.weight')!;
    down.shape = [17, 8];
    expect(() => importPeerPytorch(arrays, { topK: 2 })).toThrow("'weight_down_embed.weight' has 17 rows");
    layer.dispose();
  });
});
