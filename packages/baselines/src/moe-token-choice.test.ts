import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { expectClose, expectNoLeaks, testRng, type TestRng } from '@peer/test-utils';
import { MoeTokenChoice, moeTokenChoiceForward } from './moe-token-choice.js';
import type { MoeTokenChoiceOptions } from './moe-config.js';
import type { TokenChoiceRouting } from './moe-routing.js';
import { decisiveInputs, expectPinnedRoutingGradients, flattenParams, randomizeWeights, referenceOf, referenceTokenChoice, unflattenParams } from './moe-reference.test-util.js';

function makeLayer(rng: TestRng, options: Partial<MoeTokenChoiceOptions> = {}): MoeTokenChoice {
  const layer = new MoeTokenChoice({ dim: 8, experts: 4, hidden: 6, seed: rng.int(1000), ...options });
  randomizeWeights(layer, rng);
  return layer;
}

const cases: { label: string; options: Partial<MoeTokenChoiceOptions> }[] = [
  { label: 'Switch K=1 gelu, capacity binding', options: { topK: 1, capacityFactor: 0.75, zLossCoef: 1e-3 } },
  { label: 'GShard K=2 relu no bias, capacity binding', options: { topK: 2, activation: 'relu', bias: false, capacityFactor: 0.6 } },
  { label: 'K=2 gelu-tanh unnormalized, ample capacity', options: { topK: 2, activation: 'gelu-tanh', normalizeGates: false, capacityFactor: 2 } },
  { label: 'K=3 of 4', options: { topK: 3, capacityFactor: 1, auxLossCoef: 0.1 } },
];

describe('MoeTokenChoice forward', () => {
  for (const { label, options } of cases) {
    it(`equals the float64 reference (${label})`, () => {
      const rng = testRng();
      const layer = makeLayer(rng, options);
      const c = layer.config;
      const [B, S] = [3, 7];
      const xData = decisiveInputs(referenceOf(layer), rng, B * S, c);
      const ref = referenceTokenChoice(referenceOf(layer), xData, B * S, c);
      tf.tidy(() => {
        const x = tf.tensor3d(Float32Array.from(xData), [B, S, c.dim]);
        const out = layer.apply(x, { training: true });
        expect(out.y.shape).toEqual([B, S, c.dim]);
        expectClose(out.y, ref.y, { rtol: 1e-4, atol: 1e-5, label: `${label} seed ${rng.seed}` });
        expectClose(out.auxLoss!.dataSync(), [ref.aux], { rtol: 1e-5, label: `aux, seed ${rng.seed}` });
        const stats = layer.lastRoutingStats()!;
        expect(Array.from(stats.expertLoad)).toEqual(Array.from(ref.load));
        expect(stats.droppedAssignments).toBe(ref.dropped);
        expect(stats.droppedTokens).toBe(Array.from(ref.weightSums).filter((w) => w === 0).length);
        if (c.capacityFactor < 1) expect(ref.dropped, 'capacity must bind in this case').toBeGreaterThan(0);
        for (const load of stats.expertLoad) expect(load).toBeLessThanOrEqual(stats.capacity);
        // Each token's combine weights, as documented.
        const r = moeTokenChoiceForward(tf.reshape(x, [B * S, c.dim]), layer.tensors(), c, true);
        const probs = tf.softmax(tf.matMul(tf.reshape(x, [B * S, c.dim]), layer.tensors().router)).arraySync() as number[][];
        for (let t = 0; t < B * S; t++) {
          const w = Array.from(r.combineWeights.subarray(t * c.topK, (t + 1) * c.topK));
          const sum = w.reduce((a, b) => a + b, 0);
          expect(sum).toBeCloseTo(ref.weightSums[t]!, 5);
          const allKept = w.every((v) => v > 0);
          const top = [...probs[t]!].sort((a, b) => b - a);
          if (c.topK === 1) expect(sum).toBeCloseTo(allKept ? top[0]! : 0, 5);
          else if (c.normalizeGates && allKept) expect(sum).toBeCloseTo(1, 5);
          else if (!c.normalizeGates && allKept) expect(sum).toBeCloseTo(top.slice(0, c.topK).reduce((a, b) => a + b, 0), 5);
        }
      });
      layer.dispose();
    });
  }

  it('uses the evaluation capacity and no auxiliary loss in evaluation', () => {
    const rng = testRng();
    const layer = makeLayer(rng, { topK: 1, capacityFactor: 0.5, evalCapacityFactor: 3, zLossCoef: 0.1 });
    const xData = decisiveInputs(referenceOf(layer), rng, 20, layer.config);
    const ref = referenceTokenChoice(referenceOf(layer), xData, 20, { ...layer.config, capacityFactor: 3 });
    tf.tidy(() => {
      const out = layer.apply(tf.tensor3d(Float32Array.from(xData), [2, 10, 8]), { training: false });
      expect(out.auxLoss).toBeUndefined();
      expect(layer.lastRoutingStats()!.capacity).toBe(Math.min(20, Math.ceil((20 * 3) / 4)));
      expect(layer.lastRoutingStats()!.droppedAssignments).toBe(0);
      expectClose(out.y, ref.y, { rtol: 1e-4, atol: 1e-5, label: `seed ${rng.seed}` });
    });
    layer.dispose();
  });

  it('rejects an input of the wrong width, naming the shape', () => {
    const layer = new MoeTokenChoice({ dim: 8, experts: 4, hidden: 6 });
    expect(() => layer.apply(tf.zeros([2, 3, 5]) as tf.Tensor3D, { training: true })).toThrow('moe: x has shape [2, 3, 5], expected [batch, seq, 8]');
    layer.dispose();
  });
});

