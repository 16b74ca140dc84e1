import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { expectClose, expectNoLeaks, testRng, type TestRng } from '@peer/test-utils';
import { MoeExpertChoice, moeExpertChoiceForward } from './moe-expert-choice.js';
import type { MoeExpertChoiceOptions } from './moe-config.js';
import { decisiveInputs, expectPinnedRoutingGradients, randomizeWeights, referenceExpertChoice, referenceOf } from './moe-reference.test-util.js';
import { expertChoiceCapacity, type MoeDispatch } from './moe-routing.js';

function makeLayer(rng: TestRng, options: Partial<MoeExpertChoiceOptions> = {}): MoeExpertChoice {
  const layer = new MoeExpertChoice({ dim: 8, experts: 4, hidden: 6, seed: rng.int(1000), ...options });
  randomizeWeights(layer, rng);
  return layer;
}

const cases: { label: string; options: Partial<MoeExpertChoiceOptions> }[] = [
  { label: 'capacity 1, gelu', options: {} },
  { label: 'capacity 2, relu, no bias, z-loss', options: { capacityFactor: 2, activation: 'relu', bias: false, zLossCoef: 1e-2 } },
  { label: 'capacity 0.5, gelu-tanh', options: { capacityFactor: 0.5, activation: 'gelu-tanh' } },
];

describe('MoeExpertChoice forward', () => {
  for (const { label, options } of cases) {
    it(`equals the float64 reference (${label})`, () => {
      const rng = testRng();
      const layer = makeLayer(rng, options);
      const c = layer.config;
      const [B, S] = [3, 7];
      const T = B * S;
      const xData = decisiveInputs(referenceOf(layer), rng, T, { capacity: expertChoiceCapacity(T, c.experts, c.capacityFactor) });
      const ref = referenceExpertChoice(referenceOf(layer), xData, T, c);
      tf.tidy(() => {
        const x = tf.tensor3d(Float32Array.from(xData), [B, S, c.dim]);
        const out = layer.apply(x, { training: true });
        expectClose(out.y, ref.y, { rtol: 1e-4, atol: 1e-5, label: `${label} seed ${rng.seed}` });
        if (c.zLossCoef > 0) expectClose(out.auxLoss!.dataSync(), [ref.aux], { rtol: 1e-5 });
        else expect(out.auxLoss).toBeUndefined();
        const stats = layer.lastRoutingStats()!;
        const C = Math.ceil((T * c.capacityFactor) / c.experts);
        expect(stats.capacity).toBe(C);
        expect(Array.from(stats.expertLoad)).toEqual(new Array<number>(c.experts).fill(C));
        expect(Array.from(ref.load)).toEqual(Array.from(stats.expertLoad));
        expect(stats.droppedTokens).toBe(ref.dropped);
        // Combine weights: the sum of the probabilities of the experts that picked the token, in [0, 1].
        const r = moeExpertChoiceForward(tf.reshape(x, [T, c.dim]), layer.tensors(), c, true);
        const sums = new Float64Array(T);
        r.slotGates.forEach((g, s) => (sums[r.dispatch.slotToken[s]!]! += g));
        expectClose(sums, ref.weightSums, { rtol: 1e-5, atol: 1e-7 });
        for (const w of sums) {
          expect(w).toBeGreaterThanOrEqual(0);
          expect(w).toBeLessThanOrEqual(1 + 1e-6);
        }
        expect(sums.filter((w) => w === 0).length).toBe(stats.droppedTokens);
      });
      layer.dispose();
    });
  }

  it('makes a token depend on later tokens of its sequence (the documented causal-LM caveat)', () => {
    const rng = testRng();
    const layer = makeLayer(rng, { capacityFactor: 1 });
    const S = 12;
    const xData = Float32Array.from(rng.normals(S * 8));
    const early = tf.tidy(() => layer.apply(tf.tensor3d(xData, [1, S, 8]), { training: false }).y.arraySync()[0]!);
    // Make the last token the favourite of an expert that did not pick it: it takes the slot of an earlier token.
    const base = moeExpertChoiceForward(tf.tensor2d(xData, [S, 8]), layer.tensors(), layer.config, false);
    const C = base.dispatch.capacity;
    const expert = [0, 1, 2, 3].find((e) => !Array.from(base.dispatch.slotToken.subarray(e * C, (e + 1) * C)).includes(S - 1))!;
    tf.dispose(base.y);
    const router = layer.tensors().router.arraySync();
    const changed = Float32Array.from(xData);
    for (let i = 0; i < 8; i++) changed[(S - 1) * 8 + i] = 20 * router[i]![expert]!;
    const late = tf.tidy(() => layer.apply(tf.tensor3d(changed, [1, S, 8]), { training: false }).y.arraySync()[0]!);
    let earlierChanged = false;
    for (let s = 0; s < S - 1; s++) if (early[s]!.some((v, i) => Math.abs(v - late[s]![i]!) > 1e-6)) earlierChanged = true;
    expect(earlierChanged, `seed ${rng.seed}`).toBe(true);
    layer.dispose();
  });
});

