import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { checkGradients, expectClose, expectNoLeaks, testRng, type TestRng } from '@peer/test-utils';
import type { NamedArray } from '@peer/expert-store';
import { hostGrad, hostRows, hostValues } from './pkm-host.test-util.js';
import { decisiveInputs, referenceOf, referencePkm } from './pkm-reference.test-util.js';
import { ProductKeyMemory, pkmForward, type PkmTensors } from './pkm.js';
import type { PkmOptions } from './pkm-config.js';
import type { RowGradientSink } from './pkm-value-mixture.js';

const noSink: RowGradientSink = { accumulate: () => {} };

function makeLayer(rng: TestRng, options: Partial<PkmOptions> = {}): ProductKeyMemory {
  return new ProductKeyMemory({ dim: 6, memories: 36, heads: 2, topK: 3, dimKey: 4, seed: rng.int(1 << 30), ...options });
}

const cases: { label: string; options: Partial<PkmOptions>; half?: boolean }[] = [
  { label: 'per-head keys, query BN', options: {} },
  { label: 'shared keys, no BN, k = sqrt(N), odd D', options: { dim: 5, memories: 16, heads: 3, topK: 4, dimKey: 3, sharedKeys: true, queryNorm: 'none' } },
  { label: 'one head, k = 1, candidateK 3', options: { memories: 49, heads: 1, topK: 1, candidateK: 3 } },
  { label: 'float16 value storage (inference)', options: {}, half: true },
];

describe('ProductKeyMemory forward', () => {
  for (const { label, options, half } of cases) {
    it(`equals brute-force float64 retrieval and read (${label})`, () => {
      const rng = testRng();
      const layer = makeLayer(rng, options);
      if (half) hostValues(layer).toStorage('float16');
      const c = layer.config;
      const [B, S] = [2, 5];
      const xData = decisiveInputs(referenceOf(layer), rng, B * S, true);
      const ref = referencePkm(referenceOf(layer), xData, B * S, true);
      tf.tidy(() => {
        const x = tf.tensor2d(Float32Array.from(xData), [B * S, c.dim]);
        const r = pkmForward(x, layer.tensors(), c, true, noSink);
        expect(Array.from(hostRows(r.indices)), `seed ${rng.seed}`).toEqual(ref.indices);
        expectClose(r.weights, ref.weights, { rtol: 1e-4, atol: 1e-6, label: `weights, seed ${rng.seed}` });
        expectClose(r.y, ref.y, { rtol: 1e-4, atol: 1e-6, label: `y, seed ${rng.seed}` });
        const out = layer.apply(tf.reshape(x, [B, S, c.dim]) as tf.Tensor3D, { training: true });
        expect(out.auxLoss).toBeUndefined();
        expectClose(out.y, ref.y, { rtol: 1e-4, atol: 1e-6, label: `apply, seed ${rng.seed}` });
      });
      layer.dispose();
    });
  }

  it('moves the running statistics in training and uses them in evaluation', () => {
    const rng = testRng();
    const layer = makeLayer(rng, { normMomentum: 0.25 });
    const T = 12;
    const xData = decisiveInputs(referenceOf(layer), rng, T, true);
    const before = referenceOf(layer);
    const ref = referencePkm(before, xData, T, true);
    tf.tidy(() => {
      layer.apply(tf.tensor3d(Float32Array.from(xData), [3, 4, 6]), { training: true });
    });
    const n = layer.queryNorm!;
    expectClose(n.runningMean, Array.from(ref.batchMean, (m) => 0.25 * m), { rtol: 1e-4, atol: 1e-6 });
    expectClose(n.runningVar, Array.from(ref.batchVar, (v) => 0.75 + 0.25 * v * (T / (T - 1))), { rtol: 1e-4, atol: 1e-6 });
    const evalData = decisiveInputs(referenceOf(layer), rng, T, false);
    const evalRef = referencePkm(referenceOf(layer), evalData, T, false);
    tf.tidy(() => {
      const y = layer.apply(tf.tensor3d(Float32Array.from(evalData), [3, 4, 6]), { training: false }).y;
      expectClose(y, evalRef.y, { rtol: 1e-4, atol: 1e-6, label: `seed ${rng.seed}` });
    });
    // Evaluation leaves the running statistics alone.
    const mean = n.runningMean.dataSync().slice();
    tf.tidy(() => {
      layer.apply(tf.tensor3d(Float32Array.from(evalData), [3, 4, 6]), { training: false });
    });
    expect(n.runningMean.dataSync()).toEqual(mean);
    layer.dispose();
  });

  it('rejects bad inputs and configs naming the value', () => {
    const layer = makeLayer(testRng());
    expect(() => layer.apply(tf.zeros([1, 2, 5]) as tf.Tensor3D, { training: true })).toThrow('pkm: x has shape [1, 2, 5], expected [batch, seq, 6]');
    expect(() => layer.apply(tf.zeros([1, 1, 6]) as tf.Tensor3D, { training: true })).toThrow('query BatchNorm in training needs at least 2 tokens per batch, got 1');
    layer.dispose();
    expect(() => new ProductKeyMemory({ dim: 6, memories: 30 })).toThrow('invalid pkm config: memories = 30: must be a perfect square (the product of two sub-key sets)');
    expect(() => new ProductKeyMemory({ dim: 6, memories: 16, topK: 5 })).toThrow('invalid pkm config: topK = 5: must be at most sqrt(memories) = 4');
    expect(() => new ProductKeyMemory({ dim: 6, memories: 16, topK: 2, candidateK: 1 })).toThrow('candidateK = 1: must be between topK (2) and sqrt(memories) (4)');
    expect(() => new ProductKeyMemory({ dim: 5, memories: 16, topK: 2 })).toThrow('invalid pkm config: dim = 5: must be even when dimKey is not given (default dimKey = dim / 2)');
    expect(() => new ProductKeyMemory({ dim: 6, memories: 16, topK: 2, valueOptimizer: { lr: -1 } })).toThrow(/valueOptimizer\.lr = -1: /);
    expect(() => new ProductKeyMemory({ dim: 6, memories: 16, topK: 2, heads: 0 })).toThrow(/heads = 0: /);
  });
});