describe('MoeTokenChoice gradients', () => {
  for (const { label, options } of cases) {
    it(`match finite differences for the input and every parameter (${label})`, () => {
      const rng = testRng();
      const layer = makeLayer(rng, { ...options, dim: 5, hidden: 4, auxLossCoef: 0.05, zLossCoef: 0.01 });
      expectPinnedRoutingGradients(layer, rng, 9, label, (x, p, pinned?: TokenChoiceRouting) => moeTokenChoiceForward(x, p, layer.config, true, pinned), (r) => r.routing);
      layer.dispose();
    });
  }

  it('gives the layer variables the gradients of the functional form', () => {
    const rng = testRng();
    const layer = makeLayer(rng, { topK: 2, capacityFactor: 0.8 });
    const x = tf.tensor3d(Float32Array.from(rng.normals(2 * 5 * 8)), [2, 5, 8]);
    tf.tidy(() => {
      const f = () => {
        const out = layer.apply(x, { training: true });
        return tf.add(tf.sum(tf.square(out.y)), out.auxLoss!) as tf.Scalar;
      };
      const { grads } = tf.variableGrads(f, layer.trainableVariables());
      const p = layer.tensors();
      const functional = tf.grads((...xs: tf.Tensor[]) => {
        const r = moeTokenChoiceForward(tf.reshape(x, [10, 8]), unflattenParams(xs, 4, true), layer.config, true);
        return tf.add(tf.sum(tf.square(r.y)), r.auxLoss!) as tf.Scalar;
      })(flattenParams(p));
      const load = layer.lastRoutingStats()!.expertLoad;
      layer.trainableVariables().forEach((v, i) => {
        expect(grads[v.name], v.name).toBeDefined();
        expectClose(grads[v.name]!, functional[i]!, { rtol: 1e-5, atol: 1e-7 });
        // router first, then w1, b1, w2, b2 of experts 0..3: non-zero exactly where the expert had tokens
        const expert = i === 0 ? -1 : (i - 1) % 4;
        const nonZero = tf.max(tf.abs(functional[i]!)).dataSync()[0]! > 0;
        expect(nonZero, `gradient ${i}`).toBe(expert < 0 || load[expert]! > 0);
      });
    });
    x.dispose();
    layer.dispose();
  });
});