describe('MoeExpertChoice gradients', () => {
  for (const { label, options } of cases) {
    it(`match finite differences for the input and every parameter (${label})`, () => {
      const rng = testRng();
      const layer = makeLayer(rng, { ...options, dim: 5, hidden: 4, zLossCoef: 0.01 });
      expectPinnedRoutingGradients(layer, rng, 10, label, (x, p, pinned?: MoeDispatch) => moeExpertChoiceForward(x, p, layer.config, true, pinned), (r) => r.dispatch);
      layer.dispose();
    });
  }
});

describe('MoeExpertChoice training step, accounting, state, usage', () => {
  it('leaks no tensors across training steps', async () => {
    const rng = testRng();
    const layer = makeLayer(rng, { zLossCoef: 1e-3 });
    const x = tf.tensor3d(Float32Array.from(rng.normals(2 * 6 * 8)), [2, 6, 8]);
    const optimizer: tf.Optimizer = tf.train.adam(1e-3);
    await expectNoLeaks(() => {
      tf.tidy(() => {
        const { value, grads } = tf.variableGrads(() => {
          const out = layer.apply(x, { training: true });
          return tf.add(tf.mean(tf.square(out.y)), out.auxLoss!) as tf.Scalar;
        }, layer.trainableVariables());
        optimizer.applyGradients(grads);
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
    const layer = new MoeExpertChoice({ dim: 8, experts: 4, hidden: 6, capacityFactor: 2 });
    // router 8*4 = 32 params, 64 FLOPs; expert 2*8*6 + 6 + 8 = 110 params, 192 FLOPs; 2 experts per token on average
    expect(layer.flopsPerToken()).toBe(64 + 2 * 192);
    expect(layer.activeParamsPerToken()).toBe(32 + 2 * 110);
    expect(layer.totalParams()).toBe(32 + 4 * 110);
    expect(layer.totalParams()).toBe(layer.trainableVariables().reduce((n, v) => n + v.size, 0));
    expect(layer.config.evalCapacityFactor).toBe(2);
    layer.dispose();
  });

  it('round-trips its state', () => {
    const rng = testRng();
    const a = makeLayer(rng);
    const b = new MoeExpertChoice({ ...a.config, seed: a.config.seed + 1 });
    const entries = new Map(a.stateEntries('blocks.3.ffw.').map((e) => [e.name, e]));
    expect([...entries.keys()]).toEqual(['router.weight', 'experts.w1', 'experts.b1', 'experts.w2', 'experts.b2'].map((n) => `blocks.3.ffw.${n}`));
    b.loadStateEntries('blocks.3.ffw.', (n) => entries.get(n));
    const x = tf.tensor3d(Float32Array.from(rng.normals(2 * 4 * 8)), [2, 4, 8]);
    expect(tf.tidy(() => b.apply(x, { training: false }).y.dataSync())).toEqual(tf.tidy(() => a.apply(x, { training: false }).y.dataSync()));
    x.dispose();
    a.dispose();
    b.dispose();
  });

  it('reports per-expert usage: the gates of the picked tokens', () => {
    const rng = testRng();
    const layer = makeLayer(rng);
    const xData = Float32Array.from(decisiveInputs(referenceOf(layer), rng, 16, { capacity: expertChoiceCapacity(16, 4, layer.config.capacityFactor) }));
    const ref = referenceExpertChoice(referenceOf(layer), xData, 16, layer.config);
    layer.startUsage();
    tf.tidy(() => {
      layer.apply(tf.tensor3d(xData, [2, 8, 8]), { training: true });
    });
    const report = layer.stopUsage();
    expect(Array.from(report.hits)).toEqual(new Array<number>(4).fill(4));
    expectClose(report.weights, ref.expertWeights, { rtol: 1e-5 });
    expect(report.usage).toBe(1);
    layer.dispose();
  });

  it('rejects bad configs with one error naming the field and value', () => {
    expect(() => new MoeExpertChoice({ dim: 8, experts: 0, hidden: 6 })).toThrow(/invalid moe-ec config: experts = 0: /);
    expect(() => new MoeExpertChoice({ dim: 8, experts: 4, hidden: 6, topK: 2 } as never)).toThrow("invalid moe-ec config: unknown field 'topK'");
    expect(() => new MoeExpertChoice({ dim: 8.5, experts: 4, hidden: 6 })).toThrow(/dim = 8.5: /);
  });
});