describe('ProductKeyMemory gradients', () => {
  for (const { label, options } of cases.slice(0, 3)) {
    it(`match finite differences for the input, query net, BN, sub-keys and value rows (${label})`, () => {
      const rng = testRng();
      const layer = makeLayer(rng, { dim: 4, dimKey: 2, ...options, ...(options.dim === 5 ? { dim: 5, dimKey: 2 } : {}) });
      const c = layer.config;
      const T = 8;
      const p = layer.tensors();
      const x = tf.tensor2d(Float32Array.from(rng.normals(T * c.dim)), [T, c.dim]);
      const proj = tf.tensor2d(Float32Array.from(rng.normals(T * c.dim)), [T, c.dim]);
      const base = pkmForward(x, p, c, true, noSink);
      const pinned = hostRows(base.indices);
      const hasNorm = p.queryNorm !== null;
      const inputs = [x, p.queryWeight, ...(hasNorm ? [p.queryNorm!.weight, p.queryNorm!.bias] : []), p.keys.subKeys1, p.keys.subKeys2].map((t) => tf.clone(t));
      const build = (xs: tf.Tensor[]): [tf.Tensor2D, PkmTensors] => {
        const [xi, wq, ...rest] = xs;
        const [g, b, c1, c2] = hasNorm ? rest : [null, null, ...rest];
        return [
          xi as tf.Tensor2D,
          {
            queryWeight: wq as tf.Tensor2D,
            queryNorm: hasNorm ? { ...p.queryNorm!, weight: g as tf.Tensor1D, bias: b as tf.Tensor1D } : null,
            keys: { subKeys1: c1!, subKeys2: c2!, heads: c.heads },
            values: p.values,
          },
        ];
      };
      const lossWith = (sink: RowGradientSink, pin: Int32Array | undefined) => (...xs: tf.Tensor[]): tf.Scalar => {
        const [xi, params] = build(xs);
        return tf.sum(tf.mul(pkmForward(xi, params, c, true, sink, pin ? { indices: pin } : {}).y, proj));
      };
      // Pinned retrieval: a smooth function of every input, valid for finite differences.
      checkGradients(lossWith(noSink, pinned), inputs, { eps: 1e-2, rtol: 2e-2, atol: 2e-3, maxCoords: 30, label: `${label} seed ${rng.seed}` });
      // The production path (retrieve's re-gathered scores) has the same gradients at the base point.
      tf.tidy(() => {
        const free = tf.grads(lossWith(noSink, undefined))(inputs);
        const fixed = tf.grads(lossWith(noSink, pinned))(inputs);
        free.forEach((g, i) => expectClose(g, fixed[i]!, { rtol: 1e-4, atol: 1e-6, label: `input ${i}, seed ${rng.seed}` }));
      });
      // Value rows: the row-sparse gradient against finite differences on the table itself.
      const dense = new Float64Array(c.memories * c.dim);
      const recorder: RowGradientSink = {
        accumulate: (idx, rows) => idx.forEach((slot, r) => rows.subarray(r * c.dim, (r + 1) * c.dim).forEach((g, j) => (dense[slot * c.dim + j]! += g))),
      };
      tf.tidy(() => {
        tf.grads(lossWith(recorder, pinned))(inputs);
      });
      const table = hostValues(p).data;
      const evalLoss = () => tf.tidy(() => lossWith(noSink, pinned)(...inputs).dataSync()[0]!);
      const touched = new Set(pinned);
      const untouched = [...Array(c.memories).keys()].filter((s) => !touched.has(s)).slice(0, 1);
      const coords = [...Array.from(touched).slice(0, 4), ...untouched].flatMap((slot) => [slot * c.dim, slot * c.dim + c.dim - 1]);
      for (const i of coords) {
        const keep = table[i]!;
        table[i] = keep + 1e-2;
        const up = evalLoss();
        table[i] = keep - 1e-2;
        const down = evalLoss();
        table[i] = keep;
        expect(dense[i]!, `value coordinate ${i}, seed ${rng.seed}`).toBeCloseTo((up - down) / 2e-2, 2);
      }
      tf.dispose([x, proj, base.y, base.weights, ...inputs]);
      layer.dispose();
    });
  }
});