describe('MoeTokenChoice training step, accounting, state, usage', () => {
  it('leaks no tensors across training steps', async () => {
    const rng = testRng();
    const layer = makeLayer(rng, { topK: 2, zLossCoef: 1e-3 });
    const x = tf.tensor3d(Float32Array.from(rng.normals(2 * 6 * 8)), [2, 6, 8]);
    const optimizer: tf.Optimizer = tf.train.adam(1e-3);
    await expectNoLeaks(() => {
      tf.tidy(() => {
        const { value, grads } = tf.variableGrads(() => {
          const out = layer.apply(x, { training: true });
          return tf.add(tf.mean(tf.square(out.y)), out.auxLoss!) as tf.Scalar;
        }, layer.trainableVariables());
        optimizer.applyGradients(grads);
        layer.sparseStep(1);
        expect(Number.isFinite(value.dataSync()[0])).toBe(true);
      });
      tf.tidy(() => {
        layer.apply(x, { training: false });
      });
    });
    optimizer.dispose();
    x.dispose();
    layer.dispose();
  });

  it('counts FLOPs and parameters as hand-computed', () => {
    const layer = new MoeTokenChoice({ dim: 8, experts: 4, hidden: 6, topK: 2 });
    // router 8*4 = 32 params, 2*32 = 64 FLOPs; expert 2*8*6 + 6 + 8 = 110 params, 2*(2*8*6) = 192 FLOPs
    expect(layer.flopsPerToken()).toBe(64 + 2 * 192);
    expect(layer.activeParamsPerToken()).toBe(32 + 2 * 110);
    expect(layer.totalParams()).toBe(32 + 4 * 110);
    expect(layer.totalParams()).toBe(layer.trainableVariables().reduce((n, v) => n + v.size, 0));
    layer.dispose();
    const noBias = new MoeTokenChoice({ dim: 8, experts: 4, hidden: 6, bias: false });
    expect(noBias.totalParams()).toBe(32 + 4 * 96);
    expect(noBias.activeParamsPerToken()).toBe(32 + 96);
    noBias.dispose();
  });

  it('round-trips its state and refuses a bad entry without changing anything', () => {
    const rng = testRng();
    const a = makeLayer(rng, { topK: 2 });
    const b = new MoeTokenChoice({ ...a.config, seed: a.config.seed + 1 });
    const entries = a.stateEntries('ffw.');
    expect(entries.map((e) => [e.name, e.shape])).toEqual([
      ['ffw.router.weight', [8, 4]],
      ['ffw.experts.w1', [4, 8, 6]],
      ['ffw.experts.b1', [4, 6]],
      ['ffw.experts.w2', [4, 6, 8]],
      ['ffw.experts.b2', [4, 8]],
    ]);
    const byName = new Map(entries.map((e) => [e.name, e]));
    const x = tf.tensor3d(Float32Array.from(rng.normals(3 * 4 * 8)), [3, 4, 8]);
    const before = tf.tidy(() => b.apply(x, { training: false }).y.dataSync());
    const broken = new Map(byName);
    broken.set('ffw.experts.w2', { ...byName.get('ffw.experts.w2')!, shape: [4, 8, 6] });
    expect(() => b.loadStateEntries('ffw.', (n) => broken.get(n))).toThrow("state entry 'ffw.experts.w2' has shape [4, 8, 6], expected [4, 6, 8]");
    broken.set('ffw.experts.w2', byName.get('ffw.experts.w2')!);
    broken.delete('ffw.experts.b2');
    expect(() => b.loadStateEntries('ffw.', (n) => broken.get(n))).toThrow("state entry 'ffw.experts.b2' is missing");
    expect(tf.tidy(() => b.apply(x, { training: false }).y.dataSync())).toEqual(before);
    b.loadStateEntries('ffw.', (n) => byName.get(n));
    const ya = tf.tidy(() => a.apply(x, { training: false }).y.dataSync());
    expect(tf.tidy(() => b.apply(x, { training: false }).y.dataSync())).toEqual(ya);
    x.dispose();
    a.dispose();
    b.dispose();
  });

  it('reports per-expert usage: accumulated combine weights and hits of kept assignments', () => {
    const rng = testRng();
    const layer = makeLayer(rng, { topK: 2, capacityFactor: 0.7 });
    const weights = new Float64Array(4);
    const hits = new Float64Array(4);
    layer.startUsage();
    for (let step = 0; step < 2; step++) {
      const xData = rng.normals(12 * 8);
      tf.tidy(() => {
        const x = tf.tensor2d(Float32Array.from(xData), [12, 8]);
        const r = moeTokenChoiceForward(x, layer.tensors(), layer.config, true);
        r.combineWeights.forEach((w, i) => {
          if (w > 0) {
            weights[r.routing.choices[i]!]! += w;
            hits[r.routing.choices[i]!]!++;
          }
        });
        layer.apply(tf.reshape(x, [2, 6, 8]) as tf.Tensor3D, { training: true });
      });
    }
    const report = layer.stopUsage();
    expect(report.count).toBe(4);
    expect(Array.from(report.hits)).toEqual(Array.from(hits));
    expectClose(report.weights, weights, { rtol: 1e-5 });
    expect(report.usage).toBe(Array.from(weights).filter((w) => w > 0).length / 4);
    expect(() => layer.stopUsage()).toThrow('stopUsage() called without startUsage()');
    layer.dispose();
  });

  it('rejects bad configs with one error naming the field and value', () => {
    expect(() => new MoeTokenChoice({ dim: 8, experts: 4, hidden: 6, topK: 5 })).toThrow('invalid moe config: topK = 5: must be at most experts (4)');
    expect(() => new MoeTokenChoice({ dim: 8, experts: 4, hidden: -6 })).toThrow(/invalid moe config: hidden = -6: /);
    expect(() => new MoeTokenChoice({ dim: 8, experts: 4, hidden: 6, capacityFactor: 0 })).toThrow(/capacityFactor = 0: /);
    expect(() => new MoeTokenChoice({ dim: 8, experts: 4, hidden: 6, activation: 'tanh' as never })).toThrow(/activation = "tanh": /);
    expect(() => new MoeTokenChoice({ dim: 8, experts: 4, hidden: 6, expert: 3 } as never)).toThrow("invalid moe config: unknown field 'expert'");
  });
});

describe('MoeTokenChoice lifetime', () => {
  it('disposes once and refuses use afterwards', () => {
    const layer = new MoeTokenChoice({ dim: 4, experts: 2, hidden: 3 });
    const before = tf.memory().numTensors;
    layer.dispose();
    layer.dispose();
    expect(tf.memory().numTensors).toBe(before - (1 + 4 * 2));
    expect(() => layer.apply(tf.zeros([1, 2, 4]) as tf.Tensor3D, { training: false })).toThrow('moe: used after dispose()');
  });
});
