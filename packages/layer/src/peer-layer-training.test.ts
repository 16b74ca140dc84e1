// Training integration: a full step (dense Adam + sparse update) leaks nothing and keeps the wasm
// heap flat; the sparse update applies exactly the accumulated row gradients; several forward
// passes before one backward; dropout; usage statistics; state entries.
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { heapStats } from '@peer/backend';
import { expectClose, expectNoLeaks, testRng } from '@peer/test-utils';
import { PeerLayer } from './peer-layer.js';
import { host, randomTensor } from './layer-params.test-util.js';
import { activation64 } from './peer-reference.test-util.js';

const SMALL = { dim: 16, numExperts: 64, heads: 2, topK: 3, dimKey: 6 } as const;

function lossOf(layer: PeerLayer, x: tf.Tensor3D, r: tf.Tensor3D): tf.Scalar {
  return tf.sum(tf.mul(layer.apply(x, { training: true }).y, r)) as tf.Scalar;
}

describe('PeerLayer training step', () => {
  it('construction and dispose leave no tensor behind', () => {
    const before = tf.memory().numTensors;
    new PeerLayer({ ...SMALL, queryNorm: 'batch' }).dispose();
    new PeerLayer({ ...SMALL, queryNorm: 'layer', sharedKeys: true }).dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('leaks no tensor and does not grow the wasm heap from step to step', async () => {
    const rng = testRng();
    const layer = new PeerLayer({ ...SMALL, dropout: 0.1, seed: rng.int(1000) });
    const x = randomTensor<tf.Rank.R3>(rng, [2, 40, SMALL.dim]);
    const r = randomTensor<tf.Rank.R3>(rng, [2, 40, SMALL.dim]);
    const optimizer = tf.train.adam(1e-2);
    const heap: number[] = [];
    const step = () => {
      tf.tidy(() => {
        const { value, grads } = tf.variableGrads(() => lossOf(layer, x, r), layer.trainableVariables());
        optimizer.applyGradients(Object.entries(grads).map(([name, tensor]) => ({ name, tensor })));
        value.dataSync();
      });
      layer.sparseStep(1);
      const stats = heapStats();
      if (stats) heap.push(stats.heapBytes, stats.liveBytes);
    };
    await expectNoLeaks(step, { warmup: 2, repeats: 4, label: 'training step' });
    if (tf.getBackend() === 'wasm') {
      // After the warm-up every step allocates and frees the same: heap size and live bytes repeat.
      const [heapBytes, live] = heap.slice(-2);
      for (let i = 4; i < heap.length; i += 2) {
        expect(heap[i]).toBe(heapBytes);
        expect(heap[i + 1]).toBe(live);
      }
    }
    optimizer.dispose();
    tf.dispose([x, r]);
    layer.dispose();
  });

  it('sparseStep applies the accumulated row gradients (SGD: w <- w - lr * lrScale * g) and clears them', () => {
    const rng = testRng();
    const layer = new PeerLayer({ ...SMALL, expertOptimizer: { kind: 'sgd', lr: 0.5 }, seed: rng.int(1000) });
    const x = randomTensor<tf.Rank.R3>(rng, [1, 6, SMALL.dim]);
    const r = randomTensor<tf.Rank.R3>(rng, [1, 6, SMALL.dim]);
    tf.tidy(() => tf.variableGrads(() => lossOf(layer, x, r), layer.trainableVariables()).value.dataSync());
    const rows = Array.from(host(layer).downGrad.uniqueRows());
    expect(rows.length).toBeGreaterThan(0);
    const d = SMALL.dim;
    const gd = Float32Array.from(host(layer).downGrad.rowGrads());
    const gu = Float32Array.from(host(layer).upGrad.rowGrads());
    const upRows = Array.from(host(layer).upGrad.uniqueRows());
    const before = { down: Float32Array.from(host(layer).down.data), up: Float32Array.from(host(layer).up.data) };
    layer.sparseStep(0.2);
    const expectedDown = Float32Array.from(before.down);
    rows.forEach((row, s) => {
      for (let j = 0; j < d; j++) expectedDown[row * d + j]! -= 0.1 * gd[s * d + j]!;
    });
    const expectedUp = Float32Array.from(before.up);
    upRows.forEach((row, s) => {
      for (let j = 0; j < d; j++) expectedUp[row * d + j]! -= 0.1 * gu[s * d + j]!;
    });
    expectClose(host(layer).down.data, expectedDown, { rtol: 1e-6, atol: 1e-7, label: 'down' });
    expectClose(host(layer).up.data, expectedUp, { rtol: 1e-6, atol: 1e-7, label: 'up' });
    expect(host(layer).downGrad.size).toBe(0);
    expect(host(layer).upGrad.size).toBe(0);
    tf.dispose([x, r]);
    layer.dispose();
  });

  it('several forward passes before one backward: each backward uses its own rows', () => {
    const rng = testRng();
    const layer = new PeerLayer({ ...SMALL, queryNorm: 'none', seed: rng.int(1000) });
    const [x1, x2, r1, r2] = [0, 1, 2, 3].map(() => randomTensor<tf.Rank.R3>(rng, [1, 5, SMALL.dim]));
    const vars = layer.trainableVariables();
    const gradsOf = (f: () => tf.Scalar) => {
      const { value, grads } = tf.variableGrads(f, vars);
      const dense = vars.map((v) => Array.from(grads[v.name]!.dataSync()));
      tf.dispose([value, ...Object.values(grads)]);
      const sparse = [Array.from(host(layer).downGrad.uniqueRows()), Array.from(host(layer).downGrad.rowGrads()), Array.from(host(layer).upGrad.rowGrads())];
      layer.zeroSparseGrads();
      return { dense, sparse };
    };
    // Both passes in one tape: the second forward overwrites the first one's rows in kernel memory.
    const both = gradsOf(() => tf.add(lossOf(layer, x1!, r1!), lossOf(layer, x2!, r2!)) as tf.Scalar);
    const first = gradsOf(() => lossOf(layer, x1!, r1!));
    const second = gradsOf(() => lossOf(layer, x2!, r2!));
    both.dense.forEach((g, i) => expectClose(g, first.dense[i]!.map((v, j) => v + second.dense[i]![j]!), { rtol: 1e-4, atol: 1e-6, label: `dense ${i}` }));
    // Row gradients: the sum over the two passes, row by row.
    const d = SMALL.dim;
    const expected = new Map<number, number[]>();
    for (const run of [first, second]) {
      run.sparse[0]!.forEach((row, s) => {
        const cur = expected.get(row) ?? new Array<number>(d).fill(0);
        for (let j = 0; j < d; j++) cur[j]! += run.sparse[1]![s * d + j]!;
        expected.set(row, cur);
      });
    }
    expect(both.sparse[0]!.length).toBe(expected.size);
    both.sparse[0]!.forEach((row, s) => expectClose(both.sparse[1]!.slice(s * d, (s + 1) * d), expected.get(row)!, { rtol: 1e-4, atol: 1e-6, label: `row ${row}` }));
    tf.dispose([x1!, x2!, r1!, r2!]);
    layer.dispose();
  });

  it('dropout zeroes or doubles (p = 0.5) each expert activation in training only', () => {
    const rng = testRng();
    // One head, k = 1, no norm: y[t] = m[t] * sigma(u . x) v with m in {0, 2}.
    const layer = new PeerLayer({ dim: 8, numExperts: 16, heads: 1, topK: 1, queryNorm: 'none', dropout: 0.5, seed: rng.int(1000) });
    const x = randomTensor<tf.Rank.R3>(rng, [1, 200, 8]);
    const train = tf.tidy(() => layer.apply(x, { training: true }).y.dataSync());
    const evalY = tf.tidy(() => layer.apply(x, { training: false }).y.dataSync());
    let dropped = 0;
    for (let t = 0; t < 200; t++) {
      const row = train.slice(t * 8, t * 8 + 8);
      const full = evalY.slice(t * 8, t * 8 + 8);
      if (row.every((v) => v === 0)) dropped++;
      else expectClose(row, full.map((v) => 2 * v), { rtol: 1e-5, atol: 1e-7, label: `token ${t}` });
    }
    expect(dropped).toBeGreaterThan(60);
    expect(dropped).toBeLessThan(140);
    x.dispose();
    layer.dispose();
  });

  it('state entries round-trip: a restored layer takes the same next step', () => {
    const rng = testRng();
    const config = { ...SMALL, dropout: 0.2, seed: rng.int(1000) };
    const a = new PeerLayer(config);
    const x = randomTensor<tf.Rank.R3>(rng, [1, 8, SMALL.dim]);
    const r = randomTensor<tf.Rank.R3>(rng, [1, 8, SMALL.dim]);
    const optimizer = tf.train.sgd(0.1);
    const sgd = (layer: PeerLayer) => {
      tf.tidy(() => {
        const { value, grads } = tf.variableGrads(() => lossOf(layer, x, r), layer.trainableVariables());
        optimizer.applyGradients(Object.entries(grads).map(([name, tensor]) => ({ name, tensor })));
        value.dataSync();
      });
      layer.sparseStep(1);
    };
    sgd(a);
    const entries = a.stateEntries('ffn.');
    const names = entries.map((e) => e.name);
    expect(names).toContain('ffn.weight_down_embed.weight');
    expect(names).toContain('ffn.weight_down_embed.weight.adam.m');
    expect(names).toContain('ffn.query_norm.running_var');
    expect(names).toContain('ffn.dropout_rng');
    const byName = new Map(entries.map((e) => [e.name, { ...e, data: e.data.slice() }]));
    const b = new PeerLayer({ ...config, seed: config.seed + 1 });
    b.loadStateEntries('ffn.', (n) => byName.get(n));
    sgd(a);
    sgd(b);
    for (const [ea, eb] of a.stateEntries('').map((e, i) => [e, b.stateEntries('')[i]!] as const)) {
      expect(eb.name).toBe(ea.name);
      expect(Array.from(eb.data as Float32Array)).toEqual(Array.from(ea.data as Float32Array));
    }
    expect(() => b.loadStateEntries('nope.', (n) => byName.get(n))).toThrow("'nope.dropout_rng' is missing");
    optimizer.dispose();
    tf.dispose([x, r]);
    a.dispose();
    b.dispose();
  });
});

describe('PeerLayer evaluation', () => {
  it('collects usage statistics (the paper\'s Table 2) from the router weights', () => {
    const rng = testRng();
    const layer = new PeerLayer({ ...SMALL, seed: rng.int(1000) });
    const x = randomTensor<tf.Rank.R3>(rng, [2, 10, SMALL.dim]);
    layer.startUsage();
    tf.tidy(() => layer.apply(x, { training: false }));
    const report = layer.stopUsage();
    const { indices, weights } = layer.route(x, { training: false });
    const z = new Float64Array(64);
    for (let i = 0; i < indices.length; i++) z[indices[i]!]! += weights[i]!;
    const total = z.reduce((a, b) => a + b, 0);
    let kl = Math.log(64);
    let used = 0;
    for (const v of z) {
      if (v > 0) {
        used++;
        kl += (v / total) * Math.log(v / total);
      }
    }
    expect(report.count).toBe(64);
    expect(report.usage).toBeCloseTo(used / 64, 12);
    expect(report.unevenness).toBeCloseTo(kl, 5);
    // head overlap: retrievals [T, h, k] whose expert another head of the same token also retrieved
    const { heads: h, topK: k } = layer.config;
    let shared = 0;
    for (let r = 0; r < indices.length; r++) {
      const t = Math.floor(r / (h * k));
      const head = Math.floor((r % (h * k)) / k);
      let other = false;
      for (let b = 0; b < h; b++) for (let j = 0; j < k; j++) other ||= b !== head && indices[(t * h + b) * k + j] === indices[r];
      if (other) shared++;
    }
    expect(report.headOverlap).toBe(shared / indices.length);
    expect(() => layer.stopUsage()).toThrow('startUsage was not called');
    x.dispose();
    layer.dispose();
  });

  it('with k = 1 and no BN equals an MLP of h neurons assembled from the retrieved rows', () => {
    const rng = testRng();
    const h = 4;
    const layer = new PeerLayer({ dim: 16, numExperts: 64, heads: h, topK: 1, queryNorm: 'none', seed: rng.int(1000) });
    const x = randomTensor<tf.Rank.R3>(rng, [1, 9, 16]);
    const y = tf.tidy(() => layer.apply(x, { training: true }).y.dataSync());
    const { indices, weights } = layer.route(x, { training: true });
    // softmax over a single score is 1: every neuron has weight 1.
    expect(Array.from(weights)).toEqual(new Array(9 * h).fill(1));
    const xs = x.dataSync();
    const d = 16;
    for (let t = 0; t < 9; t++) {
      // W1 [h, d] = the retrieved u rows, W2 [h, d] = the retrieved v rows: y = gelu(x W1^T) W2.
      const w1 = Array.from({ length: h }, (_, i) => host(layer).down.data.slice(indices[t * h + i]! * d, (indices[t * h + i]! + 1) * d));
      const w2 = Array.from({ length: h }, (_, i) => host(layer).up.data.slice(indices[t * h + i]! * d, (indices[t * h + i]! + 1) * d));
      const hidden = w1.map((u) => activation64(u.reduce((acc, v, j) => acc + v * xs[t * d + j]!, 0), 'gelu'));
      const expected = Array.from({ length: d }, (_, j) => hidden.reduce((acc, a, i) => acc + a * w2[i]![j]!, 0));
      expectClose(y.slice(t * d, (t + 1) * d), expected, { rtol: 1e-4, atol: 1e-6, label: `token ${t} seed ${rng.seed}` });
    }
    x.dispose();
    layer.dispose();
  });
});