describe('ProductKeyMemory with more rows per step than the value table reserves', () => {
  it('reads the table correctly while the row gradient grows the memory the table lives in', () => {
    // 131,072 reads of a 512^2-slot table touch more than the 65,536 gradient rows the expert store
    // reserves next to the table, so accumulating them grows (and detaches) the table's memory.
    const rng = testRng();
    const layer = new ProductKeyMemory({ dim: 16, memories: 512 * 512, heads: 8, topK: 32, dimKey: 16, seed: rng.int(1000) });
    const T = 512;
    const x = tf.tensor3d(Float32Array.from(rng.normals(T * 16)), [1, T, 16]);
    const proj = tf.tensor3d(Float32Array.from(rng.normals(T * 16)), [1, T, 16]);
    tf.tidy(() => {
      const loss = () => tf.sum(tf.mul(layer.apply(x, { training: true }).y, proj)) as tf.Scalar;
      const { grads } = tf.variableGrads(loss, layer.trainableVariables());
      expect(layer.valueGrad.size, 'rows touched').toBeGreaterThan(65536);
      // The same gradients with the row gradients sent elsewhere (no growth).
      const p = layer.tensors();
      const reference = tf.grads((wq: tf.Tensor) => {
        const r = pkmForward(tf.reshape(x, [T, 16]) as tf.Tensor2D, { ...p, queryWeight: wq as tf.Tensor2D }, layer.config, true, noSink);
        return tf.sum(tf.mul(r.y, tf.reshape(proj, [T, 16])));
      })([p.queryWeight]);
      expectClose(grads[layer.queryWeight.name]!, reference[0]!, { rtol: 1e-4, atol: 1e-7, label: `seed ${rng.seed}` });
      for (const g of Object.values(grads)) expect(tf.all(tf.isFinite(g)).dataSync()[0]).toBe(1);
    });
    tf.dispose([x, proj]);
    layer.dispose();
  });
});

describe('ProductKeyMemory training step, sparse update, accounting, state, usage', () => {
  it('leaks no tensors across training steps, and its sparse step touches only the read rows', async () => {
    const rng = testRng();
    const layer = makeLayer(rng, { memories: 64, valueOptimizer: { lr: 0.05 } });
    const x = tf.tensor3d(Float32Array.from(rng.normals(2 * 5 * 6)), [2, 5, 6]);
    const optimizer: tf.Optimizer = tf.train.adam(1e-3);
    const step = (): Int32Array => {
      let read = new Int32Array(0);
      tf.tidy(() => {
        const { grads } = tf.variableGrads(() => {
          const out = layer.apply(x, { training: true });
          return tf.sum(tf.square(out.y));
        }, layer.trainableVariables());
        optimizer.applyGradients(grads);
        read = Int32Array.from(hostGrad(layer).uniqueRows());
      });
      layer.sparseStep(1);
      return read;
    };
    await expectNoLeaks(() => {
      step();
      tf.tidy(() => {
        layer.apply(x, { training: false });
      });
    });
    const before = Float32Array.from(hostValues(layer).data);
    const read = step();
    expect(layer.valueGrad.size).toBe(0);
    const after = hostValues(layer).data;
    const touched = new Set(read);
    for (let slot = 0; slot < 64; slot++) {
      const changed = after.subarray(slot * 6, slot * 6 + 6).some((v, j) => v !== before[slot * 6 + j]);
      expect(changed, `slot ${slot}`).toBe(touched.has(slot));
    }
    optimizer.dispose();
    x.dispose();
    layer.dispose();
  });

  it('counts FLOPs and parameters as hand-computed', () => {
    // D 8, N 64 (sqrtN 8), h 2, k 3, dk 4 (F = 16), candidateK 5, per-head keys, BN
    const layer = new ProductKeyMemory({ dim: 8, memories: 64, heads: 2, topK: 3, dimKey: 4, candidateK: 5 });
    const query = 8 * 16;
    const bn = 2 * 16;
    const keys = 2 * 2 * 8 * 4;
    expect(layer.flopsPerToken()).toBe(2 * 8 * 16 + 2 * 2 * 2 * 8 * 4 + 2 * 5 * 5 + 2 * 2 * 3 * 8);
    expect(layer.activeParamsPerToken()).toBe(query + bn + keys + 2 * 3 * 8);
    expect(layer.totalParams()).toBe(query + bn + keys + 64 * 8);
    expect(layer.totalParams()).toBe(layer.trainableVariables().reduce((n, v) => n + v.size, 0) + layer.values.rows * layer.values.dim);
    layer.dispose();
  });

  it('round-trips its whole state (values and Adam moments included) and refuses bad entries unchanged', () => {
    const rng = testRng();
    const a = makeLayer(rng);
    const x = tf.tensor3d(Float32Array.from(rng.normals(2 * 4 * 6)), [2, 4, 6]);
    tf.tidy(() => {
      tf.variableGrads(() => tf.sum(tf.square(a.apply(x, { training: true }).y)), a.trainableVariables());
    });
    a.sparseStep(1);
    const saved = new Map<string, NamedArray>(a.stateEntries('ffw.').map((e) => [e.name, { ...e, data: e.data.slice() }]));
    expect([...saved.keys()]).toEqual([
      'ffw.query.weight',
      'ffw.query_norm.weight',
      'ffw.query_norm.bias',
      'ffw.query_norm.running_mean',
      'ffw.query_norm.running_var',
      'ffw.keys.sub_keys1',
      'ffw.keys.sub_keys2',
      'ffw.values',
      'ffw.values.adam.m',
      'ffw.values.adam.v',
      'ffw.values.adam.steps',
    ]);
    const b = makeLayer(rng);
    const bBefore = tf.tidy(() => b.apply(x, { training: false }).y.dataSync());
    const broken = new Map(saved);
    broken.set('ffw.values.adam.v', { ...saved.get('ffw.values.adam.v')!, shape: [36, 5] });
    expect(() => b.loadStateEntries('ffw.', (n) => broken.get(n))).toThrow("state entry 'ffw.values.adam.v' has shape [36, 5], expected [36, 6]");
    expect(tf.tidy(() => b.apply(x, { training: false }).y.dataSync())).toEqual(bBefore);
    b.loadStateEntries('ffw.', (n) => saved.get(n));
    expect(tf.tidy(() => b.apply(x, { training: false }).y.dataSync())).toEqual(tf.tidy(() => a.apply(x, { training: false }).y.dataSync()));
    for (const e of b.stateEntries('ffw.')) expect(Array.from(e.data as Float32Array), e.name).toEqual(Array.from(saved.get(e.name)!.data as Float32Array));
    x.dispose();
    a.dispose();
    b.dispose();
  });

  it('reports per-slot usage: accumulated softmax weights and reads', () => {
    const rng = testRng();
    const layer = makeLayer(rng);
    const xData = decisiveInputs(referenceOf(layer), rng, 10, false);
    const ref = referencePkm(referenceOf(layer), xData, 10, false);
    layer.startUsage();
    tf.tidy(() => {
      layer.apply(tf.tensor3d(Float32Array.from(xData), [2, 5, 6]), { training: false });
    });
    const report = layer.stopUsage();
    const weights = new Float64Array(36);
    const hits = new Float64Array(36);
    ref.indices.forEach((slot, i) => {
      weights[slot]! += ref.weights[i]!;
      hits[slot]!++;
    });
    expect(report.count).toBe(36);
    expect(Array.from(report.hits)).toEqual(Array.from(hits));
    expectClose(report.weights, weights, { rtol: 1e-4, atol: 1e-6 });
    expect(report.usage).toBe(weights.filter((w) => w > 0).length / 36);
    // head overlap: reads whose slot another head of the same token also read (2 heads x top-3)
    let shared = 0;
    for (let r = 0; r < ref.indices.length; r++) {
      const t = Math.floor(r / 6);
      const head = Math.floor((r % 6) / 3);
      for (let j = 0; j < 3; j++) if (ref.indices[t * 6 + (1 - head) * 3 + j] === ref.indices[r]) shared++;
    }
    expect(report.headOverlap).toBe(shared / ref.indices.length);
    layer.dispose();
  });
});
